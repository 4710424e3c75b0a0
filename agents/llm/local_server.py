"""A real OpenAI-compatible HTTP server for tests and benchmarks: scripted answers, latency, faults.

    with LocalModelServer(latency_ms=50, fault_rate=0.3) as server:   # 127.0.0.1, free port
        check_endpoint(server.base_url, server.model, None)
    python -m agents.llm.local_server --port 8000 --latency-ms 200 --fault-rate 0.3

Routes: POST /v1/chat/completions, GET /v1/models, GET /_mifg/stats (counters + request times).
Faults ("429" with Retry-After, "500", "hang" past the client's timeout, "malformed" JSON content)
are drawn at `fault_rate` or forced for the next requests with `inject(...)`. HTTP/1.1 keep-alive
on plain asyncio streams: a few tens of microseconds per request, so 256 concurrent clients measure
the client, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import hashlib
import json
import math
import random
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agents.llm.scripted_model import ScriptedModel, count_images, text_of

FAULT_KINDS = ("429", "500", "hang", "malformed")
DEFAULT_MODEL = "mifg-test-vlm"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}
_REASONS |= {500: "Internal Server Error", 411: "Length Required", 405: "Method Not Allowed"}


@dataclass
class RequestRecord:
    """One request as the server saw it (times are when it arrived)."""

    t: float  # time.monotonic() at arrival (same clock as the test process when in-process)
    wall: float  # time.time() at arrival
    method: str
    path: str
    role: str = ""
    model: str = ""
    status: int = 0
    fault: str = ""
    call: str = ""  # the client's X-Mifg-Call header: one logical call across its retries
    attempt: int = 0  # the client's X-Mifg-Attempt header


def _error(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class LocalModelServer:
    """The server; start in a background thread (`with`/`start()`) or in a running loop (`start_async`)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: tuple[str, ...] = (DEFAULT_MODEL,),
        api_key: str | None = None,
        latency_ms: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = FAULT_KINDS,
        retry_after: float | None = 1.0,
        retry_after_format: str = "seconds",
        hang_s: float = 30.0,
        json_mode: bool = True,
        seed: int = 0,
        disagree_rate: float = 0.0,
        behaviour: dict[str, str] | None = None,
        slow_s: float = 2.0,
        keep_records: int = 1_000_000,
        keep_bodies: int = 0,
    ) -> None:
        unknown = set(fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; expected some of {FAULT_KINDS}")
        if retry_after_format not in ("seconds", "date"):
            raise ValueError("retry_after_format must be 'seconds' or 'date'")
        self.host, self.port = host, port
        self.models = tuple(models)
        self.api_key = api_key
        self.latency_s = latency_ms / 1000.0
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.retry_after = retry_after
        self.retry_after_format = retry_after_format
        self.hang_s = hang_s
        self.json_mode = json_mode
        self.keep_records = keep_records
        self.script = ScriptedModel(seed=seed, disagree_rate=disagree_rate, behaviour=behaviour)
        self.slow_s = slow_s
        self.records: list[RequestRecord] = []
        self.last_requests: deque[dict[str, Any]] = deque(maxlen=keep_bodies)  # parsed bodies, for tests
        self.counters: Counter[str] = Counter()
        self._rng = random.Random(seed + 1)
        self._forced: list[str] = []
        self._lock = threading.Lock()
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._n = 0

    # -- public helpers --------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The first served model name."""
        return self.models[0]

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (`http://host:port/v1`)."""
        return f"http://{self.host}:{self.port}/v1"

    def inject(self, *kinds: str) -> None:
        """Force these faults (in order) on the next chat requests, before any random fault."""
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}")
        with self._lock:
            self._forced.extend(kinds)

    def chat_records(self) -> list[RequestRecord]:
        """Records of chat-completion requests only."""
        return [r for r in list(self.records) if r.path.endswith("/chat/completions")]

    def stats(self) -> dict[str, Any]:
        """Counters: requests by route/status/fault/role."""
        return dict(sorted(self.counters.items()))

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start_async(self) -> str:
        """Start serving on the running loop; returns the base URL."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.base_url

    async def stop_async(self) -> None:
        """Stop serving and drop open connections (hanging requests included)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def start(self) -> str:
        """Serve from a background thread with its own event loop; returns the base URL."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="mifg-local-model-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.base_url

    def stop(self) -> None:
        """Stop the background server (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    arrived, arrived_wall = time.monotonic(), time.time()  # before the body: MBs of images
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                try:
                    body = await self._read_body(reader, headers)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                status, extra_headers, payload = await self._handle(
                    method, target.split("?", 1)[0], headers, body, (arrived, arrived_wall)
                )
                keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
                head_out = [
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                    "content-type: application/json",
                    f"content-length: {len(payload)}",
                    f"connection: {'keep-alive' if keep_alive else 'close'}",
                    *(f"{k}: {v}" for k, v in extra_headers.items()),
                ]
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode("latin-1") + payload)
                try:
                    await writer.drain()
                except ConnectionError:
                    return
                if not keep_alive:
                    return
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            n = int(headers["content-length"])
            return await reader.readexactly(n) if n else b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append(await reader.readexactly(size + 2))
                if size == 0:
                    return b"".join(c[:-2] for c in chunks)
        return b""

    def _record(self, rec: RequestRecord) -> None:
        if len(self.records) < self.keep_records:
            self.records.append(rec)

    async def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, arrived: tuple[float, float]
    ) -> tuple[int, dict[str, str], bytes]:
        rec = RequestRecord(
            t=arrived[0],
            wall=arrived[1],
            method=method,
            path=path,
            call=headers.get("x-mifg-call", ""),
            attempt=int(headers.get("x-mifg-attempt", "0") or 0),
        )
        self._record(rec)
        status, extra, payload = await self._route(rec, headers, body)
        rec.status = status
        self.counters[f"status:{status}"] += 1
        self.counters["requests"] += 1
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        return status, extra, data

    async def _route(self, rec: RequestRecord, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        path = rec.path.rstrip("/")
        if path == "/_mifg/stats":
            return 200, {}, {"counters": self.stats(), "chat_times": [r.t for r in self.chat_records()]}
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, _error("Incorrect API key provided.", code="invalid_api_key")
        if path == "/v1/models" and rec.method == "GET":
            now = int(time.time())
            data = [{"id": m, "object": "model", "created": now, "owned_by": "mifg"} for m in self.models]
            return 200, {}, {"object": "list", "data": data}
        if path == "/v1/chat/completions":
            if rec.method != "POST":
                return 405, {}, _error("use POST", "invalid_request_error")
            return await self._chat(rec, body)
        if path == "/v1/embeddings" and rec.method == "POST":
            return self._embeddings(rec, body)
        return 404, {}, _error(f"no route {rec.method} {rec.path}", "invalid_request_error")

    def _embeddings(self, rec: RequestRecord, body: bytes) -> tuple[int, dict[str, str], Any]:
        """Bag-of-words embeddings (64 hashed dimensions): texts sharing words are close."""
        try:
            request = json.loads(body)
            texts = request["input"]
            texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
            rec.model = str(request.get("model", ""))
        except (ValueError, KeyError, TypeError):
            return 400, {}, _error("request body is not an embeddings request", "invalid_request_error")
        self.counters["embeddings"] += len(texts)
        data = []
        for i, text in enumerate(texts):
            vec = [0.0] * 64
            for word in text.lower().split():
                vec[int(hashlib.blake2b(word.strip(".,").encode(), digest_size=2).hexdigest(), 16) % 64] += 1.0
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = sum(len(t.split()) for t in texts)
        return (
            200,
            {},
            {
                "object": "list",
                "data": data,
                "model": rec.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _next_fault(self) -> str:
        with self._lock:
            if self._forced:
                return self._forced.pop(0)
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.fault_kinds)
        return ""

    def _retry_after_header(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        if self.retry_after_format == "date":
            # HTTP dates have whole seconds: round up so the client never waits less than asked.
            return {"retry-after": email.utils.formatdate(math.ceil(time.time() + self.retry_after), usegmt=True)}
        return {"retry-after": f"{self.retry_after:g}"}

    async def _chat(self, rec: RequestRecord, body: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            request = json.loads(body)
            messages = request["messages"]
            rec.model = str(request.get("model", ""))
            if self.last_requests.maxlen:
                self.last_requests.append(request)
        except (ValueError, KeyError, TypeError):
            return 400, {}, _error("request body is not a chat completion request", "invalid_request_error")
        if rec.model not in self.models:
            msg = f"The model `{rec.model}` does not exist or you do not have access to it."
            return 404, {}, _error(msg, "invalid_request_error", "model_not_found")
        if request.get("response_format") and not self.json_mode:
            return 400, {}, _error("response_format is not supported by this server", "invalid_request_error")
        role, content = self.script.reply(messages)
        if self.script.script_for(role) == "slow":
            await asyncio.sleep(self.slow_s)
        rec.role = role
        self.counters[f"role:{role}"] += 1
        fault = self._next_fault()
        rec.fault = fault
        if fault:
            self.counters[f"fault:{fault}"] += 1
        if fault == "429":
            return (
                429,
                self._retry_after_header(),
                _error("Rate limit reached.", "requests", "rate_limit_exceeded"),
            )
        if fault == "500":
            return 500, {}, _error("The server had an error processing your request.", "server_error")
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "malformed":
            content = 'Sure! Here is the JSON you asked for: {"answer": "A", "question": "Which ima'
        self._n += 1
        prompt_chars = sum(len(text_of(m.get("content"))) for m in messages)
        usage = {
            "prompt_tokens": prompt_chars // 4 + 85 * count_images(messages),
            "completion_tokens": max(1, len(content) // 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return (
            200,
            {},
            {
                "id": f"chatcmpl-{self._n}",
                "object": "chat.completion",
                "created": int(rec.wall),
                "model": rec.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": usage,
            },
        )


@contextlib.contextmanager
def local_endpoint(**config: Any) -> Iterator[str]:
    """Run a LocalModelServer for the duration of the block; yields its base URL."""
    with LocalModelServer(**config) as server:
        yield server.base_url


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.llm.local_server`: serve until Ctrl-C / SIGTERM, then print the counters."""
    p = argparse.ArgumentParser(prog="python -m agents.llm.local_server", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--model", action="append", help=f"served model name(s) (default {DEFAULT_MODEL})")
    p.add_argument("--api-key", default=None, help="require this bearer key (default: any)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency of every chat completion")
    p.add_argument("--fault-rate", type=float, default=0.0, help="fraction of chat calls that fail")
    p.add_argument("--fault-kinds", default=",".join(FAULT_KINDS), help="comma list of 429,500,hang,malformed")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds sent with 429 (<0: none)")
    p.add_argument("--retry-after-format", choices=["seconds", "date"], default="seconds")
    p.add_argument("--hang-s", type=float, default=30.0, help="how long a 'hang' fault stalls")
    p.add_argument("--no-json-mode", action="store_true", help="refuse response_format (like some servers)")
    p.add_argument("--disagree-rate", type=float, default=0.0, help="fraction of verifier answers that disagree")
    p.add_argument(
        "--behave",
        action="append",
        default=[],
        metavar="ROLE=HOW",
        help="script a role or probe (writer, verifier, describer, probe:text_only, probe:glance,"
        " probe:single_image, probe:reordered) as right, wrong, refuse, malformed or slow; repeatable",
    )
    p.add_argument("--slow-s", type=float, default=2.0, help="how long a 'slow' role waits")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    server = LocalModelServer(
        host=a.host,
        port=a.port,
        models=tuple(a.model or [DEFAULT_MODEL]),
        api_key=a.api_key,
        latency_ms=a.latency_ms,
        fault_rate=a.fault_rate,
        fault_kinds=tuple(k for k in a.fault_kinds.split(",") if k),
        retry_after=None if a.retry_after < 0 else a.retry_after,
        retry_after_format=a.retry_after_format,
        hang_s=a.hang_s,
        json_mode=not a.no_json_mode,
        seed=a.seed,
        disagree_rate=a.disagree_rate,
        behaviour=dict(b.split("=", 1) for b in a.behave if "=" in b),
        slow_s=a.slow_s,
        keep_records=0,  # a long-lived server keeps counters only
    )

    async def serve() -> None:
        url = await server.start_async()
        print(f"mifg local model server: {url} (models: {', '.join(server.models)})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop_async()

    asyncio.run(serve())
    print(json.dumps(server.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
