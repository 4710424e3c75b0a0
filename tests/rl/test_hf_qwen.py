"""The transformers Qwen2.5-VL policy on a tiny random model: rollout layout, scoring, a train step, eval.

A random model never writes a valid tool call, so scripted turns (`policy.turn_script`) force chosen
texts through the real `generate` path (a logits processor), which records their real log-probs.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5.5.4")  # rl.policies.hf_qwen.MIN_TRANSFORMERS

from rl.advantages import group_advantages  # noqa: E402
from rl.env import EnvConfig  # noqa: E402
from rl.loss import LossConfig, policy_loss  # noqa: E402
from rl.masking import MaskConfig, loss_mask  # noqa: E402
from rl.parsing import format_answer, format_tool_call  # noqa: E402
from rl.policies import build_policy  # noqa: E402
from rl.policies.base import GenerationConfig, Policy, PolicyConfig  # noqa: E402
from rl.policies.hf_qwen import attention_shares  # noqa: E402
from rl.rewards import RewardConfig, score  # noqa: E402
from rl.trajectory import pad_stack  # noqa: E402
from schemas.errors import ConfigError  # noqa: E402
from tests.factories import make_sample  # noqa: E402
from tests.rl.conftest import scripted  # noqa: E402  (fixtures model_dir, policy: tests/rl/conftest.py)

CROP = format_tool_call("visual_confirmation", {"image": 2, "bbox_2d": [0.4, 0.4, 0.7, 0.7]})
REFLECT = format_tool_call("visual_reflection", {"images": [1]})
GEN = GenerationConfig(max_new_tokens=48, max_total_tokens=1024)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_policy_satisfies_protocol_and_rejects_bad_path(policy, tmp_path) -> None:
    assert isinstance(policy, Policy) and policy.name == "hf"
    assert policy.device.type == "cpu"
    with pytest.raises(ConfigError):
        build_policy(PolicyConfig(kind="hf", model_path=str(tmp_path / "nope")))


def test_scripted_multi_turn_rollout_layout(policy) -> None:
    samples = [make_sample(0, n_images=2), make_sample(1, n_images=3)]
    policy.turn_script = scripted({0: [CROP, format_answer("A")], 2: [REFLECT, "thinking... " + format_answer("C")]})
    torch.manual_seed(0)
    trajs = policy.rollout(samples, 2, EnvConfig(), GEN, group_offset=10)
    assert [t.group_id for t in trajs] == [10, 10, 11, 11]
    tok = policy.tokenizer
    for k, script in ((0, [CROP, format_answer("A")]), (2, [REFLECT, "thinking... " + format_answer("C")])):
        t = trajs[k]
        assert t.turns == script and not t.truncated and not t.image_token_mismatch and t.ok
        # The action mask is 1 exactly on the generated tokens: each scripted turn + its <|im_end|>.
        expected = [tok(s, add_special_tokens=False)["input_ids"] + [policy.im_end_id] for s in script]
        gen_ids = t.token_ids[t.action_mask > 0].tolist()
        assert gen_ids == [i for turn in expected for i in turn]
        runs = [(a, b) for a, b in _runs(t.action_mask)]
        assert [t.token_ids[a:b].tolist() for a, b in runs] == expected
        # Placeholders match images: prompt images + the tool's image, all in the trajectory's order.
        grid = t.extras["image_grid_thw"]
        assert len(t.images) == grid.shape[0] == samples[k // 2].images.__len__() + 1
        assert int((t.token_ids == policy.image_token_id).sum()) == int((grid.prod(-1) // 4).sum())
        assert t.extras["pixel_values"].shape[0] == int(grid.prod(-1).sum())
        assert not (t.action_mask[t.token_ids == policy.image_token_id] > 0).any()
        assert (t.old_logprobs[t.action_mask == 0] == 0).all() and (t.old_logprobs[t.action_mask > 0] < 0).all()
    assert trajs[0].tool_calls == {"visual_confirmation": 1} and trajs[0].answer == "A" and trajs[0].n_turns == 2
    assert trajs[2].tool_calls == {"visual_reflection": 1} and trajs[2].answer == "C"
    # The observation was appended as its own segment, in the chat template's tool-turn form.
    text = tok.decode(trajs[0].token_ids, skip_special_tokens=False)
    assert "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n<|vision_start|>" in text
    assert text.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n<answer>A</answer><|im_end|>")


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    from rl.policies.hf_qwen import _turn_spans

    return _turn_spans(mask)


def test_token_logprobs_match_rollout_logprobs(policy) -> None:
    """No re-tokenisation drift: scoring the stored ids gives the log-probs recorded while sampling."""
    samples = [make_sample(2, n_images=2), make_sample(3, n_images=3)]
    policy.turn_script = scripted({0: [CROP, format_answer("B")], 3: ["x" + REFLECT]})
    torch.manual_seed(1)
    gen = GenerationConfig(max_new_tokens=24, max_total_tokens=1024, temperature=0.7)
    policy.max_generate_rows = 3  # one generate of 3 left-padded rows and one of a single row per turn
    trajs = policy.rollout(samples, 2, EnvConfig(max_turns=2), gen)  # scripted and sampled rows, mixed lengths
    assert len({len(t) for t in trajs}) > 1
    policy.train()
    logp, ent = policy.token_logprobs(trajs, with_entropy=True)
    assert logp.requires_grad and logp.shape == ent.shape == (4, max(len(t) for t in trajs))
    old, mask = pad_stack([t.old_logprobs for t in trajs]), pad_stack([t.action_mask for t in trajs]) > 0
    assert torch.allclose(logp[mask], old[mask], atol=1e-4), (logp[mask] - old[mask]).abs().max()
    assert (logp[~mask] == 0).all() and (ent[mask] > 0).all()


def test_sampling_follows_gen_cfg_and_never_emits_vision_tokens(policy) -> None:
    policy.turn_script = None
    # Settings in the checkpoint's generation_config.json must not leak into RL sampling.
    policy._core.generation_config.top_k = 1
    policy._core.generation_config.repetition_penalty = 1.5
    torch.manual_seed(2)
    trajs = policy.rollout([make_sample(4)], 3, EnvConfig(max_turns=2), GenerationConfig(max_new_tokens=24))
    first_turns = {tuple(t.token_ids[t.action_mask > 0][:8].tolist()) for t in trajs}
    assert len(first_turns) == 3  # real sampling (top_k=1 would make all three identical)
    for t in trajs:
        generated = t.token_ids[t.action_mask > 0]
        assert not torch.isin(generated, torch.tensor(policy.forbidden_ids)).any()
        assert t.truncated or t.over_turns or t.answer is not None  # every episode ended for a reason


def test_generated_image_token_is_flagged_not_crashed(policy) -> None:
    policy.turn_script = scripted({0: ["look <|image_pad|> here " + format_answer("A")], 1: [format_answer("A")]})
    trajs = policy.rollout([make_sample(5)], 2, EnvConfig(), GEN)
    assert trajs[0].image_token_mismatch and not trajs[0].ok
    assert not trajs[1].image_token_mismatch and trajs[1].answer == "A"
    logp, _ = policy.token_logprobs(trajs)  # the batch with a broken row still scores
    assert torch.isfinite(logp).all()


def test_truncation_never_cuts_an_image(policy) -> None:
    policy.turn_script = scripted({0: [CROP, format_answer("A")]})
    full = policy.rollout([make_sample(6)], 1, EnvConfig(), GEN)[0]
    prompt_len = int((full.action_mask > 0).nonzero()[0])
    first_turn = len(policy.tokenizer(CROP)["input_ids"]) + 1
    budget = prompt_len + first_turn + 5  # room for the first turn, not for the crop observation
    cut = policy.rollout(
        [make_sample(6)], 1, EnvConfig(), GenerationConfig(max_new_tokens=48, max_total_tokens=budget)
    )[0]
    assert cut.truncated and len(cut) <= budget and len(cut.images) == 2  # the crop was never appended
    grid = cut.extras["image_grid_thw"]
    assert int((cut.token_ids == policy.image_token_id).sum()) == int((grid.prod(-1) // 4).sum())
    # A turn cut by max_new_tokens is truncated too, with every sampled token kept under the mask.
    short = policy.rollout([make_sample(6)], 1, EnvConfig(), GenerationConfig(max_new_tokens=5))[0]
    assert short.truncated and short.response_length == 5


def grpo_step(policy, trajs, opt, mask_cfg: MaskConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """One GRPO update from rl/: rewards -> group advantages -> two-level mask -> clipped loss."""
    rewards = torch.tensor(score(trajs, RewardConfig()))
    adv = group_advantages(rewards, torch.tensor([t.group_id for t in trajs]))
    mask = loss_mask(trajs, mask_cfg)
    old = pad_stack([t.old_logprobs for t in trajs])
    logp, ent = policy.token_logprobs(trajs, with_entropy=True)
    loss, metrics = policy_loss(logp, old, adv, mask, LossConfig(), entropy=ent)
    opt.zero_grad()
    loss.backward()
    return loss, metrics


def test_train_step_updates_weights_and_masked_tokens_get_no_gradient(policy) -> None:
    s0, s1 = make_sample(7, answer_index=0), make_sample(8, answer_index=1)
    policy.turn_script = scripted(
        {
            0: [CROP, format_answer("A")],  # correct with a tool: reward 2.2
            1: [format_answer("B")],  # wrong: reward 0.2
            2: [format_answer("B")],  # correct, no tool
            3: ["<answer>A</answer>"],
        }
    )
    trajs = policy.rollout([s0, s1], 2, EnvConfig(), GEN)
    trajs[3].truncated = True  # a trajectory-level failure: masked out whole
    policy.train()
    # Per token: d loss / d logp is zero wherever the two-level mask is zero
    # (prompt, observations, masked trajectory); before any update the ratio is 1, so nothing is clipped.
    rewards = torch.tensor(score(trajs, RewardConfig()))
    adv = group_advantages(rewards, torch.tensor([t.group_id for t in trajs]))
    mask = loss_mask(trajs, MaskConfig())
    logp, _ = policy.token_logprobs(trajs)
    logp.retain_grad()
    loss, _ = policy_loss(logp, pad_stack([t.old_logprobs for t in trajs]), adv, mask, LossConfig())
    loss.backward()
    assert (logp.grad[mask == 0] == 0).all() and (logp.grad[3] == 0).all()
    assert (logp.grad[0][mask[0] > 0] != 0).all()

    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    before = {n: p.detach().clone() for n, p in policy.module.named_parameters()}
    loss, metrics = grpo_step(policy, trajs, opt, MaskConfig())
    grads = {n: p.grad.clone() for n, p in policy.module.named_parameters() if p.grad is not None}
    assert torch.isfinite(loss) and metrics["ratio"] == pytest.approx(1.0, abs=1e-4)
    assert any(g.abs().sum() > 0 for g in grads.values())
    opt.step()
    changed = [n for n, p in policy.module.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("language_model" in n for n in changed) and any("lm_head" in n for n in changed)

    # Whole-model check: the masked trajectory changes no parameter gradient.
    for p in policy.parameters():
        p.grad = None
    _, _ = grpo_step(policy, trajs, opt, MaskConfig())
    with_masked = {n: p.grad.clone() for n, p in policy.module.named_parameters() if p.grad is not None}
    trajs[3].token_ids = trajs[3].token_ids.flip(0)  # garbage in the masked row must not matter
    _, _ = grpo_step(policy, trajs, opt, MaskConfig())
    for n, p in policy.module.named_parameters():
        if p.grad is not None:
            assert torch.allclose(p.grad, with_masked[n], atol=1e-6), n


def test_eval_greedy_rollout_and_attention_shares(policy) -> None:
    samples = [make_sample(9), make_sample(10, n_images=3)]
    policy.turn_script = scripted({0: [CROP, format_answer("A")]})
    greedy = GenerationConfig(greedy=True, max_new_tokens=48)
    trajs = policy.rollout(samples, 1, EnvConfig(max_turns=2), greedy)
    assert len(trajs) == 2 and trajs[0].answer == "A"
    again = policy.rollout(samples, 1, EnvConfig(max_turns=2), greedy)
    assert all(torch.equal(a.token_ids, t.token_ids) for a, t in zip(again, trajs, strict=True))  # deterministic
    shares = attention_shares(policy, trajs[0])
    assert [s["turn"] for s in shares] == [0, 1]
    for s in shares:
        assert s["image"] > 0 and s["generated"] > 0
        assert s["image"] + s["text"] + s["generated"] == pytest.approx(1.0, abs=1e-4)
    assert policy._core.config._attn_implementation != "eager" or policy.cfg.attn_implementation == "eager"


def test_lora_checkpointing_reference_and_state_round_trip(model_dir, tmp_path) -> None:
    pytest.importorskip("peft")
    cfg = PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu", lora_r=4, gradient_checkpointing=True)
    pol = build_policy(cfg)
    names = [n for n, p in pol.module.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    pol.turn_script = scripted({0: [CROP, format_answer("A")], 1: [format_answer("B")]})
    trajs = pol.rollout([make_sample(11, answer_index=0)], 2, EnvConfig(), GEN)
    pol.train()
    ref = pol.reference_logprobs(trajs)
    logp, _ = pol.token_logprobs(trajs)
    assert torch.allclose(ref, logp.detach(), atol=1e-5)  # LoRA B starts at zero: policy == reference
    opt = torch.optim.Adam(pol.parameters(), lr=1e-2)
    grpo_step(pol, trajs, opt, MaskConfig())
    opt.step()
    logp2, _ = pol.token_logprobs(trajs)
    assert not torch.allclose(logp2.detach(), logp.detach(), atol=1e-5)
    assert torch.allclose(pol.reference_logprobs(trajs), ref)  # the reference did not move
    state = pol.state_dict()
    fresh = build_policy(cfg)
    fresh.load_state_dict(state)
    fresh.train()
    assert torch.allclose(fresh.token_logprobs(trajs)[0], logp2, atol=1e-5)
    with pytest.raises(ConfigError):
        fresh.load_state_dict({"nope": torch.zeros(1)})
    # An adapter checkpoint is a --model-path too: base weights + the trained adapters.
    saved = pol.save_pretrained(tmp_path / "lora_ckpt")
    assert (saved / "adapter_config.json").exists() and not (saved / "model.safetensors").exists()
    reloaded = build_policy(PolicyConfig(kind="hf", model_path=str(saved), device="cpu"))
    reloaded.train()
    assert torch.allclose(reloaded.token_logprobs(trajs)[0], logp2, atol=1e-5)


def test_full_weights_reference_and_save_pretrained(policy, tmp_path) -> None:
    policy.turn_script = scripted({0: [format_answer("A")]})
    trajs = policy.rollout([make_sample(12)], 1, EnvConfig(), GEN)
    ref = policy.reference_logprobs(trajs)  # reloaded from model_path: the initial weights
    with torch.no_grad():
        policy._core.lm_head.weight.mul_(1.5)
    assert not torch.allclose(policy.token_logprobs(trajs)[0], ref)
    assert torch.allclose(policy.reference_logprobs(trajs), ref)
    out = policy.save_pretrained(tmp_path / "ckpt")
    reloaded = build_policy(PolicyConfig(kind="hf", model_path=str(out), device="cpu"))
    assert torch.allclose(reloaded.token_logprobs(trajs)[0], policy.token_logprobs(trajs)[0], atol=1e-5)


def test_trainer_step_save_resume_and_eval_with_hf_policy(model_dir, tmp_path) -> None:
    """The rl trainer drives the hf policy: one step, a checkpoint, an exact reload, a greedy eval."""
    from rl.config import TrainConfig
    from rl.trainer import Trainer

    def make_cfg() -> TrainConfig:
        return TrainConfig(
            out=str(tmp_path / "run"),
            steps=1,
            prompts_per_step=2,
            group_size=2,
            ppo_epochs=1,
            minibatch_size=4,
            micro_batch_size=2,
            lr=1e-2,
            tensorboard=False,
            policy=PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu"),
            generation=GenerationConfig(max_new_tokens=48, max_total_tokens=1024),
        )

    samples = [make_sample(20, answer_index=0), make_sample(21, answer_index=1)]
    trainer = Trainer(make_cfg(), train_samples=samples, eval_samples=samples[:1], verbose=False)
    trainer.policy.turn_script = scripted({0: [CROP, format_answer("A")], 1: [format_answer("B")]})
    before = trainer.policy.state_dict()
    metrics = trainer.train_step()
    trainer.step = 1
    assert metrics["reward"] > 0 and metrics["tool_call_rate/visual_confirmation"] > 0
    after = trainer.policy.state_dict()
    assert any(not torch.equal(before[n], after[n]) for n in before)
    trainer.save()
    resumed = Trainer(make_cfg(), train_samples=samples, eval_samples=samples[:1], verbose=False)
    resumed.load()
    assert resumed.step == 1 and all(torch.equal(after[n], v) for n, v in resumed.policy.state_dict().items())
    resumed.policy.turn_script = scripted({0: [format_answer("A")]})
    ev = resumed.evaluate()
    assert ev["n"] == 1 and ev["accuracy"] == 1.0

    # `mifg eval --attention N` reloads the checkpoint and reports the paper's per-turn attention shares.
    from pipeline.cli import main
    from pipeline.shard_store import ShardWriter
    from schemas import Status

    data = tmp_path / "verified"
    ShardWriter(data, "test").write([s.model_copy(update={"status": Status.ACCEPTED}) for s in samples])
    report_path = tmp_path / "eval.json"
    ckpt = tmp_path / "run" / "ckpt"
    assert main(["eval", str(data), "--checkpoint", str(ckpt), "--attention", "2", "--out", str(report_path)]) == 0
    attention = json.loads(report_path.read_text())["attention"]
    assert attention["per_turn"] and attention["first_turn"]["n"] >= 1
    for row in attention["per_turn"]:
        assert row["image"] + row["text"] + row["generated"] == pytest.approx(1.0, abs=1e-4)
        assert row["image"] > 0
