"""The shared token-bucket rate limiter: unit behaviour on a fake clock, and the rate seen by the server."""

from __future__ import annotations

import asyncio

import pytest

from agents.llm.client import LLMClient
from agents.llm.local_server import LocalModelServer
from agents.llm.rate_limit import RateLimiter, TokenBucket
from tests.agents_llm.conftest import FAST, run
from tests.agents_llm.test_client import MESSAGES


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_burst_then_spaces_requests():
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, capacity=2.0, clock=clock)
    for _ in range(2):  # the burst
        assert bucket.wait_for(1) == 0.0
        bucket.take(1)
    assert bucket.wait_for(1) == pytest.approx(0.5)  # then 2/s
    clock.t = 0.5
    assert bucket.wait_for(1) == 0.0
    bucket.take(1)
    clock.t = 10.0  # long idle: refills to capacity, not beyond
    assert bucket.wait_for(2) == 0.0 and bucket.wait_for(3) == 0.0  # clamped to capacity
    bucket.take(2)
    assert bucket.wait_for(1) == pytest.approx(0.5)


def test_token_limit_spaces_large_requests():
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_min=600, clock=clock)  # 10 tokens/s, bucket of 600
    assert limiter.wait_for(600) == 0.0
    limiter.take(600)
    assert limiter.wait_for(100) == pytest.approx(10.0)
    # a request larger than the whole bucket is clamped, never blocked forever
    assert limiter.wait_for(10_000) == pytest.approx(60.0)


def test_both_limits_apply():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_s=1, tokens_per_min=60, burst=1, clock=clock)
    limiter.take(30)
    assert limiter.wait_for(10) == pytest.approx(1.0)  # the request bucket is the tighter one
    assert limiter.wait_for(59) == pytest.approx(29.0)  # the token bucket is


def test_invalid_rates_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_request_rate_seen_by_the_server_is_bounded():
    rate = 20.0
    with LocalModelServer() as srv:
        limiter = RateLimiter(requests_per_s=rate, burst=1)
        client = LLMClient(srv.base_url, srv.model, None, limiter=limiter, **FAST)

        async def burst():
            try:
                await asyncio.gather(*[client.complete_json(MESSAGES, lambda o: o) for _ in range(16)])
            finally:
                await client.aclose()

        run(burst())
        times = sorted(r.t for r in srv.chat_records())
    assert len(times) == 16
    # Arrival times carry some send jitter (a first connection is slower to open than a warm one),
    # so the bounds have a little slack; without the limiter all 16 arrive within a few ms.
    assert times[-1] - times[0] >= (16 - 1) / rate * 0.8
    for i, t in enumerate(times):  # no window of 0.25 s holds much more than its share
        assert sum(1 for u in times[i:] if u - t < 0.25) <= 0.25 * rate + 2
    assert limiter.waited_s > 0
