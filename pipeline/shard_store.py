"""Atomic Parquet shard store with a manifest: the on-disk layout every room reads.

Layout of a store root (a generation RUN_DIR, a verified dir, ...):

    ROOT/shards/<tag>-<seq>.parquet   one shard: samples with the explicit Arrow schema
    ROOT/manifests/<tag>.json         the shards written under <tag> (one per writer / --shard i/N)

A shard file appears only by `os.replace` of a fully written, fsynced temp file, so a reader never
sees half a shard. Manifests are rewritten the same way after each shard. A shard that reached
disk but not its manifest (a crash between the two renames) is adopted on the next open; a listed
shard that is missing, damaged or outside the store is dropped from its writer's manifest on the
next open (the file, if any, kept as `<name>.damaged`), so a resumed run writes those samples again.

`open_shard` is the one place that checks a listed shard against its manifest entry (path under
shards/, present, Parquet, row count, sha256, schema version); `pipeline.store_reader` reads a
whole store through it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import SCHEMA_VERSION, Sample, samples_to_table, table_to_samples
from schemas.errors import DiskFullError, InputError

SHARDS = "shards"
MANIFESTS = "manifests"
_TAG_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ShardInfo:
    """One shard as recorded in a manifest."""

    file: str  # relative to the store root
    rows: int
    sha256: str
    tag: str


class DamagedShard(Exception):
    """A listed shard that cannot be used; `reason` is the counter name, the message one line."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a fsynced temp file and rename (all or nothing).

    On a full disk the temp file is removed and DiskFullError names `path` (left as it was).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            state = "unchanged" if path.exists() else "not written"
            raise DiskFullError(f"disk full writing {path} ({e.strerror}); {path.name} {state}") from e
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: object) -> None:
    """Write `obj` as pretty JSON to `path` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Appends shards under one tag of a store root; safe to reopen after a crash."""

    def __init__(self, root: str | Path, tag: str = "main") -> None:
        if not _TAG_RE.match(tag):
            raise InputError(f"shard tag {tag!r} may only contain letters, digits, '.', '_' and '-'")
        self.root = Path(root)
        self.tag = tag
        (self.root / SHARDS).mkdir(parents=True, exist_ok=True)
        (self.root / MANIFESTS).mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / MANIFESTS / f"{tag}.json"
        self.dropped: list[str] = []  # one line per listed shard dropped on open (see _drop_damaged)
        self._shards = self._listed()
        self._adopt_orphans()

    @property
    def shards(self) -> list[ShardInfo]:
        """Shards written under this tag so far."""
        return list(self._shards)

    def _listed(self) -> list[ShardInfo]:
        """This tag's intact listed shards; damaged, missing, repeated or outside entries are dropped."""
        if not self.manifest_path.exists():
            return []
        try:
            _, listed = read_manifest(self.manifest_path)
        except InputError as e:  # rebuilt from the shard files by _adopt_orphans
            self.dropped.append(f"{e}; rebuilt from the shard files")
            return []
        kept: list[ShardInfo] = []
        for info in dict.fromkeys(listed):  # a shard listed twice counts once
            try:
                open_shard(self.root, info, columns=["id"])
            except DamagedShard as e:
                self._quarantine(info)
                self.dropped.append(f"{e}; dropped from {self.manifest_path.name}")
                continue
            kept.append(info)
        if len(kept) != len(listed):
            self._shards = kept
            self._write_manifest()
        return kept

    def _quarantine(self, info: ShardInfo) -> None:
        path = shard_file(self.root, info.file)
        if path is not None and path.is_file():  # kept for inspection, out of the orphan glob
            os.replace(path, path.with_name(path.name + ".damaged"))

    def _adopt_orphans(self) -> None:
        known = {s.file for s in self._shards}
        adopted = False
        for path in sorted((self.root / SHARDS).glob(f"{self.tag}-*.parquet")):
            rel = f"{SHARDS}/{path.name}"
            if rel in known:
                continue
            try:
                rows = pq.read_metadata(path).num_rows
            except Exception:  # noqa: BLE001 - an unreadable orphan cannot be from a complete rename
                path.unlink(missing_ok=True)
                continue
            self._shards.append(ShardInfo(rel, rows, _sha256_file(path), self.tag))
            adopted = True
        for tmp in (self.root / SHARDS).glob(f".{self.tag}-*.tmp"):
            tmp.unlink(missing_ok=True)
        if adopted:
            self._write_manifest()

    def _next_seq(self) -> int:
        seqs = [int(Path(s.file).stem.rsplit("-", 1)[1]) for s in self._shards]
        return max(seqs, default=-1) + 1

    def write(self, samples: Iterable[Sample]) -> ShardInfo | None:
        """Write `samples` as one new shard and record it in the manifest; None if empty."""
        samples = list(samples)
        if not samples:
            return None
        path = self.root / SHARDS / f"{self.tag}-{self._next_seq():05d}.parquet"
        table = samples_to_table(samples)
        sink = _BytesSink()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue()
        atomic_write_bytes(path, data)
        info = ShardInfo(f"{SHARDS}/{path.name}", len(samples), hashlib.sha256(data).hexdigest(), self.tag)
        self._shards.append(info)
        self._write_manifest()
        return info

    def _write_manifest(self) -> None:
        atomic_write_json(
            self.manifest_path,
            {
                "schema_version": SCHEMA_VERSION,
                "tag": self.tag,
                "rows": sum(s.rows for s in self._shards),
                "shards": [asdict(s) for s in self._shards],
            },
        )


