"""LLM answer verifier: answers the question from the images alone, never seeing the expected answer."""

from __future__ import annotations

from typing import Any

from agents.base import AgentContext, Draft, ImageSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import json_block, labelled_images, text_part
from agents.llm.replies import VerifierReply, check_letter
from agents.prompts import load_prompt
from schemas import LETTERS, TokenUsage, VerifierVerdict


def question_block(draft: Draft, n_images: int) -> dict[str, Any]:
    """The question as shown to a model that must not know the answer (no answer, no rationale)."""
    return {
        "n_images": n_images,
        "question": draft.question,
        "options": {LETTERS[i]: o for i, o in enumerate(draft.options)},
    }


class LLMVerifier:
    """Agrees iff the model's own answer is the writer's letter."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config

    async def verify(self, images: ImageSet, draft: Draft, ctx: AgentContext) -> tuple[VerifierVerdict, TokenUsage]:
        """One call: images + question + options; the reply's letter is compared with the draft's."""
        messages = [
            {"role": "system", "content": load_prompt("verifier", self.config.prompt_version)},
            {
                "role": "user",
                "content": [
                    text_part("Question:\n" + json_block(question_block(draft, len(images.images)))),
                    *labelled_images(images.images, self.config.image_max_side),
                ],
            },
        ]

        def parse(obj: dict[str, Any]) -> VerifierReply:
            reply = VerifierReply.model_validate(obj)
            check_letter(reply.answer, len(draft.options))
            return reply

        reply, usage = await self.client.complete_json(
            messages, parse, max_tokens=self.config.max_tokens["verifier"], seed=ctx.seed
        )
        verdict = VerifierVerdict(
            answer=reply.answer,
            agrees=reply.answer == draft.answer,
            method="llm",
            confidence=reply.confidence,
            notes=" ".join(reply.reasoning.split())[:300],
        )
        return verdict, usage
