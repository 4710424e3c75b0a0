"""Versioned prompt files and the LLM backend's options."""

from __future__ import annotations

import pytest

from agents.llm import LLMConfig, build_llm_agents
from agents.llm.scripted_model import ROLE_MARKERS
from agents.prompts import FAMILIES, ROLES, available_versions, load_family, load_prompt
from schemas.errors import ConfigError


def test_every_role_and_family_has_a_v2_prompt_the_test_server_recognises():
    assert "v2" in available_versions()
    markers = dict(ROLE_MARKERS)
    for role in ROLES:
        text = load_prompt(role, "v2")
        assert "JSON" in text and markers[role] in text.lower()
    for family in FAMILIES:
        guide = load_family(family, "v2")
        assert guide.startswith(f"# {family}") and guide.count("```json") >= 4  # two worked examples
    with pytest.raises(ValueError, match="unknown task family"):
        load_family("poetry")


def test_unknown_prompt_role_or_version():
    with pytest.raises(ValueError, match="unknown prompt role"):
        load_prompt("poet")
    with pytest.raises(ValueError, match="no prompt 'writer' for version 'v9'"):
        load_prompt("writer", "v9")


def test_options_not_ours_go_to_the_procedural_pairer():
    cfg = LLMConfig.from_options({"concurrency": 8, "max_images": 3, "max_tokens": {"writer": 99}})
    assert cfg.concurrency == 8 and cfg.offline_options == {"max_images": 3}
    assert cfg.max_tokens["writer"] == 99 and cfg.max_tokens["verifier"] == 256


def test_bad_options_fail_before_any_work():
    with pytest.raises(ConfigError, match="json_mode"):
        LLMConfig.from_options({"json_mode": "maybe"})
    with pytest.raises(ConfigError, match="set_mix"):
        LLMConfig.from_options({"set_mix": {"procedural": 1, "dreams": 2}})
    with pytest.raises(ConfigError, match="unknown probe"):
        LLMConfig.from_options({"probes": ["glance", "tea_leaves"]})
    with pytest.raises(ConfigError, match="verifier_votes"):
        LLMConfig.from_options({"verifier_votes": 0})
    with pytest.raises(ConfigError, match="max_cost"):
        LLMConfig.from_options({"max_cost": -1})
    with pytest.raises(ConfigError, match="unknown offline agent option"):
        build_llm_agents("http://127.0.0.1:9/v1", "m", None, {"no_such_option": 1})
    with pytest.raises(ConfigError, match="no prompt"):
        build_llm_agents("http://127.0.0.1:9/v1", "m", None, {"prompt_version": "v9"})
