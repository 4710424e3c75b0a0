"""LLMClient against the real local HTTP server: retries, Retry-After, timeouts, JSON re-asks, usage."""

from __future__ import annotations

import socket
import time
from collections import defaultdict

import pytest

from agents.llm.client import LLMClient
from agents.llm.errors import MalformedOutputError, RequestRejectedError, RetriesExhaustedError
from agents.llm.local_server import LocalModelServer
from agents.prompts import load_prompt
from tests.agents_llm.conftest import FAST, run

MESSAGES = [
    {"role": "system", "content": load_prompt("verifier")},
    {"role": "user", "content": '```json\n{"question": "q?", "options": {"A": "x", "B": "y"}}\n```'},
]


PATHS = pytest.mark.parametrize("http_path", ["lean", "sdk"])


def client_for(srv: LocalModelServer, **kw) -> LLMClient:
    opts = {**FAST, **kw}
    return LLMClient(srv.base_url, srv.model, None, **opts)


async def one_call(client: LLMClient, messages=MESSAGES, parse=lambda o: o):
    try:
        return await client.complete_json(messages, parse)
    finally:
        await client.aclose()


def gaps(srv: LocalModelServer) -> list[float]:
    times = [r.t for r in srv.chat_records()]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


@PATHS
def test_429_retry_after_seconds_is_honoured(server, http_path):
    server.inject("429")
    reply, usage = run(one_call(client_for(server, http_path=http_path, backoff_base=0.01)))
    assert reply["answer"] == "A" and usage.calls == 1
    recs = server.chat_records()
    assert [r.status for r in recs] == [429, 200]
    assert [r.attempt for r in recs] == [1, 2] and recs[0].call == recs[1].call
    # backoff alone would wait ~0.01 s; the server asked for 0.3 s
    assert gaps(server)[0] >= 0.3


def test_429_retry_after_http_date_is_honoured():
    with LocalModelServer(retry_after=0.5, retry_after_format="date") as srv:
        srv.inject("429")
        run(one_call(client_for(srv, backoff_base=0.01)))
        (gap,) = gaps(srv)
    # the date is rounded up to a whole second, so the wait lies between 0.5 s and ~2 s
    assert 0.5 <= gap <= 2.5


@PATHS
def test_500s_are_retried_with_growing_backoff(server, http_path):
    server.inject("500", "500")
    client = client_for(server, http_path=http_path, backoff_base=0.1, backoff_max=1.0)
    reply, _ = run(one_call(client))
    assert reply["answer"] == "A"
    assert [r.status for r in server.chat_records()] == [500, 500, 200]
    g1, g2 = gaps(server)
    assert g1 >= 0.05 and g2 >= 0.1  # equal jitter: at least half of 0.1 s, then of 0.2 s
    assert client.counters["retry:http_500"] == 2


@PATHS
def test_timeout_is_retried(server, http_path):
    server.inject("hang")
    t0 = time.monotonic()
    reply, _ = run(one_call(client_for(server, http_path=http_path, timeout=0.3)))
    assert reply["answer"] == "A"
    assert 0.3 <= time.monotonic() - t0 < 3.0  # the hang (5 s) was cut at the 0.3 s timeout
    assert [r.fault for r in server.chat_records()] == ["hang", ""]


def test_attempts_are_bounded_then_fail_with_reason(server):
    server.inject(*["429"] * 10)
    client = client_for(server, max_attempts=3)
    with pytest.raises(RetriesExhaustedError) as err:
        run(one_call(client))
    assert err.value.reason == "rate_limited after 3 attempts"
    assert len(server.chat_records()) == 3


