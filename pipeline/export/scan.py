"""Choose the samples of a shard store to export, then read them back in a fixed order.

Two passes over the shards, one shard in memory at a time: `scan_store` reads the store through
`pipeline.store_reader.StoreReader` (every row validated, every image decoded, damaged shards and
bad rows skipped with one line each and counted, ids once) and keeps only light facts (ids,
sources, task types, sizes, and optionally perceptual hashes); `iter_sorted` re-reads the shards and
yields the chosen samples in sample-id order, so an export does not depend on how the samples were
spread over shards (`iter_chosen`: the same in store order).

Every sample leaves this module neutralised (`neutralise`): no image role and content-hashed image
file names, also for shards written before the pipeline stopped storing roles.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.shard_store import DamagedShard, open_shard
from pipeline.store_reader import StoreReader, StoreShard
from schemas import NEUTRAL_ROLE, Sample, Status, image_file_name, row_to_sample
from schemas.errors import InputError

VERIFIED = (Status.ACCEPTED, Status.EDITED)
SPILL_BUCKET_BYTES = 256 << 20  # id-ordered second pass: at most about this much image data in memory
_ROW_OVERHEAD = 4096  # bytes counted per sample on top of its images (text, metadata, Python objects)


@dataclass
class ScanItem:
    """Light facts about one chosen sample, kept for the whole export."""

    id: str
    shard: StoreShard
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
    rows: int = 0  # valid rows read (each id once)
    shards: int = 0  # intact shards read
    skipped: Counter = field(default_factory=Counter)  # reason -> n
    statuses: Counter = field(default_factory=Counter)  # status of every valid row
    warnings: list[str] = field(default_factory=list)


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
    reader = StoreReader(root, "mifg export", decode_images=True)
    total = len(reader.shards())
    last: StoreShard | None = None
    for item in reader.samples():
        if progress and last is not None and item.shard is not last:
            progress(f"scanned shard {reader.report.shards}/{total} ({len(result.items)} samples chosen so far)")
        last = item.shard
        sample = item.sample
        result.statuses[sample.status.value] += 1
        if sample.status not in wanted:
            result.skipped[f"status_{sample.status.value}"] += 1
            continue
        phashes = tuple(phash_int(img.bytes) for img in sample.images) if with_phash else ()
        result.items.append(
            ScanItem(
                id=sample.id,
                shard=item.shard,
                row=item.row,
                sources=tuple(sample.sources),
                task_type=sample.task_type.value,
                image_sha256=tuple(m.sha256 for m in sample.image_meta),
                phashes=phashes,
                nbytes=sum(len(img.bytes) for img in sample.images),
            )
        )
    result.rows, result.shards = reader.report.rows, reader.report.shards
    result.skipped.update(reader.report.skipped)
    result.warnings = list(reader.report.lines)
    if progress:
        progress(f"scanned {total} shards ({len(result.items)} samples chosen)")
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
    by_shard: dict[StoreShard, list[int]] = {}
    for it in items:
        by_shard.setdefault(it.shard, []).append(it.row)
    for shard in by_shard:  # insertion order = scan order = store order
        try:
            rows = open_shard(shard.path.parent.parent, shard.info).to_pylist()
        except DamagedShard as e:
            raise InputError(f"{e} (it changed during the export; nothing was written)") from None
        for i in sorted(by_shard[shard]):
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
