"""The async model client of the LLM backend: retries, rate limit, JSON replies, token accounting.

Built over `openai.AsyncOpenAI(max_retries=0)`: the SDK's own retries are off because we own them
(tenacity, honouring Retry-After, bounded attempts, counted). One client is shared by the four
agents of a run so the rate limiter and the connection pool are shared too.

Two request paths produce the same HTTP request and raise the same openai exception classes:
"lean" (default) serialises the chat request itself and sends it through `LeanAsyncTransport`;
"sdk" goes through `AsyncOpenAI.post`. Lean costs ~0.25 ms of CPU per call against ~1 ms for the
SDK path, which decides whether 256 calls in flight reach concurrency / latency on one event loop
(bench/bench_llm_throughput.py measures both).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import openai
import pydantic
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from agents.llm.backoff import failure_kind, is_retryable, wait_retry_after_or_backoff
from agents.llm.budget import Budget
from agents.llm.content import estimate_prompt_tokens
from agents.llm.errors import MalformedOutputError, RequestRejectedError, RetriesExhaustedError
from agents.llm.http_transport import LeanAsyncTransport, http_client_for, origin_of, proxied
from agents.llm.json_output import extract_json_object
from agents.llm.rate_limit import RateLimiter
from agents.llm.request_body import chat_body_pieces
from agents.llm.usage import price_of, usage_of
from schemas import TokenUsage

log = logging.getLogger(__name__)

T = TypeVar("T")

REASK = (
    "Your previous reply could not be used: {error}. "
    "Answer again with only the JSON object described in the instructions, nothing else."
)


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One line describing a parse/validation failure (pydantic errors condensed)."""
    if isinstance(exc, pydantic.ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in exc.errors()[:3]]
        text = "; ".join(parts)
    else:
        text = str(exc)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def status_error(response: httpx.Response) -> openai.APIStatusError:
    """The openai exception the SDK would raise for this error response (same class, message, headers)."""
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        body = response.content.decode("utf-8", "replace")[:500]
    detail = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        detail = detail.get("message", detail)
    cls = _STATUS_ERRORS.get(response.status_code)
    if cls is None:
        cls = openai.InternalServerError if response.status_code >= 500 else openai.APIStatusError
    return cls(f"Error code: {response.status_code} - {detail}", response=response, body=body)


def _decoded(headers: list[tuple[bytes, bytes]], content: bytes) -> bytes:
    # We send no Accept-Encoding, but a proxy may compress anyway.
    for name, value in headers:
        if name.lower() == b"content-encoding":
            enc = value.strip().lower()
            if enc == b"gzip":
                return gzip.decompress(content)
            if enc == b"deflate":
                return zlib.decompress(content)
    return content


