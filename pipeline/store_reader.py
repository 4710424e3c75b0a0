"""The one reader of a shard store: every command that reads shards reads them here.

`mifg stats`, `mifg verified`, `mifg export`, `mifg merge`, generate's resume and the training
loader see a damaged store the same way:

    reader = StoreReader(root, "mifg export", decode_images=True)
    for shard in reader.shards(): ...     # listed shards, each once, every path inside ROOT/shards/
    for item in reader.samples(): ...     # valid samples of intact shards, each id once

Whatever cannot be used is skipped with one line `<command>: warning: <what>, skipped` on stderr and
counted in `reader.report.skipped` under its reason:

    bad_manifest        a manifest that does not parse
    schema_too_new      a manifest, shard or rows written by a newer mifg (one line per manifest / shard)
    outside_store       a manifest entry that is not a file under ROOT/shards/ ('/etc/passwd', '../x')
    duplicate_listing   a shard listed again (twice in one manifest, or in two manifests): read once
    missing_shard, unreadable_shard, row_count_mismatch, sha256_mismatch   (see shard_store.open_shard)
    invalid_row         a row the Sample model refuses
    bad_image           a row with an image that does not decode (readers made with decode_images=True)
    duplicate_id        a sample id already read from another shard: counted once (one line per shard)
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.shard_store import MANIFESTS, DamagedShard, ShardInfo, open_shard, read_manifest, shard_file
from schemas import SCHEMA_VERSION, Sample, row_to_sample
from schemas.errors import InputError
from schemas.migrate import SchemaVersionError
from schemas.sample import undecodable_image


@dataclass(frozen=True)
class StoreShard:
    """One listed shard whose path is inside the store (not yet checked against its file)."""

    info: ShardInfo
    path: Path
    manifest: str  # name of the manifest that listed it first


@dataclass(frozen=True)
class StoreSample:
    """One valid sample and where it was read."""

    shard: StoreShard
    row: int
    sample: Sample

    @property
    def where(self) -> str:
        """'PATH row N', for messages."""
        return f"{self.shard.path} row {self.row}"


SHOWN_AS: dict[str, str] = {}  # a temporary local copy -> the store URL warnings name instead (remote_store)


def shown(text: str) -> str:
    """`text` with every temporary local copy of a store replaced by the URL the user named."""
    for local, url in SHOWN_AS.items():
        text = text.replace(local, url)
    return text


@dataclass
class StoreReport:
    """What a reader read and skipped; `skip` prints the one line about each skip."""

    label: str = "mifg"
    quiet: bool = False
    shards: int = 0  # intact shards read
    rows: int = 0  # rows handed out (valid, first of their id)
    skipped: Counter = field(default_factory=Counter)  # reason -> n
    lines: list[str] = field(default_factory=list)

    def skip(self, reason: str, message: str, n: int = 1) -> None:
        """Count `n` skips under `reason` and print `message` as one warning line."""
        self.skipped[reason] += n
        line = shown(" ".join(message.split()))  # a user never saw the temporary copy: name what they named
        self.lines.append(line)
        if not self.quiet:
            print(f"{self.label}: warning: {line}", file=sys.stderr, flush=True)

    def summary(self) -> str:
        """'skipped: reason n, ...' (empty when nothing was skipped)."""
        if not self.skipped:
            return ""
        return "skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items()))


def _detail(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return " ".join(lines[:3])[:300] if lines else type(e).__name__


class StoreReader:
    """Reads one store root (ROOT/manifests/*.json + ROOT/shards/*.parquet), skipping what is damaged."""

    def __init__(
        self,
        root: str | Path,
        label: str = "mifg",
        *,
        decode_images: bool = False,
        tags: Iterable[str] | None = None,
        report: StoreReport | None = None,
    ) -> None:
        self.root = Path(root)
        if not (self.root / MANIFESTS).is_dir():
            raise InputError(f"{self.root}: not a mifg shard directory (no {MANIFESTS}/ folder)")
        self.decode_images = decode_images
        self.tags = set(tags) if tags is not None else None  # only these manifests (generate's resume)
        self.report = report or StoreReport(label)
        self._shards: list[StoreShard] | None = None
        self._damaged: set[str] = set()  # files reported already

    def shards(self) -> list[StoreShard]:
        """Every listed shard once, in file order; bad manifests and entries reported and left out."""
        if self._shards is not None:
            return self._shards
        say = self.report.skip
        first: dict[str, StoreShard] = {}
        for m in sorted((self.root / MANIFESTS).glob("*.json")):
            if self.tags is not None and m.stem not in self.tags:
                continue
            try:
                version, listed = read_manifest(m)
            except InputError as e:
                say("bad_manifest", f"{e}, skipped")
                continue
            if version > SCHEMA_VERSION:
                say(
                    "schema_too_new",
                    f"{m}: schema_version {version} is newer than this mifg reads (<= {SCHEMA_VERSION});"
                    f" its {len(listed)} shards skipped; upgrade mifg to read them",
                )
                continue
            for info in listed:
                path = shard_file(self.root, info.file)
                if path is None:
                    say("outside_store", f"{m}: entry {info.file[:200]!r} is not a file under shards/, skipped")
                    continue
                if info.file in first:
                    say(
                        "duplicate_listing",
                        f"{m}: {info.file} is listed again (first in {first[info.file].manifest}), read once",
                    )
                    continue
                first[info.file] = StoreShard(info, path, m.name)
        self._shards = sorted(first.values(), key=lambda s: s.info.file)
        return self._shards

    def table(self, shard: StoreShard, columns: list[str] | None = None) -> pa.Table | None:
        """The shard's table, checked against its manifest entry; None (reported once) when damaged."""
        try:
            table = open_shard(self.root, shard.info, columns)
        except DamagedShard as e:
            if shard.info.file not in self._damaged:
                self._damaged.add(shard.info.file)
                self.report.skip(e.reason, f"{e}, skipped")
            return None
        return table

    def rows(self, columns: list[str] | None = None) -> Iterator[tuple[StoreShard, int, dict[str, Any]]]:
        """(shard, row index, raw row) of every intact shard; with an `id` column, each id once."""
        seen: set[str] = set()
        for shard in self.shards():
            table = self.table(shard, columns)
            if table is None:
                continue
            self.report.shards += 1
            repeated = 0
            for i, row in enumerate(table.to_pylist()):
                sid = row.get("id")
                if sid is not None:
                    if sid in seen:
                        repeated += 1
                        continue
                    seen.add(sid)
                self.report.rows += 1
                yield shard, i, row
            self._report_repeats(shard, repeated)

    def shard_samples(self, shard: StoreShard) -> Iterator[StoreSample]:
        """The valid samples of one shard (ids not de-duplicated); bad rows reported one line each."""
        table = self.table(shard)
        if table is None:
            return
        too_new = 0
        for i, row in enumerate(table.to_pylist()):
            try:
                sample = row_to_sample(row)
            except SchemaVersionError:
                too_new += 1
                continue
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                self.report.skip("invalid_row", f"{shard.path}: row {i}: invalid sample, skipped ({_detail(e)})")
                continue
            bad = undecodable_image(sample) if self.decode_images else None
            if bad:
                self.report.skip("bad_image", f"{shard.path}: row {i}: sample {sample.id}: {bad}, skipped")
                continue
            yield StoreSample(shard, i, sample)
        if too_new:
            self.report.skip(
                "schema_too_new",
                f"{shard.path}: {too_new} rows have a schema_version newer than this mifg reads"
                f" (<= {SCHEMA_VERSION}), skipped; upgrade mifg to read them",
                n=too_new,
            )

    def samples(self) -> Iterator[StoreSample]:
        """Every valid sample of the store, shard by shard (one in memory), each id once."""
        seen: set[str] = set()
        for shard in self.shards():
            repeated = 0
            for item in self.shard_samples(shard):
                if item.sample.id in seen:
                    repeated += 1
                    continue
                seen.add(item.sample.id)
                self.report.rows += 1
                yield item
            if shard.info.file not in self._damaged:
                self.report.shards += 1
            self._report_repeats(shard, repeated)

    def _report_repeats(self, shard: StoreShard, repeated: int) -> None:
        if repeated:
            self.report.skip(
                "duplicate_id", f"{shard.path}: {repeated} rows repeat sample ids read before, counted once", n=repeated
            )
