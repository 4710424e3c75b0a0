"""`mifg train --engine verl`: a config verl's own code accepts, and the IMAgent loop = the native episode.

Tests marked `verl` run verl's code in the verl environment (`make verl-env` builds .venv-verl; or
set MIFG_VERL_PYTHON) and are skipped without it. The others check the one-line errors and the
exported reward's tool bonus without verl.

Run by the verl environment's Python, this file is the verl side of the equivalence test: it plays
scripted episodes through the IMAgent agent loop as verl's agent-loop worker builds it (registry
entry instantiated by Hydra, RLHFDataset row, verl's tokenizer and tools) against a scripted server
in place of vLLM, and prints one JSON line per episode:

    python tests/rl/test_verl_engine.py RUN_DIR SCRIPTS_JSON
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERL_PYTHON = os.environ.get("MIFG_VERL_PYTHON") or str(REPO / ".venv-verl" / "bin" / "python")

CROP = '<tool_call>{"name": "visual_confirmation", "arguments": {"image": 1, "bbox_2d": [0.2, 0.2, 0.7, 0.7]}}'
CROP += "</tool_call>"
UNKNOWN = '<tool_call>{"name": "zoom_in", "arguments": {"image": 1}}</tool_call>'
REFLECT = '<tool_call>{"name": "visual_reflection", "arguments": {}}</tool_call>'
ANSWER = "<answer>{gold}</answer>"
SCRIPTS = {  # name: (policy turns, the rule that masks the trajectory, the native reward)
    "crop_then_answer": ([CROP, ANSWER], None, 0.8 + 0.2 + 1.2),
    "unknown_tool": ([UNKNOWN, ANSWER], "invalid_tool", 0.8),
    "string_arguments": ([CROP.replace('"image": 1', '"image": "1"'), ANSWER], "invalid_tool", 0.8),
    "box_outside": ([CROP.replace("[0.2, 0.2, 0.7, 0.7]", "[500, 500, 600, 600]"), ANSWER], "invalid_tool", 0.8),
    "over_turns": ([REFLECT] * 4, "over_turns", 0.0),
}


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def _main(args: list[str]) -> tuple[int, str, str]:
    """`mifg ARGS` in-process: (exit code, stdout, stderr)."""
    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def verl_python() -> str:
    """The verl environment's interpreter (skips the test without one)."""
    if not Path(VERL_PYTHON).exists():
        pytest.skip(f"no verl environment at {VERL_PYTHON} (make verl-env, or set MIFG_VERL_PYTHON)")
    return VERL_PYTHON


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A small verl export made as a user makes it: the offline `mifg generate`, then `mifg export --format verl`."""
    from rl.demo_pipeline import DEMO_AGENT_OPTIONS

    root = tmp_path_factory.mktemp("verl-export")
    gen = ["generate", "--out", str(root / "gen"), "-n", "12", "--seed", "0", "--no-progress", "--workers", "1"]
    gen += ["--max-side", "512", *[x for opt in DEMO_AGENT_OPTIONS for x in ("-o", opt)]]
    assert _main(gen)[0] == 0
    export = ["export", str(root / "gen"), "--format", "verl", "--out", str(root / "verl"), "--include-unverified"]
    rc, _, err = _main([*export, "--test-fraction", "0.3", "--seed", "0"])
    assert rc == 0, err
    return root / "verl"


@pytest.fixture(scope="module")
def dry_run(verl_python, export, model_dir, tmp_path_factory) -> tuple[Path, int, str, str]:
    """`mifg train --engine verl EXPORT --out RUN --model-path TINY --dry-run`: (RUN, exit code, stdout, stderr)."""
    run = tmp_path_factory.mktemp("verl-run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIFG_VERL_PYTHON", verl_python)
        args = ["train", "--engine", "verl", str(export), "--out", str(run), "--model-path", str(model_dir)]
        # verl's overlong-prompt filter renders prompts with qwen_vl_utils, which needs torchvision: a vLLM
        # install brings it, this CPU environment has none (the IMAgent loop does not use it)
        rc, out, err = _main([*args, "--dry-run", "-o", "data.filter_overlong_prompts=false"])
    return run, rc, out, err


# ---------------------------------------------------------------- verl's own checks (verl environment)


@pytest.mark.verl
def test_dry_run_writes_a_config_verls_own_checks_accept(dry_run, export, model_dir, verl_python):
    import yaml

    run, rc, out, err = dry_run
    assert rc == 0, err
    config = run / "verl_config.yaml"
    first, launch = out.splitlines()[:2]
    assert first.startswith(f"verl config: {config} (verl 0.9.1 accepts it: validate_config; RolloutConfig")
    assert "agent loop tool_agent -> rl.verl_agent_loop.IMAgentLoop" in first
    assert "reward mifg_reward.compute_score; tools visual_reflection, visual_confirmation" in first
    cfg = yaml.safe_load(config.read_text())
    actor, rollout, ref = (cfg["actor_rollout_ref"][k] for k in ("actor", "rollout", "ref"))
    assert actor["ppo_micro_batch_size_per_gpu"] == 64 and ref["log_prob_micro_batch_size_per_gpu"] == 64
    assert rollout["log_prob_micro_batch_size_per_gpu"] == 64 and rollout["n"] == 8
    assert rollout["multi_turn"]["enable"] and rollout["multi_turn"]["tool_config_path"] == str(
        export / "tool_config.yaml"
    )
    assert rollout["agent"]["agent_loop_config_path"] == str(run / "agent_loops.yaml")
    assert cfg["reward"]["custom_reward_function"]["path"] == str(export / "mifg_reward.py")
    assert cfg["actor_rollout_ref"]["model"]["path"] == str(model_dir)
    assert cfg["data"]["train_files"] == [str(export / "train.parquet")] and cfg["algorithm"]["adv_estimator"] == "grpo"
    # verl's own entry point loads the file as printed; Hydra's `--cfg job` prints the job config and stops before Ray
    words = shlex.split(launch.removeprefix("launch: "))
    env = dict(w.split("=", 1) for w in words[:1])
    proc = _run([*words[1:], "--cfg", "job"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"agent_loop_config_path: {run / 'agent_loops.yaml'}" in proc.stdout


@pytest.mark.verl
def test_a_config_verl_refuses_is_one_line(dry_run, export, model_dir, verl_python, tmp_path, monkeypatch):
    monkeypatch.setenv("MIFG_VERL_PYTHON", verl_python)
    args = ["train", "--engine", "verl", str(export), "--out", str(tmp_path / "run"), "--model-path", str(model_dir)]
    rc, _, err = _main([*args, "--dry-run", "-o", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=null"])
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("mifg: error: verl rejected ") and "ppo_micro_batch_size_per_gpu" in err


@pytest.mark.verl
def test_agent_loop_gives_the_native_mask_and_reward(dry_run, export, model_dir, verl_python):
    """The same scripted episodes through verl's agent loop (scripted server) and the native hf rollout."""
    from rl.data import load_splits
    from rl.env import EnvConfig
    from rl.masking import MaskConfig, loss_mask, mask_reason
    from rl.policies import build_policy
    from rl.policies.base import GenerationConfig, PolicyConfig
    from rl.rewards import RewardConfig, score
    from tests.rl.conftest import scripted

    run, rc, _, err = dry_run
    assert rc == 0, err
    scripts = {name: turns for name, (turns, _, _) in SCRIPTS.items()}
    proc = _run([verl_python, __file__, str(run), json.dumps(scripts)], {"PYTHONPATH": f"{export}:{REPO}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    verl = {r["name"]: r for r in map(json.loads, proc.stdout.strip().splitlines())}
    logged = [json.loads(line) for f in sorted((run / "rollouts").glob("*.jsonl")) for line in f.open()]
    assert [r["mask_reason"] for r in logged] == [reason for _, reason, _ in SCRIPTS.values()]  # the episode log

    sample = next(s for s in load_splits(export)[0]["train"] if s.id == verl["crop_then_answer"]["sample_id"])
    names = list(SCRIPTS)
    policy = build_policy(PolicyConfig(kind="hf", model_path=str(model_dir), device="cpu"))
    policy.turn_script = scripted(
        {k: [t.replace("{gold}", sample.answer) for t in scripts[n]] for k, n in enumerate(names)}
    )
    trajs = policy.rollout([sample], len(names), EnvConfig(), GenerationConfig(record_logprobs=False))
    rewards = score(trajs, RewardConfig())
    mask = loss_mask(trajs, MaskConfig())  # (B, T): the native two-level mask
    for k, name in enumerate(names):
        v, t = verl[name], trajs[k]
        _, reason, reward = SCRIPTS[name]
        assert mask_reason(t, MaskConfig()) == reason and v["mask_reason"] == (reason or ""), name
        assert rewards[k] == pytest.approx(reward) and v["reward"] == pytest.approx(reward), name
        p = len(v["prompt_ids"])
        # token for token: the same prompt, the same response, the same loss-carrying tokens
        assert t.token_ids[:p].tolist() == v["prompt_ids"], name
        assert t.token_ids[p:].tolist() == v["response_ids"], name
        assert mask[k, p : len(t)].long().tolist() == v["response_mask"], name
        assert (sum(v["response_mask"]) == 0) == (reason is not None), name
        assert v["rm_score_sum"] == pytest.approx(reward) and v["response_mask_len"] == len(v["response_ids"]), name
        assert v["tool_calls"] == sum(t.tool_calls.values()) and v["n_logprobs"] == len(v["response_ids"]), name
        masked = {key: val for key, val in v["reward_extra_info"].items() if key.startswith("masked_fraction/")}
        assert masked["masked_fraction/total"] == float(reason is not None)
        assert masked.get(f"masked_fraction/{reason}", 0.0) == float(reason is not None), name
        assert v["reward_extra_info"]["reward/tool_gain"] == pytest.approx(t.reward_terms["tool_gain"]), name


# ---------------------------------------------------------------- without verl: errors and the exported reward


def test_verl_engine_without_a_verl_environment_is_one_line(tmp_path, monkeypatch):
    import rl.verl_engine as engine

    if engine.importlib.util.find_spec("verl") is not None:
        pytest.skip("verl is importable here")
    fake = tmp_path / "export"
    fake.mkdir()
    for name in engine.EXPORT_FILES:
        (fake / name).write_bytes(b"")
    monkeypatch.delenv("MIFG_VERL_PYTHON", raising=False)
    monkeypatch.setattr(engine, "VERL_ENV", tmp_path / "no-venv-verl")
    rc, out, err = _main(["train", "--engine", "verl", str(fake), "--out", str(tmp_path / "r"), "--model-path", "m"])
    assert rc == 2 and err.count("\n") == 1 and "run `make verl-env`" in err and "MIFG_VERL_PYTHON unset" in err
    assert not (tmp_path / "r").exists()  # nothing written before the environment is found
    monkeypatch.setenv("MIFG_VERL_PYTHON", str(tmp_path / "nope" / "python"))
    rc, _, err = _main(["train", "--engine", "verl", str(fake), "--out", str(tmp_path / "r"), "--model-path", "m"])
    assert rc == 2 and err.startswith("mifg: error: MIFG_VERL_PYTHON=") and "make verl-env" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--engine", "verl", "DATA"], "--engine verl needs a model: --model-path DIR"),
        (["--engine", "verl", "DATA", "--model-path", "m", "--policy", "tiny"], "trains a Hugging Face checkpoint"),
        (["--engine", "verl", "DATA", "--model-path", "m", "--resume"], "--resume is for --engine native"),
        (["--engine", "verl", "DATA", "--model-path", "m", "--set", 'mask.group_stats="kept"'], "native-only"),
        (["--engine", "verl", "NOT_AN_EXPORT", "--model-path", "m"], "not a `mifg export --format verl` directory"),
        (["--engine", "verl", "DATA", "--model-path", "m", "-o", "novalue"], "-o expects a verl config override"),
        (["--engine", "vllm", "DATA"], "--engine 'vllm': choose native or verl"),
        (["DATA", "--dry-run"], "--dry-run and -o are for --engine verl"),
        (["DATA", "-o", "trainer.nnodes=2"], "--dry-run and -o are for --engine verl"),
    ],
)
def test_train_engine_mistakes_are_one_line(args, needle, tmp_path):
    fake = tmp_path / "export"
    fake.mkdir()
    for name in ("train.parquet", "mifg_reward.py", "tool_config.yaml"):
        (fake / name).write_bytes(b"")
    args = [str(fake) if a == "DATA" else str(tmp_path / a) if a == "NOT_AN_EXPORT" else a for a in args]
    rc, _, err = _main(["train", *args, "--out", str(tmp_path / "run")])
    assert rc == 2 and err.count("\n") == 1 and err.startswith("mifg: error: ") and needle in err, err


