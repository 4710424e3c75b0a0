"""An async token-bucket rate limiter (requests/s and/or tokens/min), shared by all agents of a run.

Waiters queue on one lock and each computes its wait from the bucket as it is when its turn comes,
then takes its share only after sleeping. So the bound holds on the times requests are actually
sent, even when the event loop stalls and several sleepers wake late together. Without limits
`acquire` returns at once and costs nothing.

`make_limiter` builds the limiter of one endpoint's client: this process's own `RateLimiter`, or,
once `share_limits` was given a lookup (as each Ray shard does), a limiter that many processes share,
so that N processes do not send N times the rate. A limiter is anything with `acquire(tokens)` and
`waited_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class TokenBucket:
    """A bucket refilled at `rate` units/s up to `capacity`."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"rate and capacity must be > 0, got rate={rate} capacity={capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._t = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._t) * self.rate)
        self._t = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` (clamped to capacity, so one huge request cannot block forever) is there."""
        self._refill()
        missing = min(amount, self.capacity) - self._level
        return max(0.0, missing / self.rate)

    def take(self, amount: float) -> None:
        """Remove `amount` (clamped to capacity) from the bucket."""
        self._refill()
        self._level -= min(amount, self.capacity)


class RateLimiter:
    """Bounds the request rate and/or the token rate of every call that goes through it."""

    def __init__(
        self,
        requests_per_s: float | None = None,
        tokens_per_min: float | None = None,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A burst of one second's worth of requests by default: smooth but not needlessly strict.
        self.requests = (
            TokenBucket(requests_per_s, burst or max(1.0, requests_per_s), clock) if requests_per_s else None
        )
        self.tokens = TokenBucket(tokens_per_min / 60.0, tokens_per_min, clock) if tokens_per_min else None
        self.waited_s = 0.0  # total time callers spent sleeping here (reported by benchmarks)
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.requests is not None or self.tokens is not None

    def wait_for(self, tokens: float = 0.0) -> float:
        """Seconds until a request of `tokens` tokens fits both buckets (0 if it fits now)."""
        delay = self.requests.wait_for(1.0) if self.requests is not None else 0.0
        if self.tokens is not None and tokens > 0:
            delay = max(delay, self.tokens.wait_for(tokens))
        return delay

    def take(self, tokens: float = 0.0) -> None:
        """Account one request of `tokens` tokens."""
        if self.requests is not None:
            self.requests.take(1.0)
        if self.tokens is not None and tokens > 0:
            self.tokens.take(tokens)

    async def acquire(self, tokens: float = 0.0) -> None:
        """Wait (FIFO) until one request of about `tokens` tokens may be sent, then account it."""
        if not self.active:
            return
        loop = asyncio.get_running_loop()
        if self._lock is None or loop is not self._loop:  # a lock belongs to one event loop
            self._lock, self._loop = asyncio.Lock(), loop
        async with self._lock:
            while (delay := self.wait_for(tokens)) > 0:
                self.waited_s += delay
                await asyncio.sleep(delay)
            self.take(tokens)


_shared: Callable[[str], Any] | None = None  # endpoint URL -> a limiter shared across processes, or None


def share_limits(lookup: Callable[[str], Any] | None) -> None:
    """Make `make_limiter` use `lookup(endpoint)` (a shared limiter, or None for none) while set; None undoes it."""
    global _shared
    _shared = lookup


def make_limiter(
    endpoint: str, requests_per_s: float | None, tokens_per_min: float | None, burst: float | None = None
) -> Any:
    """The limiter of one endpoint's client: a shared one when `share_limits` has one for it, else its own."""
    own = RateLimiter(requests_per_s, tokens_per_min, burst=burst)
    shared = _shared(endpoint.rstrip("/")) if own.active and _shared is not None else None
    return own if shared is None else shared
