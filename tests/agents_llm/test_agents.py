"""The LLM agents against the local server's scripted model (real HTTP, real offline pairer).

What the issue on VLM agents asks, each checked on request bodies the server received: the verifier
and the probes never see the writer's answer or rationale; the writer never sees the construction
record; the truth known by construction is checked without a model call; each probe rejects a
sample it can solve; the related sets come from the describer's groups, described once per run.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from agents.base import AgentSet, Draft, ImageSet, WorkItem
from agents.llm import build_llm_agents
from agents.llm.critic import duplicate_key
from agents.llm.errors import MalformedOutputError
from agents.llm.local_server import LocalModelServer
from agents.llm.probes import chance_tail, moved_order
from agents.offline.view import glance_size
from schemas import LETTERS, TaskType
from tests.agents_llm.conftest import FAST, run


def agents_for(server, **options) -> AgentSet:
    return build_llm_agents(server.base_url, server.model, None, {**FAST, **options})


def text_of(request: dict) -> str:
    """Every text part of a request (system and user), as one string."""
    out = []
    for m in request["messages"]:
        c = m["content"]
        out.append(c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if p["type"] == "text"))
    return "\n".join(out)


def block_of(request: dict) -> dict:
    """The fenced JSON block of the user message (the system prompt's examples have their own)."""
    text = text_of({"messages": request["messages"][1:]})
    return json.loads(text.split("```json", 1)[1].split("```", 1)[0])


def n_images(request: dict) -> int:
    content = request["messages"][1]["content"]
    return 0 if isinstance(content, str) else sum(1 for p in content if p["type"] == "image_url")


def requests_of(server, marker: str) -> list[dict]:
    return [r for r in server.last_requests if marker in r["messages"][0]["content"].lower()]


async def made(agents: AgentSet, ctx, seed: int, source: str):
    """A set from `source` (the mix forced), its draft and the verifier's verdict."""
    agents.pairer.config.set_mix = {source: 1.0}
    images, _ = await agents.pairer.pair(WorkItem(index=seed, seed=seed), ctx)
    draft, _ = await agents.writer.write(images, ctx, seed=seed, feedback=[], attempt=0)
    verdict, _ = await agents.verifier.verify(images, draft, ctx)
    return images, draft, verdict


def test_agent_set_identity(server):
    agents = agents_for(server)
    assert (agents.backend, agents.model, agents.prompt_version) == ("openai", server.model, "v2")


@pytest.mark.parametrize("source", ["procedural", "views"])
def test_procedural_sets_carry_the_truth_and_the_writer_keeps_to_it(server, ctx, source):
    agents = agents_for(server)
    images, draft, verdict = run(made(agents, ctx, 3, source))
    c = images.construction
    assert c["set_source"] == source and c["truth"]["answer"] in c["truth"]["options"]
    assert (c["family"] in ("crop_match", "zoom_locate")) == (source == "views")
    assert draft.task_type == TaskType(c["family"])
    assert draft.options[LETTERS.index(draft.answer)] == c["truth"]["answer"]
    assert verdict.agrees and verdict.method == "llm+construction" and len(verdict.votes) == 3
    assert verdict.vote_share == 1.0 and verdict.model == server.model
    (writer,) = requests_of(server, "question writer")
    facts = block_of(writer)
    assert facts["family"] == c["family"] and facts["truth"]["answer"] == c["truth"]["answer"]
    # the writer is told the truth, never the construction record (roles, edit boxes, source photo)
    for leak in ("image_roles", "photo_index", "all_edits", "detail_px", c["source"]):
        assert leak not in text_of(writer)
    assert "worked examples" in text_of(writer).lower() and f"# {c['family']}" in writer["messages"][0]["content"]


def test_verifier_votes_blind_on_shuffled_options(server, ctx):
    agents = agents_for(server, verifier_votes=5)
    images, draft, verdict = run(made(agents, ctx, 5, "procedural"))
    votes = requests_of(server, "answer verifier")
    assert len(votes) == 5 and verdict.agrees and verdict.votes == [draft.answer] * 5
    orders = {tuple(block_of(v)["options"].values()) for v in votes}
    assert len(orders) > 1, "the options are shuffled per vote"
    for v in votes:
        text = text_of(v)
        assert draft.rationale not in text and "rationale" not in text and "answer is" not in text.lower()
        assert n_images(v) == len(images.images)


def test_a_writer_that_contradicts_the_truth_is_rejected_without_a_vote(ctx):
    with LocalModelServer(keep_bodies=200, behaviour={"writer": "wrong"}) as srv:
        agents = agents_for(srv)
        images, draft, verdict = run(made(agents, ctx, 2, "procedural"))
        critic, usage = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
        roles = Counter(r.role for r in srv.chat_records())
    assert verdict.method == "construction" and not verdict.agrees and "construction says" in verdict.notes
    assert critic.verdict == "reject" and critic.reasons == ["construction_mismatch"] and usage.calls == 0
    assert roles == {"writer": 1}


def test_the_verifier_can_be_another_model_on_another_endpoint(ctx):
    with LocalModelServer(keep_bodies=200) as main, LocalModelServer(models=("judge-vlm",), keep_bodies=200) as judge:
        opts = {"verifier_model": "judge-vlm", "verifier_base_url": judge.base_url}
        agents = agents_for(main, **opts)
        images, draft, verdict = run(made(agents, ctx, 4, "procedural"))
        main_roles = Counter(r.role for r in main.chat_records())
        judge_roles = Counter(r.role for r in judge.chat_records())
    assert main_roles == {"writer": 1} and judge_roles == {"verifier": 3}
    assert verdict.model == "judge-vlm" and {r.model for r in judge.chat_records()} == {"judge-vlm"}


def test_probes_accept_a_sample_none_can_solve_and_never_see_the_answer(server, ctx):
    agents = agents_for(server)
    images, draft, verdict = run(made(agents, ctx, 6, "procedural"))
    critic, usage = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
    assert critic.verdict == "accept" and critic.reasons == []
    names = [p.name for p in critic.probes]
    moved = moved_order(draft, len(images.images)) is not None
    assert names == ["text_only", "glance", *(["reordered"] if moved else []), "single_image"]
    assert all(not p.rejected and p.tries >= 3 for p in critic.probes)
    assert {part.name for part in usage.parts} == {f"probe:{n}" for n in names}
    probes = requests_of(server, "solver answering")
    assert len(probes) == usage.calls
    for p in probes:
        text = text_of(p)
        assert draft.rationale not in text and "claimed" not in text and "rationale" not in text
    seen = Counter(n_images(p) for p in probes)
    assert seen[0] == 3 and seen[1] == 3 * len(images.images)  # text only; each image alone
    glance = [p for p in probes if n_images(p) == len(images.images)][:3]
    assert glance and max(glance_size(images.images[0].width, images.images[0].height)) < images.images[0].width
    assert run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))[0].reasons == ["near_duplicate"]
    assert ctx.registry.seen(duplicate_key(images, draft))


