"""LLM adversarial critic: free local checks first, then a blind (text-only) guess and a thumbnail attack."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from agents.base import AgentContext, Draft, ImageSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import json_block, labelled_images, text_part
from agents.llm.replies import BlindReply, CriticReply, normalise_letter
from agents.llm.verifier import question_block
from agents.prompts import load_prompt
from schemas import LETTERS, CriticVerdict, TokenUsage, VerifierVerdict

# Reasons no rewording can fix: the sample is dropped. Others ask the writer to revise.
REJECT_REASONS = {"verifier_disagrees", "near_duplicate", "thumbnail_solvable", "wrong_answer"}


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
    """Deterministic attacks that need no model call: verifier disagreement, option bias, duplicates."""
    reasons = []
    if not verdict.agrees:
        reasons.append("verifier_disagrees")
    if option_length_bias(draft, ratio):
        reasons.append("option_length_bias")
    if ctx.registry.seen(duplicate_key(images, draft)):
        reasons.append("near_duplicate")
    return reasons


def decide(reasons: list[str], model_verdict: str = "accept") -> str:
    """accept / revise / reject from the reason codes and the model's own verdict."""
    if model_verdict == "reject" or any(r in REJECT_REASONS for r in reasons):
        return "reject"
    if model_verdict == "revise" or reasons:
        return "revise"
    return "accept"


FEEDBACK = {
    "option_length_bias": "The correct option is much longer than the others; make all options similar in length.",
    "text_only_solvable": "The question can be answered without the images; remove the hint from the wording.",
}


class LLMCritic:
    """Accept / reject (reasons) / revise (feedback); registers accepted samples against duplicates."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config

    def _blind_messages(self, draft: Draft, n_images: int) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": load_prompt("critic_blind", self.config.prompt_version)},
            {"role": "user", "content": "Question (images hidden):\n" + json_block(question_block(draft, n_images))},
        ]

    def _attack_messages(self, images: ImageSet, draft: Draft, thumb: int) -> list[dict[str, Any]]:
        block = {**question_block(draft, len(images.images)), "claimed_answer": draft.answer, "thumbnail_side": thumb}
        return [
            {"role": "system", "content": load_prompt("critic", self.config.prompt_version)},
            {
                "role": "user",
                "content": [
                    text_part("Sample to attack:\n" + json_block(block)),
                    *labelled_images(images.images, thumb),
                ],
            },
        ]

    async def _blind(self, draft: Draft, n_images: int, seed: int) -> tuple[BlindReply | None, TokenUsage]:
        if not self.config.critic_text_probe:
            return None, TokenUsage()
        return await self.client.complete_json(
            self._blind_messages(draft, n_images),
            BlindReply.model_validate,
            max_tokens=self.config.max_tokens["critic_blind"],
            seed=seed,
        )

    async def _attack(self, images: ImageSet, draft: Draft, thumb: int, seed: int) -> tuple[CriticReply, TokenUsage]:
        n = len(draft.options)

        def parse(obj: dict[str, Any]) -> CriticReply:
            reply = CriticReply.model_validate(obj)
            if reply.thumbnail_answer is not None and reply.thumbnail_answer not in LETTERS[:n]:
                reply.thumbnail_answer = None  # an odd guess is no evidence; the verdict still counts
            return reply

        return await self.client.complete_json(
            self._attack_messages(images, draft, thumb),
            parse,
            max_tokens=self.config.max_tokens["critic"],
            seed=seed,
        )

    async def critique(
        self, images: ImageSet, draft: Draft, verdict: VerifierVerdict, ctx: AgentContext, *, attempt: int
    ) -> tuple[CriticVerdict, TokenUsage]:
        """Local checks decide alone when they find something; else two concurrent model calls."""
        reasons = local_checks(images, draft, verdict, ctx, self.config.option_length_ratio)
        if reasons:
            feedback = " ".join(FEEDBACK[r] for r in reasons if r in FEEDBACK)
            return CriticVerdict(verdict=decide(reasons), reasons=reasons, feedback=feedback), TokenUsage()

        seed = ctx.seed + attempt
        (blind, u1), (attack, u2) = await asyncio.gather(
            self._blind(draft, len(images.images), seed),
            self._attack(images, draft, ctx.thumbnail_side, seed),
        )
        usage = u1.add(u2)
        feedback = [attack.feedback.strip()] if attack.feedback.strip() else []
        known = {"ambiguous", "wrong_answer", "leaky_wording", "unclear", "thumbnail_solvable"}
        reasons = [r for r in attack.reasons if r in known] if attack.verdict != "accept" else []
        if attack.verdict != "accept" and not reasons:
            reasons = ["critic_" + attack.verdict]  # the model gave no code we know; keep its verdict visible
        if blind is not None and blind.answer == draft.answer and blind.confidence >= self.config.blind_confidence:
            reasons.append("text_only_solvable")
            feedback.append(FEEDBACK["text_only_solvable"])
        thumb_answer = normalise_letter(attack.thumbnail_answer)
        if thumb_answer == draft.answer and attack.confidence >= self.config.thumbnail_confidence:
            if "thumbnail_solvable" not in reasons:
                reasons.append("thumbnail_solvable")
        reasons = list(dict.fromkeys(reasons))
        decision = decide(reasons, attack.verdict)
        if decision == "accept":
            ctx.registry.add(duplicate_key(images, draft))
        return CriticVerdict(verdict=decision, reasons=reasons, feedback=" ".join(feedback)), usage
