"""The tiny policy: a small image encoder + a small causal transformer over an action vocabulary.

It trains on CPU in minutes and goes through exactly the path of a VLM policy: each sampled action
is turned into the canonical turn text (`<tool_call>{...}</tool_call>` / `<answer>X</answer>`),
parsed by rl.parsing, executed by rl.env / rl.tools, and the observation is appended as tokens.

Token vocabulary (one token per action, so a policy turn is one token):

    0                         reflect            visual_reflection of all images
    1 + k*G*G + r             confirm(k, r)      visual_confirmation of image k+1, cell r of a G x G grid
    1 + M*G*G + l             answer(l)          <answer>LETTER[l]</answer>
    then BOS, IMG, TOOL, ERR, PAD                context tokens (never sampled)

A sequence is  BOS IMG*n | a1 | TOOL IMG* | a2 | ERR | a3 ...  Every image — a prompt image, a
re-presented one or a zoomed crop — is resized to `res` x `res` (box filter) and encoded by a small
CNN into the embedding of its IMG token (+ which source image it shows + full view or crop). At
`res` = 16 a 96 px image is an overview downscaled 6x: a detail that averages out at that scale is
invisible until the policy zooms in with visual_confirmation. The question text enters as a hashed
bag of words added to BOS.
"""

from __future__ import annotations

import copy
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rl.env import EnvConfig, Episode, Observation, decode_images, system_prompt
from rl.parsing import format_answer, format_tool_call, parse_action
from rl.policies.base import GenerationConfig, resolve_device
from rl.trajectory import Trajectory, TrajectoryBuilder, pad_stack
from schemas import LETTERS, Sample


@dataclass
class TinyConfig:
    """Sizes of the tiny policy (TOML section [tiny])."""

    res: int = 16  # every image is seen at res x res
    grid: int = 2  # visual_confirmation regions: a grid x grid partition of an image
    max_images: int = 4  # image numbers the action vocabulary can name
    max_options: int = 4  # answer letters the action vocabulary can name
    dim: int = 64
    layers: int = 2
    heads: int = 4
    max_len: int = 48  # tokens per trajectory; beyond -> truncated
    text_buckets: int = 512  # hashed bag-of-words of the question


