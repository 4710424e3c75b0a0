"""The HTTP guard in front of Gradio: which routes of the review app answer, and to whom.

An ASGI middleware given to Gradio's FastAPI app (`launch(app_kwargs={"middleware": ...})`). For every
request, in this order:

1. Closed for everyone (404): file upload and its progress, Gradio's file routes (its temp folder is
   never served: page images come from `GET /mifg/img/<sha256>.<ext>`, answered here from the
   app's own registry to signed-in users only, see `image_route`), the proxy, streams,
   recordings, component servers, run history, monitoring, MCP, reload and vibe editing.
2. `POST /login` is answered here, not by Gradio: throttled per user name and per client address
   (`sessions.LoginThrottle`; during a lockout the right password is refused too, with the wait in
   the message and a `Retry-After` header), checked against the users' scrypt hashes one at a time,
   and answered with a signed session cookie (`sessions.SessionKeys`) under the names Gradio reads.
3. `GET /logout` ends every session of that user (kept across restarts), then Gradio clears the cookies.
4. Without a valid session only the login page and its assets answer; everything else is 401
   (`/gradio_api/cancel`, `/reset`, `/info`, `/config`, the queue, heartbeats...). The login page is
   served without Gradio's API description and with a small script that shows the server's message.

The client address is the TCP peer: behind a reverse proxy every user shares the proxy's address
(the per-address limit is set high for that reason; X-Forwarded-For is not trusted).
In open mode (no users; localhost only) only rule 1 applies.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from annotation_ui.image_route import IMAGES, ROUTE
from annotation_ui.sessions import LoginThrottle, SessionKeys, TokenTable

Scope = dict[str, Any]

CLOSED_PREFIXES = (
    "/gradio_api/upload",  # and /gradio_api/upload_progress
    "/gradio_api/file=",
    "/gradio_api/file/",
    "/file=",
    "/file/",
    "/gradio_api/proxy=",
    "/proxy=",
    "/gradio_api/stream/",
    "/gradio_api/process_recording",
    "/gradio_api/component_server",
    "/gradio_api/run-history",
    "/gradio_api/runs",
    "/gradio_api/dev/",
    "/gradio_api/mcp",
    "/gradio_api/vibe",
    "/gradio_api/undo-vibe",
    "/gradio_api/deep_link",
    "/gradio_api/openapi.json",
    "/monitoring",
)
# What the login page needs before anyone is signed in.
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/login",
        "/login/",
        "/logout",
        "/favicon.ico",
        "/robots.txt",
        "/manifest.json",
        "/theme.css",
        "/gradio_api/theme.css",
        "/gradio_api/login_check",
        "/gradio_api/login_check/",
        "/gradio_api/startup-events",  # launch() calls it before anyone signs in; it runs once, then is a no-op
    }
)
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/")
BAD_CREDENTIALS = "Incorrect credentials."
NO_API = '{"named_endpoints": {}, "unnamed_endpoints": {}}'  # what the page's script expects, empty

# Shown on the login page: Gradio's form only says "Incorrect Credentials" and nothing for other refusals.
LOGIN_SCRIPT = """<script>(() => {
  const fetch0 = window.fetch;
  function show(text) {
    let box = document.getElementById("mifg-login-msg");
    if (!box) {
      box = document.createElement("div");
      box.id = "mifg-login-msg";
      box.setAttribute("role", "alert");
      box.style.cssText = "position:fixed;top:12px;left:50%;transform:translateX(-50%);z-index:1000;" +
        "max-width:90vw;padding:10px 16px;border-radius:8px;background:#fef2f2;color:#991b1b;" +
        "border:1px solid #fca5a5;font:15px system-ui,sans-serif";
      document.body.appendChild(box);
    }
    box.textContent = text;
  }
  window.fetch = async function (input, init) {
    const res = await fetch0.apply(this, arguments);
    try {
      const url = new URL(typeof input === "string" ? input : input.url, location.href);
      if (/\\/login\\/?$/.test(url.pathname) && res.status >= 400) {
        const body = await res.clone().json().catch(() => ({}));
        show(typeof body.detail === "string" ? body.detail : "Sign-in refused.");
      }
    } catch (e) {}
    return res;
  };
})();</script>"""
_API_INFO = re.compile(r"window\.gradio_api_info = .*?;</script>", re.DOTALL)


def _closed(path: str) -> bool:
    return path.startswith(CLOSED_PREFIXES)


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _normal_path(scope: Scope) -> str:
    path = scope.get("path") or "/"
    return re.sub(r"/{2,}", "/", path)


def login_page(html: str) -> str:
    """Gradio's login page without its API description and with the refusal-message script."""
    html = _API_INFO.sub(f"window.gradio_api_info = {NO_API};</script>", html, count=1)
    return html.replace("</head>", LOGIN_SCRIPT + "</head>", 1)


