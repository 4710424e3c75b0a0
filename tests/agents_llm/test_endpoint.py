"""check_endpoint: one clear EndpointError line for each way an endpoint can be wrong."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from agents.llm import check_endpoint
from agents.llm.local_server import LocalModelServer
from schemas.errors import EndpointError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def error_of(*args, **kw) -> str:
    with pytest.raises(EndpointError) as err:
        check_endpoint(*args, **kw)
    text = str(err.value)
    assert "\n" not in text and len(text) < 300
    return text


def test_good_endpoint_passes():
    with LocalModelServer(api_key="sk-test") as srv:
        check_endpoint(srv.base_url, srv.model, "sk-test")
        assert [r.path for r in srv.records] == ["/v1/models"]  # one quick call, no completion


def test_bad_key():
    with LocalModelServer(api_key="sk-test") as srv:
        msg = error_of(srv.base_url, srv.model, "sk-wrong")
    assert "refused the API key (HTTP 401)" in msg


def test_unknown_model_names_what_is_served():
    with LocalModelServer(models=("vlm-a", "vlm-b")) as srv:
        msg = error_of(srv.base_url, "vlm-c", None)
    assert "does not serve model 'vlm-c'" in msg and "vlm-a, vlm-b" in msg


def test_unreachable_port():
    msg = error_of(f"http://127.0.0.1:{free_port()}/v1", "m", None, timeout=2)
    assert msg.startswith("cannot reach model endpoint http://127.0.0.1:")


def test_silent_server_times_out():
    with socket.socket() as s:  # listens (the connection is accepted by the kernel) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        msg = error_of(f"http://127.0.0.1:{s.getsockname()[1]}/v1", "m", None, timeout=0.5)
    assert "did not answer within 0.5s" in msg


def test_bad_url():
    assert "must start with http" in error_of("localhost:8000/v1", "m", None)


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_not_an_openai_api():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        msg = error_of(f"http://127.0.0.1:{httpd.server_port}", "m", None, timeout=2)
    finally:
        httpd.shutdown()
    assert "has no OpenAI API" in msg and "/v1" in msg
