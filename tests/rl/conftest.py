"""Fixtures of the rl tests: a small verified demo shard store, hand-built trajectories."""

from __future__ import annotations

import pytest
import torch

from rl.trajectory import Trajectory


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """A verified shard store of the demo task: 48 train + 16 test samples."""
    from rl.demo_data import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("demo") / "data", n_train=48, n_test=16)


def hand_traj(mask: list[float], group: int = 0, **flags) -> Trajectory:
    """A trajectory with the given action mask (token ids are irrelevant to the loss)."""
    n = len(mask)
    return Trajectory(
        sample_id=f"s{group}",
        group_id=group,
        token_ids=torch.arange(n),
        action_mask=torch.tensor(mask),
        old_logprobs=torch.zeros(n),
        gold="A",
        valid_letters="AB",
        **flags,
    )
