"""Attacks on the running review app over plain HTTP, each refused.

The real app (Gradio behind `annotation_ui.guard`) is started on a free localhost port; the requests
are what a script or a curious annotator would send: password guessing, file upload, reading Gradio's
temp folder, API routes without a login, forged or revoked session cookies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from annotation_ui.guard import NO_API
from annotation_ui.sessions import SECRET_NAME, LoginThrottle
from tests.annotation_ui.live_app import USERS, serve


@pytest.fixture
def app(run_dir: Path):
    with serve(run_dir) as (url, store):
        yield url, store


def _login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    return client.post("/login", data={"username": name, "password": password})


@contextmanager
def _signed_in(url: str, name: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        r = _login(client, name, USERS[name])
        assert r.status_code == 200, r.text
        yield client


def test_fifty_wrong_passwords_then_the_right_one_is_refused(app) -> None:
    url, _ = app
    with httpx.Client(base_url=url, timeout=30) as c:
        codes = [_login(c, "alice", f"guess-{i:02d}").status_code for i in range(50)]
        assert codes[:4] == [400] * 4 and set(codes[4:]) == {429}
        r = _login(c, "alice", USERS["alice"])
        assert r.status_code == 429
        assert r.json()["detail"].startswith("Too many failed sign-ins for this user; try again in")
        assert int(r.headers["retry-after"]) > 0
        assert not c.cookies and c.get("/config").status_code == 401  # no session was made
        # another user from the same address is not locked by alice's lockout
        assert _login(c, "bob", USERS["bob"]).status_code == 200


def test_guessing_across_names_locks_the_address(app) -> None:
    url, _ = app
    with httpx.Client(base_url=url, timeout=30) as c:
        codes = [_login(c, f"user{i}", "not-the-password").status_code for i in range(25)]
        assert codes[:19] == [400] * 19 and set(codes[19:]) == {429}
        r = _login(c, "bob", USERS["bob"])
        assert r.status_code == 429 and "from this address" in r.json()["detail"]


def test_lockout_grows_and_ends() -> None:
    now = [0.0]
    t = LoginThrottle(clock=lambda: now[0])
    assert [t.failed("alice", "10.0.0.1") for _ in range(4)] == [None] * 4
    message, wait = t.failed("alice", "10.0.0.1")
    assert wait == 30 and "for this user" in message
    assert t.refusal("alice", "10.0.0.2")[1] == 30  # per user: from any address
    assert t.refusal("bob", "10.0.0.1") is None
    now[0] += 31
    assert t.refusal("alice", "10.0.0.1") is None
    assert [t.failed("alice", "10.0.0.1") for _ in range(5)][-1][1] == 60  # the second lockout is twice as long
    now[0] += 61
    t.succeeded("alice")
    assert [t.failed("alice", "10.0.0.1") for _ in range(5)][-1][1] == 30  # a good login resets the growth
    now[0] += 61  # failures older than the window do not add up
    assert [t.failed("alice", "10.0.0.1") for _ in range(4)] == [None] * 4


def test_upload_is_closed_and_the_temp_folder_is_not_served(app) -> None:
    from gradio.utils import get_upload_folder

    url, _ = app
    with _signed_in(url, "alice") as c:
        r = c.post("/gradio_api/upload", files={"files": ("notes.txt", b"x" * 1000, "text/plain")})
        assert r.status_code == 404
        assert c.get("/gradio_api/upload_progress", params={"upload_id": "x"}).status_code == 404
        # a file that something else left in Gradio's temp folder is not readable either
        temp = Path(get_upload_folder()) / "mifg-security-test" / "left-behind.txt"
        temp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text("private")
        try:
            for path in (f"/gradio_api/file={temp}", f"/gradio_api/file/{temp}", f"/file={temp}"):
                r = c.get(path)
                assert r.status_code == 404 and "private" not in r.text, path
        finally:
            temp.unlink()


def test_api_routes_need_a_login(app) -> None:
    url, _ = app
    with httpx.Client(base_url=url, timeout=30) as anon:
        body = {"session_hash": "abc", "fn_index": 0, "event_id": "e1"}
        assert anon.post("/gradio_api/cancel", json=body).status_code == 401
        assert anon.post("/gradio_api/reset", json={"event_id": "e1"}).status_code == 401
        for path in ("/gradio_api/info", "/config", "/gradio_api/queue/status", "/gradio_api/heartbeat/abc"):
            assert anon.get(path).status_code == 401, path
        assert anon.post("/gradio_api/queue/join", json={"fn_index": 0, "session_hash": "abc"}).status_code == 401
        page = anon.get("/")
        assert page.status_code == 200 and "mifg review: sign in" in page.text
        assert "on_accept" not in page.text and f"window.gradio_api_info = {NO_API};" in page.text
    with _signed_in(url, "alice") as c:
        assert c.get("/gradio_api/info").json()["named_endpoints"] == {}  # no API to describe, even signed in


def test_sessions_survive_a_restart_and_logout_ends_them(run_dir: Path) -> None:
    run = run_dir
    with serve(run) as (url, _):
        with _signed_in(url, "alice") as c:
            cookies = dict(c.cookies)
            assert c.get("/config").json()["username"] == "alice"
    secret = run / SECRET_NAME
    assert secret.stat().st_mode & 0o777 == 0o600
    with serve(run) as (url, _):  # a restart, on another port
        with httpx.Client(base_url=url, cookies=cookies, timeout=30) as c:
            assert c.get("/config").json()["username"] == "alice"
            assert c.get("/logout").status_code in (302, 307)
        forged = {name: "alice.1.0000" for name in cookies}
        for jar in (cookies, forged):
            with httpx.Client(base_url=url, cookies=jar, timeout=30) as c:
                assert c.get("/config").status_code == 401
    with serve(run) as (url, _), httpx.Client(base_url=url, cookies=cookies, timeout=30) as c:
        assert c.get("/config").status_code == 401  # the logout outlives a restart too


def test_page_images_are_served_by_hash_to_signed_in_users_only(app) -> None:
    """Images come as cached files named by their content hash, never inlined, never by a file path."""
    from annotation_ui.image_route import IMAGES
    from annotation_ui.service import ReviewService

    url, store = app
    html = ReviewService(store).current("alice").images
    assert "data:image" not in html
    srcs = [part.split('"', 1)[0] for part in html.split('src="')[1:]]
    assert srcs and all(s.startswith("mifg/img/") for s in srcs)
    with httpx.Client(base_url=url, timeout=30) as anon:
        assert anon.get("/" + srcs[0]).status_code == 401
    with _signed_in(url, "bob") as c:
        r = c.get("/" + srcs[0])
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
        assert "immutable" in r.headers["cache-control"]
        assert r.content == IMAGES.lookup(srcs[0].rsplit("/", 1)[1])[0]
        again = c.get("/" + srcs[0], headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
        assert c.get("/mifg/img/" + "0" * 64 + ".png").status_code == 404
        assert c.get("/mifg/img/../../etc/passwd").status_code == 404
