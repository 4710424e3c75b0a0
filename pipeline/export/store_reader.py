"""Read a shard store for export: pick the verified samples, count and report everything else.

Two passes over the shards, one shard in memory at a time: `scan_store` validates every row and
keeps only light facts (ids, sources, task types, sizes, and optionally perceptual hashes);
`iter_sorted` re-reads the shards and yields the chosen samples in sample-id order, so an export
does not depend on how the samples were spread over shards (`iter_chosen`: the same in store order).
A bad row or an unreadable shard is one warning line naming the file and row, counted, and never
stops the export.

Every sample leaves this module neutralised (`neutralise`): no image role and content-hashed image
file names, also for shards written before the pipeline stopped storing roles.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.shard_store import shard_paths
from schemas import NEUTRAL_ROLE, Sample, Status, image_file_name, row_to_sample

VERIFIED = (Status.ACCEPTED, Status.EDITED)
SPILL_BUCKET_BYTES = 256 << 20  # id-ordered second pass: at most about this much image data in memory
_ROW_OVERHEAD = 4096  # bytes counted per sample on top of its images (text, metadata, Python objects)


@dataclass
class ScanItem:
    """Light facts about one chosen sample, kept for the whole export."""

    id: str
    shard: Path
    row: int
    sources: tuple[str, ...]
    task_type: str
    image_sha256: tuple[str, ...]
    phashes: tuple[int, ...] = ()
    nbytes: int = 0  # encoded image bytes of the sample (sizes the buckets of `iter_sorted`)


@dataclass
class ScanResult:
    """Chosen samples plus counts of everything skipped, and why."""

    items: list[ScanItem] = field(default_factory=list)
    rows: int = 0
    shards: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> n
    statuses: Counter = field(default_factory=Counter)  # status of every valid row
    warnings: list[str] = field(default_factory=list)

    def warn(self, reason: str, message: str) -> None:
        """Count a skipped row/shard under `reason` and print one line about it."""
        self.skipped[reason] += 1
        self.warnings.append(message)
        print(f"mifg export: warning: {message}", file=sys.stderr)


def _check_images(sample: Sample) -> str | None:
    """Why the sample's images cannot be decoded, or None when they all open."""
    from PIL import Image

    for i, img in enumerate(sample.images):
        try:
            with Image.open(io.BytesIO(img.bytes)) as im:
                im.load()  # full decode: a truncated file passes a header check and breaks consumers later
        except Exception as e:  # noqa: BLE001 - any decoder error means the image is unusable
            return f"image {i} does not decode ({type(e).__name__})"
    return None


def _read_rows(path: Path, result: ScanResult) -> list[dict] | None:
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - a damaged shard is reported and skipped, not fatal
        result.warn("unreadable_shard", f"{path}: unreadable shard, skipped ({type(e).__name__}: {e})")
        return None


