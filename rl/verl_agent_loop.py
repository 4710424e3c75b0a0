"""IMAgent as a verl agent loop: rl/'s episode, parser, tools, reward and trajectory mask inside verl.

Imported only inside the verl environment (it subclasses verl's `AgentLoopBase`). verl's agent-loop
workers find it through the registry file `mifg train --engine verl` writes (OUT/agent_loops.yaml,
`actor_rollout_ref.rollout.agent.agent_loop_config_path`):

    - name: imagent                      # also registered as `tool_agent`, the name exported rows carry
      _target_: rl.verl_agent_loop.IMAgentLoop
      train_config: {env: ..., generation: ..., reward: ..., mask: ...}     # TrainConfig sections

One `run()` is one episode, with the protocol of the native hf policy (rl/policies/hf_qwen.py):

    prompt   system_prompt(env) + the sample's images + question        (mask 0; verl's Continuous Token builder)
    turn     server.generate -> tokens up to <|im_end|>                  (mask 1)
             rl.parsing.parse_action(text) -> rl.env.Episode.step        (rl.tools runs the call)
             the observation as a `tool` message: images + text          (mask 0)
    end      rl.rewards.score -> reward_score (verl then skips its reward function)
             rl.masking.mask_reason -> a flagged trajectory's response_mask is all 0 (no loss)

Token budgets as in the native policy: `generation.max_new_tokens` per turn, `max_response_tokens`
policy tokens per episode and `max_total_tokens` in all (never more than verl's prompt + response
lengths); a turn or an observation that does not fit ends the episode with `truncated`. A generated
vision token sets `image_token_mismatch`. A tool image the processor refuses becomes an error
observation (`Episode.reject_observation`). Per trajectory, `extra_fields["reward_extra_info"]`
holds the reward terms and one 0/1 per mask rule under the native metric names
(`reward/accuracy`, `masked_fraction/<rule>`, ...): verl averages those over its validation batches
(`val-aux/...`). Its training-step metrics in 0.9.1 take no per-trajectory extras (`AgentLoopMetrics`
is a closed model, the training rollout dump keeps only text and score), so each episode is also
one JSON line in `log_dir` (OUT/rollouts/<host>-<pid>.jsonl: step, split, sample, reward terms,
mask reason): the training-time masked fractions per step are counted from there.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any
from uuid import uuid4

from omegaconf import DictConfig, OmegaConf
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

from rl.config import TrainConfig, apply_dict
from rl.data import _verl_to_sample
from rl.env import Episode, Observation, system_prompt
from rl.masking import mask_reason
from rl.parsing import parse_action
from rl.policies.hf_qwen import VISION_TOKENS
from rl.rewards import score
from rl.trajectory import FLAGS, Trajectory, TrajectoryBuilder
from schemas import Sample


def _plain(value: Any) -> Any:
    """Row values as plain Python (verl may hand numpy arrays / scalars for lists and numbers)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def row_sample(kwargs: dict[str, Any]) -> Sample:
    """The Sample of one verl row of a mifg export (the images from the tools' create_kwargs, as encoded)."""
    extra = _plain(kwargs.get("extra_info") or {})
    create = extra["tools_kwargs"]["visual_confirmation"]["create_kwargs"]
    row = {
        "extra_info": extra,
        "reward_model": _plain(kwargs.get("reward_model") or {}),
        "images": [{"bytes": data, "path": None} for data in create["images"]],
    }
    return _verl_to_sample(row)


def _runs(mask: list[int]) -> list[tuple[int, int, int]]:
    """(value, start, end) of each run of equal values in a 0/1 mask."""
    out, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            out.append((mask[start], start, i))
            start = i
    return out


