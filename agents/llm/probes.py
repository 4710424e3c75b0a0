"""The critic's probes: a solver shown less than the sample needs, who must not answer it.

None of them sees the claimed answer. Each asks `probe_tries` times, the options shuffled every
time, and rejects when it is right more often than guessing would be with chance below `probe_alpha`:
- text_only: no images (the wording gives the answer away);
- glance: every image at the size a VLM sees without zooming (`agents.offline.view.glance_size`:
  not fine-grained);
- single_image: each image alone (not really a multi-image question; Bonferroni over the images);
- reordered: the images other than Image 1 in another order, so that the answer's image moves: a
  solver that still picks the old letter answers by position, not by content.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any

from agents.base import Draft, ImageRef, ImageSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import image_part, json_block, text_part
from agents.llm.verifier import ask_shuffled, question_block
from agents.offline.view import glance_size
from agents.prompts import load_prompt
from schemas import LETTERS, ProbeOutcome, TokenUsage

_IMAGE_OPTION = re.compile(r"^\s*image\s+(\d+)\s*$", re.IGNORECASE)


def chance_tail(right: int, tries: int, n_options: int) -> float:
    """P(at least `right` of `tries` right) for a solver guessing among `n_options`."""
    q = 1.0 / max(1, n_options)
    return sum(math.comb(tries, j) * q**j * (1 - q) ** (tries - j) for j in range(right, tries + 1))


def moved_order(draft: Draft, n_images: int) -> list[int] | None:
    """An order of the images (Image 1 kept first) that moves the answer's image; None when the answer names none."""
    m = _IMAGE_OPTION.match(draft.options[LETTERS.index(draft.answer)])
    if not m or n_images < 3:
        return None
    target = int(m.group(1)) - 1
    if not 1 <= target < n_images:
        return None
    rest = list(range(1, n_images))
    order = [0, *rest[1:], rest[0]]  # rotate the others by one: every one of them moves
    return order


class Probes:
    """Runs the configured probes on a draft, cheapest first, and stops at the first that rejects."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config

    def _messages(self, draft: Draft, options: list[str], shown: Sequence[tuple[int, ImageRef, int | None]], n: int):
        head = "Question:" if shown else "Question (the images are not shown to you):"
        content: list[dict[str, Any]] = [
            text_part(head + "\n" + json_block(question_block(draft.question, options, n)))
        ]
        for label, ref, side in shown:
            content += [text_part(f"Image {label}:"), image_part(ref, side)]
        return [
            {"role": "system", "content": load_prompt("probe", self.config.prompt_version)},
            {"role": "user", "content": content if shown else content[0]["text"]},
        ]

    async def _try(self, name: str, draft: Draft, shown, n: int, seed: int) -> tuple[str, TokenUsage]:
        letter, _, usage = await ask_shuffled(
            self.client,
            draft.options,
            lambda options: self._messages(draft, options, shown, n),
            seed=seed,
            max_tokens=self.config.max_tokens["probe"],
            label=f"probe:{name}",
        )
        return letter, usage

    async def _count(self, name: str, draft: Draft, shown, n: int, seed: int, want: str) -> tuple[int, TokenUsage]:
        k = self.config.probe_tries
        tries = await asyncio.gather(*(self._try(name, draft, shown, n, seed * 7919 + t) for t in range(k)))
        usage = TokenUsage.total(u for _, u in tries)
        return sum(1 for letter, _ in tries if letter == want), usage

    async def run_one(
        self, name: str, images: ImageSet, draft: Draft, seed: int
    ) -> tuple[ProbeOutcome | None, TokenUsage]:
        """One probe's outcome (None when it does not apply to this sample)."""
        refs, n, k, n_opt = images.images, len(images.images), self.config.probe_tries, len(draft.options)
        alpha = self.config.probe_alpha
        if name == "text_only":
            right, usage = await self._count(name, draft, [], n, seed, draft.answer)
            p = chance_tail(right, k, n_opt)
        elif name == "glance":
            shown = [(i + 1, r, max(glance_size(r.width, r.height))) for i, r in enumerate(refs)]
            right, usage = await self._count(name, draft, shown, n, seed, draft.answer)
            p = chance_tail(right, k, n_opt)
        elif name == "single_image":
            counts = await asyncio.gather(
                *(
                    self._count(name, draft, [(i + 1, r, self.config.image_max_side)], n, seed + 31 * i, draft.answer)
                    for i, r in enumerate(refs)
                )
            )
            usage = TokenUsage.total(u for _, u in counts)
            right = max(c for c, _ in counts)
            p = min(1.0, n * chance_tail(right, k, n_opt))  # the best of n images: Bonferroni
        elif name == "reordered":
            order = moved_order(draft, n)
            if order is None:
                return None, TokenUsage()
            shown = [(pos + 1, refs[src], self.config.image_max_side) for pos, src in enumerate(order)]
            right, usage = await self._count(name, draft, shown, n, seed, draft.answer)
            p = chance_tail(right, k, n_opt)
        else:
            raise ValueError(f"unknown probe {name!r}")
        # single_image: `right` of the best image's `tries` (each image is asked `tries` times)
        return ProbeOutcome(name=name, tries=k, right=right, p_value=round(p, 4), rejected=p < alpha), usage

    async def run(self, images: ImageSet, draft: Draft, seed: int) -> tuple[list[ProbeOutcome], TokenUsage]:
        """Every configured probe in order until one rejects."""
        outcomes: list[ProbeOutcome] = []
        usage = TokenUsage()
        for name in self.config.probes:
            outcome, u = await self.run_one(name, images, draft, seed)
            usage = usage.add(u)
            if outcome is not None:
                outcomes.append(outcome)
                if outcome.rejected:
                    break
        return outcomes, usage
