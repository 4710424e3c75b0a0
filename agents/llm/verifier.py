"""LLM answer verifier: solves the question blind, k times with the options shuffled, and checks the truth.

It is never shown the writer's answer or rationale. Where the pairer knows the answer by construction
(`construction["truth"]`), the writer's answer is first checked against it without any model call:
a mismatch rejects. The votes may come from another model on another endpoint (`verifier_model`,
`verifier_base_url`), so a writer's blind spot is not also its verifier's.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from agents.base import AgentContext, Draft, ImageSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import json_block, labelled_images, text_part
from agents.llm.replies import VerifierReply, letter_reply
from agents.prompts import load_prompt
from schemas import LETTERS, TokenUsage, VerifierVerdict


def question_block(question: str, options: list[str], n_images: int) -> dict[str, Any]:
    """The question as shown to a model that must not know the answer (no answer, no rationale)."""
    return {"n_images": n_images, "question": question, "options": {LETTERS[i]: o for i, o in enumerate(options)}}


def shuffled(options: list[str], rng: random.Random) -> list[int]:
    """A permutation of the option indices: shown position j holds original option `perm[j]`."""
    perm = list(range(len(options)))
    rng.shuffle(perm)
    return perm


async def ask_shuffled(
    client: LLMClient,
    options: list[str],
    messages_for: Callable[[list[str]], list[dict[str, Any]]],
    *,
    seed: int,
    max_tokens: int,
    label: str,
) -> tuple[str, VerifierReply, TokenUsage]:
    """One blind letter answer with the options shuffled (by `seed`): (the letter in `options`' order, reply, usage)."""
    perm = shuffled(options, random.Random(seed))
    shown = [options[i] for i in perm]
    reply, usage = await client.complete_json(
        messages_for(shown), letter_reply(len(shown)), max_tokens=max_tokens, seed=seed, label=label
    )
    return LETTERS[perm[LETTERS.index(reply.answer)]], reply, usage


def norm_text(text: str) -> str:
    """Option text compared without case, spacing or trailing punctuation."""
    return " ".join(str(text).lower().replace(",", " ").split()).rstrip(".")


def construction_mismatch(images: ImageSet, draft: Draft) -> str | None:
    """Why the writer's answer contradicts the answer known by construction; None if it agrees or none is known."""
    truth = images.construction.get("truth") if isinstance(images.construction, dict) else None
    if not isinstance(truth, dict) or not truth.get("answer"):
        return None
    want = norm_text(truth["answer"])
    found = [i for i, o in enumerate(draft.options) if norm_text(o) == want]
    if len(found) != 1:
        return f"the true answer {truth['answer']!r} is {'missing from' if not found else 'repeated in'} the options"
    if LETTERS[found[0]] != draft.answer:
        return f"the writer marks {draft.answer}, the construction says {LETTERS[found[0]]} ({truth['answer']!r})"
    return None


class LLMVerifier:
    """Agrees iff the answer matches the construction (when known) and the blind majority is the writer's."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config

    def messages(self, images: ImageSet, question: str, options: list[str]) -> list[dict[str, Any]]:
        """One blind vote's chat messages: the images, the question and the (shuffled) options."""
        return [
            {"role": "system", "content": load_prompt("verifier", self.config.prompt_version)},
            {
                "role": "user",
                "content": [
                    text_part("Question:\n" + json_block(question_block(question, options, len(images.images)))),
                    *labelled_images(images.images, self.config.image_max_side),
                ],
            },
        ]

    async def _vote(self, images: ImageSet, draft: Draft, seed: int) -> tuple[str, float, TokenUsage]:
        letter, reply, usage = await ask_shuffled(
            self.client,
            draft.options,
            lambda shown: self.messages(images, draft.question, shown),
            seed=seed,
            max_tokens=self.config.max_tokens["verifier"],
            label="verifier",
        )
        return letter, reply.confidence, usage

    async def verify(self, images: ImageSet, draft: Draft, ctx: AgentContext) -> tuple[VerifierVerdict, TokenUsage]:
        """The construction check, then `verifier_votes` blind votes in parallel."""
        model = self.client.model
        mismatch = construction_mismatch(images, draft)
        if mismatch:
            return VerifierVerdict(agrees=False, method="construction", notes=mismatch[:300]), TokenUsage()
        k = self.config.verifier_votes
        votes = await asyncio.gather(*(self._vote(images, draft, ctx.seed * 1000 + v) for v in range(k)))
        usage = TokenUsage.total(u for _, _, u in votes)
        letters = [v[0] for v in votes]
        answer, count = Counter(letters).most_common(1)[0]
        share = count / k
        agrees = answer == draft.answer and share > self.config.verifier_min_share  # a tie is no majority
        confidence = sum(c for a, c, _ in votes if a == answer) / count
        method = "llm+construction" if images.construction.get("truth") else "llm"
        verdict = VerifierVerdict(
            answer=answer,
            agrees=agrees,
            method=method,
            confidence=round(confidence, 3),
            notes=f"{count} of {k} blind votes for {answer}",
            votes=letters,
            vote_share=round(share, 3),
            model=model,
        )
        return verdict, usage
