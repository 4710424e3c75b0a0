"""The LLM backend: the four agents over an OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, Ollama).

    check_endpoint(base_url, model, api_key)            # before any work; EndpointError, one line
    agents = build_llm_agents(base_url, model, api_key, options)
    ...                                                  # run the graph
    await aclose_agents(agents)                          # close the shared connection pool

Failures of one call raise `LLMCallError` subclasses whose `reason` the pipeline records.
"""

from __future__ import annotations

import os
from typing import Any

from agents.base import AgentSet
from agents.llm.budget import Budget
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import DOWNSCALED
from agents.llm.critic import LLMCritic
from agents.llm.endpoint import check_endpoint
from agents.llm.errors import LLMCallError, MalformedOutputError, RequestRejectedError, RetriesExhaustedError
from agents.llm.pairer import LLMPairer
from agents.llm.rate_limit import RateLimiter, make_limiter
from agents.llm.verifier import LLMVerifier
from agents.llm.writer import LLMWriter
from agents.prompts import FAMILIES, ROLES, load_family, load_prompt
from schemas.errors import ConfigError

BACKEND = "openai"


def build_client(
    base_url: str, model: str, api_key: str | None, config: LLMConfig, budget: Budget | None = None
) -> LLMClient:
    """The client (and rate limiter) the agents of a run share; the budget may be shared with another."""
    limiter = make_limiter(base_url, config.requests_per_s, config.tokens_per_min, config.burst)
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
        budget=budget,
    )


def verifier_endpoint(base_url: str, model: str, api_key: str | None, config: LLMConfig) -> tuple[str, str, str | None]:
    """(base URL, model, key) the verifier votes on: its own when `verifier_model` / `verifier_base_url` say so.

    The key of another endpoint is read from MIFG_VERIFIER_API_KEY (never an option: options are recorded).
    """
    if not (config.verifier_model or config.verifier_base_url):
        return base_url, model, api_key
    other = bool(config.verifier_base_url) and config.verifier_base_url.rstrip("/") != base_url.rstrip("/")
    key = os.environ.get("MIFG_VERIFIER_API_KEY") or (None if other else api_key)
    return config.verifier_base_url or base_url, config.verifier_model or model, key


def build_llm_agents(base_url: str, model: str, api_key: str | None, options: dict[str, Any] | None = None) -> AgentSet:
    """The four LLM agents; options are `LLMConfig` fields (others go to the procedural pairer)."""
    config = LLMConfig.from_options(options)
    try:
        for role in ROLES:
            load_prompt(role, config.prompt_version)  # a missing prompt fails now, not mid-run
        for family in FAMILIES:
            load_family(family, config.prompt_version)
    except ValueError as e:
        raise ConfigError(f"LLM backend: {e}") from e
    budget = Budget(config.max_cost, config.max_total_tokens)
    client = build_client(base_url, model, api_key, config, budget)
    v_url, v_model, v_key = verifier_endpoint(base_url, model, api_key, config)
    v_client = client if (v_url, v_model) == (base_url, model) else build_client(v_url, v_model, v_key, config, budget)
    # sizes the agents show images at besides full size: decoded once, made together (see DownscaleCache)
    DOWNSCALED.sides.add(config.describer_image_side)
    if config.image_max_side:
        DOWNSCALED.sides.add(config.image_max_side)
    pairer = LLMPairer(client, config, base=config.base_pairer)
    _ = pairer.base("procedural")  # build the procedural pairer now: a bad option fails before any work
    return AgentSet(
        pairer=pairer,
        writer=LLMWriter(client, config),
        verifier=LLMVerifier(v_client, config),
        critic=LLMCritic(client, config),
        backend=BACKEND,
        model=model,
        prompt_version=config.prompt_version,
    )


def client_of(agents: AgentSet) -> LLMClient | None:
    """The shared client of an LLM agent set (for stats), None for other backends."""
    return getattr(agents.writer, "client", None) if isinstance(agents.writer, LLMWriter) else None


def budget_of(agents: AgentSet) -> Budget | None:
    """The run's budget of an LLM agent set (None for other backends)."""
    client = client_of(agents)
    return client.budget if client is not None else None


async def aclose_agents(agents: AgentSet) -> None:
    """Close the connection pools of an LLM agent set (no-op for other backends)."""
    client = client_of(agents)
    if client is not None:
        await client.aclose()
    other = getattr(agents.verifier, "client", None)
    if other is not None and other is not client:
        await other.aclose()


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
    "budget_of",
    "build_llm_agents",
    "check_endpoint",
    "client_of",
    "verifier_endpoint",
]
