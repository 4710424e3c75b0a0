"""The LLM backend: the four agents over an OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, Ollama).

    check_endpoint(base_url, model, api_key)            # before any work; EndpointError, one line
    agents = build_llm_agents(base_url, model, api_key, options)
    ...                                                  # run the graph
    await aclose_agents(agents)                          # close the shared connection pool

Failures of one call raise `LLMCallError` subclasses whose `reason` the pipeline records.
"""

from __future__ import annotations

from typing import Any

from agents.base import AgentSet
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import DOWNSCALED
from agents.llm.critic import LLMCritic
from agents.llm.endpoint import check_endpoint
from agents.llm.errors import LLMCallError, MalformedOutputError, RequestRejectedError, RetriesExhaustedError
from agents.llm.pairer import LLMPairer
from agents.llm.rate_limit import RateLimiter
from agents.llm.verifier import LLMVerifier
from agents.llm.writer import LLMWriter
from agents.prompts import ROLES, load_prompt
from schemas.errors import ConfigError

BACKEND = "openai"


def build_client(base_url: str, model: str, api_key: str | None, config: LLMConfig) -> LLMClient:
    """The one client (and rate limiter) the four agents of a run share."""
    limiter = RateLimiter(config.requests_per_s, config.tokens_per_min, burst=config.burst)
    return LLMClient(
        base_url,
        model,
        api_key,
        timeout=config.timeout,
        max_attempts=config.max_attempts,
        json_retries=config.json_retries,
        backoff_base=config.backoff_base,
        backoff_max=config.backoff_max,
        retry_after_max=config.retry_after_max,
        limiter=limiter,
        prices=config.prices,
        json_mode=config.json_mode,
        max_connections=max(16, config.concurrency * 2),  # the critic makes two calls at once
        temperature=config.temperature,
        http_path=config.http_path,
    )


def build_llm_agents(base_url: str, model: str, api_key: str | None, options: dict[str, Any] | None = None) -> AgentSet:
    """The four LLM agents over one shared client; options are `LLMConfig` fields (others go to the pairer)."""
    config = LLMConfig.from_options(options)
    for role in ROLES:
        try:
            load_prompt(role, config.prompt_version)  # a missing prompt fails now, not mid-run
        except ValueError as e:
            raise ConfigError(f"LLM backend: {e}") from e
    client = build_client(base_url, model, api_key, config)
    # sizes the agents show images at besides full size: decoded once, made together (see DownscaleCache)
    DOWNSCALED.sides |= {config.pairer_image_side, config.thumbnail_side}
    if config.image_max_side:
        DOWNSCALED.sides.add(config.image_max_side)
    pairer = LLMPairer(client, config, base=config.base_pairer)
    _ = pairer.base  # build the procedural pairer now: a bad option fails before any work
    return AgentSet(
        pairer=pairer,
        writer=LLMWriter(client, config),
        verifier=LLMVerifier(client, config),
        critic=LLMCritic(client, config),
        backend=BACKEND,
        model=model,
        prompt_version=config.prompt_version,
    )


def client_of(agents: AgentSet) -> LLMClient | None:
    """The shared client of an LLM agent set (for stats), None for other backends."""
    return getattr(agents.writer, "client", None) if isinstance(agents.writer, LLMWriter) else None


async def aclose_agents(agents: AgentSet) -> None:
    """Close the shared connection pool of an LLM agent set (no-op for other backends)."""
    client = client_of(agents)
    if client is not None:
        await client.aclose()


__all__ = [
    "BACKEND",
    "LLMCallError",
    "LLMClient",
    "LLMConfig",
    "LLMCritic",
    "LLMPairer",
    "LLMVerifier",
    "LLMWriter",
    "MalformedOutputError",
    "RateLimiter",
    "RequestRejectedError",
    "RetriesExhaustedError",
    "aclose_agents",
    "build_llm_agents",
    "check_endpoint",
    "client_of",
]
