"""The naive image solvers of the difficulty card (`pipeline.difficulty`): each returns an option index.

- `thumbnail`: the offline pixel solver on the glance views (`agents.offline.view.glance`), the
  view a VLM gets without zooming, counting only changes visible at a glance (the critic's rule);
  a None answer becomes a guess of the first option.
- `plain_subtraction`: full resolution, no registration, no photometric correction: per-pixel
  absolute differences to image 1 (and between all pairs when image 1 is a candidate itself).
- `single_image`: one image at a time, a local-anomaly heuristic; None when it has nothing to
  say (numeric and other options), and the card then uses the answer prior's pick.

They read the question, the options and the pixels, never the answer. The agents' modules are
imported lazily: the pipeline imports this module without loading the offline backend.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from schemas import Sample

DIFF_THRESHOLD = 0.02
"""Mean absolute difference (0-255, averaged over pixels and channels) above which an image "differs".

Bit-identical copies score 0 and any local edit lifts the mean above this; a global brightness shift,
JPEG noise or a second shot of the scene lifts every image above it too, which is the point of this
deliberately naive baseline."""

ANOMALY_SIDE = 256  # single_image: the anomaly map is computed on the grey image shrunk to this side

_IMAGE = re.compile(r"^\s*image\s+(\d+)\s*$", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*(\d+)\s*$")
_NONE = re.compile(r"^\s*(none( of (them|these|the images))?|no (difference|change)s?|neither|nothing)\b", re.I)
_SAME_WORDS = r"unchanged|unedited|unaltered|untouched|identical|matches|match|same|clean"
_WANT_SAME = re.compile(rf"\b({_SAME_WORDS}|nothing added|without (a |any )?(change|edit)s?)\b")
_NEGATED = re.compile(rf"\bnot (the |an? )?({_SAME_WORDS})\b")


def decode(sample: Sample) -> list[np.ndarray]:
    """The (H, W, 3) uint8 pixels of every image of `sample` (decoded once, shared by all solvers)."""
    out = []
    for img in sample.images:
        with Image.open(io.BytesIO(img.bytes)) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def _image_index(text: str) -> int | None:
    m = _IMAGE.match(text)
    return int(m.group(1)) - 1 if m else None


def _is_none(text: str) -> bool:
    return bool(_NONE.match(text))


def option_kind(options: list[str]) -> str:
    """What the options (besides "None of them") name: "image", "region", "number" or "other"."""
    from agents.offline.regions import parse_region

    rest = [o for o in options if not _is_none(o)]
    if not rest:
        return "other"
    if all(_image_index(o) is not None for o in rest):
        return "image"
    if all(parse_region(o) is not None for o in rest):
        return "region"
    if all(_NUMBER.match(o) for o in rest):
        return "number"
    return "other"


def wants_smallest(question: str) -> bool:
    """Whether the question asks for the unchanged / identical / matching image (read from its last sentence)."""
    q = question.lower()
    ask = re.split(r"(?<=[.!])\s+", q.strip())[-1]
    return bool(_WANT_SAME.search(ask)) and not _NEGATED.search(ask)


def _pick(scores: list[float], candidates: list[int], largest: bool = True) -> int:
    """The candidate option with the best score; ties go to the first."""
    sign = 1.0 if largest else -1.0
    return max(candidates, key=lambda i: (sign * scores[i], -i))


def _region_scores(options: list[str], heat: np.ndarray, reduce=np.mean) -> list[float]:
    from agents.offline.regions import parse_region

    h, w = heat.shape
    scores = []
    for o in options:
        r = parse_region(o)
        if r is None:
            scores.append(float("-inf"))
            continue
        x1, y1, x2, y2 = r.box
        r1, c1 = min(round(y1 * h), h - 1), min(round(x1 * w), w - 1)
        cell = heat[r1 : max(round(y2 * h), r1 + 1), c1 : max(round(x2 * w), c1 + 1)]
        scores.append(float(reduce(cell)) if cell.size else 0.0)
    return scores


def _resize(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    if arr.shape[:2] == (h, w):
        return arr
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel absolute difference summed over the three channels (uint16, 0-765; uint8 arithmetic is fastest)."""
    e = np.maximum(a, b) - np.minimum(a, b)
    d = e[..., 0].astype(np.uint16)
    d += e[..., 1]
    d += e[..., 2]
    return d