class TinyNet(nn.Module):
    """Image encoder + causal transformer + action head; forward gives (B, T, n_actions) logits."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g2 = cfg.grid * cfg.grid
        self.n_actions = 1 + cfg.max_images * g2 + cfg.max_options
        self.BOS, self.IMG, self.TOOL, self.ERR, self.PAD = range(self.n_actions, self.n_actions + 5)
        d = cfg.dim
        self.tok = nn.Embedding(self.n_actions + 5, d)
        self.pos = nn.Embedding(cfg.max_len, d)
        self.text = nn.EmbeddingBag(cfg.text_buckets, d, mode="sum")  # weighted to a mean below
        self.img_slot = nn.Embedding(cfg.max_images, d)  # which source image an IMG token shows
        self.img_kind = nn.Embedding(2, d)  # 0 = whole image, 1 = zoomed crop
        side = cfg.res // 4
        self.cnn = nn.Sequential(  # (N, 3, res, res) -> (N, d); flattening keeps where things are
            nn.Conv2d(3, 16, 3, stride=2, padding=1),  # a 3x3 kernel still sees 1 px texture at stride 2
            nn.GELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Flatten(),
            nn.Linear(32 * side * side, d),
            nn.LayerNorm(d),  # image evidence enters at the same scale as everything else
        )
        layer = nn.TransformerEncoderLayer(d, cfg.heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, self.n_actions))
        for emb in (self.tok, self.pos, self.text, self.img_slot, self.img_kind):
            nn.init.normal_(emb.weight, std=0.02)  # small (GPT-2 style) so they do not drown the image features

    def encode_images(self, images: torch.Tensor, image_meta: torch.Tensor) -> torch.Tensor:
        """(N, 3, res, res) images + (N, 2) [source slot, kind] -> (N, d) IMG-token embeddings."""
        if images.shape[0] == 0:
            return images.new_zeros((0, self.cfg.dim))
        return self.cnn(images) + self.img_slot(image_meta[:, 0]) + self.img_kind(image_meta[:, 1])

    def forward(
        self,
        ids: torch.Tensor,  # (B, T) token ids, right-padded with PAD
        images: torch.Tensor,  # (N, 3, res, res) all images of the batch in IMG-token order
        image_meta: torch.Tensor,  # (N, 2) [source slot, kind]
        text_ids: torch.Tensor,  # (B, W) hashed question words, padded with -1
    ) -> torch.Tensor:
        """(B, T, n_actions): logits of the action following each position."""
        return self.forward_features(ids, self.encode_images(images, image_meta), text_ids)

    def forward_features(self, ids: torch.Tensor, feats: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """As forward, with the (N, d) image embeddings already computed (rollout caches them)."""
        B, T = ids.shape
        x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))[None]  # (B, T, d)
        is_img = ids == self.IMG  # (B, T); row-major order = order the images were appended
        x = x.masked_scatter(is_img[..., None], feats.to(x.dtype))
        words = text_ids.clamp(min=0)
        wmask = (text_ids >= 0).float()
        bag = self.text(words, per_sample_weights=wmask / wmask.sum(-1, keepdim=True).clamp(min=1))  # (B, d)
        x = torch.cat([x[:, :1] + bag[:, None], x[:, 1:]], dim=1)  # the question joins the BOS token
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).triu(1)  # True = may not attend
        h = self.blocks(x, mask=causal, src_key_padding_mask=ids == self.PAD)  # (B, T, d)
        return self.head(h)  # (B, T, n_actions)


class TinyPolicy:
    """The Policy protocol (rl/policies/base.py) over TinyNet."""

    name = "tiny"

    def __init__(self, cfg: TinyConfig, device: str = "cpu", seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.cfg = cfg
        self.module: nn.Module = TinyNet(cfg).to(resolve_device(device))
        self.net: TinyNet = self.module  # unwrapped, for vocabulary constants
        self.ref: TinyNet = copy.deepcopy(self.net).eval().requires_grad_(False)  # frozen initial policy

    # ---- the protocol ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.net.parameters()).device

    def parameters(self) -> Iterator[nn.Parameter]:
        """Trainable parameters."""
        return self.net.parameters()

    def train(self, mode: bool = True) -> TinyPolicy:
        """Train/eval mode (no dropout here, but keep the protocol honest)."""
        self.module.train(mode)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Weights of the policy and of the frozen reference."""
        return {"model": self.net.state_dict(), "ref": self.ref.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`."""
        self.net.load_state_dict(state["model"])
        self.ref.load_state_dict(state["ref"])

    def token_logprobs(
        self, trajectories: list[Trajectory], with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) log-probs of each action token given its prefix (0 elsewhere), and (B, T) entropy."""
        return self._score(self.module, trajectories, with_entropy)

    @torch.no_grad()
    def reference_logprobs(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """(B, T) log-probs under the frozen initial policy."""
        return self._score(self.ref, trajectories, False)[0]

    def _score(
        self, net: nn.Module, trajs: list[Trajectory], with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids, images, meta, text = self._batch(trajs)  # ids (B, T)
        logits = net(ids, images, meta, text)  # (B, T, A): position t predicts token t+1
        logp_all = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, A)
        act = pad_stack([t.action_mask for t in trajs]).to(ids.device)[:, 1:] > 0  # (B, T-1)
        target = torch.where(act, ids[:, 1:], 0)  # context tokens are never targets
        lp = logp_all.gather(-1, target[..., None]).squeeze(-1)  # (B, T-1)
        zero = ids.new_zeros((ids.shape[0], 1), dtype=lp.dtype)
        logp = torch.cat([zero, torch.where(act, lp, 0.0)], dim=1)  # (B, T) aligned with token_ids
        ent = None
        if with_entropy:
            e = -(logp_all.exp() * logp_all).sum(-1)  # (B, T-1)
            ent = torch.cat([zero, torch.where(act, e, 0.0)], dim=1)
        return logp, ent

    def _batch(self, trajs: list[Trajectory]) -> tuple[torch.Tensor, ...]:
        dev = self.device
        ids = pad_stack([t.token_ids for t in trajs], value=self.net.PAD).to(dev)
        imgs = [t.extras["images"] for t in trajs]
        meta = [t.extras["image_meta"] for t in trajs]
        images = torch.cat(imgs).to(dev) if imgs else torch.zeros(0, 3, self.cfg.res, self.cfg.res, device=dev)
        text = pad_stack([t.extras["text_ids"] for t in trajs], value=-1).to(dev)
        return ids, images, torch.cat(meta).to(dev), text

    # ---- rollout ----------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(
        self,
        samples: list[Sample],
        group_size: int,
        env_cfg: EnvConfig,
        gen_cfg: GenerationConfig,
        group_offset: int = 0,
    ) -> list[Trajectory]:
        """`group_size` episodes per sample, all stepped together one turn (= one token) at a time."""
        net = self.net
        max_len = min(self.cfg.max_len, gen_cfg.max_total_tokens)
        runs: list[_Run] = []
        for i, s in enumerate(samples):
            originals = decode_images(s)  # decoded once per sample, shared by its group
            text = self._text_ids(system_prompt(env_cfg) + "\n" + s.question + " " + " ".join(s.options))
            for _ in range(group_size):
                run = _Run(Episode(s, env_cfg, images=originals), group_offset + i, text)
                self._observe(run, run.episode.reset(), first=True)
                runs.append(run)
        active = [r for r in runs if len(r.builder) < max_len]
        for r in runs:
            r.truncated = len(r.builder) >= max_len
        while active:
            dev = self.device
            ids = pad_stack([torch.tensor(r.builder.ids) for r in active], value=net.PAD).to(dev)  # (B, T)
            _encode_new_images(net, active, dev)  # each image is encoded once per rollout, in one batch
            feats = torch.cat([torch.stack(r.feats) for r in active])  # (N, d) in IMG-token order
            text = pad_stack([r.text_ids for r in active], value=-1).to(dev)
            logits = net.forward_features(ids, feats, text)  # (B, T, A)
            last = torch.tensor([len(r.builder) - 1 for r in active], device=dev)
            logits = logits[torch.arange(len(active), device=dev), last].float()  # (B, A) next-action logits
            if gen_cfg.greedy:
                acts = logits.argmax(-1)
            else:
                probs = F.softmax(logits / max(gen_cfg.temperature, 1e-5), dim=-1)
                acts = torch.multinomial(probs, 1).squeeze(-1)  # global torch RNG (saved by the trainer)
            logps = F.log_softmax(logits, -1).gather(-1, acts[:, None]).squeeze(-1)
            still = []
            for r, a, lp in zip(active, acts.tolist(), logps.tolist(), strict=True):
                text_turn = self.action_text(a)
                r.builder.add_action([a], [lp], text_turn)
                obs, done, _ = r.episode.step(parse_action(text_turn))
                if done:
                    continue
                n_obs = 1 if obs.kind == "error" else 1 + len(obs.images)
                if len(r.builder) + n_obs + 1 > max_len or len(r.builder.turns) >= gen_cfg.max_response_tokens:
                    r.truncated = True  # no room for this observation and another action: the episode is cut
                    continue
                self._observe(r, obs)
                still.append(r)
            active = still
        return [r.finish(self.net.IMG) for r in runs]

    def action_text(self, a: int) -> str:
        """The canonical turn text of action id `a` (what the parser and env see)."""
        g, g2 = self.cfg.grid, self.cfg.grid**2
        if a == 0:
            return format_tool_call("visual_reflection", {})
        if a < 1 + self.cfg.max_images * g2:
            k, r = divmod(a - 1, g2)
            row, col = divmod(r, g)
            box = [round(col / g, 4), round(row / g, 4), round((col + 1) / g, 4), round((row + 1) / g, 4)]
            return format_tool_call("visual_confirmation", {"image": k + 1, "bbox_2d": box})
        return format_answer(LETTERS[a - 1 - self.cfg.max_images * g2])

    def _observe(self, run: _Run, obs: Observation, first: bool = False) -> None:
        """Append an observation's tokens: BOS IMG* for the prompt, TOOL IMG* for a tool, ERR for an error."""
        net = self.net
        if obs.kind == "error":
            run.builder.add_context([net.ERR])
            return
        head = net.BOS if first else net.TOOL
        run.builder.add_context([head] + [net.IMG] * len(obs.images), obs.images)
        for im, info in zip(obs.images, obs.image_info, strict=True):
            run.images.append(self._encode_image(im))
            crop = int(tuple(info["bbox"]) != (0.0, 0.0, 1.0, 1.0))
            run.meta.append([min(info["image"], self.cfg.max_images - 1), crop])

    def _encode_image(self, img: Image.Image) -> torch.Tensor:
        """(3, res, res) in [-0.5, 0.5]; the box filter averages exactly over each output pixel's area."""
        small = img.convert("RGB").resize((self.cfg.res, self.cfg.res), Image.Resampling.BOX)
        t = torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8).view(self.cfg.res, self.cfg.res, 3)
        return t.permute(2, 0, 1).float() / 255.0 - 0.5

    def _text_ids(self, text: str) -> torch.Tensor:
        words = re.findall(r"[a-z0-9]+", text.lower())
        return torch.tensor([zlib.crc32(w.encode()) % self.cfg.text_buckets for w in words] or [-1], dtype=torch.long)


class _Run:
    """Rollout state of one episode: the env, the token builder and the encoded images so far."""

    def __init__(self, episode: Episode, group_id: int, text_ids: torch.Tensor) -> None:
        self.episode, self.group_id, self.text_ids = episode, group_id, text_ids
        self.builder = TrajectoryBuilder()
        self.images: list[torch.Tensor] = []
        self.meta: list[list[int]] = []
        self.feats: list[torch.Tensor] = []  # (d,) embedding per image, filled by _encode_new_images
        self.truncated = False

    def _extras(self) -> dict[str, torch.Tensor]:
        return {
            "images": torch.stack(self.images) if self.images else torch.zeros(0, 3, 1, 1),
            "image_meta": torch.tensor(self.meta, dtype=torch.long).view(-1, 2),
            "text_ids": self.text_ids,
        }

    def finish(self, img_id: int) -> Trajectory:
        """The finished Trajectory; the IMG count must equal the image count (else flagged)."""
        n_img = sum(1 for i in self.builder.ids if i == img_id)
        return self.builder.finish(
            self.episode,
            self.group_id,
            truncated=self.truncated,
            image_token_mismatch=n_img != len(self.images),
            extras=self._extras(),
        )


def _encode_new_images(net: TinyNet, runs: list[_Run], device: torch.device) -> None:
    """Encode, in one batch, the images of `runs` that have no embedding yet."""
    todo = [(r, i) for r in runs for i in range(len(r.feats), len(r.images))]
    if not todo:
        return
    imgs = torch.stack([r.images[i] for r, i in todo]).to(device)  # (N, 3, res, res)
    meta = torch.tensor([r.meta[i] for r, i in todo], dtype=torch.long, device=device)  # (N, 2)
    for (r, _), f in zip(todo, net.encode_images(imgs, meta), strict=True):
        r.feats.append(f)
