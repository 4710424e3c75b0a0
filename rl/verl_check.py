"""Compose and check a verl config with verl's own code; runs inside the verl environment only.

`mifg train --engine verl` (rl/verl_engine.py) runs this as

    python -m rl.verl_check OUT SETTINGS_JSON [HYDRA_OVERRIDE ...]

1. compose verl's `ppo_trainer` config (verl/trainer/config/ppo_trainer.yaml) with the user's Hydra
   overrides (`-o key=value`, config groups included), then set every mifg setting of SETTINGS_JSON
   (dotted key -> value) that the user did not override;
2. write it complete to OUT/verl_config.yaml (interpolations kept, plus `hydra.run.dir`);
3. load that file back the way `python -m verl.trainer.main_ppo --config-path OUT --config-name
   verl_config` does and run what main_ppo runs before it starts Ray: `auto_set_device` and
   `validate_config`; then what the workers build first: the actor and rollout config dataclasses,
   the agent-loop registry entries (their classes imported), the custom reward function and the
   tools of `multi_turn.tool_config_path`.

It prints one JSON line on stdout: {"ok": true, "config": ..., "verl": version, "checks": [...]} or
{"ok": false, "error": "<one line>"}; verl's own messages go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

CONFIG_NAME = "verl_config"


def _user_keys(overrides: list[str]) -> list[str]:
    """Dotted keys the user's Hydra overrides set ('+a.b=1' -> 'a.b'; 'model_engine=dp' -> 'model_engine')."""
    return [o.split("=", 1)[0].lstrip("+~") for o in overrides]


def _set_by_user(key: str, user: list[str]) -> bool:
    """The user's overrides set `key` itself or a section above it."""
    return any(key == u or key.startswith(u + ".") for u in user)


def compose(out: Path, settings: dict[str, Any], overrides: list[str]) -> Path:
    """verl's ppo_trainer + user overrides + mifg settings, written to OUT/verl_config.yaml."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = hydra_compose("ppo_trainer", overrides=overrides)
    user = _user_keys(overrides)
    for key, value in settings.items():
        if not _set_by_user(key, user):
            OmegaConf.update(cfg, key, value, merge=False)  # struct mode: a key verl lacks is an error
    path = out / f"{CONFIG_NAME}.yaml"
    body = OmegaConf.to_container(cfg, resolve=False)
    body["hydra"] = {"run": {"dir": str(out / "hydra")}}  # main_ppo's Hydra writes its logs under OUT
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(body)), encoding="utf-8")
    return path


def load(out: Path) -> Any:
    """OUT/verl_config.yaml as `main_ppo --config-path OUT --config-name verl_config` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(out.resolve()), version_base=None):
        return hydra_compose(CONFIG_NAME)


def validate(cfg: Any) -> list[str]:
    """Run verl's own checks on a composed config; returns what was checked (raises on a failure)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf
    from verl.tools.tool_registry import load_all_tools
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(cfg)  # main_ppo's first two steps, in its order
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    checks = ["validate_config"]
    OmegaConf.resolve(OmegaConf.create(OmegaConf.to_container(cfg)))  # every ${...} interpolation resolves
    rollout_cfg = cfg.actor_rollout_ref.rollout
    rollout = omega_conf_to_dataclass(rollout_cfg)  # RolloutConfig (multi_turn, agent) as the workers build it
    checks.append(f"RolloutConfig (rollout {rollout.name}, n={rollout.n}, multi_turn {rollout.multi_turn.enable})")
    agent = rollout_cfg.agent
    if agent.agent_loop_config_path:
        for entry in OmegaConf.load(agent.agent_loop_config_path):
            get_class(entry._target_)  # the worker instantiates it by this name
            checks.append(f"agent loop {entry.name} -> {entry._target_}")
    if get_custom_reward_fn(cfg) is not None:
        reward = cfg.reward.custom_reward_function
        checks.append(f"reward {Path(reward.path).stem}.{reward.name}")
    tools = load_all_tools(rollout_cfg.multi_turn.tool_config_path, rollout_cfg.multi_turn.function_tool_path)
    if tools:
        checks.append("tools " + ", ".join(t.name for t in tools))
    return checks


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:600]


def main(argv: list[str] | None = None) -> int:
    """`python -m rl.verl_check OUT SETTINGS_JSON [OVERRIDE ...]`: compose, write, check; one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    out, settings, overrides = Path(args[0]), json.loads(Path(args[1]).read_text("utf-8")), args[2:]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # validate_config and tools print; stdout is ours
            import verl

            path = compose(out, settings, overrides)
            checks = validate(load(out))
    except Exception as e:  # noqa: BLE001 - any refusal by verl is reported as one line
        print(json.dumps({"ok": False, "error": _one_line(e)}))
        return 2
    print(json.dumps({"ok": True, "config": str(path), "verl": verl.__version__, "checks": checks}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
