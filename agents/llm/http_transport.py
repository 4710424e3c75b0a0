"""A lean HTTP/1.1 keep-alive transport for httpx (hence for the openai client), on asyncio streams.

Why: httpcore's pool scans every connection for every request, which costs milliseconds of CPU
per call at a few hundred concurrent calls, and one event loop then caps throughput well below
concurrency / latency. This transport keeps idle connections in a LIFO list per origin (O(1)),
writes a request in one `write`, and reads the response with plain stream reads. It speaks only
what the OpenAI API needs: HTTP/1.1 requests with a body of known length, responses framed by
Content-Length, chunked encoding or close; TLS through `ssl`. Content-Encoding is left to httpx.
Proxies are not handled here: `transport_for` falls back to httpx's own transport when the
environment configures one for the URL.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from collections import defaultdict
from typing import Any

import httpx

try:  # httpx depends on certifi; use the same trust store as httpx would
    import certifi

    _CAFILE: str | None = certifi.where()
except ImportError:  # pragma: no cover
    _CAFILE = None


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before answering."""


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    t = request.extensions.get("timeout") or {}
    return {k: t.get(k) for k in ("connect", "read", "write", "pool")}


async def _with_timeout(coro: Any, seconds: float | None, exc: type[httpx.TimeoutException], request: httpx.Request):
    if seconds is None:
        return await coro
    try:
        if _timeout_cm is not None:  # Python >= 3.11: no extra task per call, unlike wait_for
            async with _timeout_cm(seconds):
                return await coro
        return await asyncio.wait_for(coro, seconds)
    except (asyncio.TimeoutError, TimeoutError):
        raise exc(f"timed out after {seconds:g}s", request=request) from None


_timeout_cm = getattr(asyncio, "timeout", None)


class LeanAsyncTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive transport with an O(1) per-origin connection pool."""

    def __init__(self, max_connections: int = 1024, verify: bool | ssl.SSLContext = True) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = defaultdict(list)
        self._max = max_connections
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if isinstance(verify, ssl.SSLContext):
            self._ssl = verify
        elif verify:
            # Like httpx: SSL_CERT_FILE / SSL_CERT_DIR name a custom trust store (corporate CAs).
            cafile = os.environ.get("SSL_CERT_FILE") or _CAFILE
            self._ssl = ssl.create_default_context(cafile=cafile, capath=os.environ.get("SSL_CERT_DIR"))
        else:
            self._ssl = ssl.create_default_context()
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request and read the whole response (no streaming)."""
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        body = await request.aread()
        head = [f"{request.method} {url.raw_path.decode('ascii')} HTTP/1.1".encode("ascii")]
        head += [name + b": " + value for name, value in request.headers.raw]
        payload = b"\r\n".join(head) + b"\r\n\r\n" + body
        status, headers, content = await self.send_raw(
            origin_of(url), payload, _timeouts(request), request, request.method
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def send_raw(
        self,
        origin: tuple[str, str, int],
        payload: bytes,
        timeouts: dict[str, float | None],
        request: httpx.Request | None = None,
        method: str = "POST",
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send a fully serialised request (head + body) to `origin`; (status, raw headers, body).

        The fast path of `LLMClient` calls this directly, skipping httpx's request/response models.
        Raises httpx transport exceptions (ConnectError, ReadTimeout, ...).
        """
        if self._closed:
            raise httpx.ConnectError("transport is closed", request=request)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Connections and the semaphore belong to one event loop (tests run several in turn).
            self._loop = loop
            self._idle.clear()
            self._slots = asyncio.Semaphore(self._max) if self._max else None
        if self._slots is not None:
            await _with_timeout(self._slots.acquire(), timeouts.get("pool"), httpx.PoolTimeout, request)
        try:
            # A reused connection may have been closed by the server meanwhile: retry once on a fresh one.
            for _ in range(2):
                conn, reused = await self._get(origin, request, timeouts.get("connect"))
                try:
                    status, headers, content, keep = await self._exchange(
                        conn, payload, request, timeouts, reused, method
                    )
                except _StaleConnection:
                    conn.close()
                    continue
                except BaseException:
                    conn.close()
                    raise
                if keep and conn.usable():
                    self._idle[origin].append(conn)
                else:
                    conn.close()
                return status, headers, content
            raise httpx.RemoteProtocolError("server closed the connection without answering", request=request)
        finally:
            if self._slots is not None:
                self._slots.release()

    async def _get(self, origin: tuple[str, str, int], request: httpx.Request | None, timeout: float | None):
        idle = self._idle[origin]
        while idle:
            conn = idle.pop()  # LIFO: the warmest connection, the stale ones age out at the bottom
            if conn.usable():
                return conn, True
            conn.close()
        scheme, host, port = origin
        try:
            reader, writer = await _with_timeout(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=self._ssl if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                    limit=1 << 20,
                ),
                timeout,
                httpx.ConnectTimeout,
                request,
            )
        except OSError as e:
            raise httpx.ConnectError(str(e) or type(e).__name__, request=request) from e
        return _Conn(reader, writer), False

    async def _exchange(
        self,
        conn: _Conn,
        payload: bytes,
        request: httpx.Request | None,
        timeouts: dict[str, float | None],
        reused: bool,
        method: str,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        try:
            conn.writer.write(payload)
            await _with_timeout(conn.writer.drain(), timeouts.get("write"), httpx.WriteTimeout, request)
        except (ConnectionError, OSError) as e:
            if reused:
                raise _StaleConnection() from e
            raise httpx.WriteError(str(e) or type(e).__name__, request=request) from e
        try:
            return await _with_timeout(
                self._read_response(conn.reader, request, method), timeouts.get("read"), httpx.ReadTimeout, request
            )
        except asyncio.IncompleteReadError as e:
            if reused and not e.partial:
                raise _StaleConnection() from e
            raise httpx.RemoteProtocolError("server closed the connection mid-response", request=request) from e
        except (ConnectionError, OSError) as e:
            if reused:
                raise _StaleConnection() from e
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e

    async def _read_response(
        self, reader: asyncio.StreamReader, request: httpx.Request | None, method: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise httpx.RemoteProtocolError(f"bad status line {lines[0][:80]!r}", request=request)
            status = int(parts[1])
            if status >= 200 or status == 101:
                break  # 1xx interim responses (100 Continue) carry no body: read the next head
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lname = name.lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                v = value.lower()
                close = b"close" in v or (close and b"keep-alive" not in v)
        if method == "HEAD" or status in (204, 304):
            content = b""
        elif chunked:
            content = await self._read_chunked(reader)
            headers = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
        elif length is not None:
            content = await reader.readexactly(length) if length else b""
        else:
            content = await reader.read(-1)  # framed by close
            close = True
        return status, headers, content, not close

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def aclose(self) -> None:
        """Close every idle connection."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the key of the connection pool."""
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


def proxied(url: str) -> bool:
    """Whether the environment routes `url` through a proxy (then httpx's own transport is used)."""
    proxies = urllib.request.getproxies()
    host = httpx.URL(url).host
    scheme = httpx.URL(url).scheme
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def http_client_for(base_url: str, max_connections: int, timeout: float, lean: bool = True) -> httpx.AsyncClient:
    """The httpx client the openai SDK should use: the lean transport unless a proxy is configured."""
    if lean and not proxied(base_url):
        return httpx.AsyncClient(
            transport=LeanAsyncTransport(max_connections=max_connections),
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
        )
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout), follow_redirects=True)
