"""Answer a multiple-choice draft from the pixels alone: difference images, regions, colours.

The verifier runs this at full resolution; the critic runs the very same method on thumbnails
(a sample it can still answer there is not fine-grained). It reads the question, the options and
the images' pixels, never the pairer's construction record or the images' roles.

Images are grouped by identity: two images are "the same" when fewer than `min_px` pixels differ
by more than `tau` (0-255, largest channel). Each task type then reduces to a measurement on the
groups: which image leaves image 1's group, the singleton group, the region holding the changed
pixels, the size of the group carrying a named colour, the colour of the changed pixels, or which
candidate's changed patch can be found in the reference photo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy.signal import fftconvolve

from agents.base import Draft
from agents.offline.colours import PALETTE, find_colour_name, fraction_matching, vote
from agents.offline.pixels import bbox_of, diff_map, normalised_box
from agents.offline.regions import parse_region
from schemas import TaskType

TAU = 24  # a pixel "changed" when its largest channel moved by more than this (~10% of the range)
MIN_PX = 4  # fewer changed pixels than this is no difference at all

_IMAGE_OPTION = re.compile(r"^\s*image\s+(\d+)\s*$", re.IGNORECASE)
_IMAGE_MENTION = re.compile(r"\bimage\s+(\d+)\b", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*(\d+)\s*$")


@dataclass
class Solution:
    """What the pixels say: the chosen option (or None), support per option, and how strong it is."""

    answer: int | None
    scores: list[float]
    strength: int = 0  # changed pixels behind the answer, at the resolution solved
    box: tuple[float, float, float, float] | None = None  # normalised bbox of those pixels
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def margin(self) -> float:
        """Support of the best option minus the runner-up (1.0 = clear-cut)."""
        s = sorted(self.scores, reverse=True) + [0.0, 0.0]
        return float(s[0] - s[1])

    @property
    def runner_up(self) -> int | None:
        """Index of the second-best option, if it has any support."""
        if len(self.scores) < 2:
            return None
        order = sorted(range(len(self.scores)), key=lambda i: -self.scores[i])
        return order[1] if self.scores[order[1]] > 0 else None


def _none(n: int, notes: str) -> Solution:
    return Solution(None, [0.0] * n, notes=notes)


def option_image(text: str) -> int | None:
    """The 0-based image index an option like "Image 3" names, or None."""
    m = _IMAGE_OPTION.match(text)
    return int(m.group(1)) - 1 if m else None


class _Groups:
    """Images grouped by identity, with the change masks between group representatives."""

    def __init__(self, arrays: list[np.ndarray], tau: int, min_px: int, relaxed: bool = False) -> None:
        self.arrays = arrays
        self.tau, self.min_px, self.relaxed = tau, min_px, relaxed
        n = len(arrays)
        self.labels = list(range(n))
        self._masks: dict[tuple[int, int], np.ndarray] = {}
        reps: list[int] = []
        for i in range(n):
            for r in reps:
                if self._same(r, i):
                    self.labels[i] = self.labels[r]
                    break
            else:
                reps.append(i)
                self.labels[i] = i
        self.reps = reps

    def mask(self, i: int, j: int) -> np.ndarray | None:
        """Changed-pixel mask between images i and j (None when their sizes differ)."""
        key = (min(i, j), max(i, j))
        if key not in self._masks:
            a, b = self.arrays[key[0]], self.arrays[key[1]]
            self._masks[key] = None if a.shape != b.shape else diff_map(a, b) > self.tau
        return self._masks[key]

    def _same(self, i: int, j: int) -> bool:
        if self.arrays[i] is self.arrays[j]:
            return True
        m = self.mask(i, j)
        return m is not None and int(m.sum()) < self.min_px

    def members(self, label: int) -> list[int]:
        return [i for i, lab in enumerate(self.labels) if lab == label]

    def cross_mask(self) -> np.ndarray | None:
        """Union of the change masks between every pair of group representatives."""
        out = None
        for a in range(len(self.reps)):
            for b in range(a + 1, len(self.reps)):
                m = self.mask(self.reps[a], self.reps[b])
                if m is None:
                    return None
                out = m.copy() if out is None else (out | m)
        return out


def _box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    b = bbox_of(mask)
    return None if b is None else normalised_box(b, mask.shape[1], mask.shape[0])


def _texture_energy(arr: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean absolute 4-neighbour Laplacian of the grey levels inside `box` (x1, y1, x2, y2): fine texture."""
    x1, y1, x2, y2 = box
    g = arr[y1:y2, x1:x2].astype(np.float32).mean(axis=2)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.abs(lap).mean())


