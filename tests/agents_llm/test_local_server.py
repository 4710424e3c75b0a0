"""The local OpenAI-compatible server itself: routes, errors, faults, keep-alive, and its CLI."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from agents.llm.local_server import LocalModelServer, local_endpoint
from agents.prompts import load_prompt

ROOT = Path(__file__).resolve().parents[2]


def post(conn: http.client.HTTPConnection, body: dict, key: str | None = None) -> tuple[int, dict, dict]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), json.loads(resp.read())


def chat(model: str = "mifg-test-vlm") -> dict:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": load_prompt("probe")},
            {"role": "user", "content": '```json\n{"options": {"A": "x", "B": "y"}}\n```'},
        ],
    }


def test_openai_sdk_talks_to_it():
    with LocalModelServer(api_key="k") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        assert [m.id for m in client.models.list()] == ["mifg-test-vlm"]
        out = client.chat.completions.create(**chat())
        assert json.loads(out.choices[0].message.content) == {"answer": "B", "confidence": 0.5}  # a probe: wrong
        assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.base_url, api_key="nope", max_retries=0).models.list()
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(**chat("other-model"))
    assert srv.stats()["status:401"] == 1


def test_keep_alive_errors_and_faults_over_one_connection():
    with LocalModelServer(retry_after=2) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        assert post(conn, chat())[0] == 200
        srv.inject("429", "500", "malformed")
        status, headers, _ = post(conn, chat())
        assert status == 429 and headers["retry-after"] == "2"
        assert post(conn, chat())[0] == 500
        status, _, body = post(conn, chat())
        assert status == 200 and not body["choices"][0]["message"]["content"].startswith("{")
        conn.request("POST", "/v1/chat/completions", "not json", {"content-type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 400 and "error" in json.loads(resp.read())
        conn.request("GET", "/nowhere")
        resp = conn.getresponse()
        assert resp.status == 404
        resp.read()
        conn.close()
        assert len(srv.records) == 6
        assert [r.fault for r in srv.chat_records()[:4]] == ["", "429", "500", "malformed"]


def test_random_faults_follow_the_rate():
    with LocalModelServer(fault_rate=0.3, fault_kinds=("429", "500", "malformed"), seed=1) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        statuses = [post(conn, chat())[0] for _ in range(300)]
        conn.close()
        faults = [r.fault for r in srv.chat_records()]
    share = sum(1 for f in faults if f) / len(faults)
    assert 0.22 <= share <= 0.38
    assert {f for f in faults if f} == {"429", "500", "malformed"}
    assert statuses.count(429) == faults.count("429")


def test_retry_after_as_http_date():
    with LocalModelServer(retry_after=3, retry_after_format="date") as srv:
        srv.inject("429")
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        _, headers, _ = post(conn, chat())
        conn.close()
    assert headers["retry-after"].endswith("GMT")


def test_local_endpoint_context_manager_yields_the_url():
    with local_endpoint(models=("a",)) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert [m.id for m in openai.OpenAI(base_url=url, api_key="x").models.list()] == ["a"]


def test_cli_serves_until_sigterm_and_prints_counters():
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.llm.local_server", "--port", "0", "--latency-ms", "1", "--fault-rate", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("mifg local model server: http://127.0.0.1:"), line
        url = line.split()[4]
        out = openai.OpenAI(base_url=url, api_key="x", max_retries=0).chat.completions.create(**chat())
        assert out.choices[0].finish_reason == "stop"
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert json.loads(rest.strip().splitlines()[-1])["status:200"] == 1


def test_scripted_behaviours_per_role_and_probe():
    """`behaviour` scripts any agent or probe: a refusal, broken JSON, a slow reply, a right probe."""
    probe = chat()
    with LocalModelServer(behaviour={"probe:text_only": "slow"}, slow_s=0.3) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        t0 = time.perf_counter()
        client.chat.completions.create(**probe)
        assert time.perf_counter() - t0 >= 0.3
        assert srv.chat_records()[0].role == "probe:text_only"
    for how, check in (("refuse", lambda t: "can't help" in t), ("malformed", lambda t: t.startswith('{"answer"'))):
        with LocalModelServer(behaviour={"probe:text_only": how}) as srv:
            client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
            assert check(client.chat.completions.create(**probe).choices[0].message.content)
    with pytest.raises(ValueError, match="unknown behaviour"):
        LocalModelServer(behaviour={"writer": "sulk"})
