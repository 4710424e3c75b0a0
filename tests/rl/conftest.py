"""Fixtures of the rl tests: a small verified demo shard store, hand-built trajectories, a tiny Qwen2.5-VL."""

from __future__ import annotations

import pytest
import torch

from rl.trajectory import Trajectory


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """A verified shard store of the demo task: 48 train + 16 test samples."""
    from rl.demo_data import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("demo") / "data", n_train=48, n_test=16)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved as a local model dir (the hf tests importorskip transformers first)."""
    from rl.policies.hf_tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_qwen_policy"))


@pytest.fixture
def policy(model_dir):
    """A fresh hf (Qwen2.5-VL) policy on the tiny model, on CPU."""
    from rl.policies import build_policy
    from rl.policies.base import PolicyConfig

    return build_policy(PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu"))


def scripted(turns: dict[int, list[str]]):
    """An hf policy turn script: trajectory k says turns[k][t] at turn t; unscripted turns are sampled."""
    return lambda k, t: turns[k][t] if k in turns and t < len(turns[k]) else None


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
