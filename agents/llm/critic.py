"""LLM adversarial critic: free local checks first, then the probes (`agents.llm.probes`).

No part of the critic sees the claimed answer: the probes are solvers shown less than the sample
needs, and it is the critic that compares their answers with the key.
"""

from __future__ import annotations

import hashlib

from agents.base import AgentContext, Draft, ImageSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.probes import Probes
from schemas import LETTERS, CriticVerdict, TokenUsage, VerifierVerdict

# Reasons no rewording can fix: the sample is dropped. Others ask the writer to revise.
REJECT_REASONS = {
    "verifier_disagrees",
    "construction_mismatch",
    "near_duplicate",
    "text_only_solvable",
    "glance_solvable",
    "single_image_solvable",
    "position_bias",
}
PROBE_REASONS = {
    "text_only": "text_only_solvable",
    "glance": "glance_solvable",
    "single_image": "single_image_solvable",
    "reordered": "position_bias",
}
FEEDBACK = {
    "option_length_bias": "The correct option is much longer than the others; make all options similar in length.",
}


def duplicate_key(images: ImageSet, draft: Draft) -> str:
    """Same images (by content) asked the same question = the same sample, whatever the option order."""
    text = " ".join(draft.question.lower().split())
    payload = "|".join(sorted(r.sha256 for r in images.images)) + "|" + text
    return "llm-q:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def option_length_bias(draft: Draft, ratio: float) -> bool:
    """The correct option is the longest by far: answerable by picking the longest option."""
    if len(draft.options) < 3:
        return False
    lengths = [len(o) for o in draft.options]
    correct = lengths.pop(LETTERS.index(draft.answer))
    return correct > max(lengths) and correct >= ratio * (sum(lengths) / len(lengths))


def local_checks(
    images: ImageSet, draft: Draft, verdict: VerifierVerdict, ctx: AgentContext, ratio: float
) -> list[str]:
    """Attacks that need no model call: the construction check, verifier disagreement, option bias, duplicates."""
    reasons = []
    if verdict.method == "construction":
        reasons.append("construction_mismatch")
    elif not verdict.agrees:
        reasons.append("verifier_disagrees")
    if option_length_bias(draft, ratio) and not images.construction.get("truth"):  # the truth's options are fixed
        reasons.append("option_length_bias")
    if ctx.registry.seen(duplicate_key(images, draft)):
        reasons.append("near_duplicate")
    return reasons


def decide(reasons: list[str]) -> str:
    """accept / revise / reject from the reason codes."""
    if any(r in REJECT_REASONS for r in reasons):
        return "reject"
    return "revise" if reasons else "accept"


class LLMCritic:
    """Accept / reject (reasons) / revise (feedback); registers accepted samples against duplicates."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config
        self.probes = Probes(client, config)

    async def critique(
        self, images: ImageSet, draft: Draft, verdict: VerifierVerdict, ctx: AgentContext, *, attempt: int
    ) -> tuple[CriticVerdict, TokenUsage]:
        """Local checks decide alone when they find something; else the probes, cheapest first."""
        reasons = local_checks(images, draft, verdict, ctx, self.config.option_length_ratio)
        if reasons:
            feedback = " ".join(FEEDBACK[r] for r in reasons if r in FEEDBACK)
            return CriticVerdict(verdict=decide(reasons), reasons=reasons, feedback=feedback), TokenUsage()
        outcomes, usage = await self.probes.run(images, draft, ctx.seed * 100 + attempt)
        reasons = [PROBE_REASONS[o.name] for o in outcomes if o.rejected]
        decision = decide(reasons)
        if decision == "accept":
            ctx.registry.add(duplicate_key(images, draft))
        return CriticVerdict(verdict=decision, reasons=reasons, probes=outcomes), usage