class _BytesSink:
    """Collects Parquet bytes in memory so the file on disk is written in one atomic step."""

    def __init__(self) -> None:
        import pyarrow as pa

        self._buf = pa.BufferOutputStream()

    def __getattr__(self, name: str):  # delegate the file API pyarrow needs
        return getattr(self._buf, name)

    def getvalue(self) -> bytes:
        return self._buf.getvalue().to_pybytes()


def read_manifest(path: Path) -> tuple[int, list[ShardInfo]]:
    """(schema_version, listed shards) of one manifest; InputError naming it if it does not parse."""
    try:
        data = json.loads(path.read_text("utf-8"))
        shards = [ShardInfo(**s) for s in data["shards"]]
        for s in shards:
            if not (isinstance(s.file, str) and isinstance(s.sha256, str) and isinstance(s.tag, str)):
                raise TypeError(f"entry {asdict(s)} has a field of the wrong type")
            if not isinstance(s.rows, int) or isinstance(s.rows, bool):
                raise TypeError(f"entry {s.file!r}: rows {s.rows!r} is not a number")
        return int(data.get("schema_version") or 1), shards
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: unreadable shard manifest ({type(e).__name__}: {e})") from e


def shard_file(root: Path, file: str) -> Path | None:
    """ROOT/`file` when `file` names a shard directly in ROOT/shards/ (no way out, no symlink out), else None."""
    name = file.removeprefix(f"{SHARDS}/") if isinstance(file, str) else ""
    if name == file or not _TAG_RE.match(name) or not name.endswith(".parquet") or name.startswith("."):
        return None
    path = root / SHARDS / name
    if path.is_symlink() and not path.resolve().is_relative_to((root / SHARDS).resolve()):
        return None
    return path


def open_shard(root: Path, info: ShardInfo, columns: list[str] | None = None) -> pa.Table:
    """The table of a listed shard after checking it against its entry; DamagedShard if it fails."""
    path = shard_file(root, info.file)
    if path is None:
        raise DamagedShard("outside_store", f"manifest entry {str(info.file)[:200]!r} is not a file under {SHARDS}/")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedShard("missing_shard", f"{path}: listed in a manifest but missing") from None
    except OSError as e:
        raise DamagedShard("unreadable_shard", f"{path}: unreadable shard ({e.strerror})") from None
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
    except Exception as e:  # noqa: BLE001 - truncated or not Parquet at all
        raise DamagedShard("unreadable_shard", f"{path}: unreadable shard ({type(e).__name__}: {e})") from None
    if pf.metadata.num_rows != info.rows:
        raise DamagedShard(
            "row_count_mismatch", f"{path}: holds {pf.metadata.num_rows} rows, its manifest says {info.rows}"
        )
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise DamagedShard(
            "sha256_mismatch", f"{path}: sha256 differs from its manifest (changed after it was written)"
        )
    version = (pf.schema_arrow.metadata or {}).get(b"mifg_schema_version", b"1")
    if not version.isdigit() or int(version) > SCHEMA_VERSION:
        raise DamagedShard(
            "schema_too_new",
            f"{path}: schema_version {version.decode(errors='replace')[:20]} is newer than this mifg reads"
            f" (<= {SCHEMA_VERSION}); upgrade mifg to read it",
        )
    try:
        return pf.read(columns=columns)
    except Exception as e:  # noqa: BLE001 - a damaged page, a missing column
        raise DamagedShard("unreadable_shard", f"{path}: unreadable shard ({type(e).__name__}: {e})") from None


def list_shards(root: str | Path) -> list[ShardInfo]:
    """All shards of a store root, over every manifest, in a deterministic order."""
    root = Path(root)
    mdir = root / MANIFESTS
    if not mdir.is_dir():
        raise InputError(f"{root}: not a mifg shard directory (no {MANIFESTS}/ folder)")
    shards: list[ShardInfo] = []
    for m in sorted(mdir.glob("*.json")):
        shards.extend(read_manifest(m)[1])
    return sorted(shards, key=lambda s: s.file)


def shard_paths(root: str | Path) -> list[Path]:
    """Paths of every shard file of a store root; an entry pointing outside ROOT/shards/ is refused."""
    root = Path(root)
    paths = []
    for s in list_shards(root):  # a manifest may come from elsewhere: never follow it out of shards/
        path = shard_file(root, s.file)
        if path is None:
            raise InputError(f"{root}: manifest entry {s.file!r} is not a file under {SHARDS}/")
        paths.append(path)
    return paths


def iter_samples(root: str | Path) -> Iterator[Sample]:
    """Every sample of a store root, shard by shard (memory: one shard at a time)."""
    for path in shard_paths(root):
        try:
            table = pq.read_table(path)
        except Exception as e:
            raise InputError(f"{path}: unreadable shard ({e})") from e
        yield from table_to_samples(table)


def read_samples(root: str | Path) -> list[Sample]:
    """All samples of a store root as a list."""
    return list(iter_samples(root))


def read_ids(root: str | Path) -> list[str]:
    """Sample ids of a store root, in shard order (reads only the `id` column)."""
    ids: list[str] = []
    for path in shard_paths(root):
        ids.extend(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids
