"""LLM question writer: one question of the set's task family, from the images and what is known of them.

The family is the pairer's (`construction["family"]`); its definition and two worked examples come
from the versioned prompt files. Where the answer is known by construction the writer is given it
(`truth`: the correct option's text and the options to offer) and must keep to it: the verifier
checks that without a model call. Sets of different photos carry the describer's captions.
"""

from __future__ import annotations

from typing import Any

from agents.base import AgentContext, Draft, ImageSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import json_block, labelled_images, text_part
from agents.llm.replies import WriterReply
from agents.llm.verifier import norm_text
from agents.prompts import load_family, load_prompt
from schemas import Box, TaskType, TokenUsage


def family_of(images: ImageSet) -> TaskType:
    """The task family the pairer made the set for (ValueError when the record names none we know)."""
    family = images.construction.get("family") or images.construction.get("task")
    try:
        return TaskType(family)
    except ValueError:
        raise ValueError(f"the image set names no known task family ({family!r})") from None


class LLMWriter:
    """Writes (attempt 0) or revises (attempt > 0, with the critic's feedback) one question."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config

    def facts(self, images: ImageSet, feedback: list[str], attempt: int) -> dict[str, Any]:
        """What the writer is told besides the images (never the construction record itself)."""
        c = images.construction
        truth = c.get("truth")
        facts: dict[str, Any] = {
            "family": family_of(images).value,
            "n_images": len(images.images),
            "images": [{"image": i + 1, "width": r.width, "height": r.height} for i, r in enumerate(images.images)],
            "truth": {"answer": truth["answer"], "options": truth["options"]} if truth else None,
            "captions": c.get("captions"),
            "attempt": attempt,
        }
        if attempt > 0 and feedback:
            facts["feedback"] = feedback
        return facts

    def messages(self, images: ImageSet, feedback: list[str], attempt: int) -> list[dict[str, Any]]:
        """The chat messages of one writer call."""
        version = self.config.prompt_version
        system = load_prompt("writer", version) + "\n\n" + load_family(family_of(images).value, version)
        return [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": [
                    text_part("Task and what is known:\n" + json_block(self.facts(images, feedback, attempt))),
                    *labelled_images(images.images, self.config.image_max_side),
                ],
            },
        ]

    async def write(
        self, images: ImageSet, ctx: AgentContext, *, seed: int, feedback: list[str], attempt: int
    ) -> tuple[Draft, TokenUsage]:
        """Ask for the draft as JSON; bad letters or boxes, or options other than the truth's, are re-asked."""
        family = family_of(images)
        truth = images.construction.get("truth")

        def parse(obj: dict[str, Any]) -> Draft:
            draft = WriterReply.model_validate(obj).to_draft(images, family)
            if truth:
                if sorted(map(norm_text, draft.options)) != sorted(map(norm_text, truth["options"])):
                    raise ValueError(f"use exactly these options (any order): {truth['options']}")
                # the boxes are known where the answer is: the writer's own would only be less exact
                draft = draft.model_copy(update={"evidence": [Box(**b) for b in truth.get("evidence") or []]})
            return draft

        return await self.client.complete_json(
            self.messages(images, feedback, attempt),
            parse,
            max_tokens=self.config.max_tokens["writer"],
            seed=seed + attempt,
            label="writer",
        )
