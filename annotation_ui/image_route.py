"""Images of the review page as cached files: content-addressed URLs instead of base64 inside each update.

Inlined as data: URIs, every update carried ~1.2 MB (up to 2.5 MB) of base64 that the browser's main
thread had to parse before the next sample showed, and the page kept growing with each decision. Now
`render` registers each display image here under the sha256 of the shard bytes it was made from (so
a display copy is made once per image) and puts `mifg/img/<sha256>.<ext>` in the HTML; the guard
serves that path to signed-in users only, with `Cache-Control: immutable` (a content hash never
changes meaning), so an image is fetched once per browser and decoded off the main thread.

The registry is a byte-bounded LRU in the app process: a URL evicted from it answers 404 and the next
render of that sample registers it again.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict

from starlette.responses import Response

ROUTE = "/mifg/img/"
MAX_BYTES = 512 * 1024 * 1024  # display images kept for serving (LRU)
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
_NAME = re.compile(r"^([0-9a-f]{64})\.(png|jpg|gif|webp)$")


class ImageRegistry:
    """sha256 -> (bytes, mime) for the display images the page refers to, bounded by total bytes."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def register(self, data: bytes, mime: str, key: str | None = None) -> str:
        """Keep `data` under `key` (a sha256 hex digest; default: of `data`) and return its relative URL."""
        digest = key or hashlib.sha256(data).hexdigest()
        with self._lock:
            if digest in self._items:
                self._items.move_to_end(digest)
            else:
                self._items[digest] = (data, mime)
                self._bytes += len(data)
                while self._bytes > self.max_bytes and len(self._items) > 1:
                    _, (old, _) = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return f"{ROUTE.lstrip('/')}{digest}.{_EXT.get(mime, 'png')}"

    def url(self, key: str) -> str | None:
        """The URL of what is kept under `key`, or None when nothing is (or it was evicted)."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
        return None if hit is None else f"{ROUTE.lstrip('/')}{key}.{_EXT.get(hit[1], 'png')}"

    def lookup(self, name: str) -> tuple[bytes, str] | None:
        """The bytes and mime type of `<sha256>.<ext>`, or None when unknown (or evicted)."""
        m = _NAME.match(name)
        if m is None:
            return None
        with self._lock:
            hit = self._items.get(m.group(1))
            if hit is not None:
                self._items.move_to_end(m.group(1))
        return hit

    def response(self, path: str, if_none_match: str | None = None) -> Response:
        """The HTTP answer for `GET /mifg/img/<name>`: the image, 304 when the browser has it, or 404."""
        name = path[len(ROUTE) :]
        hit = self.lookup(name)
        if hit is None:
            return Response("Not found.", status_code=404, media_type="text/plain")
        etag = f'"{name.split(".")[0]}"'
        headers = {"Cache-Control": "private, max-age=31536000, immutable", "ETag": etag}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        return Response(hit[0], media_type=hit[1], headers=headers)


IMAGES = ImageRegistry()  # one per app process: render registers, the guard serves
