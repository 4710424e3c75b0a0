"""What every command that writes an output folder shares: a lock, stale-leftover cleanup, disk-full errors.

    with out_lock(out, "mifg export"):   # a second writer to the same --out is refused at once
        remove_stale(out, "mifg export") # .OUT.partial-PID / .OUT.staging / .OUT.merge-PID of killed runs
        with disk_full_stops(out, "the previous export in OUT is unchanged"):
            ... build beside OUT, rename into place ...

The lock is an `fcntl` lock on the hidden file `.OUT.lock` next to OUT, removed on release (a waiter
that locked a removed file notices and locks the new one). The OS drops the lock when the holder
dies, so a killed writer never blocks the next run, and anything a killed writer left can be removed
under the lock.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.errors import ConfigError, DiskFullError

# Leftovers of our writers next to OUT, by pattern: build folders (removed) and an OUT moved aside
# while a new one was renamed in (put back when OUT itself is missing, else removed).
_BUILD_PATTERNS = (".{name}.partial-*", ".{name}.staging", ".{name}.merge-*")
_ASIDE_PATTERNS = (".{name}.old-*", ".{name}.old")


def is_disk_full(e: BaseException) -> bool:
    """Whether `e` means the disk (or quota) is full."""
    if isinstance(e, DiskFullError):
        return True
    if isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)):
        return True  # pyarrow's OSError may carry the errno only in its message
    return isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e)


def disk_full_message(e: BaseException, path: str | Path | None = None) -> str:
    """'disk full writing PATH (reason)' for a disk-full error `e` (its own path first, else `path`)."""
    if isinstance(e, DiskFullError):
        return str(e)
    where = getattr(e, "filename", None) or path or "the output"
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip() or type(e).__name__
    return f"disk full writing {where} ({reason})"


@contextmanager
def disk_full_stops(path: str | Path, kept: str) -> Iterator[None]:
    """Turn a disk-full error inside the block into one DiskFullError naming the path and what was `kept`."""
    try:
        yield
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise DiskFullError(f"{disk_full_message(e, path)}; kept: {kept}") from e


def lock_path(out: Path) -> Path:
    """The lock file of output folder `out`."""
    return out.parent / f".{out.name}.lock"


@contextmanager
def out_lock(out: str | Path, command: str) -> Iterator[None]:
    """Hold the lock of output folder `out` for the block; ConfigError if another process holds it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"{out}: another process is writing there (it holds {path.name});"
                f" wait for it to finish or stop it, then run {command} again"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed this lock file: lock the new one
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked while removed, so no one can hold a stale copy
        os.close(fd)


def remove_stale(out: str | Path, command: str) -> list[str]:
    """Clean up what killed writers left next to `out` (call under `out_lock`); one stderr line each."""
    out = Path(out)
    lines: list[str] = []
    if not out.parent.is_dir():
        return lines
    for pattern in _ASIDE_PATTERNS:
        for aside in sorted(out.parent.glob(pattern.format(name=out.name))):
            if not out.exists():
                os.replace(aside, out)
                lines.append(f"restored {out} from {aside.name} (an earlier run was stopped while replacing it)")
            else:
                _remove(aside)
                lines.append(f"removed {aside} (the previous {out.name}, left by a stopped run)")
    for pattern in _BUILD_PATTERNS:
        for build in sorted(out.parent.glob(pattern.format(name=out.name))):
            size = _size(build)
            _remove(build)
            lines.append(f"removed {build} ({size / 1e6:.1f} MB unfinished output of a stopped run)")
    for line in lines:
        print(f"{command}: {line}", file=sys.stderr)
    return lines


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
