"""The run-wide DuplicateRegistry the critic consults, made durable through the run's item record.

Keys the critic adds while an item runs are attributed to that item (a context variable set by the
runner around each sample) and are written to the item record in the same SQLite transaction as
the item's outcome. So after a crash, keys of items that never reached a shard are forgotten along
with the items themselves, and a resumed run re-makes those samples instead of calling them
duplicates of their own lost first attempt.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CURRENT_ITEM: ContextVar[int | None] = ContextVar("mifg_current_item", default=None)


class RunRegistry:
    """Set of keys already produced in this run (committed items + items in flight)."""

    def __init__(self, committed: Iterable[str] = ()) -> None:
        self._keys: set[str] = set(committed)
        self._pending: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def seen(self, key: str) -> bool:
        """Whether `key` was already recorded by this run (or a finished part of it before a resume)."""
        return key in self._keys

    def add(self, key: str) -> None:
        """Record `key`, attributed to the item running in the current context, if any."""
        if key in self._keys:
            return
        self._keys.add(key)
        item = _CURRENT_ITEM.get()
        if item is not None:
            self._pending.setdefault(item, []).append(key)

    def add_for(self, index: int, key: str) -> None:
        """Record `key` on behalf of item `index` (keys reported back by a worker process)."""
        if key not in self._keys:
            self._keys.add(key)
            self._pending.setdefault(index, []).append(key)

    def take(self, index: int) -> list[str]:
        """Keys item `index` added (to persist with its record); they stay registered."""
        return self._pending.pop(index, [])

    def forget(self, index: int) -> None:
        """Unregister what item `index` added (its result was abandoned, e.g. on interrupt)."""
        for key in self._pending.pop(index, []):
            self._keys.discard(key)

    @staticmethod
    @contextmanager
    def item_scope(index: int) -> Iterator[None]:
        """Attribute keys added inside this block (and tasks it starts) to item `index`."""
        token = _CURRENT_ITEM.set(index)
        try:
            yield
        finally:
            _CURRENT_ITEM.reset(token)


class KeyFeed:
    """The keys the main process registers, fed to its worker processes through an append-only file.

    Each worker starts from a snapshot of the registry and reads, before every item, the lines added
    since its last read, so caps (`COUNT_PREFIX` keys) count every worker's samples: without it each
    of N workers filled a cap on its own and one island was the change in 30 samples at a cap of 16.
    """

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="mifg-keys-", suffix=".log")
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def publish(self, keys: Iterable[str]) -> None:
        """Append `keys` (one per line) for the workers to read."""
        text = "".join(f"{k}\n" for k in keys)
        if text:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        """Close and remove the file."""
        self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class FeedReader:
    """A worker's side of a `KeyFeed`: complete lines not read yet go into its registry."""

    def __init__(self, path: str, registry: RunRegistry) -> None:
        self.path, self.registry, self._offset = path, registry, 0

    def catch_up(self) -> None:
        """Register the keys published since the last call (a line still being written waits)."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        if not end:
            return
        self._offset += end
        for key in data[:end].decode("utf-8").splitlines():
            self.registry.add(key)