@pytest.mark.parametrize(
    "probe, reason",
    [
        ("text_only", "text_only_solvable"),
        ("glance", "glance_solvable"),
        ("single_image", "single_image_solvable"),
        ("reordered", "position_bias"),
    ],
)
def test_each_probe_rejects_a_sample_it_can_solve(ctx, probe, reason):
    with LocalModelServer(keep_bodies=400, behaviour={f"probe:{probe}": "right"}) as srv:
        agents = agents_for(srv, probes=[probe])
        for seed in range(40):  # the reordered probe needs an answer naming an image other than Image 1
            images, draft, verdict = run(made(agents, ctx, seed, "procedural"))
            if probe != "reordered" or moved_order(draft, len(images.images)):
                break
        critic, _ = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
    (outcome,) = critic.probes
    assert critic.verdict == "reject" and critic.reasons == [reason]
    assert outcome.name == probe and outcome.rejected and outcome.right == outcome.tries
    assert outcome.p_value < 0.05


def test_chance_tail_and_moved_order():
    assert chance_tail(0, 3, 4) == pytest.approx(1.0)
    assert chance_tail(3, 3, 4) == pytest.approx(1 / 64)
    assert chance_tail(3, 3, 2) == pytest.approx(1 / 8)  # 3 right of 3 on two options is no evidence
    d = Draft(question="q", options=["Image 2", "Image 3", "Image 4"], answer="B", task_type=TaskType.WHICH_DIFFERS)
    assert moved_order(d, 4) == [0, 2, 3, 1]  # Image 1 stays, every other image moves
    counts = d.model_copy(update={"options": ["0", "1", "2"]})
    assert moved_order(counts, 4) is None


