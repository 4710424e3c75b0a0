"""Which failures are retried, and how long to wait: exponential backoff with jitter, or Retry-After.

The wait is a tenacity wait strategy so `tenacity.AsyncRetrying` drives the loop; it reads the
server's `Retry-After` (seconds or HTTP date) or `retry-after-ms` header off the failed attempt
and never waits less than the server asked for.
"""

from __future__ import annotations

import email.utils
import math
import random
import time

import httpx
import openai
from tenacity import RetryCallState
from tenacity.wait import wait_base

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx, timeouts and connection errors are worth another attempt; other 4xx are not."""
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, httpx.TransportError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return False


def failure_kind(exc: BaseException) -> str:
    """A short label of a failed attempt, used in counters and failure reasons."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
        return "connection_error"
    if isinstance(exc, openai.APIStatusError):
        return "rate_limited" if exc.status_code == 429 else f"http_{exc.status_code}"
    return type(exc).__name__


def parse_retry_after(headers: httpx.Headers | dict[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None if absent/bad."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            seconds = float(ms) / 1000.0
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):  # "inf"/"nan" parse as floats: ignore them rather than sleep forever
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(exc: BaseException | None) -> float | None:
    """The server's requested delay carried by a failed response, if any."""
    response = getattr(exc, "response", None)
    return parse_retry_after(response.headers) if response is not None else None


class wait_retry_after_or_backoff(wait_base):  # snake case, like tenacity's own strategies
    """Honour Retry-After when the server sent one, else exponential backoff with "equal jitter".

    Equal jitter (half fixed, half random) keeps a floor under every wait, so a burst of failures
    spreads out instead of coming back as a synchronised storm, and never retries at once.
    """

    def __init__(self, base: float = 0.5, maximum: float = 30.0, retry_after_max: float = 120.0) -> None:
        self.base = base
        self.maximum = maximum
        self.retry_after_max = retry_after_max

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        # `offset`: attempts made before tenacity took over (the client's first attempt runs bare)
        return self.after(exc, retry_state.attempt_number + getattr(retry_state.retry_object, "offset", 0))

    def after(self, exc: BaseException | None, attempt_number: int) -> float:
        """Seconds to wait after failed attempt `attempt_number` (1-based) that raised `exc`."""
        server_says = retry_after_of(exc)
        if server_says is not None:
            # A little jitter on top (never below) so clients told the same value do not stampede.
            wait = min(self.retry_after_max, server_says)  # jitter from the capped value, or the cap leaks
            return wait + random.uniform(0, 0.1 * max(wait, 0.05))
        step = min(self.maximum, self.base * 2 ** (attempt_number - 1))
        return step / 2 + random.uniform(0, step / 2)
