"""Per-call failures of the LLM backend; the pipeline records `reason` as the sample's failure reason.

These are not user errors (those are `schemas.errors.EndpointError`, raised by `check_endpoint`
before any work): one sample fails, the batch goes on.
"""

from __future__ import annotations

from schemas import TokenUsage


class LLMCallError(Exception):
    """A model call that did not produce a usable answer; `reason` is short and machine-readable first."""

    def __init__(self, reason: str, *, usage: TokenUsage | None = None, attempts: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage or TokenUsage()  # tokens already spent (billed) before giving up
        self.attempts = attempts


class MalformedOutputError(LLMCallError):
    """The model kept answering something that is not the requested JSON (after bounded re-asks)."""


class RetriesExhaustedError(LLMCallError):
    """429 / 5xx / timeouts / connection errors persisted through every allowed attempt."""


class RequestRejectedError(LLMCallError):
    """The endpoint refused the request for a reason a retry cannot fix (400, 401, 403, 404, 422...)."""


def carry_usage(exc: BaseException, usage: TokenUsage) -> None:
    """Make `exc` carry `usage` (tokens spent before it was raised) on top of any it already carries,
    so the pipeline records them on the failed sample (`pipeline.graph.spent_usage`)."""
    spent = getattr(exc, "usage", None)
    try:
        exc.usage = usage.add(spent) if isinstance(spent, TokenUsage) else usage  # type: ignore[attr-defined]
    except AttributeError:  # an exception type without a __dict__: the tokens stay in the run's totals only
        pass
