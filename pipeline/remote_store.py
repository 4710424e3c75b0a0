"""Stores on object storage or a shared filesystem: `s3://`, `gs://`, `abfs://`, `hdfs://`, any fsspec URL.

A remote store has the layout of a local one (`pipeline.shard_store`, `pipeline.run_config`): the
same keys under the URL. Nothing reads or writes it in place; the commands work on a local copy:

- `mifg generate --out URL` works in a local working dir (`work_dir_for`) and uploads each shard,
  then its manifest, then a snapshot of its item record (`pipeline.run.replica`);
- `mifg stats URL` / `mifg merge URL ...` read a copy that `local_copy` downloads (listed shards only);
- `mifg merge ... --out URL` builds the merge locally and uploads it with `push_tree`.

Each object is written in one PUT (S3, GCS, Azure: all or nothing), elsewhere as a temp name then a
rename. `s3://`, `gs://`, `abfs://` and `hdfs://` use pyarrow's own clients (no extra needed; the S3
client honours `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, ...); other schemes go
through fsspec and need the package fsspec names (e.g. `adlfs` for `az://`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.shard_store import MANIFESTS, SHARDS, atomic_write_bytes, read_manifest, shard_file
from pipeline.store_reader import SHOWN_AS, shown
from schemas.errors import ConfigError, InputError, MifgError

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PYARROW_SCHEMES = {"s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"}  # pyarrow's own clients
_PUT_IS_ATOMIC = {"s3", "gcs", "abfs"}  # pyarrow type names whose object writes are all or nothing
_HINTS = (  # (what the client says, what to do)
    (("NO_SUCH_BUCKET", "NoSuchBucket", "does not exist"), "the bucket does not exist: create it first"),
    (
        ("ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY", "SIGNATURE", "credentials", "Forbidden", "403"),
        "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, for S3)",
    ),
    (("connect", "Connection", "resolve", "timed out", "NETWORK"), "check the endpoint (AWS_ENDPOINT_URL for S3)"),
)


def is_url(where: str | Path) -> bool:
    """Whether `where` names a remote store (a `scheme://` URL other than `file://`)."""
    m = _URL_RE.match(str(where))
    return bool(m) and m.group(1).lower() != "file"


def local_path(where: str | Path) -> Path:
    """A local path for `where` (a `file://` URL loses its scheme)."""
    text = str(where)
    return Path(text[len("file://") :] if text.lower().startswith("file://") else text)


def _why(e: BaseException) -> str:
    """The first line of a client error, and what to do about it when we can tell."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = text if len(text) <= 240 else text[:237] + "..."
    for needles, hint in _HINTS:
        if any(n in str(e) for n in needles):
            return f"{text}; {hint}"
    return text


@dataclass
class Remote:
    """One remote store: a pyarrow filesystem and the store's base path on it."""

    url: str
    fs: pafs.FileSystem
    base: str

    def key(self, rel: str) -> str:
        """The filesystem path of `rel` (a path relative to the store root)."""
        return f"{self.base}/{rel}" if rel else self.base

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn a client error inside the block into one InputError line naming the URL."""
        try:
            yield
        except MifgError:
            raise
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"{self.url}: {what} failed: {_why(e)}") from None

    def check(self) -> None:
        """Fail now, in one line, if the bucket (or its root) is missing or the credentials are refused."""
        bucket = self.base.lstrip("/").split("/", 1)[0]
        with self.errors("reaching the store"):
            if self.fs.type_name in _PUT_IS_ATOMIC and self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise InputError(f"{self.url}: bucket {bucket!r} does not exist (or is not visible); create it first")
        self.list("")

    def list(self, rel: str) -> list[str]:
        """Files under `rel`, as paths relative to the store root, sorted."""
        selector = pafs.FileSelector(self.key(rel), recursive=True, allow_not_found=True)
        with self.errors(f"listing {rel or 'the store'}"):
            infos = self.fs.get_file_info(selector)
        prefix = self.base.rstrip("/") + "/"
        return sorted(
            i.path[len(prefix) :] for i in infos if i.type == pafs.FileType.File and i.path.startswith(prefix)
        )

    def read_bytes(self, rel: str) -> bytes | None:
        """The bytes of `rel`, or None when it does not exist."""
        with self.errors(f"reading {rel}"):
            try:
                with self.fs.open_input_stream(self.key(rel)) as f:
                    return f.read()
            except FileNotFoundError:
                return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write `rel` all or nothing (one PUT on an object store, else a temp name and a rename)."""
        target = self.key(rel)
        with self.errors(f"writing {rel}"):
            if self.fs.type_name in _PUT_IS_ATOMIC:
                with self.fs.open_output_stream(target) as f:
                    f.write(data)
                return
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            tmp = f"{target}.{os.getpid()}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, target)

    def delete(self, rel: str) -> None:
        """Remove `rel` if it exists."""
        with self.errors(f"removing {rel}"):
            try:
                self.fs.delete_file(self.key(rel))
            except FileNotFoundError:
                pass


