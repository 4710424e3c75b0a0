"""Build a run's PhotoPool: validate every source photo, cache it, drop duplicates, find related pairs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agents.base import ImageRef, PhotoPool
from agents.image_cache import store_image
from pipeline.hash_index import HashIndex
from pipeline.image_sources import SkipImage, SourceImage
from pipeline.image_validation import ValidationConfig, library_warnings_routed, validate_source


@dataclass(frozen=True)
class SkippedInput:
    """A source photo left out of the pool, with a reason code (counted in `mifg stats`)."""

    source_id: str
    display: str
    reason: str
    detail: str = ""

    def line(self) -> str:
        """The one line printed for this skip."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"skipped {self.display}: {self.reason}{detail}"


@dataclass
class PoolReport:
    """What happened to the sources while building the pool."""

    considered: int = 0
    kept: int = 0
    related_pairs: int = 0
    skipped: list[SkippedInput] = field(default_factory=list)


def _load_one(src: SourceImage, image_dir: Path, cfg: ValidationConfig) -> tuple[ImageRef, str] | SkippedInput:
    try:
        img = validate_source(src, cfg)
        ref = store_image(img, image_dir, source=src.source_id, license=src.license, domain=src.domain)
        return (ref.model_copy(update={"group": src.group}) if src.group else ref), src.display
    except SkipImage as e:
        return SkippedInput(src.source_id, src.display, e.reason, " ".join(e.detail.split())[:200])
    except OSError as e:  # the cache itself could not be written: that is not the photo's fault
        raise RuntimeError(f"cannot write image cache {image_dir}: {e}") from e


def build_pool(
    sources: Iterable[SourceImage],
    image_dir: Path,
    cfg: ValidationConfig | None = None,
    *,
    dup_radius: int = 2,
    related_radius: int = 10,
    on_skip: Callable[[SkippedInput], None] | None = None,
    workers: int | None = None,
) -> tuple[PhotoPool, PoolReport]:
    """Validate and cache `sources` (in order, threads for decoding), drop duplicates, index related pairs.

    Two photos at phash distance <= `dup_radius` are the same photo (re-encoded, resized): the later
    one is skipped as `near_duplicate` (`duplicate` when the cached PNGs are identical). Photos at
    distance in (`dup_radius`, `related_radius`] are related-but-different (a stereo pair, a burst):
    they go to `PhotoPool.related` for the pairer.
    """
    cfg = cfg or ValidationConfig()
    report = PoolReport()
    refs: list[ImageRef] = []
    displays: list[str] = []
    workers = workers or min(4, os.cpu_count() or 1)
    # PIL releases the GIL while decoding, resizing and encoding, so threads overlap the heavy part.
    # Library warnings are routed to the photo being decoded (its skip line), never printed raw.
    with library_warnings_routed(cfg.max_pixels), ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(lambda s: _load_one(s, image_dir, cfg), sources):
            report.considered += 1
            if isinstance(result, SkippedInput):
                report.skipped.append(result)
                if on_skip:
                    on_skip(result)
            else:
                refs.append(result[0])
                displays.append(result[1])

    index = HashIndex(radius=max(related_radius, dup_radius))
    index.add_many(r.phash for r in refs)
    pairs = index.all_pairs()
    dropped: set[int] = set()
    by_sha: dict[str, int] = {}
    for i, ref in enumerate(refs):  # exact duplicates first: identical cached pixels
        if ref.sha256 in by_sha:
            dropped.add(i)
            skip = SkippedInput(ref.source, displays[i], "duplicate", f"same pixels as {displays[by_sha[ref.sha256]]}")
            report.skipped.append(skip)
            if on_skip:
                on_skip(skip)
        else:
            by_sha[ref.sha256] = i
    for i, j, d in pairs.tolist():  # sorted by (i, j): the earlier photo of a near-duplicate pair is kept
        if d <= dup_radius and i not in dropped and j not in dropped:
            dropped.add(j)
            skip = SkippedInput(refs[j].source, displays[j], "near_duplicate", f"phash distance {d} to {displays[i]}")
            report.skipped.append(skip)
            if on_skip:
                on_skip(skip)
    kept = [i for i in range(len(refs)) if i not in dropped]
    new_pos = {old: new for new, old in enumerate(kept)}
    related = [
        (new_pos[i], new_pos[j], d)
        for i, j, d in pairs.tolist()
        if dup_radius < d <= related_radius and i in new_pos and j in new_pos
    ]
    report.kept = len(kept)
    report.related_pairs = len(related)
    return PhotoPool(photos=[refs[i] for i in kept], related=related), report