def test_exported_reward_pays_the_tool_bonus_only_for_an_executed_call():
    """verl's ToolAgentLoop counts a turn for every call; mifg_tools records the calls that ran."""
    import importlib.util

    import pipeline.export.assets as assets

    spec = importlib.util.spec_from_file_location(
        "mifg_reward_bonus", Path(assets.__file__).with_name("mifg_reward.py")
    )
    reward = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reward)
    good = "<answer>B</answer>"
    # a call that failed (unknown tool, string arguments, a box outside): a tool round, no executed call
    failed = reward.compute_score("mifg_qa", good, "B", {"num_turns": 4, "tool_rewards": [0.0]})
    assert failed["score"] == pytest.approx(0.8) and failed["tool_used"] == 0.0
    ran = reward.compute_score("mifg_qa", good, "B", {"num_turns": 4, "tool_rewards": [0.0], "tool_calls": 1})
    assert ran["score"] == pytest.approx(0.8 + 1.2)


def test_exported_tools_count_only_calls_that_ran():
    import importlib.util
    import types

    import pipeline.export.assets as assets
    from tests.factories import make_sample

    path = Path(assets.__file__).with_name("mifg_tools.py")
    spec = importlib.util.spec_from_file_location("mifg_tools_bonus", path)
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    schema = {"function": {"name": "visual_confirmation"}}
    zoom = tools.VisualConfirmationTool(config={}, tool_schema=schema)
    agent = types.SimpleNamespace(extra_fields={})
    images = [im.bytes for im in make_sample(0, n_images=2).images]

    async def calls() -> list[bool]:
        iid, _ = await zoom.create(create_kwargs={"images": images})
        args = [
            {"image_index": 1, "bbox_2d": [0.2, 0.2, 0.7, 0.7]},  # runs
            {"image_index": "1", "bbox_2d": [0.2, 0.2, 0.7, 0.7]},  # a string index: malformed
            {"image_index": 1, "bbox_2d": ["0.2", "0.2", "0.7", "0.7"]},  # string coordinates: malformed
            {"image_index": 1, "bbox_2d": [5000, 5000, 6000, 6000]},  # outside the image
        ]
        return [(await zoom.execute(iid, a, agent_data=agent))[2]["success"] for a in args]

    assert asyncio.run(calls()) == [True, False, False, False]
    assert agent.extra_fields == {"tool_calls": 1}


