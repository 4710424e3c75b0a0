"""The four LLM agents against the local server's scripted model (real HTTP, real offline pairer)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from agents.base import AgentSet, Draft, WorkItem
from agents.llm import build_llm_agents
from agents.llm.critic import duplicate_key
from agents.llm.errors import MalformedOutputError
from agents.llm.local_server import LocalModelServer
from agents.llm.replies import EvidenceReply, WriterReply
from schemas import LETTERS, TaskType, VerifierVerdict
from tests.agents_llm.conftest import FAST, run


def agents_for(server, **options) -> AgentSet:
    return build_llm_agents(server.base_url, server.model, None, {**FAST, **options})


def request_block(request: dict) -> dict:
    """The fenced JSON block an agent put in its user message."""
    content = request["messages"][1]["content"]
    if isinstance(content, list):
        content = "".join(p["text"] for p in content if p["type"] == "text")
    text = content
    return json.loads(text.split("```json", 1)[1].split("```", 1)[0])


def image_sizes(request: dict) -> list[tuple[int, int]]:
    sizes = []
    for part in request["messages"][1]["content"]:
        if isinstance(part, dict) and part["type"] == "image_url":
            url = part["image_url"]["url"]
            assert url.startswith("data:image/png;base64,")
            with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
                assert im.format == "PNG"
                sizes.append(im.size)
    return sizes


async def pair_write_verify(agents: AgentSet, ctx, seed: int):
    images, u1 = await agents.pairer.pair(WorkItem(index=seed, seed=seed), ctx)
    draft, u2 = await agents.writer.write(images, ctx, seed=seed, feedback=[], attempt=0)
    verdict, u3 = await agents.verifier.verify(images, draft, ctx)
    return images, draft, verdict, [u1, u2, u3]


def test_agent_set_identity(server):
    agents = agents_for(server)
    assert (agents.backend, agents.model, agents.prompt_version) == ("openai", server.model, "v1")


def test_pairer_builds_procedurally_and_asks_one_cheap_call(server, ctx):
    agents = agents_for(server)
    images, usage = run(agents.pairer.pair(WorkItem(index=0, seed=11), ctx))
    assert 2 <= len(images.images) <= 4 and images.construction["marked"]
    assert images.construction["llm_domain"] == "object" and images.construction["llm_description"]
    assert usage.calls == 1 and usage.prompt_tokens > 0
    (req,) = server.last_requests
    assert len(image_sizes(req)) == len(images.images)
    assert all(max(s) <= 256 for s in image_sizes(req))
    assert [r.role for r in server.chat_records()] == ["pairer"]


@pytest.mark.parametrize("seed", range(6))
def test_writer_answer_follows_ground_truth_and_verifier_agrees(server, ctx, seed):
    agents = agents_for(server)
    images, draft, verdict, usages = run(pair_write_verify(agents, ctx, seed))
    marked = images.construction["marked"]
    n = len(images.images)
    if draft.task_type == TaskType.ODD_ONE_OUT:
        odd = marked[0] if len(marked) == 1 else next(i for i in range(n) if i not in marked)
        assert draft.answer == LETTERS[odd]
    elif draft.task_type == TaskType.COUNT_ACROSS:
        assert draft.options[LETTERS.index(draft.answer)] == str(len(marked))
    assert draft.evidence and all(0 <= c <= 1 for c in draft.evidence[0].bbox)
    assert verdict.agrees and verdict.answer == draft.answer and verdict.method == "llm"
    assert [u.calls for u in usages] == [1, 1, 1]
    writer_req, verifier_req = list(server.last_requests)[-2:]
    assert "construction" in request_block(writer_req)
    # the verifier never sees the answer, the rationale or the ground truth
    block = request_block(verifier_req)
    assert set(block) == {"n_images", "question", "options"}
    assert draft.rationale not in json.dumps(verifier_req)


def test_writer_revision_carries_the_critic_feedback(server, ctx):
    agents = agents_for(server)
    images, _ = run(agents.pairer.pair(WorkItem(index=0, seed=2), ctx))
    draft, _ = run(agents.writer.write(images, ctx, seed=2, feedback=["Name the detail."], attempt=1))
    block = request_block(server.last_requests[-1])
    assert block["attempt"] == 1 and block["feedback"] == ["Name the detail."]
    assert "revision 1" in draft.question


def test_writer_respects_allowed_task_types(server, ctx):
    ctx.options["task_types"] = ["count_across"]
    agents = agents_for(server)
    images, _ = run(agents.pairer.pair(WorkItem(index=0, seed=3), ctx))
    draft, _ = run(agents.writer.write(images, ctx, seed=3, feedback=[], attempt=0))
    assert draft.task_type == TaskType.COUNT_ACROSS
    assert request_block(server.last_requests[-1])["allowed_task_types"] == ["count_across"]


def test_writer_invalid_drafts_are_reasked_then_fail(server, ctx):
    agents = agents_for(server, json_retries=1)
    images, _ = run(agents.pairer.pair(WorkItem(index=0, seed=4), ctx))
    server.script.overrides["writer"] = lambda facts: {
        "question": "Which?",
        "options": ["Image 1", "Image 2"],
        "answer": "D",
        "task_type": "which_differs",
    }
    with pytest.raises(MalformedOutputError) as err:
        run(agents.writer.write(images, ctx, seed=4, feedback=[], attempt=0))
    assert "answer 'D' is not one of the option letters A, B" in err.value.reason
    assert err.value.usage.calls == 2


def test_writer_reply_checks(ctx, server):
    agents = agents_for(server)
    images, _ = run(agents.pairer.pair(WorkItem(index=0, seed=5), ctx))
    w, h = images.images[0].width, images.images[0].height
    good = {"question": "Q?", "options": ["a", "b", "c"], "answer": "(b)", "task_type": "Odd One Out"}
    draft = WriterReply.model_validate(good).to_draft(images)
    assert draft.answer == "B" and draft.task_type == TaskType.ODD_ONE_OUT
    with pytest.raises(ValueError, match="task_type"):
        WriterReply.model_validate({**good, "task_type": "vibes"})
    with pytest.raises(ValueError, match="not distinct"):
        WriterReply.model_validate({**good, "options": ["a", "a"]})
    pixel_box = WriterReply.model_validate({**good, "evidence": [{"image_index": 0, "bbox": [0, 0, w / 2, h / 4]}]})
    assert pixel_box.to_draft(images).evidence[0].bbox == pytest.approx((0, 0, 0.5, 0.25))
    for bad in ({"image_index": 9, "bbox": [0, 0, 0.5, 0.5]}, {"image_index": 0, "bbox": [0, 0, w * 2, h]}):
        with pytest.raises(ValueError, match="evidence"):
            WriterReply.model_validate({**good, "evidence": [bad]}).to_draft(images)
    with pytest.raises(ValueError):
        EvidenceReply.model_validate({"image_index": 0, "bbox": [0, 0, 1]})


def test_verifier_disagrees_when_the_model_answers_otherwise(server, ctx):
    agents = agents_for(server)
    images, draft, verdict, _ = run(pair_write_verify(agents, ctx, 1))
    assert verdict.agrees
    other = LETTERS[(LETTERS.index(draft.answer) + 1) % len(draft.options)]
    wrong = draft.model_copy(update={"answer": other})
    verdict2, _ = run(agents.verifier.verify(images, wrong, ctx))
    assert not verdict2.agrees and verdict2.answer == draft.answer


def test_critic_accepts_with_two_calls_on_thumbnails_and_registers(server, ctx):
    agents = agents_for(server)
    images, draft, verdict, _ = run(pair_write_verify(agents, ctx, 2))
    n_before = len(server.chat_records())
    critic, usage = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
    assert critic.verdict == "accept" and critic.reasons == []
    assert usage.calls == 2 and len(server.chat_records()) == n_before + 2
    roles = sorted(r.role for r in server.chat_records()[-2:])
    assert roles == ["critic", "critic_blind"]
    last_two = list(server.last_requests)[-2:]
    by_role = {("blind" if "blind guesser" in r["messages"][0]["content"] else "critic"): r for r in last_two}
    assert all(max(s) <= ctx.thumbnail_side for s in image_sizes(by_role["critic"]))
    assert isinstance(by_role["blind"]["messages"][1]["content"], str)  # text only, no images
    assert ctx.registry.seen(duplicate_key(images, draft))
    # the same sample again is a duplicate, decided locally without a call
    again, usage2 = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
    assert again.verdict == "reject" and again.reasons == ["near_duplicate"] and usage2.calls == 0


def test_critic_local_checks_cost_no_call(server, ctx):
    agents = agents_for(server)
    images, draft, verdict, _ = run(pair_write_verify(agents, ctx, 3))
    n_before = len(server.chat_records())
    biased = Draft(
        question="Which image is odd?",
        options=["one", "two", "the third image, which has a tiny recoloured patch"],
        answer="C",
        task_type=TaskType.ODD_ONE_OUT,
    )
    c1, u1 = run(agents.critic.critique(images, biased, verdict, ctx, attempt=0))
    assert c1.verdict == "revise" and c1.reasons == ["option_length_bias"] and "length" in c1.feedback
    c2, u2 = run(agents.critic.critique(images, draft, VerifierVerdict(answer="A", agrees=False), ctx, attempt=0))
    assert c2.verdict == "reject" and "verifier_disagrees" in c2.reasons
    assert u1.calls == u2.calls == 0 and len(server.chat_records()) == n_before


def test_critic_flags_text_only_and_thumbnail_solvable(server, ctx):
    agents = agents_for(server)
    images, draft, verdict, _ = run(pair_write_verify(agents, ctx, 4))
    server.script.overrides["critic_blind"] = lambda facts: {"answer": draft.answer, "confidence": 0.95}
    c1, _ = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
    assert c1.verdict == "revise" and c1.reasons == ["text_only_solvable"] and c1.feedback
    server.script.overrides.pop("critic_blind")
    server.script.overrides["critic"] = lambda facts: {
        "verdict": "accept",
        "reasons": [],
        "thumbnail_answer": draft.answer,
        "confidence": 0.9,
    }
    c2, _ = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
    assert c2.verdict == "reject" and c2.reasons == ["thumbnail_solvable"]
    assert not ctx.registry.seen(duplicate_key(images, draft))


def test_critic_passes_on_the_models_revise_feedback(ctx):
    with LocalModelServer(revise_rate=1.0) as srv:
        agents = agents_for(srv)
        images, draft, verdict, _ = run(pair_write_verify(agents, ctx, 5))
        critic, _ = run(agents.critic.critique(images, draft, verdict, ctx, attempt=0))
    assert critic.verdict == "revise" and critic.reasons == ["ambiguous"]
    assert critic.feedback == "Name the detail more precisely."
