"""`mifg merge`: combine runs (e.g. the `--shard i/N` runs of one job) into one store, ids de-duplicated.

The merged directory has the same layout as a run (shards/ + manifests/ under the tag `merged`,
rejected/, state/ with a copy of every input's item record so `mifg stats` works on it, and
merge.json naming the inputs). It is built in a temporary sibling folder and renamed into place,
so an interrupted merge leaves nothing half-made (the next merge to the same --out removes what a
killed one left; two at once are refused). Inputs are read through `pipeline.store_reader`: damaged
shards and bad rows are skipped with one line each. `merge_stores` also takes store URLs (s3://...):
remote inputs are read from a downloaded copy, a remote --out is built locally and then uploaded,
shards before manifests (`pipeline.remote_store`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.remote_store import is_url, local_copy, local_path, open_remote, push_tree
from pipeline.run_config import REJECTED, RUN_JSON, STATE
from pipeline.shard_store import MANIFESTS, ShardWriter, atomic_write_json
from pipeline.store_reader import StoreReader
from pipeline.write_guard import disk_full_stops, out_lock, remove_stale
from schemas import Sample
from schemas.errors import ConfigError, InputError

MERGED_TAG = "merged"


@dataclass
class MergeSummary:
    """What a merge wrote."""

    out: Path | str
    inputs: list[str] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    shards: int = 0
    identities_differ: bool = False


def _identity(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RUN_JSON).read_text("utf-8")).get("identity")
    except (OSError, ValueError):
        return None


def _copy_sqlite(src: Path, dst: Path) -> None:
    """Consistent copy of a (possibly WAL-mode, possibly in use) SQLite file."""
    # `with connect()` only commits; closing() releases the files before the output is renamed.
    with closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as s, closing(sqlite3.connect(dst)) as d:
        s.backup(d)


def merge_stores(inputs: list[str], out: str, *, per_shard: int = 128) -> MergeSummary:
    """`merge_runs` for run directories or store URLs (inputs and `out`); `out` must be new or empty."""
    urls = [i.rstrip("/") for i in inputs if is_url(i)]
    repeated = sorted({u for u in urls if urls.count(u) > 1})
    if repeated:
        raise ConfigError(f"mifg merge: {', '.join(repeated)} given more than once (its items would count twice)")
    if is_url(out) and out.rstrip("/") in urls:
        raise ConfigError(f"--out {out} is one of the inputs")
    with ExitStack() as stack:
        dirs = [stack.enter_context(local_copy(i)) for i in inputs]
        if not is_url(out):
            return merge_runs(dirs, local_path(out), per_shard=per_shard, names=inputs)
        remote = open_remote(out)
        remote.check()
        if remote.list(""):
            raise ConfigError(f"{remote.url} already exists and is not empty; merge into a new location")
        build = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mifg-merge-"))) / "merged"
        summary = merge_runs(dirs, build, per_shard=per_shard, names=inputs)
        push_tree(build, remote)
        summary.out = remote.url
        return summary


def merge_runs(
    run_dirs: list[str | Path], out: str | Path, *, per_shard: int = 128, names: list[str] | None = None
) -> MergeSummary:
    """Merge the accepted and rejected samples of `run_dirs` into `out` (which must not exist yet).

    `names`: how merge.json and the summary name the inputs (their URLs when `run_dirs` are copies).
    """
    out = Path(out)
    dirs = [Path(d) for d in run_dirs]
    repeated = sorted({str(d) for d in dirs if sum(e.resolve() == d.resolve() for e in dirs) > 1})
    if repeated:
        raise ConfigError(f"mifg merge: {', '.join(repeated)} given more than once (its items would count twice)")
    if not dirs:
        raise ConfigError("mifg merge needs at least one RUN_DIR")
    for d in dirs:
        if not (d / MANIFESTS).is_dir():
            raise InputError(f"{d}: not a mifg run directory (no {MANIFESTS}/)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty; merge into a new directory")
    if any(out.resolve() == d.resolve() for d in dirs):
        raise ConfigError(f"--out {out} is one of the inputs")

    idents = [_identity(d) for d in dirs]
    summary = MergeSummary(out=out, inputs=[str(d) for d in names] if names else [str(d) for d in dirs])
    comparable = [
        {k: v for k, v in i.items() if k != "shard_count"} if i else None for i in idents
    ]  # shard runs of one job differ only in their shard index, which is not part of the identity
    summary.identities_differ = len({json.dumps(c, sort_keys=True) for c in comparable}) > 1

    with out_lock(out, "mifg merge"), disk_full_stops(out, f"the inputs; {out} not written"):
        remove_stale(out, "mifg merge")
        _merge(dirs, out, idents, summary, per_shard)
    return summary


def _merge(dirs: list[Path], out: Path, idents: list, summary: MergeSummary, per_shard: int) -> None:
    tmp = out.parent / f".{out.name}.merge-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name, sub in (("accepted", ""), ("rejected", REJECTED)):
            writer = ShardWriter(tmp / sub if sub else tmp, MERGED_TAG)
            seen: set[str] = set()
            buf: list[Sample] = []
            for d in dirs:
                root = d / sub if sub else d
                if not (root / MANIFESTS).is_dir():
                    continue
                reader = StoreReader(root, "mifg merge")
                for item in reader.samples():
                    sample = item.sample
                    if sample.id in seen:
                        summary.duplicates += 1
                        continue
                    seen.add(sample.id)
                    buf.append(sample)
                    if len(buf) >= per_shard:
                        writer.write(buf)
                        summary.shards += 1
                        buf = []
                # ids repeated within one input are dropped by its reader before they reach `seen`
                summary.duplicates += reader.report.skipped["duplicate_id"]
            if buf:
                writer.write(buf)
                summary.shards += 1
            setattr(summary, name, len(seen))
        (tmp / STATE).mkdir(parents=True, exist_ok=True)
        for k, d in enumerate(dirs):
            for db in sorted((d / STATE).glob("*.sqlite")):
                _copy_sqlite(db, tmp / STATE / f"{k:03d}-{db.name}")
        atomic_write_json(
            tmp / "merge.json",
            {
                "inputs": summary.inputs,
                "identities": idents,
                "accepted": summary.accepted,
                "rejected": summary.rejected,
                "duplicates_dropped": summary.duplicates,
            },
        )
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
