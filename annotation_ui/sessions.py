"""Who is signed in: signed session tokens that survive a restart, and the login throttle.

A session token is `NAME.ISSUED_MS.SIGNATURE`, signed (HMAC-SHA256) with a secret kept in the run
dir (`RUN/review-secret.json`, mode 600, made on first start) over the name, the time it was issued
and a fingerprint of the user's password hash. So a restart keeps everyone signed in, while a changed
password, a removed user, a logout (`logged_out` times in the same file) or age (SESSION_HOURS)
ends a session. Nothing but the secret file is needed to check a token.

The throttle counts failed logins per user name and per client address in a sliding window; past the
limit, every login for that name / from that address is refused (the right password too, without
checking it) for a delay that doubles with each lockout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import InputError

SECRET_NAME = "review-secret.json"
SESSION_HOURS = 24.0


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable by the owner only from the first byte (mode 600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT keeps the mode of a stale temp file; make sure
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class SessionKeys:
    """Signs and checks session tokens for the users of `password_hashes` (name -> stored hash)."""

    def __init__(
        self,
        secret_dir: str | Path | None,
        password_hashes: dict[str, str],
        *,
        max_age_s: float = SESSION_HOURS * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(secret_dir) / SECRET_NAME if secret_dir is not None else None
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._fingerprints = {
            name: hashlib.sha256(stored.encode("utf-8")).hexdigest()[:16] for name, stored in password_hashes.items()
        }
        state = self._load() if self.path is not None else None
        if state is None:
            state = {"secret": secrets.token_hex(32), "logged_out": {}}
            self._save(state)
        self._secret = bytes.fromhex(state["secret"])
        self._logged_out: dict[str, int] = dict(state["logged_out"])
        # Gradio names its cookies after the app's cookie id; a stable one lets a cookie outlive a restart.
        self.cookie_id = hmac.new(self._secret, b"cookie-id", hashlib.sha256).hexdigest()[:24]

    def _load(self) -> dict | None:
        assert self.path is not None
        try:
            raw = self.path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise InputError(f"{self.path}: cannot read the session secret ({e})") from e
        try:
            state = json.loads(raw)
            bytes.fromhex(state["secret"])
            state["logged_out"] = {str(k): int(v) for k, v in dict(state.get("logged_out") or {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{self.path}: not a session secret file; delete it to sign everyone out") from e
        if self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)  # readable by others: anyone who reads it can forge sessions
        return state

    def _save(self, state: dict) -> None:
        if self.path is None:
            return
        write_private(self.path, json.dumps(state, sort_keys=True).encode("utf-8"))

    def _sign(self, name: str, issued_ms: int) -> str:
        msg = f"{name}.{issued_ms}.{self._fingerprints.get(name, '')}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:43]

    def issue(self, name: str) -> str:
        """A new session token for `name` (who must be a user)."""
        issued_ms = int(self.clock() * 1000)
        return f"{name}.{issued_ms}.{self._sign(name, issued_ms)}"

    def check(self, token: object) -> str | None:
        """The user name a token was issued to, or None if it is forged, old, revoked or not a user's."""
        if not isinstance(token, str) or token.count(".") < 2 or len(token) > 200:
            return None
        name, issued, sig = token.rsplit(".", 2)
        if name not in self._fingerprints or not issued.isdigit():
            return None
        issued_ms = int(issued)
        now_ms = self.clock() * 1000
        if not (now_ms - self.max_age_s * 1000 < issued_ms <= now_ms + 60_000):
            return None
        if issued_ms <= self._logged_out.get(name, -1):
            return None
        return name if hmac.compare_digest(sig, self._sign(name, issued_ms)) else None

    def log_out(self, name: str) -> None:
        """End every session of `name` issued until now (kept in the secret file, so also after a restart)."""
        with self._lock:
            self._logged_out[name] = int(self.clock() * 1000)
            self._save({"secret": self._secret.hex(), "logged_out": self._logged_out})


class TokenTable:
    """What Gradio's `app.tokens` dict is used as (token -> user name), answered by checking signatures."""

    def __init__(self, keys: SessionKeys) -> None:
        self.sessions = keys

    def get(self, token: object, default: str | None = None) -> str | None:
        return self.sessions.check(token) or default

    def __getitem__(self, token: object) -> str:
        name = self.sessions.check(token)
        if name is None:
            raise KeyError(token)
        return name

    def __contains__(self, token: object) -> bool:
        return self.sessions.check(token) is not None

    def __setitem__(self, token: str, name: str) -> None:
        pass  # Gradio's own login never runs (the guard answers /login); its random tokens are not sessions

    def __delitem__(self, token: str) -> None:
        pass  # logout is handled by the guard (SessionKeys.log_out)

    def keys(self) -> list[str]:
        return []  # no table to list: Gradio's logout loop finds nothing, the guard has revoked already

    def __iter__(self) -> Iterator[str]:
        return iter(())


@dataclass
class LoginThrottle:
    """Failed-login limits per user and per client address, with a lockout that doubles each time."""

    max_user_failures: int = 5
    max_address_failures: int = 20  # higher: a team behind one NAT address must not lock itself out
    window_s: float = 60.0
    first_lock_s: float = 30.0
    max_lock_s: float = 15 * 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)
    _strikes: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def _keys(name: str, address: str) -> tuple[str, str]:
        return f"user:{name.strip().lower()[:64]}", f"addr:{address}"

    def refusal(self, name: str, address: str) -> tuple[str, int] | None:
        """(message, seconds to wait) if a login for `name` from `address` is refused now, else None."""
        now = self.clock()
        user_key, addr_key = self._keys(name, address)
        with self._lock:
            for key in (addr_key, user_key):
                left = self._locked_until.get(key, 0.0) - now
                if left > 0:
                    return _lock_message(key, left), math.ceil(left)
        return None

    def failed(self, name: str, address: str) -> tuple[str, int] | None:
        """Count a failed login; (message, seconds) if this failure starts a lockout, else None."""
        now = self.clock()
        out = None
        with self._lock:
            self._prune(now)
            limits = (self.max_user_failures, self.max_address_failures)
            for key, limit in zip(self._keys(name, address), limits, strict=True):
                times = self._failures.setdefault(key, deque())
                times.append(now)
                while times and times[0] <= now - self.window_s:
                    times.popleft()
                if len(times) >= limit:
                    strikes = self._strikes.get(key, 0)
                    lock = min(self.max_lock_s, self.first_lock_s * 2**strikes)
                    self._strikes[key] = strikes + 1
                    self._locked_until[key] = now + lock
                    times.clear()
                    out = _lock_message(key, lock), math.ceil(lock)
        return out

    def succeeded(self, name: str) -> None:
        """A good login clears the user's failures and lockout history (the address keeps its count)."""
        user_key, _ = self._keys(name, "")
        with self._lock:
            for table in (self._failures, self._locked_until, self._strikes):
                table.pop(user_key, None)

    def _prune(self, now: float) -> None:
        """Forget keys quiet for long (names are chosen by whoever calls: the tables must stay small)."""
        if len(self._failures) < 10_000:
            return
        quiet = now - 2 * self.max_lock_s
        for key in [k for k, t in self._failures.items() if not t or t[-1] < quiet]:
            if self._locked_until.get(key, 0.0) < now:
                for table in (self._failures, self._locked_until, self._strikes):
                    table.pop(key, None)


def _lock_message(key: str, seconds: float) -> str:
    who = "for this user" if key.startswith("user:") else "from this address"
    return f"Too many failed sign-ins {who}; try again in {math.ceil(seconds)} s."