def _mean_diff(d: np.ndarray) -> float:
    """Mean absolute difference per pixel and channel (0-255) of a `_diff` map."""
    return float(d.mean()) / 3.0


def plain_subtraction(arrays: list[np.ndarray], question: str, options: list[str]) -> int:
    """Answer by raw differencing at full resolution (every image resized to image 1's size)."""
    h, w = arrays[0].shape[:2]
    imgs = [arrays[0]] + [_resize(a, w, h) for a in arrays[1:]]
    n = len(imgs)
    kind = option_kind(options)
    nones = [i for i, o in enumerate(options) if _is_none(o)]
    rest = [i for i in range(len(options)) if i not in nones]

    heat = np.zeros((h, w), np.uint32)
    to_ref = [0.0] * n
    for i in range(1, n):
        d = _diff(imgs[0], imgs[i])
        to_ref[i] = _mean_diff(d)
        if kind == "region":
            heat += d
    if nones and all(v <= DIFF_THRESHOLD for v in to_ref):
        return nones[0]
    if not rest or kind == "other":
        return 0

    if kind == "image":
        targets = [_image_index(options[i]) for i in range(len(options))]
        if any(t is None or t >= n for t in (targets[i] for i in rest)):
            return rest[0]
        largest = not wants_smallest(question)
        if any(targets[i] == 0 for i in rest):  # image 1 is a candidate: no reference, compare all pairs
            total = [0.0] * n
            for i in range(n):
                for j in range(i + 1, n):
                    v = to_ref[j] if i == 0 else _mean_diff(_diff(imgs[i], imgs[j]))
                    total[i] += v
                    total[j] += v
            scores = [total[t] if t is not None else 0.0 for t in targets]
        else:
            scores = [to_ref[t] if t is not None else 0.0 for t in targets]
        return _pick(scores, rest, largest)
    if kind == "region":
        return _pick(_region_scores(options, heat), rest)
    # numbers: how many images differ from image 1; the nearest option when that count is not offered
    count = sum(1 for v in to_ref[1:] if v > DIFF_THRESHOLD)
    return _pick([-abs(int(o) - count) if _NUMBER.match(o) else float("-inf") for o in options], rest)


def _grey_small(arr: np.ndarray) -> np.ndarray:
    im = Image.fromarray(arr).convert("L")
    if max(im.size) > ANOMALY_SIDE:
        s = ANOMALY_SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.float32)


def anomaly_map(arr: np.ndarray) -> np.ndarray:
    """|local window mean - strongly blurred surroundings| / global spread, on a shrunk grey image."""
    from scipy.ndimage import gaussian_filter, uniform_filter

    g = _grey_small(arr)
    side = max(g.shape)
    local = uniform_filter(g, size=max(3, side // 32))
    context = gaussian_filter(g, sigma=max(2.0, side / 12))
    return np.abs(local - context) / (float(g.std()) + 1.0)


def single_image(arrays: list[np.ndarray], question: str, options: list[str]) -> int | None:
    """Look at one image at a time: the most anomalous image or region; None for other option kinds."""
    kind = option_kind(options)
    rest = [i for i, o in enumerate(options) if not _is_none(o)]
    if kind == "image":
        targets = [_image_index(o) for o in options]
        if any(targets[i] >= len(arrays) for i in rest):
            return None
        peak = {t: float(anomaly_map(arrays[t]).max()) for t in {targets[i] for i in rest}}
        return _pick([peak.get(t, float("-inf")) if t is not None else float("-inf") for t in targets], rest)
    if kind == "region":  # the last image: edited copies follow the reference
        return _pick(_region_scores(options, anomaly_map(arrays[-1]), np.max), rest)
    return None


def thumbnail(arrays: list[np.ndarray], sample: Sample) -> int:
    """The offline pixel solver on the glance views; no answer is a guess of the first option."""
    from agents.base import Draft
    from agents.offline.pixel_solver import solve
    from agents.offline.view import GLANCE_MIN_FRAC, glance

    draft = Draft(
        question=sample.question,
        options=list(sample.options),
        answer=sample.answer,  # required by the model; the solver never reads it
        task_type=sample.task_type,
        evidence=[],
    )
    answer = solve([glance(a) for a in arrays], draft, min_frac=GLANCE_MIN_FRAC).answer
    return answer if isinstance(answer, int) and 0 <= answer < len(sample.options) else 0