# ---------------------------------------------------------------- the verl side (run by the verl environment)


class ScriptedServer:
    """Stands in for verl's LLM server client: each generate() returns the next scripted turn's tokens."""

    def __init__(self, tokenizer, turns: list[str]) -> None:
        self.tokenizer, self.turns = tokenizer, iter(turns)
        self.im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        ids = self.tokenizer(next(self.turns), add_special_tokens=False)["input_ids"] + [self.im_end]
        ids = ids[: sampling_params["max_tokens"]]
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed")


async def _verl_episodes(run: Path, scripts: dict[str, list[str]]) -> list[dict]:
    import hydra
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.tools.tool_registry import load_all_tools
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from rl.policies.hf_qwen import load_processor
    from rl.verl_check import load

    cfg = load(run)  # OUT/verl_config.yaml as main_ppo composes it
    model = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)  # verl's tokenizer and hf config
    # verl's own processor loader needs torchvision for Qwen2.5-VL's video processor: rl's image-only one
    processor = load_processor(cfg.actor_rollout_ref.model.path)
    dataset = RLHFDataset(
        data_files=list(cfg.data.train_files), tokenizer=model.tokenizer, config=cfg.data, processor=processor
    )
    row = dict(dataset[0])
    registry = {e.name: e for e in OmegaConf.load(cfg.actor_rollout_ref.rollout.agent.agent_loop_config_path)}
    entry = registry[row.pop("agent_name")]  # the exported rows say tool_agent: the IMAgent loop runs them
    row.pop("dummy_tensor")
    multi_turn = cfg.actor_rollout_ref.rollout.multi_turn
    tools = load_all_tools(multi_turn.tool_config_path, multi_turn.function_tool_path)
    sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
    gold = row["reward_model"]["ground_truth"]
    results = []
    for name, turns in scripts.items():
        loop = hydra.utils.instantiate(  # exactly as verl's AgentLoopWorker builds an agent loop
            config=entry,
            trainer_config=DictConfigWrap(config=cfg),
            server_manager=ScriptedServer(model.tokenizer, [t.replace("{gold}", gold) for t in turns]),
            tokenizer=model.tokenizer,
            processor=processor,
            hf_model_type=model.hf_config.model_type,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(cfg.data),
            tools=ToolListWrap(tools),
        )
        out = await loop.run(dict(sampling), **row)
        batch = out.as_dict()  # what verl's TransferQueue worker stores: rm_scores carries the reward on the last token
        results.append(
            {
                "name": name,
                "sample_id": row["extra_info"]["id"],
                "prompt_ids": out.prompt_ids,
                "response_ids": out.response_ids,
                "response_mask": out.response_mask,
                "n_logprobs": len(out.response_logprobs or []),
                "reward": out.reward_score,
                "rm_score_sum": float(batch["rm_scores"].sum()),
                "response_mask_len": int(batch["response_mask"].shape[0]),
                "mask_reason": out.extra_fields["mask_reason"],
                "tool_calls": out.extra_fields["tool_calls"],
                "reward_extra_info": out.extra_fields["reward_extra_info"],
            }
        )
    return results


if __name__ == "__main__":
    with contextlib.redirect_stdout(sys.stderr):  # verl and datasets print; stdout carries the results
        episodes = asyncio.run(_verl_episodes(Path(sys.argv[1]), json.loads(sys.argv[2])))
    for ep in episodes:
        print(json.dumps(ep))
