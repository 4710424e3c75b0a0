"""The run-wide DuplicateRegistry the critic consults, made durable through the run's item record.

Keys the critic adds while an item runs are attributed to that item (a context variable set by the
runner around each sample) and are written to the item record in the same SQLite transaction as
the item's outcome. So after a crash, keys of items that never reached a shard are forgotten along
with the items themselves, and a resumed run re-makes those samples instead of calling them
duplicates of their own lost first attempt.
"""

from __future__ import annotations

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