def open_remote(url: str) -> Remote:
    """The remote store at `url`; ConfigError naming the scheme or the package to install when it cannot."""
    scheme = _URL_RE.match(url).group(1).lower() if _URL_RE.match(url) else ""
    if scheme in _PYARROW_SCHEMES:
        try:
            fs, base = pafs.FileSystem.from_uri(url)
        except (OSError, pa.ArrowException, ValueError) as e:
            raise ConfigError(f"{url}: cannot open a {scheme}:// client: {_why(e)}") from None
    else:
        import fsspec  # a dependency of `datasets`, so always here

        try:
            ffs, base = fsspec.core.url_to_fs(url)
        except ImportError as e:
            raise ConfigError(f"{url}: {scheme}:// needs an fsspec package that is not installed: {e}") from None
        except ValueError as e:
            raise ConfigError(
                f"{url}: unknown storage scheme {scheme}:// ({_why(e)}); use s3://, gs://, abfs://, hdfs://"
                " or a scheme of an installed fsspec package"
            ) from None
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(ffs))
    base = base.rstrip("/")
    if not base.strip("/") or (fs.type_name in _PUT_IS_ATOMIC and "/" not in base.strip("/")):
        raise ConfigError(f"{url}: give a bucket and a path in it, e.g. s3://bucket/runs/job")
    return Remote(url.rstrip("/"), fs, base)


def resolve_out(out: str, work_dir: Path | None) -> tuple[Path, str]:
    """(local RUN_DIR, store URL or "") of `mifg generate --out`; a URL is checked (client, bucket) now."""
    if not is_url(out):
        if work_dir is not None:
            raise ConfigError("--work-dir applies to an --out URL (s3://...); a local --out is its own working dir")
        return local_path(out), ""
    open_remote(out).check()  # a bad scheme, a missing package, bucket or credentials: one line, before any work
    return work_dir_for(out, work_dir), out.rstrip("/")


def work_dir_for(url: str, work_dir: Path | None = None) -> Path:
    """The local working dir of remote store `url`: `work_dir`, else ~/.cache/mifg/remote/<name>-<hash>."""
    if work_dir is not None:
        return work_dir
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", url.split("://", 1)[-1]).strip("-")[-60:]
    return cache / "mifg" / "remote" / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def pull_store(remote: Remote, local: Path, sub: str = "", tags: set[str] | None = None, exact: bool = False) -> None:
    """Copy the manifests (of `tags`, or all) of store root `sub` and the shards they list into `local`/`sub`.

    A local shard with the listed sha256 is kept, not downloaded again. A listed shard that is missing
    remotely is missing locally too (its reader reports it). With `exact`, local manifests and shards of
    those tags that the remote store does not list are removed: the remote store is the truth.
    """
    root = local / sub if sub else local
    prefix = f"{sub}/" if sub else ""
    mdir = f"{prefix}{MANIFESTS}"
    names = {Path(f).stem for f in remote.list(mdir) if f.endswith(".json") and Path(f).parent.as_posix() == mdir}
    wanted = names if tags is None else names & tags
    listed: set[str] = set()
    for tag in sorted(wanted):
        data = remote.read_bytes(f"{prefix}{MANIFESTS}/{tag}.json")
        if data is None:
            continue
        manifest = root / MANIFESTS / f"{tag}.json"
        atomic_write_bytes(manifest, data)
        try:
            _, shards = read_manifest(manifest)
        except InputError:
            continue  # copied as it is: its reader reports it
        for info in shards:
            path = shard_file(root, info.file)
            if path is None:
                continue  # outside the store: never followed (its reader reports it)
            listed.add(path.name)
            if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256:
                continue
            blob = remote.read_bytes(f"{prefix}{info.file}")
            if blob is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(path, blob)
    if exact:
        for tag in tags or set():
            if tag not in wanted:
                (root / MANIFESTS / f"{tag}.json").unlink(missing_ok=True)
            for path in (root / SHARDS).glob(f"{tag}-*.parquet"):
                if path.name not in listed:
                    path.unlink()


@contextmanager
def local_copy(where: str | Path) -> Iterator[Path]:
    """A local directory holding the store `where`: itself when local, else a temporary download.

    The download has run.json, merge.json, every item record and both stores (listed shards only);
    errors and reader warnings that name the temporary copy name `where` instead.
    """
    if not is_url(where):
        yield local_path(where)
        return
    remote = open_remote(str(where))
    remote.check()
    files = remote.list("")
    if not files:
        raise InputError(f"{remote.url}: no such run (nothing stored there)")
    with tempfile.TemporaryDirectory(prefix="mifg-remote-") as tmp:
        local = Path(tmp)
        for rel in files:
            if rel in ("run.json", "merge.json") or (rel.startswith("state/") and rel.endswith(".sqlite")):
                atomic_write_bytes(local / rel, remote.read_bytes(rel) or b"")
        for sub in ("", "rejected"):
            pull_store(remote, local, sub)
        SHOWN_AS[str(local)] = remote.url
        try:
            yield local
        except MifgError as e:
            raise type(e)(shown(str(e))) from None
        finally:
            SHOWN_AS.pop(str(local), None)


def push_tree(local: Path, remote: Remote) -> None:
    """Upload every file under `local`: shards first, manifests and merge.json last (a reader never sees a
    manifest that names a shard not uploaded yet)."""

    def order(p: Path) -> tuple[int, str]:
        rel = p.relative_to(local).as_posix()
        rank = 0 if f"{SHARDS}/" in rel else 2 if f"{MANIFESTS}/" in rel else 3 if rel == "merge.json" else 1
        return rank, rel

    for path in sorted((p for p in local.rglob("*") if p.is_file()), key=order):
        remote.write_bytes(path.relative_to(local).as_posix(), path.read_bytes())
