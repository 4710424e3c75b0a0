"""The spending limit of one `mifg generate` invocation: tokens and US dollars over all model calls.

Every call checks the budget before it is sent and adds its usage after; once a limit is reached no
new call starts (`BudgetSpent`), the items it interrupts stay unrecorded, and running the same
command again resumes the run with a fresh budget. Calls already in flight still finish, so a run
may overshoot by what its concurrency has in flight.
"""

from __future__ import annotations

from schemas import TokenUsage
from schemas.errors import BudgetSpent


class Budget:
    """At most `max_cost` USD and `max_tokens` tokens (None: no limit) for this invocation."""

    def __init__(self, max_cost: float | None = None, max_tokens: int | None = None) -> None:
        self.max_cost, self.max_tokens = max_cost, max_tokens
        self.spent = TokenUsage()

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.max_cost is not None or self.max_tokens is not None

    def exhausted(self) -> str | None:
        """Why no new call may start (one line), or None while there is budget left."""
        tokens = self.spent.prompt_tokens + self.spent.completion_tokens
        if self.max_cost is not None and self.spent.cost_usd >= self.max_cost:
            return f"cost budget spent: ${self.spent.cost_usd:.4f} of ${self.max_cost:g}"
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"token budget spent: {tokens} of {self.max_tokens} tokens"
        return None

    def check(self) -> None:
        """Raise BudgetSpent when a limit is reached."""
        why = self.exhausted()
        if why:
            raise BudgetSpent(f"{why}; run the same command again to resume with a new budget")

    def spend(self, usage: TokenUsage) -> None:
        """Add one call's usage."""
        self.spent = self.spent.add(usage)