def scan_store(
    root: str | Path,
    include_unverified: bool = False,
    with_phash: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ScanResult:
    """Validate every row of a store and choose the samples to export (first pass)."""
    from pipeline.export.contamination import phash_int

    wanted = set(VERIFIED) | ({Status.CANDIDATE} if include_unverified else set())
    result = ScanResult()
    seen: set[str] = set()
    paths = shard_paths(root)
    for k, path in enumerate(paths, 1):
        rows = _read_rows(path, result)
        result.shards += 1
        if rows is None:
            continue
        for i, row in enumerate(rows):
            result.rows += 1
            try:
                sample = row_to_sample(row)
            except (ValueError, KeyError, TypeError) as e:
                first = str(e).strip().splitlines()
                detail = " ".join(first[:3]) if first else type(e).__name__
                result.warn("invalid_row", f"{path}: row {i}: invalid sample, skipped ({detail})")
                continue
            result.statuses[sample.status.value] += 1
            if sample.status not in wanted:
                result.skipped[f"status_{sample.status.value}"] += 1
                continue
            if sample.id in seen:
                result.skipped["duplicate_id"] += 1
                continue
            bad = _check_images(sample)
            if bad:
                result.warn("bad_image", f"{path}: row {i}: sample {sample.id}: {bad}, skipped")
                continue
            seen.add(sample.id)
            phashes = tuple(phash_int(img.bytes) for img in sample.images) if with_phash else ()
            result.items.append(
                ScanItem(
                    id=sample.id,
                    shard=path,
                    row=i,
                    sources=tuple(sample.sources),
                    task_type=sample.task_type.value,
                    image_sha256=tuple(m.sha256 for m in sample.image_meta),
                    phashes=phashes,
                    nbytes=sum(len(img.bytes) for img in sample.images),
                )
            )
        if progress:
            progress(f"scanned shard {k}/{len(paths)} ({len(result.items)} samples chosen so far)")
    return result


def neutralise(sample: Sample) -> Sample:
    """`sample` with nothing next to its images that tells how they were made (changed in place).

    Every `image_meta.role` becomes NEUTRAL_ROLE; roles an older shard still carries move into the
    audit-only construction record as "image_roles" (unless it has them already). Every image file
    name becomes its content hash (`image_file_name` of the sha256 of its bytes), whatever the shard
    called it ("variant.png", "edited_2.jpg", ...).
    """
    roles = [m.role for m in sample.image_meta]
    if any(r != NEUTRAL_ROLE for r in roles):
        try:
            record = json.loads(sample.provenance.construction or "{}")
        except ValueError:
            record = None
        if isinstance(record, dict) and "image_roles" not in record:
            record["image_roles"] = roles
            sample.provenance.construction = json.dumps(record, sort_keys=True, default=str)
        for meta in sample.image_meta:
            meta.role = NEUTRAL_ROLE
    for img in sample.images:
        img.path = image_file_name(hashlib.sha256(img.bytes).hexdigest(), Path(img.path).suffix)
    return sample


def iter_chosen(items: list[ScanItem]) -> Iterator[Sample]:
    """The chosen samples, neutralised, re-read shard by shard, in store order (second pass)."""
    by_shard: dict[Path, list[int]] = {}
    for it in items:
        by_shard.setdefault(it.shard, []).append(it.row)
    for path in by_shard:  # insertion order = scan order = store order
        rows = pq.read_table(path).to_pylist()
        for i in sorted(by_shard[path]):
            yield neutralise(row_to_sample(rows[i]))


def iter_sorted(items: list[ScanItem], spill_dir: Path, bucket_bytes: int | None = None) -> Iterator[Sample]:
    """The chosen samples, neutralised, in sample-id order (second pass), whatever the shard order.

    The sorted ids are cut into consecutive buckets of about `bucket_bytes` (SPILL_BUCKET_BYTES) of
    images. When everything fits in one bucket the samples are sorted in memory; otherwise each
    shard is read once and its samples are appended to their bucket's file under `spill_dir`, then
    the buckets are read back one at a time, each sorted by id. Memory: one shard, then one bucket.
    `spill_dir` is removed when the iteration ends.
    """
    limit = bucket_bytes or SPILL_BUCKET_BYTES
    bucket_of: dict[str, int] = {}
    bucket, size = 0, 0
    for it in sorted(items, key=lambda it: it.id):
        weight = it.nbytes + _ROW_OVERHEAD
        if size and size + weight > limit:
            bucket, size = bucket + 1, 0
        bucket_of[it.id] = bucket
        size += weight
    if bucket == 0:
        yield from sorted(iter_chosen(items), key=lambda s: s.id)
        return
    spill_dir.mkdir(parents=True, exist_ok=True)
    try:
        for sample in iter_chosen(items):
            # our own temporary files, read back below by this process only
            with open(spill_dir / f"{bucket_of[sample.id]:06d}.pkl", "ab") as f:
                pickle.dump(sample, f, protocol=pickle.HIGHEST_PROTOCOL)
        for b in range(bucket + 1):
            path = spill_dir / f"{b:06d}.pkl"
            if not path.exists():
                continue
            samples: list[Sample] = []
            with open(path, "rb") as f:
                while True:
                    try:
                        samples.append(pickle.load(f))
                    except EOFError:
                        break
            path.unlink()
            yield from sorted(samples, key=lambda s: s.id)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
