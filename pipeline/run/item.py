"""One work item: run its graph in this process's event loop, wherever that process is."""

from __future__ import annotations

import time

from agents.base import AgentContext, WorkItem
from pipeline.duplicate_registry import RunRegistry
from pipeline.graph import GenState, failure_code, failure_fields, initial_state, recursion_limit


async def run_item(graph, ctx: AgentContext, idx: int, seed: int, max_revisions: int) -> tuple[GenState, float]:
    """Run the graph for one work item; any error becomes a failed state (never raises, except cancel)."""
    item = WorkItem(index=idx, seed=seed)
    t0 = time.perf_counter()
    with RunRegistry.item_scope(idx):
        try:
            state = await graph.ainvoke(
                initial_state(item), context=ctx, config={"recursion_limit": recursion_limit(max_revisions)}
            )
        except Exception as e:  # noqa: BLE001 - a graph-level error fails the item, not the batch
            state = {**initial_state(item), "outcome": "failed", **failure_fields("graph", e)}
    return state, time.perf_counter() - t0


def budget_spent(state: GenState) -> bool:
    """Whether the item stopped because the run's token or cost budget is spent."""
    return failure_code(state.get("failure") or "").endswith(":BudgetSpent")
