"""Retry-After handling cannot stall a run: the cap holds with jitter, and non-finite values are ignored."""

from __future__ import annotations

import httpx

from agents.llm.backoff import parse_retry_after, wait_retry_after_or_backoff


class _Failed(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        self.response = httpx.Response(429, headers=headers)


def test_retry_after_is_capped_including_its_jitter():
    wait = wait_retry_after_or_backoff(base=0.5, maximum=30.0, retry_after_max=120.0)
    waits = [wait.after(_Failed({"retry-after": "86400"}), 1) for _ in range(200)]
    assert max(waits) <= 120.0 * 1.1 and min(waits) >= 120.0


def test_non_finite_retry_after_falls_back_to_backoff():
    for value in ("inf", "nan", "-inf"):
        assert parse_retry_after({"retry-after": value}) is None
        assert parse_retry_after({"retry-after-ms": value}) is None
    wait = wait_retry_after_or_backoff(base=0.5, maximum=30.0)
    assert 0.25 <= wait.after(_Failed({"retry-after": "inf"}), 1) <= 0.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
