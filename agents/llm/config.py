"""Knobs of the LLM backend, read from the `options` dict the CLI passes to `build_llm_agents`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from agents.prompts import DEFAULT_VERSION
from schemas.errors import ConfigError

# How requests are sent, not what is asked: changing these between resumes leaves the samples the same.
TRANSPORT_OPTIONS = frozenset(
    {
        "concurrency",
        "timeout",
        "max_attempts",
        "json_retries",
        "backoff_base",
        "backoff_max",
        "retry_after_max",
        "requests_per_s",
        "tokens_per_min",
        "burst",
        "prices",
        "http_path",
    }
)


@dataclass
class LLMConfig:
    """Every option of the LLM backend with its default."""

    prompt_version: str = DEFAULT_VERSION
    timeout: float = 60.0  # seconds per HTTP attempt
    max_attempts: int = 6  # HTTP attempts per call (429/5xx/timeouts/connection errors)
    json_retries: int = 2  # re-asks after a malformed/invalid JSON reply
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    requests_per_s: float | None = None
    tokens_per_min: float | None = None
    burst: float | None = None
    prices: dict[str, Any] | None = None  # {"prompt_per_1m": .., "completion_per_1m": ..} or keyed by model
    json_mode: str = "auto"  # response_format json_object: auto (try, fall back) | on | off
    concurrency: int = 256  # connection pool size; set it to the run's concurrency
    temperature: float | None = None
    http_path: str = "lean"  # lean: direct HTTP/1.1 (fast); sdk: through the openai SDK's request path
    image_max_side: int | None = None  # writer/verifier images; None sends the cached PNG as is
    pairer_image_side: int = 256  # the pairer's call is a cheap classification: mid-size images do
    thumbnail_side: int = 64  # the critic's thumbnails when the run context does not say (ctx.thumbnail_side)
    max_tokens: dict[str, int] = field(
        default_factory=lambda: {"pairer": 128, "writer": 768, "verifier": 256, "critic": 384, "critic_blind": 64}
    )
    critic_text_probe: bool = True  # also ask a blind (text-only) guess
    blind_confidence: float = 0.8  # blind guess right with this confidence -> text_only_solvable
    thumbnail_confidence: float = 0.8  # thumbnail answer right with this confidence -> thumbnail_solvable
    option_length_ratio: float = 1.6  # correct option this much longer than the others' mean -> bias
    offline_options: dict[str, Any] = field(default_factory=dict)  # for the procedural pairer
    base_pairer: Any = None  # a Pairer that builds the images (default: the offline pairer)

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> LLMConfig:
        """Build from a plain dict; keys that are not LLM options go to the procedural pairer's options."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        # The pipeline passes one options dict to either backend; what is not ours is the pairer's.
        rest = {k: options.pop(k) for k in sorted(set(options) - known)}
        options["offline_options"] = {**rest, **(options.get("offline_options") or {})}
        max_tokens = {**cls().max_tokens, **(options.pop("max_tokens", None) or {})}
        if options.get("json_mode", "auto") not in ("auto", "on", "off"):
            raise ConfigError(f"json_mode must be auto, on or off, got {options['json_mode']!r}")
        if options.get("http_path", "lean") not in ("lean", "sdk"):
            raise ConfigError(f"http_path must be lean or sdk, got {options['http_path']!r}")
        return cls(**options, max_tokens=max_tokens)