def test_related_sets_come_from_the_describers_groups_described_once(server, ctx):
    agents = agents_for(server)
    agents.pairer.config.set_mix = {"related": 1.0}
    families = Counter()
    for seed in range(12):
        images, usage = run(agents.pairer.pair(WorkItem(index=seed, seed=seed), ctx))
        c = images.construction
        families[c["family"]] += 1
        assert c["set_source"] == "related" and len({r.sha256 for r in images.images}) == len(images.images)
        if c["family"] == "same_source":
            colours = [agents.pairer.describer.known[r.sha256].tags[0] for r in images.images]
            truth = c["truth"]["answer"]
            same = [i + 1 for i, col in enumerate(colours) if i and col == colours[0]]
            assert truth == (f"Image {same[0]}" if same else "None of the images")
            assert len(same) <= 1, "one other shot of Image 1's subject at most"
    assert families["same_source"] and families["attribute_compare"]
    described = Counter(r.role for r in server.chat_records())["describer"]
    assert described == len(ctx.pool.photos)
    lines = (ctx.image_dir.parent / "descriptions.jsonl").read_text().splitlines()
    assert len(lines) == len(ctx.pool.photos)
    # a resumed run (new agents, same run directory) reads them back instead of asking again
    again = agents_for(server)
    again.pairer.config.set_mix = {"related": 1.0}
    run(again.pairer.pair(WorkItem(index=99, seed=99), ctx))
    assert Counter(r.role for r in server.chat_records())["describer"] == described


def test_writer_options_other_than_the_truths_are_reasked_then_fail(server, ctx):
    agents = agents_for(server)
    agents.pairer.config.set_mix = {"procedural": 1.0}
    images, _ = run(agents.pairer.pair(WorkItem(index=1, seed=1), ctx))
    server.script.overrides["writer"] = lambda facts: {
        "question": "Which one?",
        "options": ["Image 7", "Image 8"],
        "answer": "A",
        "rationale": "",
        "evidence": [],
    }
    with pytest.raises(MalformedOutputError, match="use exactly these options"):
        run(agents.writer.write(images, ctx, seed=1, feedback=[], attempt=0))


@pytest.mark.parametrize("how", ["refuse", "malformed"])
def test_a_refusing_or_garbled_verifier_fails_the_sample_with_a_reason(ctx, how):
    with LocalModelServer(behaviour={"verifier": how}) as srv:
        agents = agents_for(srv)
        agents.pairer.config.set_mix = {"procedural": 1.0}
        images, _ = run(agents.pairer.pair(WorkItem(index=1, seed=1), ctx))
        draft, _ = run(agents.writer.write(images, ctx, seed=1, feedback=[], attempt=0))
        with pytest.raises(MalformedOutputError, match="malformed_output"):
            run(agents.verifier.verify(images, draft, ctx))


def test_draft_construction_check_names_missing_and_wrong_answers():
    from agents.llm.verifier import construction_mismatch

    images = ImageSet(images=[], construction={"truth": {"answer": "Image 3", "options": ["Image 2", "Image 3"]}})
    ok = Draft(question="q", options=["Image 2", "Image 3"], answer="B", task_type=TaskType.WHICH_DIFFERS)
    assert construction_mismatch(images, ok) is None
    assert "construction says B" in construction_mismatch(images, ok.model_copy(update={"answer": "A"}))
    gone = ok.model_copy(update={"options": ["Image 2", "Image 4"]})
    assert "missing" in construction_mismatch(images, gone)
    assert construction_mismatch(ImageSet(images=[], construction={}), ok) is None


def test_related_groups_by_embeddings_when_a_model_is_given(server, ctx):
    agents = agents_for(server, embeddings_model="embed-small")
    agents.pairer.config.set_mix = {"related": 1.0}
    images, usage = run(agents.pairer.pair(WorkItem(index=0, seed=0), ctx))
    assert server.counters["embeddings"] == len(ctx.pool.photos)  # one batch: every caption once
    assert "embeddings" in {p.name for p in usage.parts}
    assert agents.pairer._groups == [[0, 1], [2, 3]]  # the two blue seas, the two red grounds


class _NoSetPairer:
    """An offline pairer that can make nothing on this pool (as on a folder of small photos)."""

    def make(self, item, ctx):
        raise ValueError("could not make a set from the drawn photos")


def test_a_source_that_cannot_make_a_set_falls_back_to_another_of_the_mix(server, ctx):
    agents = agents_for(server)
    agents.pairer._bases = {"procedural": _NoSetPairer(), "views": _NoSetPairer()}
    agents.pairer.config.set_mix = {"procedural": 1.0, "related": 1e-9}  # always drawn procedural
    images, _ = run(agents.pairer.pair(WorkItem(index=3, seed=3), ctx))
    assert images.construction["set_source"] == "related"
    assert images.construction["set_drawn"] == "procedural"
    assert len({r.sha256 for r in images.images}) == len(images.images)  # different photos
    # a mix of procedural only has nothing to fall back to: the item fails with the source's reason
    agents.pairer.config.set_mix = {"procedural": 1.0}
    with pytest.raises(ValueError, match="procedural: could not make a set"):
        run(agents.pairer.pair(WorkItem(index=4, seed=4), ctx))
