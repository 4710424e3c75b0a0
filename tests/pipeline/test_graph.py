"""The agent graph: accept path, the revise loop bound, verifier disagreement, agent failures."""

from __future__ import annotations

import asyncio

import pytest

from agents.base import AgentContext, WorkItem
from pipeline.duplicate_registry import RunRegistry
from pipeline.graph import build_graph, failure_code, initial_state, recursion_limit
from pipeline.image_sources import directory_source
from pipeline.photo_pool import build_pool
from tests.pipeline.agent_doubles import make_agents


@pytest.fixture(scope="module")
def ctx(photo_dir, tmp_path_factory):
    image_dir = tmp_path_factory.mktemp("cache")
    pool, _ = build_pool(directory_source(photo_dir), image_dir)
    return AgentContext(image_dir=image_dir, pool=pool, registry=RunRegistry())


def _run(agents, ctx, k: int, seed: int = 3):
    graph = build_graph(agents, k)
    state = initial_state(WorkItem(index=0, seed=seed))
    # a generous recursion limit: the bound must come from the counter in state, not from LangGraph
    return asyncio.run(graph.ainvoke(state, context=ctx, config={"recursion_limit": 1000}))


def test_accept_path(ctx):
    out = _run(make_agents("accept"), ctx, 2, seed=4)
    assert out["outcome"] == "accepted"
    assert out["revisions"] == 0
    assert out["usage"].calls == 4  # one call per agent, summed in state
    assert out["draft"].answer in "ABC"


@pytest.mark.parametrize("k", [0, 1, 3])
def test_revise_loop_ends_after_k_revisions(ctx, k):
    agents = make_agents("revise")
    out = _run(agents, ctx, k, seed=4)
    assert out["outcome"] == "rejected"
    assert out["revisions"] == k
    assert agents.critic.calls == k + 1
    assert len(out["critic_history"]) == k + 1
    assert out["reasons"][0] == "revise_limit" and "option_bias" in out["reasons"]
    assert out["draft"].question.endswith(f"(revision {k})") if k else "(revision" not in out["draft"].question
    assert len(out["feedback"]) == k


def test_recursion_limit_is_never_the_bound(ctx):
    graph = build_graph(make_agents("revise"), 5)
    state = initial_state(WorkItem(index=0, seed=4))
    out = asyncio.run(graph.ainvoke(state, context=ctx, config={"recursion_limit": recursion_limit(5)}))
    assert out["revisions"] == 5 and out["outcome"] == "rejected"


def test_agent_exception_becomes_a_failure_with_reason(ctx):
    out = _run(make_agents("raise"), ctx, 2, seed=4)
    assert out["outcome"] == "failed"
    assert out["failed_stage"] == "critique"
    assert "malformed model JSON after 3 attempts" in out["failure"]
    assert failure_code(out["failure"]) == "critique:ValueError"


def test_verifier_disagreement_rejects_without_critic(ctx):
    agents = make_agents("accept")
    seeds = [s for s in range(40) if _run(agents, ctx, 2, seed=s)["outcome"] == "rejected"]
    assert seeds, "the pixel verifier of the doubles cannot tell two-image sets apart half of the time"
    out = _run(make_agents("accept"), ctx, 2, seed=seeds[0])
    assert out["reasons"] == ["verifier_disagrees"] and out["critic_history"] == []
