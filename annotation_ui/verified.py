"""`mifg verified`: write the verified samples of a reviewed run as shards (the export and rl rooms read them).

A sample is verified when at least `min_agree` reviews keep it (accept, or edit-and-accept) and
more reviews keep it than reject it (a tie is not verified). Its status becomes `edited` if a
keeping review edited it (the earliest such edit wins; every decision is listed in
`review.decisions`), else `accepted`.
Output order is the run's import order and every timestamp comes from the store, so the same store
always gives byte-identical shards.

Samples are read from the run's shards through `pipeline.store_reader.StoreReader` (shards checked
against their manifests, rows validated, images decoded): a verified sample that cannot be read is
skipped with one line and counted, never written. The export is built in `.OUT.staging` and renamed
into place under a lock on OUT; a full disk stops it with one line and leaves OUT as it was.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from annotation_ui.dashboard import is_verified
from annotation_ui.review_store import DB_NAME, Decision, ReviewStore
from pipeline.shard_store import MANIFESTS, SHARDS, ShardWriter
from pipeline.store_reader import StoreReader
from pipeline.write_guard import disk_full_stops, out_lock, remove_stale
from schemas import Review, ReviewDecision, Sample, Status
from schemas.errors import ConfigError, InputError

TAG = "verified"


@dataclass
class VerifiedReport:
    """Counts of one `mifg verified` run."""

    reviewed: int = 0  # samples with at least one decision
    verified: int = 0
    accepted: int = 0
    edited: int = 0
    not_verified: int = 0
    shards: int = 0
    min_agree: int = 1
    out: str = ""
    skipped: Counter = field(default_factory=Counter)  # reason -> n (unreadable shards, bad rows, ...)


def verified_sample(sample: Sample, decisions: list[Decision], before_json: Callable[[int], str]) -> Sample:
    """The verified version of `sample` given its decisions (oldest first)."""
    edit = next((d for d in decisions if d.decision == "edit" and d.edited is not None), None)
    review = Review(
        decisions=[
            ReviewDecision(annotator=d.annotator, decision=d.decision, reason=d.reason, at=d.at) for d in decisions
        ],
        verified_at=max(d.at for d in decisions),
        original=before_json(edit.id) if edit else "",
    )
    base = edit.edited if edit else sample
    return base.model_copy(update={"status": Status.EDITED if edit else Status.ACCEPTED, "review": review})


def iter_verified(store: ReviewStore, min_agree: int, report: VerifiedReport) -> Iterator[Sample]:
    """Verified samples of the store in import order, counting into `report`; unreadable ones skipped."""
    by_sample: dict[str, list[Decision]] = defaultdict(list)
    for d in store.decisions(with_edits=True):
        by_sample[d.sample_id].append(d)
    reader = StoreReader(store.run_dir, "mifg verified", decode_images=True)
    intact = {s.info.file: s for s in reader.shards()}
    lost: Counter = Counter()  # shard -> verified samples that could not be read from it
    current, rows = None, {}  # the shard read last: refs come in import order, shard by shard
    for ref in store.refs():
        decisions = by_sample.get(ref.id)
        if not decisions:
            continue
        report.reviewed += 1
        if not is_verified([d.decision for d in decisions], min_agree):
            report.not_verified += 1
            continue
        if ref.shard != current:
            shard = intact.get(ref.shard)
            current = ref.shard
            rows = {it.row: it.sample for it in reader.shard_samples(shard)} if shard else {}
        sample = rows.get(ref.row)
        if sample is None or sample.id != ref.id:
            lost[ref.shard] += 1
            continue
        out = verified_sample(sample, decisions, store.edit_before_json)
        report.verified += 1
        if out.status is Status.EDITED:
            report.edited += 1
        else:
            report.accepted += 1
        yield out
    for file, n in lost.items():
        print(
            f"mifg verified: warning: {file}: {n} verified samples could not be read from it (see above), skipped",
            file=sys.stderr,
        )
    report.skipped.update(reader.report.skipped)
    for q in store.quarantined():  # rows the review never showed: say so, the same way as any other skip
        print(
            f"mifg verified: warning: {q.shard} row {q.row}: {q.reason} (set aside at import), skipped", file=sys.stderr
        )
        report.skipped["quarantined"] += 1
    if lost:
        report.skipped["unreadable_verified"] += sum(lost.values())


def _clear_previous(out: Path) -> None:
    """Remove an earlier verified export under `out` (only our tag's shards and manifest)."""
    for path in (out / SHARDS).glob(f"{TAG}-*.parquet"):  # the names ShardWriter(out, TAG) gives
        path.unlink(missing_ok=True)
    (out / MANIFESTS / f"{TAG}.json").unlink(missing_ok=True)


def export_verified(
    run_dir: str | Path,
    out: str | Path,
    *,
    min_agree: int | None = None,
    shard_size: int = 500,
    force: bool = False,
    progress: Callable[[VerifiedReport], None] | None = None,
) -> VerifiedReport:
    """Write the verified samples of `run_dir`'s review store to `out` via ShardWriter(out, "verified")."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / DB_NAME).is_file():
        raise InputError(f"{run_dir}: no {DB_NAME} here; run `mifg review {run_dir}` first")
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {shard_size}")
    if out.resolve() == run_dir.resolve():
        raise ConfigError("--out must differ from the run directory")
    with out_lock(out, "mifg verified"):  # a second `mifg verified --out OUT` is refused
        remove_stale(out, "mifg verified")  # .OUT.staging / .OUT.old of a killed run
        if (out / MANIFESTS / f"{TAG}.json").exists() and not force:
            raise InputError(f"{out}: already holds a verified export; pass --force to replace it")
        # Build the whole export beside `out`, then swap it in: a crash never leaves a half export, and
        # with --force the previous export stays whole until the new one is complete.
        staging = out.parent / f".{out.name}.staging"
        kept = f"{out} unchanged (the unfinished export was removed)"
        try:
            with disk_full_stops(staging, kept):
                report = _write_verified(run_dir, staging, min_agree, shard_size, progress)
                _swap_in(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    report.out = str(out)
    if progress:
        progress(report)
    return report


def _swap_in(staging: Path, out: Path) -> None:
    """Replace `out` by `staging` with renames; other tags already in `out` are kept."""
    if not out.exists():
        os.replace(staging, out)
        return
    if _only_our_tag(out):
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    # `out` also holds other stores' shards: move ours in file by file, the manifest last.
    _clear_previous(out)
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    (out / MANIFESTS).mkdir(parents=True, exist_ok=True)
    for shard in sorted((staging / SHARDS).glob("*.parquet")):
        os.replace(shard, out / SHARDS / shard.name)
    os.replace(staging / MANIFESTS / f"{TAG}.json", out / MANIFESTS / f"{TAG}.json")
    shutil.rmtree(staging, ignore_errors=True)


def _only_our_tag(out: Path) -> bool:
    """Whether `out` holds nothing but a verified export (so the whole folder may be swapped)."""
    names = {p.name for p in out.iterdir()}
    if not names <= {SHARDS, MANIFESTS}:
        return False
    manifests = {p.name for p in (out / MANIFESTS).glob("*")} if (out / MANIFESTS).is_dir() else set()
    shards = {p.name for p in (out / SHARDS).glob("*")} if (out / SHARDS).is_dir() else set()
    return manifests <= {f"{TAG}.json"} and all(n.startswith(f"{TAG}-") for n in shards)


def _write_verified(
    run_dir: Path,
    out: Path,
    min_agree: int | None,
    shard_size: int,
    progress: Callable[[VerifiedReport], None] | None,
) -> VerifiedReport:
    """Write the verified samples into a fresh store root `out`."""
    with ReviewStore(run_dir) as store:
        min_agree = store.overlap if min_agree is None else min_agree
        if min_agree < 1:
            raise ConfigError(f"--min-agree must be >= 1, got {min_agree}")
        report = VerifiedReport(min_agree=min_agree, out=str(out))
        writer = ShardWriter(out, TAG)
        batch: list[Sample] = []
        for sample in iter_verified(store, min_agree, report):
            batch.append(sample)
            if len(batch) >= shard_size:
                writer.write(batch)
                report.shards += 1
                batch = []
                if progress:
                    progress(report)
        if batch:
            writer.write(batch)
            report.shards += 1
    return report


def summary_line(report: VerifiedReport) -> str:
    """One-line summary of an export."""
    return (
        f"verified {report.verified} of {report.reviewed} reviewed samples (min agree {report.min_agree}): "
        f"{report.accepted} accepted, {report.edited} edited, {report.not_verified} not verified; "
        f"{report.shards} shard(s) in {report.out}/{SHARDS}/"
        + ("; skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())) if report.skipped else "")
    )
