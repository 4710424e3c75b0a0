"""Versioned prompt files and the LLM backend's options."""

from __future__ import annotations

import pytest

from agents.llm import LLMConfig, build_llm_agents
from agents.llm.scripted_model import ROLE_MARKERS
from agents.prompts import ROLES, available_versions, load_prompt
from schemas.errors import ConfigError


def test_every_role_has_a_v1_prompt_the_test_server_recognises():
    assert "v1" in available_versions()
    markers = dict(ROLE_MARKERS)
    for role in ROLES:
        text = load_prompt(role, "v1")
        assert "JSON" in text and markers[role] in text.lower()


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
    with pytest.raises(ConfigError, match="unknown offline agent option"):
        build_llm_agents("http://127.0.0.1:9/v1", "m", None, {"no_such_option": 1})
    with pytest.raises(ConfigError, match="no prompt"):
        build_llm_agents("http://127.0.0.1:9/v1", "m", None, {"prompt_version": "v9"})
