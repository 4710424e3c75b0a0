"""build_offline_agents and the four agents working together as the graph drives them."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from agents.base import AgentContext, AgentSet, WorkItem
from agents.offline import PROMPT_VERSION, REASON_CODES, build_offline_agents
from agents.offline.calibration import run_one
from agents.offline.edits import EDIT_KINDS
from schemas import TaskType


def test_build_returns_an_offline_agent_set() -> None:
    agents = build_offline_agents()
    assert isinstance(agents, AgentSet)
    assert agents.backend == "offline" and agents.model == "" and agents.prompt_version == PROMPT_VERSION
    for agent, method in [
        (agents.pairer, "pair"),
        (agents.writer, "write"),
        (agents.verifier, "verify"),
        (agents.critic, "critique"),
    ]:
        assert asyncio.iscoroutinefunction(getattr(agent, method))


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="unknown offline agent option.*colour"):
        build_offline_agents({"colour": 1})
    with pytest.raises(ValueError, match="kinds"):
        build_offline_agents({"kinds": ["explode"]})
    only = build_offline_agents({"kinds": ["remove"], "related_rate": 0.0})
    assert only.pairer.kinds == ("remove",)


def test_reason_codes_are_documented() -> None:
    for code, (decision, meaning) in REASON_CODES.items():
        assert code.islower() and " " not in code
        assert decision in ("accept", "reject", "revise", "revise|reject") and meaning


def test_the_four_agents_accept_most_samples_across_task_types(stereo_ctx: AgentContext) -> None:
    # the opt-in drawn kinds on 512-px copies (the default natural families are tested in test_scene_families)
    agents = build_offline_agents({"kinds": list(EDIT_KINDS)})
    outcomes: Counter[str] = Counter()
    accepted_tasks: Counter[str] = Counter()
    reasons: Counter[str] = Counter()

    async def run() -> None:
        for i in range(60):
            outcome, task, why = await run_one(agents, WorkItem(index=i, seed=500 + i), stereo_ctx, max_revisions=2)
            outcomes[outcome] += 1
            reasons.update(r for r in why if not r.startswith("revised:"))
            if outcome == "accepted":
                accepted_tasks[task] += 1

    asyncio.run(run())
    rate = outcomes["accepted"] / 60
    assert 0.45 <= rate <= 0.95, (outcomes, reasons)
    assert len(accepted_tasks) >= 4, accepted_tasks
    assert set(reasons) <= set(REASON_CODES)
    assert len(stereo_ctx.registry.keys) == outcomes["accepted"]
    assert TaskType.SAME_SOURCE.value in accepted_tasks or stereo_ctx.pool.related == []
