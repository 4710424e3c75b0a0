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
