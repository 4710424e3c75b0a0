"""Knobs of the LLM backend, read from the `options` dict the CLI passes to `build_llm_agents`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from agents.prompts import DEFAULT_VERSION
from schemas.errors import ConfigError

# How requests are sent and how far a run may go, not what is asked: changing these between
# resumes leaves the samples the same (a resume may raise the budget).
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
        "max_cost",
        "max_total_tokens",
    }
)
SET_SOURCES = ("procedural", "views", "related")
PROBES = ("text_only", "glance", "reordered", "single_image")  # cheapest first


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
    describer_image_side: int = 512  # the describer sees each photo once, at this size
    # where image sets come from, with weights: edits of one photo, views (crops) of one photo, and sets
    # of different photos the describer found related (when the pool has none, its share goes to the others)
    set_mix: dict[str, float] = field(default_factory=lambda: {"procedural": 0.5, "views": 0.2, "related": 0.3})
    related_max_images: int = 4  # images of a set of different photos (anchor, its match, distractors)
    caption_similarity: float = 0.3  # tag overlap (Jaccard) at which two photos count as related
    embeddings_model: str | None = None  # group by /v1/embeddings of the captions instead of tag overlap
    embedding_similarity: float = 0.8  # cosine similarity at which two captions count as related
    verifier_votes: int = 3  # blind votes, options shuffled per vote; the majority must be the writer's answer
    verifier_min_share: float = 0.5  # ... with more than this share of the votes
    verifier_model: str | None = None  # another model votes (on --verifier-base-url, or the same endpoint)
    verifier_base_url: str | None = None
    probes: tuple[str, ...] = PROBES  # the critic's probes, cheapest first
    probe_tries: int = 3  # solver calls per probe (options shuffled each time)
    probe_alpha: float = 0.05  # a probe rejects when guessing would be right this often with chance < alpha
    max_cost: float | None = None  # USD: stop the run cleanly (resumable) once spent
    max_total_tokens: int | None = None  # tokens (prompt + completion): stop the run cleanly once spent
    max_tokens: dict[str, int] = field(
        default_factory=lambda: {"describer": 160, "writer": 768, "verifier": 256, "probe": 48}
    )
    option_length_ratio: float = 1.6  # correct option this much longer than the others' mean -> bias
    offline_options: dict[str, Any] = field(default_factory=dict)  # for the procedural pairer
    base_pairer: Any = None  # a Pairer that builds procedural sets (default: the offline pairer)

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
        mix = options.get("set_mix")
        if mix is not None:
            if (
                not isinstance(mix, dict)
                or set(mix) - set(SET_SOURCES)
                or not all(isinstance(v, (int, float)) and v >= 0 for v in mix.values())
            ):
                raise ConfigError(f"set_mix wants weights >= 0 for some of {', '.join(SET_SOURCES)}; got {mix!r}")
            if not sum(mix.values()):
                raise ConfigError("set_mix: give at least one source a weight above 0")
            options["set_mix"] = {k: float(v) for k, v in mix.items()}
        if "probes" in options:
            probes = options["probes"]
            probes = [probes] if isinstance(probes, str) else list(probes or [])
            bad = [p for p in probes if p not in PROBES]
            if bad:
                raise ConfigError(f"unknown probe(s) {', '.join(bad)}; known: {', '.join(PROBES)}")
            options["probes"] = tuple(p for p in PROBES if p in probes)
        for key, low in (("verifier_votes", 1), ("probe_tries", 1), ("related_max_images", 2)):
            if key in options and (not isinstance(options[key], int) or options[key] < low):
                raise ConfigError(f"{key} must be an integer >= {low}; got {options[key]!r}")
        for key in ("max_cost", "max_total_tokens"):
            if options.get(key) is not None and not (isinstance(options[key], (int, float)) and options[key] > 0):
                raise ConfigError(f"{key} must be a positive number; got {options[key]!r}")
        return cls(**options, max_tokens=max_tokens)
