"""The lean HTTP/1.1 transport: framing (length, chunked, close), keep-alive reuse, stale connections."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest

from agents.llm.http_transport import LeanAsyncTransport, http_client_for, proxied
from tests.agents_llm.conftest import run


async def serve(responses: list[bytes], close_after_each: bool = False):
    """A raw server answering each request (read up to its blank line + body) with the next bytes."""
    queue = list(responses)
    seen: list[tuple[int, bytes]] = []  # (connection number, request head)
    conns = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal conns
        conns += 1
        me = conns
        try:
            while queue:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                seen.append((me, head))
                answer = queue.pop(0)
                if not answer:  # b"": hang up without answering
                    break
                writer.write(answer)
                await writer.drain()
                if close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_length_chunked_and_gzip_bodies_over_one_connection():
    async def go():
        chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        zipped = gzip.compress(b'{"a": 1}')
        server, url, seen = await serve([ok(b"first"), chunked, ok(zipped, b"content-encoding: gzip\r\n")])
        async with httpx.AsyncClient(transport=LeanAsyncTransport()) as client:
            r1 = await client.post(url + "/x", content=b"payload")
            r2 = await client.get(url + "/y")
            r3 = await client.get(url + "/z")
        server.close()
        return r1, r2, r3, seen

    r1, r2, r3, seen = run(go())
    assert r1.text == "first" and r2.text == "hello world" and r3.json() == {"a": 1}
    assert {conn for conn, _ in seen} == {1}  # keep-alive: one connection for all three
    assert seen[0][1].startswith(b"POST /x HTTP/1.1\r\n") and b"content-length: 7" in seen[0][1].lower()


def test_connection_close_and_reconnect():
    async def go():
        resp = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
        server, url, seen = await serve([resp, resp], close_after_each=True)
        async with httpx.AsyncClient(transport=LeanAsyncTransport()) as client:
            texts = [(await client.get(url)).text for _ in range(2)]
        server.close()
        return texts, seen

    texts, seen = run(go())
    assert texts == ["ok", "ok"] and [c for c, _ in seen] == [1, 2]


def test_stale_keep_alive_connection_is_retried_on_a_fresh_one():
    async def go():
        # The server hangs up on the second request of a kept-alive connection without answering
        # (as servers do when their idle timeout races a new request): it must be resent on a new
        # connection, invisibly to the caller.
        server, url, seen = await serve([ok(b"one"), b"", ok(b"two")])
        async with httpx.AsyncClient(transport=LeanAsyncTransport()) as client:
            first = (await client.get(url)).text
            second = (await client.get(url)).text
        server.close()
        return first, second, seen

    first, second, seen = run(go())
    assert (first, second) == ("one", "two") and [c for c, _ in seen] == [1, 1, 2]


def test_errors_map_to_httpx_exceptions():
    async def go():
        async def silent(reader, writer):
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with httpx.AsyncClient(transport=LeanAsyncTransport(), timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url)
        server.close()
        port = server.sockets[0].getsockname()[1] if server.sockets else 1
        async with httpx.AsyncClient(transport=LeanAsyncTransport()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/gone")

    run(go())


def test_proxy_environment_falls_back_to_httpx(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert proxied("https://api.example.com/v1")
    client = http_client_for("https://api.example.com/v1", 8, 5.0)
    assert not isinstance(client._transport, LeanAsyncTransport)
    monkeypatch.delenv("HTTPS_PROXY")
    assert isinstance(http_client_for("https://api.example.com/v1", 8, 5.0)._transport, LeanAsyncTransport)