def test_no_request_storm_under_faults():
    """30 concurrent calls, 50% 429/500: every retry waits its backoff or the Retry-After it was given."""
    with LocalModelServer(fault_rate=0.5, fault_kinds=("429", "500"), retry_after=0.2, seed=3) as srv:
        client = client_for(srv, backoff_base=0.1, backoff_max=0.4, max_attempts=8)

        async def many():
            import asyncio

            try:
                return await asyncio.gather(*[client.complete_json(MESSAGES, lambda o: o) for _ in range(30)])
            finally:
                await client.aclose()

        results = run(many())
        recs = srv.chat_records()
    assert len(results) == 30
    by_call = defaultdict(list)
    for r in recs:
        by_call[r.call].append(r)
    assert len(by_call) == 30
    retried = 0
    for attempts in by_call.values():
        attempts.sort(key=lambda r: r.attempt)
        assert [r.attempt for r in attempts] == list(range(1, len(attempts) + 1))
        assert [r.status for r in attempts][-1] == 200
        for prev, nxt in zip(attempts, attempts[1:], strict=False):
            retried += 1
            # Retry-After 0.2 s for a 429; else the equal-jitter floor: half of min(max, base * 2^(n-1))
            floor = 0.2 if prev.status == 429 else min(0.4, 0.1 * 2 ** (prev.attempt - 1)) / 2 * 0.95
            assert nxt.t - prev.t >= floor, (prev, nxt)
    assert retried >= 10
    assert len(recs) == 30 + retried  # nothing sent but first attempts and spaced retries


@PATHS
def test_malformed_json_is_reasked_then_accepted(server, http_path):
    server.inject("malformed")
    client = client_for(server, http_path=http_path)
    reply, usage = run(one_call(client))
    assert reply["answer"] == "A"
    assert usage.calls == 2 and client.counters["json_reasks"] == 1
    reask = server.last_requests[-1]["messages"]
    assert reask[-2]["role"] == "assistant" and "Sure! Here is the JSON" in reask[-2]["content"]
    assert "could not be used" in reask[-1]["content"]


def test_malformed_json_fails_with_reason_after_bounded_reasks():
    with LocalModelServer(fault_rate=1.0, fault_kinds=("malformed",)) as srv:
        client = client_for(srv, json_retries=2)
        with pytest.raises(MalformedOutputError) as err:
            run(one_call(client))
        assert len(srv.chat_records()) == 3
    assert err.value.reason.startswith("malformed_output: invalid JSON")
    assert err.value.usage.calls == 3 and err.value.usage.completion_tokens > 0


def test_validation_failure_is_reasked_with_the_error(server):
    seen = []

    def parse(obj):
        seen.append(obj)
        if len(seen) == 1:
            raise ValueError("answer 'A' is not allowed here")
        return obj

    _, usage = run(one_call(client_for(server), parse=parse))
    assert usage.calls == 2
    assert "answer 'A' is not allowed here" in server.last_requests[-1]["messages"][-1]["content"]


@PATHS
def test_usage_and_cost_are_summed(server, http_path):
    prices = {"prompt_per_1m": 1000.0, "completion_per_1m": 2000.0}
    client = client_for(server, http_path=http_path, prices=prices)

    async def three():
        try:
            return [await client.complete_json(MESSAGES, lambda o: o) for _ in range(3)]
        finally:
            await client.aclose()

    results = run(three())
    usages = [u for _, u in results]
    assert all(u.calls == 1 and u.prompt_tokens > 0 and u.completion_tokens > 0 for u in usages)
    total = client.totals
    assert total.calls == 3
    assert total.prompt_tokens == sum(u.prompt_tokens for u in usages)
    assert total.completion_tokens == sum(u.completion_tokens for u in usages)
    expected = (total.prompt_tokens * 1000.0 + total.completion_tokens * 2000.0) / 1e6
    assert total.cost_usd == pytest.approx(expected)


def test_server_without_json_mode_falls_back_to_instructions():
    with LocalModelServer(json_mode=False) as srv:
        client = client_for(srv)
        reply, _ = run(one_call(client))
        assert reply["answer"] == "A"
        assert [r.status for r in srv.chat_records()] == [400, 200]
    assert client.counters["json_mode_disabled"] == 1


@PATHS
def test_unknown_model_mid_run_is_not_retried(server, http_path):
    client = LLMClient(server.base_url, "no-such-model", None, http_path=http_path, **FAST)
    with pytest.raises(RequestRejectedError) as err:
        run(one_call(client))
    assert err.value.reason.startswith("http_404")
    assert len(server.chat_records()) == 1


@PATHS
def test_unreachable_port_fails_after_bounded_attempts(http_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LLMClient(f"http://127.0.0.1:{port}/v1", "m", None, **{**FAST, "max_attempts": 2}, http_path=http_path)
    with pytest.raises(RetriesExhaustedError) as err:
        run(one_call(client))
    assert err.value.reason == "connection_error after 2 attempts"
