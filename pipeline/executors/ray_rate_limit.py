"""One endpoint's rate limit shared by every shard of a Ray job: a token-bucket actor and its client side.

Each shard's model client would otherwise limit itself, and N shards against one endpoint would send
N times `requests_per_s` / `tokens_per_min`. The driver starts one `BucketActor` per endpoint and
passes its handle to every shard; there `share_limits` (agents.llm.rate_limit) makes the client use
a `SharedLimiter` instead of its own bucket, so the local path is untouched.

The actor grants a request only when its bucket has room, and otherwise says how long to wait, so
a share is taken just before the request goes out, as in the local `RateLimiter`. In each process
the waiters queue on one lock and only the head of the queue asks the actor: a process has at most
one grant in hand at a time, and the actor sees at most one caller per process. The times requests
are sent keep to the bucket up to one request per process (a grant whose event loop was busy when it
arrived), whatever the number of shards.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.llm.rate_limit import RateLimiter


class BucketActor:
    """The token buckets of one endpoint (run as a Ray actor: `ray.remote(BucketActor)`)."""

    def __init__(self, requests_per_s: float | None, tokens_per_min: float | None, burst: float | None) -> None:
        self.limiter = RateLimiter(requests_per_s, tokens_per_min, burst=burst)
        self.granted = 0
        self.refused = 0

    def try_take(self, tokens: float = 0.0) -> float:
        """0.0: one request of about `tokens` tokens is taken, send it; else seconds to wait before asking again."""
        delay = self.limiter.wait_for(tokens)
        if delay > 0:
            self.refused += 1
            return delay
        self.limiter.take(tokens)
        self.granted += 1
        return 0.0

    def stats(self) -> dict[str, int]:
        """Requests granted, and asks told to wait, over the job."""
        return {"granted": self.granted, "refused": self.refused}


class SharedLimiter:
    """A limiter (`acquire`, `waited_s`) whose bucket is a `BucketActor` shared by many processes."""

    active = True

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.waited_s = 0.0  # time the head of this process's queue slept here
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self, tokens: float = 0.0) -> None:
        """Wait (FIFO in this process) until the shared bucket grants one request of about `tokens` tokens."""
        loop = asyncio.get_running_loop()
        if self._lock is None or loop is not self._loop:  # a lock belongs to one event loop
            self._lock, self._loop = asyncio.Lock(), loop
        async with self._lock:
            while (delay := await self.actor.try_take.remote(float(tokens))) > 0:
                self.waited_s += delay
                await asyncio.sleep(delay)


def endpoints_of(base_url: str, model: str, options: dict) -> list[str]:
    """The endpoints (base URLs) a run's openai clients send to: the writer's, and the verifier's if another."""
    from agents.llm import LLMConfig, verifier_endpoint

    config = LLMConfig.from_options(options)
    v_url, _, _ = verifier_endpoint(base_url, model, None, config)
    return sorted({base_url.rstrip("/"), v_url.rstrip("/")})
