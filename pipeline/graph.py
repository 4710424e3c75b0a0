"""The MIFG-QA agent graph: pairer -> writer -> verifier -> critic, with a bounded revise loop.

    START -> pair -> write -> verify --agrees--> critique --accept--> accept -> END
                       ^         \\--disagrees------------------------> reject -> END
                       |                         --reject-----------> reject
                       \\------revise (revisions < K)------/
                                                 --revise, K reached-> reject
    any node raising -> fail -> END

State holds small models only (refs to cached PNGs, the draft, verdicts, usage, a revision
counter): never image bytes. The loop is bounded by `revisions` in state, not by LangGraph's
`recursion_limit`, so hitting the bound is an ordinary "rejected: revise_limit" outcome.
"""

from __future__ import annotations

import traceback
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from agents.base import AgentContext, AgentSet, Draft, ImageSet, WorkItem
from schemas import CriticVerdict, TokenUsage, VerifierVerdict


class GenState(TypedDict, total=False):
    """Graph state of one sample (every field small and JSON-able)."""

    item: WorkItem
    images: ImageSet | None
    draft: Draft | None
    verdict: VerifierVerdict | None
    critic: CriticVerdict | None
    critic_history: list[CriticVerdict]  # every critic verdict, including the revise ones
    feedback: list[str]  # critic feedback handed to the writer on revision
    revisions: int  # how many times the writer revised (0 = first draft accepted/rejected)
    usage: TokenUsage
    outcome: Literal["accepted", "rejected", "failed"]
    reasons: list[str]  # rejection reason codes
    failure: str  # "<stage>: <ExceptionType>: <message>" for failed samples
    failed_stage: str


def initial_state(item: WorkItem) -> GenState:
    """The state a sample starts from."""
    return GenState(
        item=item,
        images=None,
        draft=None,
        verdict=None,
        critic=None,
        critic_history=[],
        feedback=[],
        revisions=0,
        usage=TokenUsage(),
        reasons=[],
    )


MAX_FAILURE_CHARS = 400


def failure_fields(stage: str, exc: BaseException) -> dict[str, Any]:
    """State fields recording that `stage` raised `exc` (one line, with the innermost frame)."""
    msg = " ".join(str(exc).split()) or "(no message)"
    text = f"{stage}: {type(exc).__name__}: {msg}"
    if len(text) > MAX_FAILURE_CHARS:
        text = text[: MAX_FAILURE_CHARS - 3] + "..."
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" [{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}]" if tb else ""
    return {"failure": text + where, "failed_stage": stage}


def spent_usage(exc: BaseException) -> TokenUsage:
    """Tokens a failing agent had already spent (billed): an `LLMCallError` and a pairer that described
    the pool before failing carry them as `usage`; any other exception spent nothing we know of."""
    usage = getattr(exc, "usage", None)
    return usage if isinstance(usage, TokenUsage) else TokenUsage()


def _failed(stage: str, exc: BaseException, state: GenState) -> dict[str, Any]:
    """A node's failure: the failure fields, and the usage so far plus what the failed call spent, so the
    item record (and `mifg stats`) still count the tokens of a sample that failed."""
    return {**failure_fields(stage, exc), "usage": state["usage"].add(spent_usage(exc))}


def failure_code(failure: str) -> str:
    """`"stage:ExceptionType"` of a failure text, the key `mifg stats` groups failures by."""
    parts = [p.strip() for p in failure.split(":", 2)]
    return ":".join(parts[:2]) if len(parts) >= 2 and parts[1] else (parts[0] or "unknown")


