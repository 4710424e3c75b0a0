"""Small deterministic agents implementing the four protocols, for testing the graph and runner.

They do real work on real pixels (paste a square, find it by differencing), so runner tests write
real samples; they are test doubles only in that they are simpler than agents.offline.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
from PIL import ImageDraw

from agents.base import AgentContext, AgentSet, Draft, ImageSet, WorkItem, count_key
from agents.image_cache import load_image, store_image
from schemas import Box, CriticVerdict, TaskType, TokenUsage, VerifierVerdict

ONE_CALL = TokenUsage(prompt_tokens=10, completion_tokens=5, calls=1, cost_usd=0.0001)


class SquarePairer:
    """Two or three copies of one pool photo; one copy gets a small coloured square."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail

    async def pair(self, item: WorkItem, ctx: AgentContext) -> tuple[ImageSet, TokenUsage]:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ValueError("malformed model JSON after 3 attempts")
        rng = random.Random(item.seed)
        photo = ctx.pool.photos[rng.randrange(len(ctx.pool.photos))]
        img = load_image(photo)
        n = rng.choice([2, 3])
        target = rng.randrange(n)
        side = max(4, min(img.size) // 8)
        x, y = rng.randrange(img.width - side), rng.randrange(img.height - side)
        variant = img.copy()
        ImageDraw.Draw(variant).rectangle(
            [x, y, x + side, y + side], fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256))
        )
        vref = store_image(variant, ctx.image_dir, source=photo.source, license=photo.license, role="variant:square")
        refs = [vref if i == target else photo for i in range(n)]
        box = (x / img.width, y / img.height, (x + side + 1) / img.width, (y + side + 1) / img.height)
        construction = {"target": target, "box": [min(1.0, c) for c in box]}
        return ImageSet(images=refs, domain=photo.domain, construction=construction), ONE_CALL


class SquareWriter:
    """'Which image has the square?', options shuffled by the item seed."""

    async def write(
        self, images: ImageSet, ctx: AgentContext, *, seed: int, feedback: list[str], attempt: int
    ) -> tuple[Draft, TokenUsage]:
        n = len(images.images)
        target = images.construction["target"]
        order = list(range(n))
        random.Random(seed).shuffle(order)
        options = [f"Image {i + 1}" for i in order]
        question = "Which image contains a small filled square that the others lack?"
        if attempt:
            question += f" (revision {attempt})"
        box = Box(image_index=target, bbox=tuple(images.construction["box"]))
        draft = Draft(
            question=question,
            options=options,
            answer="ABCDEFGH"[order.index(target)],
            task_type=[TaskType.WHICH_DIFFERS, TaskType.ODD_ONE_OUT][seed % 2],
            rationale=f"Image {target + 1} has the square.",
            evidence=[box],
        )
        return draft, ONE_CALL


class DiffVerifier:
    """Finds the odd image from the pixels: the one farthest from the others."""

    async def verify(self, images: ImageSet, draft: Draft, ctx: AgentContext) -> tuple[VerifierVerdict, TokenUsage]:
        arrs = [np.asarray(load_image(r), dtype=np.int16) for r in images.images]
        dist = [sum(int(np.abs(a - b).sum()) for b in arrs) for a in arrs]
        odd = int(np.argmax(dist))
        letter = "ABCDEFGH"[draft.options.index(f"Image {odd + 1}")]
        return VerifierVerdict(answer=letter, agrees=letter == draft.answer, method="pixel-diff"), ONE_CALL


class ScriptedCritic:
    """accept | reject | revise (always) | raise | dedup (reject what the registry has seen) | capN (N accepted)."""

    def __init__(self, mode: str = "accept") -> None:
        self.mode = mode
        self.calls = 0

    async def critique(
        self, images: ImageSet, draft: Draft, verdict: VerifierVerdict, ctx: AgentContext, *, attempt: int
    ) -> tuple[CriticVerdict, TokenUsage]:
        self.calls += 1
        if self.mode == "raise":
            raise ValueError("malformed model JSON after 3 attempts")
        if self.mode == "revise":
            return CriticVerdict(verdict="revise", reasons=["option_bias"], feedback="shuffle the options"), ONE_CALL
        if self.mode == "reject":
            return CriticVerdict(verdict="reject", reasons=["thumbnail_solvable"]), ONE_CALL
        if self.mode == "dedup":
            key = "|".join(r.sha256 for r in images.images)
            if ctx.registry.seen(key):
                return CriticVerdict(verdict="reject", reasons=["near_duplicate"]), ONE_CALL
            ctx.registry.add(key)
        if self.mode.startswith("cap"):  # capN: at most N accepted samples in the whole run
            free = [count_key("all", int(self.mode[3:]), i) for i in range(int(self.mode[3:]))]
            free = [k for k in free if not ctx.registry.seen(k)]
            if not free:
                return CriticVerdict(verdict="reject", reasons=["cap_question"]), ONE_CALL
            ctx.registry.add(free[0])
        return CriticVerdict(verdict="accept"), ONE_CALL


def make_agents(critic: str = "accept", delay: float = 0.0, pairer_fails: bool = False) -> AgentSet:
    """An AgentSet of the doubles above."""
    return AgentSet(
        pairer=SquarePairer(delay, pairer_fails),
        writer=SquareWriter(),
        verifier=DiffVerifier(),
        critic=ScriptedCritic(critic),
        backend="offline",
        model="",
        prompt_version="test-doubles",
    )
