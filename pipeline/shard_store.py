"""Atomic Parquet shard store with a manifest: the on-disk layout every room reads.

Layout of a store root (a generation RUN_DIR, a verified dir, ...):

    ROOT/shards/<tag>-<seq>.parquet   one shard: samples with the explicit Arrow schema
    ROOT/manifests/<tag>.json         the shards written under <tag> (one per writer / --shard i/N)

A shard file appears only by `os.replace` of a fully written, fsynced temp file, so a reader never
sees half a shard. Manifests are rewritten the same way after each shard. A shard that reached
disk but not its manifest (a crash between the two renames) is adopted on the next open.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from schemas import SCHEMA_VERSION, Sample, samples_to_table, table_to_samples
from schemas.errors import InputError

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a fsynced temp file and rename (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
        self._shards = _read_manifest(self.manifest_path) if self.manifest_path.exists() else []
        self._adopt_orphans()

    @property
    def shards(self) -> list[ShardInfo]:
        """Shards written under this tag so far."""
        return list(self._shards)

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


def _read_manifest(path: Path) -> list[ShardInfo]:
    try:
        data = json.loads(path.read_text("utf-8"))
        return [ShardInfo(**s) for s in data["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: unreadable shard manifest ({e})") from e


def list_shards(root: str | Path) -> list[ShardInfo]:
    """All shards of a store root, over every manifest, in a deterministic order."""
    root = Path(root)
    mdir = root / MANIFESTS
    if not mdir.is_dir():
        raise InputError(f"{root}: not a mifg shard directory (no {MANIFESTS}/ folder)")
    shards: list[ShardInfo] = []
    for m in sorted(mdir.glob("*.json")):
        shards.extend(_read_manifest(m))
    return sorted(shards, key=lambda s: s.file)


def shard_paths(root: str | Path) -> list[Path]:
    """Paths of every shard file of a store root; an entry pointing outside ROOT/shards/ is refused."""
    root = Path(root)
    paths = []
    for s in list_shards(root):  # a manifest may come from elsewhere: never follow it out of shards/
        name = s.file.removeprefix(f"{SHARDS}/")
        if name == s.file or not _TAG_RE.match(name) or not name.endswith(".parquet") or name.startswith("."):
            raise InputError(f"{root}: manifest entry {s.file!r} is not a file under {SHARDS}/")
        paths.append(root / s.file)
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