def _which_textured(g: _Groups, draft: Draft) -> Solution:
    """Which image holds the checkerboard: differencing finds the region, the Laplacian tells which image."""
    n = len(draft.options)
    targets = [option_image(o) for o in draft.options]
    if None in targets or max(targets) >= len(g.arrays):
        return _none(n, "an option names no image of the set")
    m = g.cross_mask() if len(g.reps) >= 2 else None
    if m is None or not m.any():
        return _none(n, "no difference between the images")
    box = bbox_of(m)
    energy = [_texture_energy(g.arrays[t], box) for t in targets]
    top = max(energy)
    if top <= 0:
        return _none(n, "no fine texture where the images differ")
    scores = [e / top for e in energy]  # margin = 1 - runner-up / best
    k = int(np.argmax(scores))
    note = f"image {targets[k] + 1} has the finest texture where the images differ (Laplacian {energy[k]:.0f})"
    return Solution(k, scores, int(m.sum()), _box(m), note)


def _which_differs(g: _Groups, draft: Draft) -> Solution:
    n = len(draft.options)
    if "checkerboard" in draft.question.lower():  # no reference image: the texture itself is measured
        return _which_textured(g, draft)
    targets = [option_image(o) for o in draft.options]
    differs = [t is not None and t < len(g.arrays) and g.labels[t] != g.labels[0] for t in targets]
    if sum(differs) != 1:
        return _none(n, f"{sum(differs)} options differ from image 1")
    k = differs.index(True)
    m = g.mask(0, targets[k])
    if m is None:
        return _none(n, f"image {targets[k] + 1} has another size than image 1")
    return Solution(k, [1.0 if d else 0.0 for d in differs], int(m.sum()), _box(m), f"image {targets[k] + 1} differs")


def _odd_one_out(g: _Groups, draft: Draft) -> Solution:
    n = len(draft.options)
    if len(g.arrays) < 3 or len(g.reps) != 2:
        return _none(n, f"{len(g.reps)} groups of identical images")
    sizes = {lab: len(g.members(lab)) for lab in g.reps}
    singles = [lab for lab, s in sizes.items() if s == 1]
    if len(singles) != 1:
        return _none(n, f"group sizes {sorted(sizes.values())}")
    odd = g.members(singles[0])[0]
    scores = [1.0 if option_image(o) == odd else 0.0 for o in draft.options]
    if sum(scores) != 1:
        return _none(n, f"image {odd + 1} is odd but no option names it")
    m = g.cross_mask()
    if m is None:
        return _none(n, "the images have different sizes")
    return Solution(scores.index(1.0), scores, int(m.sum()), _box(m), f"image {odd + 1} is the odd one")


def _where_differs(g: _Groups, draft: Draft) -> Solution:
    n = len(draft.options)
    m = g.cross_mask() if len(g.reps) >= 2 else None
    if m is None or not m.any():
        return _none(n, "no difference between the images")
    ys, xs = np.nonzero(m)
    h, w = m.shape
    cx, cy = (xs + 0.5) / w, (ys + 0.5) / h
    scores = []
    for o in draft.options:
        r = parse_region(o)
        if r is None:
            scores.append(0.0)
            continue
        x1, y1, x2, y2 = r.box
        scores.append(float(((cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)).mean()))
    best = int(np.argmax(scores))
    if scores[best] < 0.5:
        return Solution(None, scores, int(m.sum()), _box(m), "the difference is spread over several regions")
    return Solution(
        best, scores, int(m.sum()), _box(m), f"{scores[best]:.0%} of changed pixels in {draft.options[best]}"
    )


def _count_across(g: _Groups, draft: Draft) -> Solution:
    n = len(draft.options)
    colour = find_colour_name(draft.question)
    if colour is None:
        return _none(n, "the question names no colour")
    if len(g.reps) != 2:
        return _none(n, f"{len(g.reps)} groups of identical images")
    m = g.cross_mask()
    if m is None or not m.any():
        return _none(n, "no difference between the groups")
    if g.relaxed:  # diluted colours: the group whose changed pixels lean towards the colour carries it
        lean = {lab: _lean(g.arrays[lab][m], g.arrays[other_lab][m], colour) for lab, other_lab in _pairs(g.reps)}
        marked, other = sorted(g.reps, key=lambda lab: -lean[lab])
        support = max(0.0, min(1.0, lean[marked]))
    else:
        frac = {lab: fraction_matching(g.arrays[lab][m], colour) for lab in g.reps}
        marked, other = sorted(g.reps, key=lambda lab: -frac[lab])
        if frac[marked] < 0.5:
            return _none(n, f"no group shows {colour} where the images differ")
        support = frac[marked] - frac[other]
    count = len(g.members(marked))
    scores = [support if (_NUMBER.match(o) and int(o) == count) else 0.0 for o in draft.options]
    if not any(scores):
        return _none(n, f"{count} images show {colour} but no option says so")
    return Solution(int(np.argmax(scores)), scores, int(m.sum()), _box(m), f"{count} images show {colour}")