@register("imagent")
class IMAgentLoop(AgentLoopBase):
    """One IMAgent episode per run(); see the module docstring."""

    def __init__(
        self, *args: Any, train_config: Any = None, log_dir: str | None = None, tools: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.log_path = Path(log_dir) / f"{socket.gethostname()}-{os.getpid()}.jsonl" if log_dir else None
        cfg = TrainConfig()
        if train_config is not None:
            apply_dict(cfg, _plain_config(train_config))
        self.env_cfg, self.gen, self.reward_cfg, self.mask_cfg = cfg.env, cfg.generation, cfg.reward, cfg.mask
        self.response_length = self.rollout_config.response_length
        tok = self.tokenizer
        self.stop_ids = {t for t in (tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id) if t is not None}
        self.vision_ids = {tok.convert_tokens_to_ids(t) for t in VISION_TOKENS} - {tok.unk_token_id, None}

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        """Play one episode of the row in `kwargs` against verl's LLM server."""
        ep = Episode(row_sample(kwargs), self.env_cfg)
        obs = ep.reset()
        content = [{"type": "image", "image": im} for im in obs.images] + [{"type": "text", "text": obs.text}]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt(self.env_cfg)},
            {"role": "user", "content": content},
        ]
        images = list(obs.images)
        metrics: dict[str, Any] = {}
        prompt_ids = await self.ct_build_initial_tokens(messages, images=images)
        ids, mask, logprobs = list(prompt_ids), [], []  # ids: prompt + response; mask/logprobs: response only
        total_limit = min(self.gen.max_total_tokens, len(prompt_ids) + self.response_length)
        truncated = len(prompt_ids) >= total_limit
        mismatch, generated, texts = False, 0, []
        request_id = uuid4().hex
        while not (ep.done or truncated or mismatch):
            budget = min(self.gen.max_new_tokens, self.gen.max_response_tokens - generated, total_limit - len(ids))
            if budget <= 0:
                truncated = True
                break
            with simple_timer("generate_sequences", metrics):
                out = await self.server_manager.generate(
                    request_id=request_id,
                    prompt_ids=ids,
                    sampling_params={**sampling_params, "max_tokens": budget},
                    image_data=images,
                )
            toks = list(out.token_ids)[:budget]
            stop = next((j for j, t in enumerate(toks) if t in self.stop_ids), None)
            toks = toks if stop is None else toks[: stop + 1]
            lps = list(out.log_probs or [])[: len(toks)]
            merged, mask, new_lps = await self.ct_merge_assistant_token(
                ids, toks, mask, logprobs if lps else None, assistant_logprobs=lps or None
            )
            ids, logprobs, generated = merged.token_ids, new_lps or [], generated + len(toks)
            text = self.tokenizer.decode(toks if stop is None else toks[:-1], skip_special_tokens=False)
            texts.append(text)
            if any(t in self.vision_ids for t in toks):  # only the environment may place image tokens
                mismatch = True
                break
            if stop is None:  # a token limit cut the turn before it ended
                truncated = True
                break
            messages.append({"role": "assistant", "content": text})
            obs, done, _ = ep.step(parse_action(text))
            if done:
                break
            with simple_timer("tool_calls", metrics):
                step = await self._observe(ep, obs, messages, ids, mask, logprobs, total_limit)
            if step is None:
                truncated = True  # the observation does not fit: never append part of it (an image could be cut)
                break
            ids, mask, logprobs, shown = step
            images += shown
        traj = self._trajectory(ep, ids, len(prompt_ids), mask, texts, truncated, mismatch)
        score([traj], self.reward_cfg)
        reason = mask_reason(traj, self.mask_cfg)
        response_mask = [0] * len(mask) if reason else list(mask)  # the trajectory-level mask: no loss at all
        info = {f"reward/{k}": v for k, v in traj.reward_terms.items()}
        info |= {f"masked_fraction/{f}": float(reason == f) for f in FLAGS}
        info["masked_fraction/total"] = float(reason is not None)
        info["tool_calls"] = float(sum(traj.tool_calls.values()))
        self._log(kwargs, ep, traj.reward, reason, info)
        return AgentLoopOutput(
            prompt_ids=list(prompt_ids),
            response_ids=ids[len(prompt_ids) :],
            response_mask=response_mask,
            response_logprobs=logprobs if logprobs else None,
            multi_modal_data={"images": images},
            reward_score=traj.reward,
            num_turns=len(messages) - 1,  # user + assistant + tool messages (the system prompt not counted), as verl
            metrics=metrics,
            extra_fields={
                "reward_extra_info": info,
                "tool_calls": sum(traj.tool_calls.values()),  # executed, successful calls (mifg_reward.py reads it)
                "mask_reason": reason or "",
                "turns": traj.turns,
            },
        )

    def _log(self, kwargs: dict[str, Any], ep: Episode, reward: float, reason: str | None, info: dict) -> None:
        """One JSON line per episode in log_dir (verl keeps no per-trajectory training metrics)."""
        if self.log_path is None:
            return
        step = kwargs.get("global_steps")
        record = {"step": None if step is None else int(step), "split": (kwargs.get("extra_info") or {}).get("split")}
        record |= {"sample": ep.sample.id, "reward": reward, "mask_reason": reason, "turns": ep.turns, **info}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:  # one short line per write: appends stay whole
            f.write(json.dumps(record) + "\n")

    async def _observe(
        self,
        ep: Episode,
        obs: Observation,
        messages: list[dict[str, Any]],
        ids: list[int],
        mask: list[int],
        logprobs: list[float],
        limit: int,
    ) -> tuple[list[int], list[int], list[float], list[Any]] | None:
        """Append one observation as a `tool` message: (ids, mask, logprobs, its images), None if it does not fit."""
        previous = list(messages)
        try:
            merged, new_mask, new_lps = await self._merge_observation(previous, obs, ids, mask, logprobs)
        except ValueError as e:  # the processor refused a tool image (Qwen: aspect ratio >= 200)
            if obs.kind != "tool":
                raise
            sizes = ", ".join(f"{im.width}x{im.height}" for im in obs.images)
            obs = ep.reject_observation(f"its image ({sizes}) cannot be shown to the model ({e})")
            merged, new_mask, new_lps = await self._merge_observation(previous, obs, ids, mask, logprobs)
        if len(merged.token_ids) + 1 > limit:  # room for at least one more generated token, as the native policy
            return None
        messages.append(self._tool_message(obs))
        return merged.token_ids, new_mask, new_lps or [], list(obs.images)

    async def _merge_observation(self, previous, obs, ids, mask, logprobs):
        updated = [*previous, self._tool_message(obs)]
        return await self.ct_merge_context_msg(previous, updated, ids, mask, logprobs if logprobs else None)

    @staticmethod
    def _tool_message(obs: Observation) -> dict[str, Any]:
        content = [{"type": "image", "image": im} for im in obs.images] + [{"type": "text", "text": obs.text}]
        return {"role": "tool", "content": content}

    def _trajectory(
        self,
        ep: Episode,
        ids: list[int],
        n_prompt: int,
        mask: list[int],
        texts: list[str],
        truncated: bool,
        mismatch: bool,
    ) -> Trajectory:
        """The rl Trajectory of the episode (prompt + response tokens, action mask), for rl's reward and mask."""
        builder = TrajectoryBuilder()
        builder.add_context(ids[:n_prompt])
        turn_texts = iter(texts)
        for value, start, end in _runs(mask):
            seg = ids[n_prompt + start : n_prompt + end]
            if value:
                builder.add_action(seg, [0.0] * len(seg), next(turn_texts, ""))
            else:
                builder.add_context(seg)
        return builder.finish(ep, group_id=0, truncated=truncated, image_token_mismatch=mismatch)


def _plain_config(value: Any) -> dict[str, Any]:
    """The agent-loop config's train_config (an OmegaConf node when Hydra instantiates the loop) as a dict."""
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    return _plain(dict(value))
