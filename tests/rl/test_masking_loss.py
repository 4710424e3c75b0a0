"""Two-level masks and the GRPO loss on hand-built trajectories: known masks, values and gradients."""

import pytest
import torch

from rl.loss import LossConfig, policy_loss, token_weights
from rl.masking import MaskConfig, loss_mask, mask_reason, masked_fractions, trajectory_keep
from tests.rl.conftest import hand_traj


def _batch():
    return [
        hand_traj([0, 0, 1, 1, 0, 1], group=0),  # prompt, action(2), observation, action
        hand_traj([0, 1, 1, 1], group=0, over_turns=True),
        hand_traj([0, 0, 1], group=1, invalid_tool=True),
        hand_traj([0, 1, 0, 1, 1], group=1, truncated=True, image_token_mismatch=True),
    ]


def test_two_level_mask_known_values():
    m = loss_mask(_batch(), MaskConfig())
    expected = torch.tensor(
        [[0, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.float32
    )
    assert torch.equal(m, expected)
    off = MaskConfig(mask_invalid_tool=False, mask_over_turns=False, mask_truncated=False, mask_image_mismatch=False)
    m_off = loss_mask(_batch(), off)  # ablation: only the action-level mask remains
    assert m_off[1].tolist() == [0, 1, 1, 1, 0, 0] and m_off[3].tolist() == [0, 1, 0, 1, 1, 0]


def test_each_rule_is_its_own_flag():
    t = _batch()
    assert [mask_reason(x, MaskConfig()) for x in t] == [None, "over_turns", "invalid_tool", "truncated"]
    only_mismatch = MaskConfig(mask_invalid_tool=False, mask_over_turns=False, mask_truncated=False)
    assert trajectory_keep(t, only_mismatch).tolist() == [1, 1, 1, 0]
    fr = masked_fractions(t, MaskConfig())
    assert fr["masked_fraction/total"] == 0.75 and fr["masked_fraction/over_turns"] == 0.25
    assert fr["masked_fraction/image_token_mismatch"] == 0.0  # counted under its first reason only


def _loss_inputs():
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.float32)
    old = torch.zeros(3, 4)
    logp = torch.zeros(3, 4, requires_grad=True)  # ratio 1 everywhere
    adv = torch.tensor([1.0, -2.0, 0.5])
    return logp, old, adv, mask


@pytest.mark.parametrize(
    "agg,expected",
    [
        ("token-mean", -(2 * 1.0 + 1 * -2.0 + 3 * 0.5) / 6),
        ("seq-mean-token-mean", -(1.0 + -2.0 + 0.5) / 3),
        ("seq-mean-token-sum-norm", -(2 * 1.0 + -2.0 + 3 * 0.5) / (3 * 4)),
    ],
)
def test_aggregation_values(agg, expected):
    logp, old, adv, mask = _loss_inputs()
    loss, _ = policy_loss(logp, old, adv, mask, LossConfig(agg=agg, norm_len=4))
    assert loss.item() == pytest.approx(expected)


def test_dr_grpo_needs_a_constant_length():
    """L must not be the batch's padded length (it changes every step and counts prompt and image tokens)."""
    _, _, _, mask = _loss_inputs()
    with pytest.raises(ValueError, match="norm_len"):
        token_weights(mask, "seq-mean-token-sum-norm")
    w = token_weights(mask, "seq-mean-token-sum-norm", 10)
    wide = torch.cat([mask, torch.zeros(3, 6)], 1)  # the same tokens in a batch padded wider
    assert torch.equal(token_weights(wide, "seq-mean-token-sum-norm", 10)[:, :4], w)
    assert w.sum().item() == pytest.approx(6 / (3 * 10))


def test_masked_tokens_get_zero_gradient_and_known_gradient_elsewhere():
    logp, old, adv, mask = _loss_inputs()
    logp.data[0, 0] = float("nan")  # garbage under the mask must not leak into loss or grads
    loss, _ = policy_loss(logp, old, adv, mask, LossConfig(agg="token-mean"))
    loss.backward()
    g = logp.grad
    assert torch.isfinite(loss) and torch.all(g[mask == 0] == 0)
    # d/dlogp of -A * exp(logp - old) / n_tokens at ratio 1 is -A / 6
    assert torch.allclose(g[mask == 1], torch.tensor([-1, -1, 2, -0.5, -0.5, -0.5]) / 6)


def test_clipping_low_and_high_are_separate():
    mask = torch.ones(2, 1)
    old = torch.zeros(2, 1)
    adv = torch.tensor([1.0, -1.0])
    cfg = LossConfig(clip_low=0.1, clip_high=0.3, agg="token-mean")
    # ratio 1.5 with A>0: clipped at 1.3 -> zero grad; ratio 0.5 with A<0: clipped at 0.9 -> zero grad
    logp = torch.log(torch.tensor([[1.5], [0.5]])).requires_grad_()
    loss, m = policy_loss(logp, old, adv, mask, cfg)
    loss.backward()
    assert loss.item() == pytest.approx(-(1.3 * 1.0 + 0.9 * -1.0) / 2)
    assert torch.all(logp.grad == 0) and m["clip_frac"] == 1.0
    # ratio 1.2 (< 1 + clip_high) is not clipped
    logp2 = torch.log(torch.tensor([[1.2], [1.0]])).requires_grad_()
    _, m2 = policy_loss(logp2, old, adv, mask, cfg)
    assert m2["clip_frac"] == 0.0


def test_k3_kl_is_zero_at_reference_and_positive_elsewhere():
    mask = torch.ones(1, 3)
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    adv = torch.zeros(1)
    cfg = LossConfig(kl_coef=0.5)
    loss0, m0 = policy_loss(logp, logp.detach(), adv, mask, cfg, ref_logp=logp.detach())
    assert m0["kl"] == pytest.approx(0.0) and loss0.item() == pytest.approx(0.0)
    ref = torch.tensor([[-1.5, -1.0, -0.5]])
    loss, m = policy_loss(logp, logp.detach(), adv, mask, cfg, ref_logp=ref)
    d = ref - logp.detach()
    assert m["kl"] == pytest.approx((d.exp() - d - 1).mean().item())
    assert loss.item() == pytest.approx(0.5 * m["kl"])


def test_micro_batch_weights_reproduce_the_whole_minibatch_loss():
    logp, old, adv, mask = _loss_inputs()
    logp = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    old, adv, mask = old.double(), adv.double(), mask.double()
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        cfg = LossConfig(agg=agg, norm_len=4)
        whole, _ = policy_loss(logp, old, adv, mask, cfg)
        w = token_weights(mask, agg, cfg.norm_len)
        parts = sum(
            policy_loss(logp[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1], cfg, weights=w[i : i + 1])[0]
            for i in range(3)
        )
        assert parts.item() == pytest.approx(whole.item(), rel=1e-9, abs=1e-12)


def test_masked_trajectory_does_not_move_a_real_policy(demo_store):
    from rl.data import load_splits
    from rl.env import EnvConfig
    from rl.policies.base import GenerationConfig
    from rl.policies.tiny import TinyConfig, TinyPolicy

    samples = load_splits(demo_store)[0]["train"][:2]
    pol = TinyPolicy(TinyConfig(), seed=0)
    trajs = pol.rollout(samples, 3, EnvConfig(zoom_size=48), GenerationConfig())
    trajs[0].over_turns = True
    mask = loss_mask(trajs, MaskConfig())
    old = pol.token_logprobs(trajs)[0].detach()
    grads = []
    for a0 in (5.0, -5.0):  # the masked trajectory's advantage must not matter
        adv = torch.tensor([a0, 1.0, -1.0, 0.5, -0.5, 0.0])
        pol.module.zero_grad()
        loss, _ = policy_loss(pol.token_logprobs(trajs)[0], old, adv, mask, LossConfig())
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in pol.parameters() if p.grad is not None]))
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0
