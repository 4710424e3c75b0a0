"""The offline answer verifier: re-derives the answer from the pixels and compares.

It sees the images (through the pixel cache) and the draft's question and options, never
`ImageSet.construction` or the images' roles, so an answer the pixels do not support is caught
even when the pairer's record says otherwise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from agents.base import AgentContext, Draft, ImageSet
from agents.offline.pixel_solver import MIN_PX, TAU, Solution, solve
from agents.offline.pixels import pixels, thumbnail
from agents.offline.view import GLANCE_MIN_FRAC
from agents.offline.view import glance as glance_view
from schemas import LETTERS, TokenUsage, VerifierVerdict

WEAK_PX = 10  # fewer changed full-resolution pixels than this is too little to stand behind

_SOLVED: OrderedDict[tuple, Solution] = OrderedDict()
_SOLVED_LOCK = threading.Lock()
_SOLVED_ITEMS = 512


def measure(
    images: ImageSet,
    draft: Draft,
    *,
    side: int | None = None,
    glance: bool = False,
    tau: int = TAU,
    min_px: int = MIN_PX,
    relaxed: bool = False,
) -> Solution:
    """Solve `draft` on the set's pixels at full resolution (side=None) or on `side`-px thumbnails.

    `glance`: on the glance views, counting only changes visible at a glance (`agents.offline.view`).

    Memoised on image hashes + draft, so the critic re-uses the verifier's full-resolution work.
    """
    key = (tuple(r.sha256 for r in images.images), draft.model_dump_json(), side, glance, tau, min_px, relaxed)
    with _SOLVED_LOCK:
        hit = _SOLVED.get(key)
    if hit is not None:
        return hit
    if glance:  # the view a VLM gets without zooming (agents.offline.view)
        arrays = [glance_view(pixels(r)) for r in images.images]
    else:
        arrays = [pixels(r) if side is None else thumbnail(r, side) for r in images.images]
    min_frac = GLANCE_MIN_FRAC if glance else None
    sol = solve(arrays, draft, tau=tau, min_px=min_px, relaxed=relaxed, min_frac=min_frac)
    with _SOLVED_LOCK:
        _SOLVED[key] = sol
        while len(_SOLVED) > _SOLVED_ITEMS:
            _SOLVED.popitem(last=False)
    return sol


def confidence(sol: Solution) -> float:
    """0..1: the answer's margin over the runner-up, discounted when few pixels back it."""
    if sol.answer is None:
        return 0.0
    return round(max(0.0, min(1.0, sol.margin)) * min(1.0, sol.strength / WEAK_PX), 3)


class OfflineVerifier:
    """Verifier agent: image differencing, region and colour measurement (method "pixel-diff")."""

    def __init__(self, tau: int = TAU, min_px: int = MIN_PX) -> None:
        self.tau, self.min_px = tau, min_px

    async def verify(self, images: ImageSet, draft: Draft, ctx: AgentContext) -> tuple[VerifierVerdict, TokenUsage]:
        """Answer `draft` from the pixels; agrees only when that answer is the draft's."""
        return self.verify_sync(images, draft), TokenUsage()

    def verify_sync(self, images: ImageSet, draft: Draft) -> VerifierVerdict:
        """Synchronous body of `verify`."""
        sol = measure(images, draft, tau=self.tau, min_px=self.min_px)
        letter = LETTERS[sol.answer] if sol.answer is not None else None
        return VerifierVerdict(
            answer=letter,
            agrees=letter is not None and letter == draft.answer,
            method="pixel-diff",
            confidence=confidence(sol),
            notes=sol.notes,
        )
