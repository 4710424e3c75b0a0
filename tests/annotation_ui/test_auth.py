"""Users file: salted scrypt hashes, never plaintext; checks; bad files named."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotation_ui.auth import add_user, hash_password, load_users, make_checker, verify_password
from schemas.errors import ConfigError, InputError


def test_hash_is_salted_and_verifies() -> None:
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1 != h2 and "correct horse" not in h1
    assert verify_password("correct horse", h1) and not verify_password("wrong horse", h1)
    assert not verify_password("x", "garbage") and not verify_password("x", "md5$1$2$3$aa$bb")


def test_users_file_roundtrip_and_checker(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    assert add_user(path, "alice", "alice-secret") is False
    assert add_user(path, "bob", "bob-secret-1") is False
    assert add_user(path, "alice", "alice-secret-2") is True
    text = path.read_text()
    assert "alice-secret" not in text and "bob-secret" not in text and "scrypt$" in text
    assert path.stat().st_mode & 0o077 == 0
    check = make_checker(load_users(path))
    assert check("alice", "alice-secret-2") and check("bob", "bob-secret-1")
    assert not check("alice", "alice-secret") and not check("mallory", "alice-secret-2") and not check("bob", "")


def test_bad_users_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_users(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[users.alice]\npassword = "plaintext"\n')
    with pytest.raises(ConfigError, match="users.alice.password"):
        load_users(bad)
    bad.write_text("[users\n")
    with pytest.raises(InputError, match="bad.toml"):
        load_users(bad)
    with pytest.raises(ConfigError, match="shorter"):
        add_user(tmp_path / "u.toml", "carol", "short")