def _pairs(reps: list[int]) -> list[tuple[int, int]]:
    return [(reps[0], reps[1]), (reps[1], reps[0])]


def _lean(pixels_: np.ndarray, base: np.ndarray, colour: str) -> float:
    """Cosine between the mean change base -> pixels and the direction from base towards `colour`."""
    delta = pixels_.astype(np.float32).mean(axis=0) - base.astype(np.float32).mean(axis=0)
    toward = np.array(PALETTE[colour], np.float32) - base.astype(np.float32).mean(axis=0)
    norm = float(np.linalg.norm(delta) * np.linalg.norm(toward))
    return float(delta @ toward) / norm if norm > 0 else 0.0


def _attribute_compare(g: _Groups, draft: Draft) -> Solution:
    n = len(draft.options)
    mentioned = [int(x) - 1 for x in _IMAGE_MENTION.findall(draft.question)]
    mentioned = [i for i in dict.fromkeys(mentioned) if 0 <= i < len(g.arrays)]
    if len(mentioned) < 2:
        return _none(n, "the question does not name two images")
    ref, target = mentioned[0], mentioned[-1]
    m = g.mask(ref, target)
    if m is None or int(m.sum()) < g.min_px:
        return _none(n, f"images {ref + 1} and {target + 1} do not differ")
    names = [o.strip().lower() for o in draft.options]
    if not all(find_colour_name(x) == x for x in names):
        scores = [0.0] * n
    elif g.relaxed:  # diluted colours: which option the change points towards
        scores = [max(0.0, _lean(g.arrays[target][m], g.arrays[ref][m], name)) for name in names]
    else:
        scores = vote(g.arrays[target][m], names)
    best = int(np.argmax(scores))
    if scores[best] < 0.4:
        return Solution(None, scores, int(m.sum()), _box(m), "the changed pixels have none of the option colours")
    return Solution(best, scores, int(m.sum()), _box(m), f"{scores[best]:.0%} of changed pixels are {names[best]}")


def _locate(ref: np.ndarray, patch: np.ndarray, weight: np.ndarray, x: int, y: int, reach: int):
    """Top-left (x, y) in `ref` near (x, y) where `patch` fits best, counting only pixels with weight 1.

    Weighted SSD by FFT: sum w (A - T)^2 = sum w A^2 - 2 sum A (w T) + sum w T^2 at every placement.
    """
    ph, pw = patch.shape[:2]
    h, w = ref.shape[:2]
    x1, y1 = max(0, x - reach), max(0, y - reach)
    x2, y2 = min(w, x + pw + reach), min(h, y + ph + reach)
    area = ref[y1:y2, x1:x2].astype(np.float32)
    if area.shape[0] < ph or area.shape[1] < pw:
        return None
    t = patch.astype(np.float32)
    wk = weight[::-1, ::-1].astype(np.float32)
    ssd = np.zeros((area.shape[0] - ph + 1, area.shape[1] - pw + 1), np.float32)
    for c in range(3):
        a, tc = area[..., c], t[..., c]
        ssd += fftconvolve(a * a, wk, mode="valid") - 2 * fftconvolve(a, (weight * tc)[::-1, ::-1], mode="valid")
    iy, ix = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
    return x1 + int(ix), y1 + int(iy)


def _mask_error(ref: np.ndarray, cand: np.ndarray, mask: np.ndarray, x: int, y: int) -> float:
    """Mean squared difference of `cand`'s masked pixels to `ref` placed at (x, y), best of +-1 px shifts."""
    ph, pw = mask.shape
    c = cand[mask].astype(np.float32)
    best = float("inf")
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = y + dy, x + dx
            if yy < 0 or xx < 0 or yy + ph > ref.shape[0] or xx + pw > ref.shape[1]:
                continue
            r = ref[yy : yy + ph, xx : xx + pw][mask]
            best = min(best, float(((c - r) ** 2).mean()))
    return best


