"""Token accounting and cost: a response's usage as `schemas.TokenUsage`, priced by an optional table."""

from __future__ import annotations

from typing import Any

from schemas import TokenUsage


def price_of(prices: dict[str, Any] | None, model: str) -> tuple[float, float]:
    """USD per 1M (prompt, completion) tokens for `model`; (0, 0) when no table is given.

    Accepts either a flat table `{"prompt_per_1m": 2.5, "completion_per_1m": 10}` or one keyed by
    model name `{"gpt-4o": {...}, "default": {...}}`.
    """
    if not prices:
        return 0.0, 0.0
    table = prices.get(model) or prices.get("default") or prices
    return float(table.get("prompt_per_1m", 0.0)), float(table.get("completion_per_1m", 0.0))


def usage_of(response: dict[str, Any], prices: tuple[float, float]) -> TokenUsage:
    """Usage of one chat completion (its JSON as a dict; 1 call), with cost from per-1M prices."""
    u = response.get("usage") if isinstance(response, dict) else None
    u = u if isinstance(u, dict) else {}
    prompt = int(u.get("prompt_tokens") or 0)
    completion = int(u.get("completion_tokens") or 0)
    cost = (prompt * prices[0] + completion * prices[1]) / 1_000_000
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, calls=1, cost_usd=cost)
