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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matmuls: one intra-op thread is ~10x faster than several on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


@pytest.fixture(scope="session")
def pipeline_demo_store(tmp_path_factory):
    """The demo task as `mifg generate -o kinds=["fine_texture"]` + `mifg export --format hf` make it (~15 s).

    360 work items, split train/test by source photo (~290/70).
    """
    from rl.demo_pipeline import make_demo_data

    return make_demo_data(tmp_path_factory.mktemp("pipeline-demo"), n=360, test_fraction=0.2, workers=1)


@pytest.fixture(scope="session")
def pipeline_demo_samples(pipeline_demo_store):
    """The pipeline-made demo store's training samples."""
    from rl.data import load_splits

    return load_splits(pipeline_demo_store)[0]["train"]