def _match_exposure(ref: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`ref` with each channel's mean and spread set to those of `like` (two shots differ in exposure)."""
    # statistics from every 4th pixel in each direction: plenty for a global gain and offset
    rs_, ts_ = ref[::4, ::4].reshape(-1, 3).astype(np.float32), like[::4, ::4].reshape(-1, 3).astype(np.float32)
    rm, rsd = rs_.mean(axis=0), rs_.std(axis=0) + 1e-3
    tm, tsd = ts_.mean(axis=0), ts_.std(axis=0)
    return np.clip((ref.astype(np.float32) - rm) * (tsd / rsd) + tm, 0, 255)


def _same_source(g: _Groups, draft: Draft) -> Solution:
    n = len(draft.options)
    cands = [option_image(o) for o in draft.options]
    if len(cands) != 2 or None in cands or 0 in cands or max(cands) >= len(g.arrays):
        return _none(n, "expected two candidate images besides image 1")
    a, b = cands
    m = g.mask(a, b)
    if m is None or int(m.sum()) < g.min_px:
        return _none(n, "the candidates do not differ")
    x1, y1, x2, y2 = bbox_of(m)
    h, w = m.shape
    pad = 8  # the unchanged surroundings, identical in both candidates, locate the spot in image 1
    x1, y1, x2, y2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
    ref = g.arrays[0]
    if ref.shape != g.arrays[a].shape:
        ref = np.asarray(Image.fromarray(ref).resize((w, h), Image.Resampling.BILINEAR))
    ref = _match_exposure(ref, g.arrays[a])
    changed = m[y1:y2, x1:x2]
    spot = _locate(
        ref, g.arrays[a][y1:y2, x1:x2], (~changed).astype(np.float32), x1, y1, max(4, round(0.15 * max(h, w)))
    )
    if spot is None:
        return _none(n, "the candidates' difference cannot be located in image 1")
    # whichever candidate's changed pixels disagree with image 1 at that spot carries the added mark
    cost = [_mask_error(ref, g.arrays[i][y1:y2, x1:x2], changed, *spot) for i in (a, b)]
    total = cost[0] + cost[1]
    if not np.isfinite(total) or total <= 0:
        return _none(n, "the candidates' difference cannot be located in image 1")
    edited = int(np.argmax(cost))
    want_clean = "nothing added" in draft.question.lower()
    pick = 1 - edited if want_clean else edited
    # support: how much worse the edited patch matches than the clean one (0 = equally, 1 = clean is exact)
    support = abs(cost[0] - cost[1]) / max(cost[0], cost[1])
    scores = [0.0, 0.0]
    scores[pick] = support
    mismatch = f"mismatch {cost[edited]:.0f} vs {cost[1 - edited]:.0f}"
    note = f"image {cands[edited] + 1}'s changed patch is not in image 1 ({mismatch})"
    return Solution(pick, scores, int(m.sum()), _box(m), note)


def _copies(arrays: list[np.ndarray]) -> bool:
    """Whether two images of the set are pixel copies apart from a small area (the opt-in drawn kinds)."""
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            a, b = arrays[i], arrays[j]
            if a.shape == b.shape and float((diff_map(a, b) > 0).mean()) < 0.05:
                return True
    return False


def _legacy_text(draft: Draft) -> bool:
    """Questions only the opt-in kinds ask: a checkerboard, a named colour, a related shot."""
    q = draft.question.lower()
    if "checkerboard" in q or draft.task_type in (TaskType.ATTRIBUTE_COMPARE, TaskType.SAME_SOURCE):
        return True
    return draft.task_type == TaskType.COUNT_ACROSS and find_colour_name(draft.question) is not None


_SOLVERS = {
    TaskType.WHICH_DIFFERS: _which_differs,
    TaskType.ODD_ONE_OUT: _odd_one_out,
    TaskType.WHERE_DIFFERS: _where_differs,
    TaskType.COUNT_ACROSS: _count_across,
    TaskType.ATTRIBUTE_COMPARE: _attribute_compare,
    TaskType.SAME_SOURCE: _same_source,
}


def solve(
    arrays: list[np.ndarray],
    draft: Draft,
    *,
    tau: int = TAU,
    min_px: int = MIN_PX,
    relaxed: bool = False,
    min_frac: float | None = None,
) -> Solution:
    """Answer `draft` from `arrays` (one (H, W, 3) uint8 array per image, in order).

    `relaxed` (the critic on thumbnails) names colours by the direction pixels moved rather than by
    the colour they reached, because a thumbnail mixes a small mark with its surroundings.
    """
    if not _copies(arrays) and not _legacy_text(draft):
        from agents.offline.scene_solver import solve_scene

        scene = solve_scene(arrays, draft, min_frac=min_frac)
        if scene is not None:
            return scene
    solver = _SOLVERS.get(draft.task_type)
    if solver is None:
        return _none(len(draft.options), f"no pixel method for {draft.task_type.value}")
    return solver(_Groups(arrays, tau, min_px, relaxed), draft)
