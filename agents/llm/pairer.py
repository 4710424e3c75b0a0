"""LLM pairer: images are built procedurally (ground truth by construction); the model classifies them."""

from __future__ import annotations

from agents.base import AgentContext, ImageSet, Pairer, WorkItem
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import json_block, labelled_images, text_part
from agents.llm.replies import PairerReply
from agents.prompts import load_prompt
from schemas import Domain, TokenUsage
from schemas.errors import ConfigError


def default_base_pairer(options: dict) -> Pairer:
    """The offline (procedural) pairer; imported lazily so agents.llm does not need it at import."""
    try:
        from agents.offline import build_offline_agents
    except ImportError as e:  # pragma: no cover - only when the offline backend is missing
        raise ConfigError(f"the LLM pairer builds images with the offline pairer, which is unavailable: {e}") from e
    from agents.offline.edits import EDIT_KINDS

    # the drawn kinds, whose construction record the LLM writer and the scripted test model read today;
    # the natural offline families (version-2 records) come to the VLM backend with its own pairer
    try:
        return build_offline_agents({"kinds": list(EDIT_KINDS), **options}).pairer
    except ValueError as e:  # bad offline option: a user error, reported before any work
        raise ConfigError(f"LLM backend: {e}") from e


class LLMPairer:
    """Delegates image construction to a procedural pairer, then one cheap call: domain + detail."""

    def __init__(self, client: LLMClient, config: LLMConfig, base: Pairer | None = None) -> None:
        self.client = client
        self.config = config
        self._base = base

    @property
    def base(self) -> Pairer:
        """The pairer that makes the images (built on first use)."""
        if self._base is None:
            self._base = default_base_pairer(self.config.offline_options)
        return self._base

    async def pair(self, item: WorkItem, ctx: AgentContext) -> tuple[ImageSet, TokenUsage]:
        """Make the image set procedurally, then let the model name its domain and describe the detail."""
        images, usage = await self.base.pair(item, ctx)
        facts = {
            "n_images": len(images.images),
            "kind": images.kind,
            "domain_hint": images.domain.value,
            "images": [{"image": i + 1, "role": r.role, "source": r.source} for i, r in enumerate(images.images)],
            "construction": images.construction,
        }
        messages = [
            {"role": "system", "content": load_prompt("pairer", self.config.prompt_version)},
            {
                "role": "user",
                "content": [
                    text_part("How these images were made:\n" + json_block(facts)),
                    *labelled_images(images.images, self.config.pairer_image_side),
                ],
            },
        ]
        reply, call_usage = await self.client.complete_json(
            messages, PairerReply.model_validate, max_tokens=self.config.max_tokens["pairer"], seed=item.seed
        )
        # The procedural domain (known for bundled photos) wins unless it is unknown.
        domain = images.domain if images.domain != Domain.OTHER else reply.domain
        construction = {**images.construction, "llm_domain": reply.domain.value, "llm_description": reply.description}
        return images.model_copy(update={"domain": domain, "construction": construction}), usage.add(call_usage)