def build_graph(agents: AgentSet, max_revisions: int):
    """Compile the whole pairer -> writer -> verifier -> critic graph for one backend's agents."""
    if max_revisions < 0:
        raise ValueError("max_revisions must be >= 0")

    async def pair(state: GenState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        try:
            images, usage = await agents.pairer.pair(state["item"], runtime.context)
        except Exception as e:  # noqa: BLE001 - an agent failure fails this sample, never the batch
            return _failed("pair", e, state)
        return {"images": images, "usage": state["usage"].add(usage)}

    async def write(state: GenState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        try:
            draft, usage = await agents.writer.write(
                state["images"],
                runtime.context,
                seed=state["item"].seed,
                feedback=list(state["feedback"]),
                attempt=state["revisions"],
            )
        except Exception as e:  # noqa: BLE001
            return _failed("write", e, state)
        return {"draft": draft, "usage": state["usage"].add(usage)}

    async def verify(state: GenState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        try:
            verdict, usage = await agents.verifier.verify(state["images"], state["draft"], runtime.context)
        except Exception as e:  # noqa: BLE001
            return _failed("verify", e, state)
        return {"verdict": verdict, "usage": state["usage"].add(usage)}

    async def critique(state: GenState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        try:
            critic, usage = await agents.critic.critique(
                state["images"], state["draft"], state["verdict"], runtime.context, attempt=state["revisions"]
            )
        except Exception as e:  # noqa: BLE001
            return _failed("critique", e, state)
        update: dict[str, Any] = {
            "critic": critic,
            "critic_history": [*state["critic_history"], critic],
            "usage": state["usage"].add(usage),
        }
        if critic.verdict == "revise" and state["revisions"] < max_revisions:
            feedback = critic.feedback or "; ".join(critic.reasons) or "revise the question"
            update["feedback"] = [*state["feedback"], feedback]
            update["revisions"] = state["revisions"] + 1
        return update

    async def accept(state: GenState) -> dict[str, Any]:
        return {"outcome": "accepted", "reasons": []}

    async def reject(state: GenState) -> dict[str, Any]:
        verdict, critic = state.get("verdict"), state.get("critic")
        if verdict is not None and not verdict.agrees:
            reasons = ["verifier_disagrees"]
        elif critic is not None and critic.verdict == "revise":
            reasons = ["revise_limit", *critic.reasons]
        else:
            reasons = list(critic.reasons) if critic is not None and critic.reasons else ["critic_rejected"]
        return {"outcome": "rejected", "reasons": reasons}

    async def fail(state: GenState) -> dict[str, Any]:
        return {"outcome": "failed"}

    def ok_or_fail(next_node: str):
        async def route(state: GenState) -> str:
            return "fail" if state.get("failure") else next_node

        return route

    async def after_verify(state: GenState) -> str:
        if state.get("failure"):
            return "fail"
        return "critique" if state["verdict"].agrees else "reject"

    async def after_critique(state: GenState) -> str:
        if state.get("failure"):
            return "fail"
        critic = state["critic"]
        if critic.verdict == "accept":
            return "accept"
        if critic.verdict == "revise" and state["revisions"] == len(state["critic_history"]):
            return "write"  # `critique` granted this revision (it bumps `revisions` only while < K)
        return "reject"

    # Every node and router is a coroutine function: LangGraph runs a plain function in a thread pool
    # (one thread hop each, five per sample), which costs more than these few lines themselves.
    g = StateGraph(GenState, context_schema=AgentContext)
    g.add_node("pair", pair)
    g.add_node("write", write)
    g.add_node("verify", verify)
    g.add_node("critique", critique)
    g.add_node("accept", accept)
    g.add_node("reject", reject)
    g.add_node("fail", fail)
    g.add_edge(START, "pair")
    g.add_conditional_edges("pair", ok_or_fail("write"), ["write", "fail"])
    g.add_conditional_edges("write", ok_or_fail("verify"), ["verify", "fail"])
    g.add_conditional_edges("verify", after_verify, ["critique", "reject", "fail"])
    g.add_conditional_edges("critique", after_critique, ["accept", "reject", "write", "fail"])
    for end_node in ("accept", "reject", "fail"):
        g.add_edge(end_node, END)
    return g.compile()


def recursion_limit(max_revisions: int) -> int:
    """A recursion limit that the bounded loop can never reach (steps per pass x passes + margin)."""
    return 4 + 3 * (max_revisions + 1) + 4
