"""Stopping a run mid-way in process, the way a killed process stops: a hook that raises on its n-th call."""

from __future__ import annotations

from collections import Counter

from pipeline.runner import RunHooks


class SimulatedCrash(BaseException):
    """Raised by a hook to stop the runner the way a killed process stops (no clean-up runs)."""


def crash_on(point: str, n: int = 3) -> RunHooks:
    """Hooks that raise `SimulatedCrash` at the n-th time the runner reaches `point` (a `RunHooks` field)."""
    calls: Counter[str] = Counter()

    def crash(name: str) -> None:
        calls[name] += 1
        if sum(calls.values()) == n:
            raise SimulatedCrash(point)

    return RunHooks(**{point: crash})
