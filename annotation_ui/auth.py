"""Annotator accounts: a TOML users file holding salted scrypt hashes (never a plaintext password).

    # users.toml
    [users.alice]
    password = "scrypt$16384$8$1$<salt hex>$<key hex>"

`mifg review-users add users.toml alice` writes entries; `mifg review --users users.toml` checks logins.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from annotation_ui.review_store import check_annotator
from pipeline.shard_store import atomic_write_bytes
from schemas.errors import ConfigError, InputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

# scrypt cost: n=2**14, r=8 -> 16 MiB and ~50 ms per check: slow for guessing, fine for a login.
_N, _R, _P = 1 << 14, 8, 1
_DKLEN = 32
MIN_PASSWORD_CHARS = 8


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash string of `password`, self-describing its parameters."""
    salt = salt or os.urandom(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash string (constant-time compare; False if malformed)."""
    try:
        scheme, n, r, p, salt_hex, key_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        key = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(key_hex) // 2,
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key.hex(), key_hex)


def load_users(path: str | Path) -> dict[str, str]:
    """name -> password hash from a users file; InputError/ConfigError naming the file and entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"{path}: users file not found (create it with `mifg review-users add {path} NAME`)") from e
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{path}: unreadable users file ({e})") from e
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError(f"{path}: [users] must be a table")
    out = {}
    for name, entry in users.items():
        try:
            check_annotator(name)
        except Exception as e:
            raise ConfigError(f"{path}: users.{name}: {e}") from e
        pw = entry.get("password") if isinstance(entry, dict) else None
        if not isinstance(pw, str) or not pw.startswith("scrypt$") or pw.count("$") != 5:
            raise ConfigError(f"{path}: users.{name}.password must be a hash made by `mifg review-users add`")
        out[name] = pw
    return out


def save_users(path: str | Path, users: dict[str, str]) -> None:
    """Write the users file atomically (names are validated, hashes contain no quotes)."""
    lines = [
        "# mifg review users. Passwords are salted scrypt hashes; add users with `mifg review-users add FILE NAME`.",
        "",
    ]
    for name in sorted(users):
        check_annotator(name)
        lines += [f"[users.{name}]", f'password = "{users[name]}"', ""]
    path = Path(path)
    atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))
    os.chmod(path, 0o600)


def add_user(path: str | Path, name: str, password: str) -> bool:
    """Add or replace one user; returns True if the user already existed."""
    check_annotator(name)
    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"password for {name} is shorter than {MIN_PASSWORD_CHARS} characters")
    path = Path(path)
    users = load_users(path) if path.exists() else {}
    existed = name in users
    users[name] = hash_password(password)
    save_users(path, users)
    return existed


def make_checker(users: dict[str, str]):
    """A callable checking name + password against the users' hashes (what the guard calls at login)."""
    # A fixed dummy hash keeps the time of a check the same for unknown names (no user enumeration by timing).
    dummy = hash_password("not-a-password", salt=b"\0" * 16)

    def check(name: str, password: str) -> bool:
        stored = users.get(name)
        ok = verify_password(password or "", stored or dummy)
        return ok and stored is not None

    return check


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (open mode is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
