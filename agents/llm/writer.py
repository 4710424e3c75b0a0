"""LLM question writer: sees the images and the ground-truth record, writes a multiple-choice question."""

from __future__ import annotations

from typing import Any

from agents.base import AgentContext, Draft, ImageSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import json_block, labelled_images, text_part
from agents.llm.replies import WriterReply
from agents.prompts import load_prompt
from schemas import TaskType, TokenUsage


def allowed_task_types(ctx: AgentContext) -> list[TaskType]:
    """Task types the run allows (`ctx.options["task_types"]`, default all)."""
    names = ctx.options.get("task_types")
    return [TaskType(n) for n in names] if names else list(TaskType)


class LLMWriter:
    """Writes (attempt 0) or revises (attempt > 0, with the critic's feedback) one question."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config

    def messages(self, images: ImageSet, ctx: AgentContext, feedback: list[str], attempt: int) -> list[dict[str, Any]]:
        """The chat messages of one writer call."""
        allowed = allowed_task_types(ctx)
        facts: dict[str, Any] = {
            "n_images": len(images.images),
            "images": [
                {"image": i + 1, "image_index": i, "role": r.role, "width": r.width, "height": r.height}
                for i, r in enumerate(images.images)
            ],
            "domain": images.domain.value,
            "kind": images.kind,
            "construction": images.construction,
            "allowed_task_types": [t.value for t in allowed],
            "attempt": attempt,
        }
        if attempt > 0 and feedback:
            facts["feedback"] = feedback
        return [
            {"role": "system", "content": load_prompt("writer", self.config.prompt_version)},
            {
                "role": "user",
                "content": [
                    text_part("Ground truth and constraints:\n" + json_block(facts)),
                    *labelled_images(images.images, self.config.image_max_side),
                ],
            },
        ]

    async def write(
        self, images: ImageSet, ctx: AgentContext, *, seed: int, feedback: list[str], attempt: int
    ) -> tuple[Draft, TokenUsage]:
        """Ask for the draft as JSON; invalid letters, task types or boxes are re-asked, then fail."""
        allowed = set(allowed_task_types(ctx))

        def parse(obj: dict[str, Any]) -> Draft:
            return WriterReply.model_validate(obj).to_draft(images, allowed)

        return await self.client.complete_json(
            self.messages(images, ctx, feedback, attempt),
            parse,
            max_tokens=self.config.max_tokens["writer"],
            seed=seed + attempt,
        )
