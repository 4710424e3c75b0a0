"""Rewards (tool-use gain only when correct) and group-relative advantages."""

import pytest
import torch

from rl.advantages import group_advantages
from rl.rewards import RewardConfig, reward_terms, score
from tests.rl.conftest import hand_traj


def _t(answer, tools=None, errors=0):
    return hand_traj([0, 1], answer=answer, tool_calls=tools or {}, tool_errors=errors)


def test_tool_gain_is_paid_only_when_correct():
    cfg = RewardConfig()
    assert reward_terms(_t("A", {"visual_confirmation": 1}), cfg) == {"accuracy": 0.8, "format": 0.2, "tool_gain": 1.2}
    assert reward_terms(_t("B", {"visual_confirmation": 2}), cfg) == {"accuracy": 0.0, "format": 0.2, "tool_gain": 0.0}
    assert reward_terms(_t("A"), cfg) == {"accuracy": 0.8, "format": 0.2, "tool_gain": 0.0}


def test_format_needs_a_valid_letter_and_no_errors():
    cfg = RewardConfig()
    assert reward_terms(_t("C"), cfg)["format"] == 0.0  # not an option of this sample
    assert reward_terms(_t(None), cfg) == {"accuracy": 0.0, "format": 0.0, "tool_gain": 0.0}
    assert reward_terms(_t("A", {"visual_reflection": 1}, errors=1), cfg)["format"] == 0.0


def test_weights_come_from_config_and_score_sets_fields():
    trajs = [_t("A", {"visual_reflection": 1}), _t("B")]
    rewards = score(trajs, RewardConfig(w_acc=1.0, w_format=0.0, w_tool=0.5))
    assert rewards == [1.5, 0.0] and trajs[0].reward == 1.5 and trajs[0].reward_terms["tool_gain"] == 0.5


def test_group_advantages_std_and_none():
    r = torch.tensor([1.0, 0.0, 2.0, 2.0, 2.0, 5.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    a = group_advantages(r, g, "none")
    assert torch.allclose(a, torch.tensor([0.0, -1.0, 1.0, -1.0, -1.0, 2.0]))
    s = group_advantages(r, g, "std")
    assert torch.allclose(s[:3], torch.tensor([0.0, -1.0, 1.0]), atol=1e-5)  # group 0 std is exactly 1
    assert s[3:].sum().abs() < 1e-5 and s[5] == pytest.approx(2 / torch.tensor([2.0, 2.0, 5.0]).std().item(), 1e-4)


def test_equal_rewards_give_zero_advantage_and_include_excludes_from_stats():
    r = torch.tensor([0.2, 0.2, 0.2, 1.0, 0.0, 0.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    a = group_advantages(r, g, "std")
    assert torch.all(a[:3] == 0)
    inc = torch.tensor([1, 1, 1, 1, 1, 0])
    b = group_advantages(r, g, "none", include=inc)
    assert b[3:].tolist() == pytest.approx([0.5, -0.5, -0.5])  # mean over the two included only
    with pytest.raises(ValueError):
        group_advantages(r, g, "rank")
