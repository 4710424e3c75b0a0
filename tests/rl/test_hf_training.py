"""The hf (Qwen2.5-VL) policy under the trainer: regressions of issue 11 on a tiny random model.

Zero-token micro-batches, thin crops, the transformers version floor, fp32 master weights, the
micro-batched reference, no stored logits when old log-probs are recomputed, entropy only when
wanted, chunked log-probs, and Dr. GRPO's constant length.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5.5.4")  # rl.policies.hf_qwen.MIN_TRANSFORMERS

from rl.config import TrainConfig  # noqa: E402
from rl.env import EnvConfig, Episode  # noqa: E402
from rl.loss import LossConfig, policy_loss  # noqa: E402
from rl.masking import MaskConfig, loss_mask  # noqa: E402
from rl.parsing import format_answer, format_tool_call  # noqa: E402
from rl.policies import build_policy  # noqa: E402
from rl.policies.base import GenerationConfig, PolicyConfig  # noqa: E402
from rl.policies.hf_qwen import MIN_TRANSFORMERS, NEG, HFQwenPolicy  # noqa: E402
from rl.trainer import Trainer  # noqa: E402
from rl.trajectory import pad_stack  # noqa: E402
from schemas.errors import ConfigError  # noqa: E402
from tests.factories import image_entry, make_image, make_sample, png_bytes  # noqa: E402
from tests.rl.conftest import scripted  # noqa: E402  (fixtures model_dir, policy: tests/rl/conftest.py)

CROP = format_tool_call("visual_confirmation", {"image": 2, "bbox_2d": [0.4, 0.4, 0.7, 0.7]})
GEN = GenerationConfig(max_new_tokens=48, max_total_tokens=1024)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def prompt_len(policy: HFQwenPolicy, sample, env: EnvConfig) -> int:
    return len(policy._prompt(Episode(sample, env).reset(), env)[0])


def make_trainer(model_dir, tmp_path, samples, **kw) -> Trainer:
    cfg = TrainConfig(
        out=str(tmp_path / "run"),
        steps=1,
        prompts_per_step=len(samples),
        group_size=2,
        ppo_epochs=1,
        minibatch_size=2 * len(samples),
        micro_batch_size=1,
        lr=1e-3,
        tensorboard=False,
        policy=PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu"),
        generation=kw.pop("generation", GEN),
        **kw,
    )
    return Trainer(cfg, train_samples=samples, verbose=False)


# ---- (a) a micro-batch with no generated token -------------------------------------------------------


def test_zero_token_trajectories_give_a_zero_loss_that_backpropagates(policy) -> None:
    sample = make_sample(40)
    budget = prompt_len(policy, sample, EnvConfig())  # the prompt alone fills the token budget
    trajs = policy.rollout([sample], 2, EnvConfig(), GenerationConfig(max_total_tokens=budget))
    assert all(t.truncated and t.response_length == 0 for t in trajs)
    policy.train()
    logp, _ = policy.token_logprobs(trajs)
    assert logp.requires_grad and (logp == 0).all()
    loss, _ = policy_loss(logp, torch.zeros_like(logp), torch.ones(2), loss_mask(trajs, MaskConfig()), LossConfig())
    loss.backward()  # was: "element 0 of tensors does not require grad"
    assert loss.item() == 0.0
    assert all(p.grad is None or (p.grad == 0).all() for p in policy.parameters())


def test_train_step_with_a_micro_batch_of_zero_token_trajectories(model_dir, tmp_path) -> None:
    short, long = make_sample(41, n_images=2, answer_index=0), make_sample(42, n_images=4, answer_index=1)
    probe = build_policy(PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu"))
    n_short, n_long = prompt_len(probe, short, EnvConfig()), prompt_len(probe, long, EnvConfig())
    assert n_long > n_short + 8
    gen = GenerationConfig(max_new_tokens=16, max_total_tokens=n_short + 8)  # the 4-image prompt does not fit
    trainer = make_trainer(model_dir, tmp_path, [short, long], generation=gen)
    # The data stream may put either sample first: script every slot (the long prompt's never generate).
    trainer.policy.turn_script = scripted({k: [format_answer("AB"[k % 2])] for k in range(4)})
    before = trainer.policy.state_dict()
    metrics = trainer.train_step()  # micro-batches of one: two hold a trajectory with 0 generated tokens
    assert metrics["masked_fraction/truncated"] == 0.5
    after = trainer.policy.state_dict()
    assert any(not torch.equal(before[n], after[n]) for n in before)


# ---- (b) a thin crop -------------------------------------------------------------------------------


def test_thin_crop_becomes_an_error_observation_and_the_episode_goes_on(policy) -> None:
    base = make_sample(43, answer_index=0)
    wide = make_image(4300, size=(448, 48))
    image, meta = image_entry(png_bytes(wide), width=448, height=48, source="test:wide", license="CC0-1.0")
    sample = base.model_copy(update={"images": [image, *base.images[1:]], "image_meta": [meta, *base.image_meta[1:]]})
    thin = format_tool_call("visual_confirmation", {"image": 1, "bbox_2d": [0, 0, 448, 2]})  # 448x2 px
    policy.turn_script = scripted({0: [thin, format_answer("A")]})
    traj = policy.rollout([sample], 1, EnvConfig(min_crop_px=1), GEN)[0]  # was: ValueError, rollout lost
    assert traj.answer == "A" and traj.n_turns == 2 and not traj.image_token_mismatch
    assert traj.tool_errors == 1 and traj.tool_calls == {} and traj.crops == []  # no tool bonus for it
    assert len(traj.images) == 2  # the crop was never appended
    text = policy.tokenizer.decode(traj.token_ids, skip_special_tokens=False)
    assert "Error: visual_confirmation:" in text and "aspect ratio" in text


# ---- (c) the transformers version floor ------------------------------------------------------------


def test_old_transformers_is_one_clear_config_error(model_dir, monkeypatch) -> None:
    import transformers

    assert MIN_TRANSFORMERS == "5.5.4"
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    with pytest.raises(ConfigError, match=r"transformers>=5\.5\.4 \(installed: 4\.57\.1\)"):
        build_policy(PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu"))
    monkeypatch.setattr(transformers, "__version__", "5.5.3")  # has the 5.x APIs and the RoPE bug
    with pytest.raises(ConfigError, match="5.5.4"):
        build_policy(PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu"))


def test_pyproject_states_the_same_floor() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert f'"transformers>={MIN_TRANSFORMERS},<6"' in text


# ---- (d) fp32 master weights for bf16 full fine-tuning -----------------------------------------------


def test_bf16_full_finetuning_keeps_fp32_master_weights(model_dir) -> None:
    pol = build_policy(PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu", dtype="bfloat16"))
    assert all(p.dtype == torch.float32 for p in pol.parameters())
    assert pol._autocast_dtype == torch.bfloat16
    pol.turn_script = scripted({0: [CROP, format_answer("A")], 1: [format_answer("B")]})
    trajs = pol.rollout([make_sample(44, answer_index=0)], 2, EnvConfig(), GEN)
    pol.train()
    logp, _ = pol.token_logprobs(trajs)
    assert logp.dtype == torch.float32 and torch.isfinite(logp).all()
    opt = torch.optim.AdamW(pol.parameters(), lr=1e-6, weight_decay=0.0)
    before = [p.detach().clone() for p in pol.parameters()]
    (-logp.sum()).backward()
    opt.step()
    moved = total = 0
    for p, b in zip(pol.parameters(), before, strict=True):
        has_grad = p.grad != 0  # rows of unseen / forbidden tokens get no gradient, hence no Adam step
        moved += int((p.detach() != b)[has_grad].sum())
        total += int(has_grad.sum())
    assert total > 0 and moved / total > 0.95, moved / total  # bf16 weights: ~2% moved


# ---- (e) the reference forward is micro-batched ------------------------------------------------------


def test_reference_forward_is_micro_batched(model_dir, tmp_path) -> None:
    samples = [make_sample(45, answer_index=0), make_sample(46, answer_index=1)]
    trainer = make_trainer(model_dir, tmp_path, samples, loss=LossConfig(kl_coef=0.1))
    pol = trainer.policy
    pol.turn_script = scripted({0: [CROP, format_answer("A")], 1: [format_answer("B")], 2: [format_answer("B")]})
    sizes: list[int] = []
    real = pol.reference_logprobs

    def spy(trajs):
        ref = real(trajs)
        sizes.append(len(trajs))
        return ref

    pol.reference_logprobs = spy
    forward_rows: list[int] = []
    pol.reference_logprobs(pol.rollout(samples[:1], 1, EnvConfig(), GEN))  # builds the reference model
    sizes.clear()
    pol._reference.register_forward_pre_hook(
        lambda _m, _a, kw: forward_rows.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    metrics = trainer.train_step()
    assert sizes == [1, 1, 1, 1]  # was: one call over the 4 trajectories of the rollout
    assert forward_rows and max(forward_rows) == 1
    assert metrics["kl"] >= 0


# ---- (f) no stored logits when recomputing; entropy only when wanted; chunked log-probs ---------------


def test_generate_stores_no_logits_and_no_entropy_is_computed_unless_wanted(model_dir, tmp_path) -> None:
    samples = [make_sample(47, answer_index=0)]
    trainer = make_trainer(model_dir, tmp_path, samples, log_entropy=False)
    pol = trainer.policy
    assert trainer.cfg.recompute_old_logprobs and trainer.cfg.loss.entropy_coef == 0
    pol.turn_script = scripted({0: [CROP, format_answer("A")], 1: [format_answer("B")]})
    flags, entropy_asked = [], []
    generate, score = pol._model.generate, pol.token_logprobs

    def spy_generate(**kw):
        cfg = kw["generation_config"]
        flags.append((cfg.output_logits, cfg.output_scores))
        return generate(**kw)

    def spy_score(trajs, with_entropy=False):
        entropy_asked.append(with_entropy)
        return score(trajs, with_entropy)

    pol._model.generate, pol.token_logprobs = spy_generate, spy_score
    metrics = trainer.train_step()
    assert flags and all(not logits and not scores for logits, scores in flags)  # was: output_logits=True
    assert entropy_asked and not any(entropy_asked) and "entropy" not in metrics  # was: always computed
    # When the sampler's log-probs are the old log-probs, they are recorded.
    flags.clear()
    trajs = pol.rollout(samples, 1, EnvConfig(), GEN)
    assert flags[0][0] and (trajs[0].old_logprobs[trajs[0].action_mask > 0] < 0).all()


def test_chunked_logprobs_and_gradients_match_the_unchunked_log_softmax(policy) -> None:
    policy.turn_script = scripted({0: [CROP, format_answer("B")], 1: ["x" + format_answer("A")]})
    torch.manual_seed(3)
    gen = GenerationConfig(max_new_tokens=12, max_total_tokens=1024, temperature=0.7)
    trajs = policy.rollout([make_sample(48), make_sample(49, n_images=3)], 2, EnvConfig(max_turns=2), gen)
    policy.train()
    # Reference: the whole (B, T, V) log-softmax of one forward, forbidden tokens masked, at each row's temperature.
    batch = policy._forward_inputs(trajs)
    logits = policy.module(**batch, use_cache=False).logits.float()  # (B, T, V)
    logits[..., policy.forbidden_ids] = NEG
    temps = torch.tensor([t.extras["temperature"] for t in trajs])[:, None, None]
    full = torch.log_softmax(logits / temps, -1)
    mask = pad_stack([t.action_mask for t in trajs]) > 0
    ids = pad_stack([t.token_ids for t in trajs])
    expected = torch.zeros(mask.shape)
    expected[:, 1:] = full[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    expected = torch.where(mask, expected, 0.0)
    (expected.sum()).backward()
    grad_expected = policy._core.lm_head.weight.grad.clone()
    policy._core.lm_head.weight.grad = None

    policy.score_chunk_rows = 5  # many chunks, the last one partial
    head, kept = policy._core.lm_head.weight, []

    def pack(t: torch.Tensor) -> torch.Tensor:  # every tensor autograd keeps for backward
        is_head = t.untyped_storage().data_ptr() == head.untyped_storage().data_ptr()  # lm_head's weight.T
        if not is_head and t.shape[-1:] == head.shape[:1] and t.numel() > policy.score_chunk_rows * head.shape[0]:
            kept.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logp, ent = policy.token_logprobs(trajs, with_entropy=True)
    assert kept == []  # was: the (B, K, V) float32 log-softmax, kept whole for backward
    assert torch.allclose(logp, expected.detach(), atol=1e-5), (logp - expected).abs().max()
    logp.sum().backward()
    assert torch.allclose(policy._core.lm_head.weight.grad, grad_expected, atol=1e-5)
    full_ent = -(full.exp() * full).sum(-1)  # (B, T): entropy of the distribution predicting token t + 1
    assert torch.allclose(ent[:, 1:][mask[:, 1:]], full_ent[:, :-1][mask[:, 1:]].detach(), atol=1e-4)


# ---- (g) Dr. GRPO's constant length ------------------------------------------------------------------


def test_dr_grpo_normaliser_is_the_response_budget(model_dir, tmp_path, monkeypatch) -> None:
    import rl.trainer

    seen: list[int] = []
    real = rl.trainer.token_weights

    def spy(mask, agg, norm_len=0):
        seen.append(norm_len)
        return real(mask, agg, norm_len)

    monkeypatch.setattr(rl.trainer, "token_weights", spy)
    gen = GenerationConfig(max_new_tokens=16, max_response_tokens=96, max_total_tokens=1024)
    loss = LossConfig(agg="seq-mean-token-sum-norm", adv_scale="none")
    trainer = make_trainer(model_dir, tmp_path, [make_sample(50, answer_index=0)], generation=gen, loss=loss)
    trainer.policy.turn_script = scripted({0: [format_answer("A")], 1: [format_answer("B")]})
    trainer.train_step()
    assert seen == [96]  # was: the padded full-sequence length of the minibatch (prompt + images included)