class Guard:
    """ASGI middleware applying the module's rules; `checker` and `keys` are None in open mode."""

    def __init__(
        self,
        app: Callable,
        *,
        checker: Callable[[str, str], bool] | None = None,
        keys: SessionKeys | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.app = app
        self.checker = checker
        self.keys = keys
        self.throttle = throttle or LoginThrottle()
        self._bound: object = None
        self._login_lock: asyncio.Lock | None = None

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if self.keys is not None and scope.get("app") is not None and scope["app"] is not self._bound:
            self._bind(scope["app"])
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = _normal_path(scope)
        if _closed(path):
            return await self._refuse(scope, receive, send, 404, "Not found.")
        method = scope.get("method", "GET")
        image = path.startswith(ROUTE) and scope["type"] == "http" and method in ("GET", "HEAD")
        if self.keys is None:  # open mode
            return await (self._image(scope, receive, send, path) if image else self.app(scope, receive, send))
        if path in ("/login", "/login/") and method == "POST":
            return await (await self._login(scope, receive))(scope, receive, send)
        user = self._user(scope)
        if path == "/logout" and user is not None:
            self.keys.log_out(user)
        if user is not None:
            return await (self._image(scope, receive, send, path) if image else self.app(scope, receive, send))
        if not _public(path):
            return await self._refuse(scope, receive, send, 401, "Not authenticated.")
        if path == "/" and method == "GET":
            return await self.app(scope, receive, _patching_login_page(send))
        return await self.app(scope, receive, send)

    async def _image(self, scope: Scope, receive: Callable, send: Callable, path: str) -> None:
        """A page image by content hash (`annotation_ui.image_route`), cached for good by the browser."""
        tag = HTTPConnection(scope).headers.get("if-none-match")
        await IMAGES.response(path, tag)(scope, receive, send)

    def _bind(self, app: Any) -> None:
        """Make Gradio read our signed sessions: its token table and a cookie name stable across restarts."""
        assert self.keys is not None
        app.tokens = TokenTable(self.keys)
        app.cookie_id = self.keys.cookie_id
        self._bound = app

    def _user(self, scope: Scope) -> str | None:
        assert self.keys is not None
        cookies = HTTPConnection(scope).cookies
        cid = self.keys.cookie_id
        for name in (f"access-token-{cid}", f"access-token-unsecure-{cid}"):
            user = self.keys.check(cookies.get(name))
            if user is not None:
                return user
        return None

    async def _refuse(self, scope: Scope, receive: Callable, send: Callable, code: int, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await JSONResponse({"detail": detail}, status_code=code)(scope, receive, send)

    async def _login(self, scope: Scope, receive: Callable) -> Response:
        assert self.keys is not None and self.checker is not None
        address = (scope.get("client") or ("unknown",))[0]
        try:
            form = await Request(scope, receive).form(max_files=0, max_fields=10, max_part_size=64 * 1024)
        except Exception:  # noqa: BLE001 - any malformed body is a bad login, never a server error
            return JSONResponse({"detail": "Send a username and a password."}, status_code=400)
        name, password = form.get("username"), form.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            return JSONResponse({"detail": "Send a username and a password."}, status_code=400)
        name = name.strip()
        refused = self.throttle.refusal(name, address)
        if refused is None:
            if self._login_lock is None:
                self._login_lock = asyncio.Lock()
            async with self._login_lock:  # one check at a time: a burst cannot outrun the counter
                refused = self.throttle.refusal(name, address)
                if refused is None:
                    ok = await anyio.to_thread.run_sync(self.checker, name, password)
                    if ok:
                        self.throttle.succeeded(name)
                        return self._signed_in(name)
                    refused = self.throttle.failed(name, address)
        if refused is not None:
            message, wait_s = refused
            return JSONResponse({"detail": message}, status_code=429, headers={"Retry-After": str(wait_s)})
        return JSONResponse({"detail": BAD_CREDENTIALS}, status_code=400)

    def _signed_in(self, name: str) -> Response:
        """Gradio's login answer, with our signed token in Gradio's two cookies."""
        assert self.keys is not None
        token = self.keys.issue(name)
        response = JSONResponse({"success": True})
        cid = self.keys.cookie_id
        response.set_cookie(f"access-token-{cid}", token, httponly=True, samesite="none", secure=True)
        response.set_cookie(f"access-token-unsecure-{cid}", token, httponly=True, samesite="lax")
        return response


def _patching_login_page(send: Callable) -> Callable:
    """A `send` that rewrites the HTML login page (buffered: it is a few kB) with `login_page`."""
    start: dict | None = None
    chunks: list[bytes] = []

    async def patched(message: dict) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            if message.get("status") == 200 and headers.get(b"content-type", b"").startswith(b"text/html"):
                start = message
                return
            return await send(message)
        if start is None or message["type"] != "http.response.body":
            return await send(message)
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = login_page(b"".join(chunks).decode("utf-8")).encode("utf-8")
        headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return patched