class LLMClient:
    """Chat completions with bounded retries, a shared rate limiter and summed token usage."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_attempts: int = 6,
        json_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 120.0,
        limiter: RateLimiter | None = None,
        prices: dict[str, Any] | None = None,
        json_mode: str = "auto",
        max_connections: int = 1024,
        temperature: float | None = None,
        http_path: str = "lean",
        budget: Budget | None = None,
    ) -> None:
        if json_mode not in ("auto", "on", "off"):
            raise ValueError(f"json_mode must be auto|on|off, got {json_mode!r}")
        if http_path not in ("lean", "sdk"):
            raise ValueError(f"http_path must be lean|sdk, got {http_path!r}")
        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.json_retries = max(0, json_retries)
        self.limiter = limiter or RateLimiter()
        self.prices = price_of(prices, model)
        self.temperature = temperature
        self.budget = budget or Budget()
        # None = unknown yet ("auto"): try response_format once, drop it if the server refuses it.
        self._json_supported: bool | None = {"auto": None, "on": True, "off": False}[json_mode]
        self._wait = wait_retry_after_or_backoff(backoff_base, backoff_max, retry_after_max)
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # The lean path sends the same request the SDK would (URL, auth, JSON body) straight through
        # the lean transport: the SDK's request building and response models cost ~0.5 ms of CPU per
        # call, which at hundreds of calls in flight is what caps throughput. "sdk" keeps the SDK path
        # (over the same transport); a configured proxy forces httpx's own transport and the SDK path.
        self._lean: LeanAsyncTransport | None = None
        if http_path == "lean" and not proxied(base_url):
            self._lean = LeanAsyncTransport(max_connections=max_connections)
            self._http = httpx.AsyncClient(transport=self._lean, timeout=httpx.Timeout(timeout), follow_redirects=True)
        else:
            self._http = http_client_for(base_url, max_connections, timeout)
        self._openai = openai.AsyncOpenAI(
            base_url=base_url, api_key=key, max_retries=0, timeout=timeout, http_client=self._http
        )
        self._chat_url = httpx.URL(str(self._openai.base_url) + "chat/completions")
        if self._chat_url.scheme not in ("http", "https"):
            self._lean = None  # let the SDK path report the bad URL
        self._origin = origin_of(self._chat_url)
        self._head = (
            f"POST {self._chat_url.raw_path.decode('ascii')} HTTP/1.1\r\n"
            f"Host: {self._chat_url.netloc.decode('ascii')}\r\n"
            f"Authorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\nUser-Agent: mifg-llm/1\r\n"
        ).encode("latin-1")
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        self.totals = TokenUsage()
        self.counters: Counter[str] = Counter()
        self._id = uuid.uuid4().hex[:8]
        self._calls_started = 0

    # -- one completion, retried -------------------------------------------------------------------

    def _count_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self._note_retry(exc, state.attempt_number + getattr(state.retry_object, "offset", 0))

    def _note_retry(self, exc: BaseException | None, attempt: int) -> None:
        kind = failure_kind(exc) if exc else "unknown"
        self.counters["retries"] += 1
        self.counters[f"retry:{kind}"] += 1
        log.debug("model call attempt %d failed (%s); retrying", attempt, kind)

    async def _send(self, body: dict[str, Any], est_tokens: int, headers: dict[str, str]) -> dict[str, Any]:
        """One call with bounded retries: the first attempt bare, the retries driven by tenacity.

        Most calls succeed at once; running the first attempt outside tenacity saves its per-call
        set-up (~15% of the client's CPU per call). A retryable failure hands over to tenacity for
        the remaining attempts, after the same wait tenacity would have used.
        """
        try:
            return await self._attempt(body, est_tokens, headers)
        except Exception as e:
            if self.max_attempts < 2 or not is_retryable(e):
                raise
            self._note_retry(e, 1)
            await asyncio.sleep(self._wait.after(e, 1))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts - 1),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=self._count_retry,
            reraise=True,
        )
        retrying.offset = 1  # tenacity's attempt 1 is our attempt 2: backoff and logs count from there
        return await retrying(self._attempt, body, est_tokens, headers)

    async def _attempt(self, body: dict[str, Any], est_tokens: int, headers: dict[str, str]) -> dict[str, Any]:
        await self.limiter.acquire(est_tokens)
        self.counters["attempts"] += 1
        # Which logical call and which attempt: lets a server (and our tests) tell retries from new calls.
        headers["X-Mifg-Attempt"] = str(int(headers.get("X-Mifg-Attempt", "0")) + 1)
        if self._lean is None:
            response = await self._openai.post(
                "/chat/completions",
                cast_to=httpx.Response,
                body=body,
                options={"timeout": self.timeout, "headers": dict(headers)},
            )
            return json.loads(response.content)
        pieces = chat_body_pieces(body)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        length = sum(len(b) for b in pieces)
        payload = b"".join([self._head, f"{extra}Content-Length: {length}\r\n\r\n".encode("latin-1"), *pieces])
        try:
            status, raw_headers, content = await self._lean.send_raw(self._origin, payload, self._timeouts)
        except httpx.TimeoutException as e:
            raise openai.APITimeoutError(request=httpx.Request("POST", self._chat_url)) from e
        except httpx.TransportError as e:
            request = httpx.Request("POST", self._chat_url)
            raise openai.APIConnectionError(message=f"Connection error: {e}", request=request) from e
        content = _decoded(raw_headers, content)
        if not 200 <= status < 300:
            request = httpx.Request("POST", self._chat_url)
            raise status_error(httpx.Response(status, headers=raw_headers, content=content, request=request))
        return json.loads(content)

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        json_mode: bool = False,
        seed: int | None = None,
    ) -> tuple[str, TokenUsage, str | None]:
        """One chat completion (retried on 429/5xx/timeouts): (text, usage of this call, finish_reason)."""
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        if seed is not None:
            kwargs["seed"] = seed
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        use_format = json_mode and self._json_supported is not False
        if use_format:
            kwargs["response_format"] = {"type": "json_object"}
        est = estimate_prompt_tokens(messages) + max_tokens
        self.budget.check()  # BudgetSpent: no new call once the run's budget is spent
        try:
            self._calls_started += 1
            headers = {"X-Mifg-Call": f"{self._id}-{self._calls_started}"}
            response = await self._send(kwargs, est, headers)
        except openai.BadRequestError as e:
            if use_format and self._json_supported is None and "response_format" in str(e.message).lower():
                self._json_supported = False  # the server does not do JSON mode: rely on the instructions
                self.counters["json_mode_disabled"] += 1
                return await self.complete(messages, max_tokens=max_tokens, json_mode=False, seed=seed)
            raise self._rejected(e) from e
        except openai.APIStatusError as e:
            if is_retryable(e):
                raise self._exhausted(e) from e
            raise self._rejected(e) from e
        except (openai.APIConnectionError, httpx.TransportError) as e:  # includes APITimeoutError
            raise self._exhausted(e) from e
        except (openai.APIError, ValueError) as e:  # a 2xx whose body is not a chat completion
            self.counters["failed:bad_response"] += 1
            raise RequestRejectedError(f"bad_response: {short_error(e, 200)}", attempts=1) from e
        if use_format:
            self._json_supported = True
        usage = usage_of(response, self.prices)
        self.totals = self.totals.add(usage)
        self.budget.spend(usage)
        self.counters["calls"] += 1
        try:
            choice = response["choices"][0]
            text, finish = choice["message"].get("content"), choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            text, finish = None, None  # no usable choice: the JSON layer reports it as an empty reply
        return text or "", usage, finish

    def _exhausted(self, exc: BaseException) -> RetriesExhaustedError:
        kind = failure_kind(exc)
        self.counters[f"failed:{kind}"] += 1
        return RetriesExhaustedError(f"{kind} after {self.max_attempts} attempts", attempts=self.max_attempts)

    def _rejected(self, exc: openai.APIStatusError) -> RequestRejectedError:
        self.counters[f"failed:http_{exc.status_code}"] += 1
        message = " ".join(str(exc.message).split())[:200]
        return RequestRejectedError(f"http_{exc.status_code}: {message}", attempts=1)

    # -- structured JSON replies -------------------------------------------------------------------

    async def complete_json(
        self,
        messages: list[dict[str, Any]],
        parse: Callable[[dict[str, Any]], T],
        *,
        max_tokens: int = 512,
        seed: int | None = None,
        label: str = "",
    ) -> tuple[T, TokenUsage]:
        """Ask for a JSON object and return `parse(obj)`; bad JSON or a rejected `parse` is re-asked.

        `parse` raises ValueError / pydantic.ValidationError to reject a reply; its message is shown
        to the model on the re-ask. After `json_retries` re-asks, raises MalformedOutputError.
        `label` names the agent or probe the usage is counted under (`TokenUsage.parts`).
        """
        try:
            value, usage = await self._complete_json(messages, parse, max_tokens=max_tokens, seed=seed)
        except (RetriesExhaustedError, RequestRejectedError, MalformedOutputError) as e:
            if label:
                e.usage = e.usage.labelled(label)
            raise
        return value, usage.labelled(label) if label else usage

    async def _complete_json(
        self,
        messages: list[dict[str, Any]],
        parse: Callable[[dict[str, Any]], T],
        *,
        max_tokens: int,
        seed: int | None,
    ) -> tuple[T, TokenUsage]:
        usage = TokenUsage()
        convo = list(messages)
        error = "no attempt"
        for round_ in range(self.json_retries + 1):
            try:
                text, call_usage, finish = await self.complete(convo, max_tokens=max_tokens, json_mode=True, seed=seed)
            except (RetriesExhaustedError, RequestRejectedError) as e:
                e.usage = usage.add(e.usage)
                raise
            usage = usage.add(call_usage)
            try:
                return parse(extract_json_object(text)), usage
            except (ValueError, pydantic.ValidationError) as e:
                error = short_error(e)
                if finish == "length":
                    error = f"reply cut at max_tokens={max_tokens} ({error})"
                self.counters["json_reasks" if round_ < self.json_retries else "json_failures"] += 1
                convo = [
                    *messages,
                    {"role": "assistant", "content": text[:4000]},
                    {"role": "user", "content": REASK.format(error=error)},
                ]
        raise MalformedOutputError(
            f"malformed_output: {error} (after {self.json_retries + 1} replies)",
            usage=usage,
            attempts=self.json_retries + 1,
        )

    async def embed(self, texts: list[str], model: str) -> tuple[list[list[float]], TokenUsage]:
        """Embeddings of `texts` from the endpoint's `/embeddings` (retried like a chat call)."""
        self.budget.check()
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = await self._openai.embeddings.create(model=model, input=texts)
                break
            except openai.APIStatusError as e:
                if not is_retryable(e):
                    raise self._rejected(e) from e
                last = e
            except (openai.APIConnectionError, httpx.TransportError) as e:
                last = e
            if attempt < self.max_attempts:
                await asyncio.sleep(self._wait.after(last, attempt))
        else:
            raise self._exhausted(last or RuntimeError("no attempt"))
        tokens = int(getattr(reply.usage, "prompt_tokens", 0) or 0)
        usage = TokenUsage(prompt_tokens=tokens, calls=1, cost_usd=tokens * self.prices[0] / 1_000_000)
        self.totals = self.totals.add(usage)
        self.budget.spend(usage)
        return [list(d.embedding) for d in sorted(reply.data, key=lambda d: d.index)], usage.labelled("embeddings")

    def stats(self) -> dict[str, Any]:
        """Run-wide counters (attempts, retries by cause, failures) and summed usage."""
        return {
            **dict(sorted(self.counters.items())),
            "usage": self.totals.model_dump(),
            "rate_limit_wait_s": round(self.limiter.waited_s, 3),
        }

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._openai.close()
