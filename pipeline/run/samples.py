"""A finished graph state as the run keeps it: the `Sample` for a shard and the item record.

`record_from_sample` goes the other way, for a sample found in a shard without a record (see
`pipeline.run.reconcile`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from agents.base import AgentSet
from agents.image_cache import load_bytes
from pipeline.graph import GenState
from pipeline.item_store import ItemRecord
from pipeline.run_config import RunConfig
from schemas import NEUTRAL_ROLE, CriticVerdict, Provenance, Sample, Status, image_entry


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def assemble_sample(state: GenState, cfg: RunConfig, agents: AgentSet, status: Status) -> Sample:
    """The final Sample of a finished graph state: image bytes read from the cache, provenance filled.

    Every image gets the neutral role: which image is the edited one is the answer, so the per-image
    roles go only into the audit-only construction record (`"image_roles"`), never into `image_meta`.
    """
    images, draft = state["images"], state["draft"]
    entries = [
        image_entry(
            load_bytes(r),
            width=r.width,
            height=r.height,
            source=r.source,
            phash=r.phash,
            license=r.license,
            role=NEUTRAL_ROLE,
            sha256=r.sha256,  # the cache names files by it: no need to hash the bytes again
        )
        for r in images.images
    ]
    construction = {**images.construction, "image_roles": [r.role for r in images.images]}
    return Sample(
        images=[image for image, _ in entries],
        image_meta=[meta for _, meta in entries],
        question=draft.question,
        options=list(draft.options),
        answer=draft.answer,
        task_type=draft.task_type,
        domain=images.domain,
        rationale=draft.rationale,
        evidence=list(draft.evidence),
        provenance=Provenance(
            backend=agents.backend,
            model=agents.model,
            prompt_version=agents.prompt_version,
            seed=state["item"].seed,
            run_id=cfg.run_id,
            construction=json.dumps(construction, sort_keys=True, default=str),
            verifier=state["verdict"],
            # a verifier disagreement rejects before the critic runs: say so rather than a default "accept"
            critic=state.get("critic")
            or CriticVerdict(verdict="reject", reasons=list(state.get("reasons") or []), feedback="critic not run"),
            revisions=state["revisions"],
            usage=state["usage"],
            created_at=_now(),
        ),
        status=status,
    )


def record_from_state(state: GenState, seconds: float) -> ItemRecord:
    """The item record of a finished graph state."""
    item, usage = state["item"], state["usage"]
    images, draft, verdict = state.get("images"), state.get("draft"), state.get("verdict")
    return ItemRecord(
        index=item.index,
        seed=item.seed,
        outcome=state.get("outcome", "failed"),
        task_type=draft.task_type.value if draft else "",
        domain=images.domain.value if images else "",
        kind=images.kind if images else "",
        n_images=len(images.images) if images else 0,
        reasons=list(state.get("reasons") or []),
        failure=state.get("failure", ""),
        failed_stage=state.get("failed_stage", ""),
        revisions=state.get("revisions", 0),
        verifier_agrees=None if verdict is None else verdict.agrees,
        critic_history=[{"verdict": c.verdict, "reasons": list(c.reasons)} for c in state.get("critic_history", [])],
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        calls=usage.calls,
        cost_usd=usage.cost_usd,
        seconds=round(seconds, 4),
        finished_at=_now(),
        usage_parts=[p.model_dump() for p in usage.parts],
    )


def record_from_sample(index: int, sample: Sample, outcome: str) -> ItemRecord:
    """A record rebuilt from a sample found in a shard without one (adopted on reconcile)."""
    p = sample.provenance
    return ItemRecord(
        index=index,
        seed=p.seed,
        outcome=outcome,
        sample_id=sample.id,
        task_type=sample.task_type.value,
        domain=sample.domain.value,
        n_images=len(sample.images),
        reasons=[] if outcome == "accepted" else (list(p.critic.reasons) or ["critic_rejected"]),
        revisions=p.revisions,
        verifier_agrees=p.verifier.agrees,
        critic_history=[{"verdict": p.critic.verdict, "reasons": list(p.critic.reasons)}],
        prompt_tokens=p.usage.prompt_tokens,
        completion_tokens=p.usage.completion_tokens,
        calls=p.usage.calls,
        cost_usd=p.usage.cost_usd,
        finished_at=p.created_at,
        usage_parts=[part.model_dump() for part in p.usage.parts],
    )
