"""Chat message parts: images as base64 PNG data URLs (full size or thumbnail), and size estimates."""

from __future__ import annotations

import base64
import json
import math
from collections import OrderedDict
from typing import Any

from PIL import Image

from agents.base import ImageRef
from agents.image_cache import encode_png


class DataUrl(str):
    """A data URL made here: base64, so JSON holds it verbatim (`request_body` splices it unescaped)."""

    __slots__ = ()


def png_data_url(png: bytes) -> DataUrl:
    """A `data:image/png;base64,...` URL of PNG bytes."""
    return DataUrl("data:image/png;base64," + base64.b64encode(png).decode("ascii"))


class DownscaleCache:
    """Data URLs of downscaled images, by (path, side), bounded by total size (LRU).

    The pairer (mid size) and the critic (thumbnail) show the same images at other sizes than the
    writer/verifier: a miss decodes the image once and makes every registered size from it, so
    each image is decoded once per run, not once per call. Full-size images (`file_url`) are the
    cached PNG's bytes as they are: a sample's votes and probes send the same ones a dozen times.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.sides: set[int] = set()
        self._urls: OrderedDict[tuple[str, int], DataUrl] = OrderedDict()
        self._bytes = 0

    def url(self, path: str, side: int) -> DataUrl:
        """The data URL of the image at `path`, longest side <= `side`."""
        key = (path, side)
        url = self._hit(key)
        if url is not None:
            return url
        with Image.open(path) as im:
            img = im.convert("RGB")
        for s in sorted(self.sides | {side}, reverse=True):  # largest first: each one resized from the last
            if (path, s) in self._urls and s != side:
                continue
            scale = s / max(img.size)
            if scale < 1:
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(size, Image.BILINEAR, reducing_gap=3.0)
            self._put((path, s), png_data_url(encode_png(img, fast=True)))
        return self._urls[key]

    def file_url(self, path: str) -> DataUrl:
        """The data URL of the PNG file at `path`, unchanged."""
        key = (path, 0)
        url = self._hit(key)
        if url is None:
            with open(path, "rb") as f:  # the run's image cache holds PNGs (agents.image_cache)
                url = png_data_url(f.read())
            self._put(key, url)
        return url

    def _hit(self, key: tuple[str, int]) -> DataUrl | None:
        url = self._urls.get(key)
        if url is not None:
            self._urls.move_to_end(key)
        return url

    def _put(self, key: tuple[str, int], url: DataUrl) -> None:
        self._urls[key] = url
        self._bytes += len(url)
        while self._bytes > self.max_bytes and len(self._urls) > 1:
            _, old = self._urls.popitem(last=False)
            self._bytes -= len(old)


DOWNSCALED = DownscaleCache()
FULL_SIZE = DownscaleCache(max_bytes=192 << 20)  # apart, so that big originals do not evict the thumbnails


def image_url(ref: ImageRef, max_side: int | None = None) -> str:
    """Data URL of a cached image, downscaled so its longest side is <= `max_side` (None: as is)."""
    if max_side is None or max(ref.width, ref.height) <= max_side:
        return FULL_SIZE.file_url(ref.path)
    return DOWNSCALED.url(ref.path, max_side)


def image_part(ref: ImageRef, max_side: int | None = None, detail: str | None = None) -> dict[str, Any]:
    """A chat content part showing the cached image, downscaled so its longest side is <= `max_side`."""
    url: dict[str, Any] = {"url": image_url(ref, max_side)}
    if detail:
        url["detail"] = detail
    return {"type": "image_url", "image_url": url}


def text_part(text: str) -> dict[str, Any]:
    """A chat content part holding text."""
    return {"type": "text", "text": text}


def image_token_estimate(width: int, height: int) -> int:
    """Rough vision-token cost of one image (the 512-px tile rule most VLM APIs follow)."""
    tiles = math.ceil(min(width, 2048) / 512) * math.ceil(min(height, 2048) / 512)
    return 85 + 170 * tiles


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Rough prompt size for the token-rate limiter: ~4 characters per token plus image costs."""
    chars = 0
    tokens = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                chars += len(part.get("text", ""))
            elif part.get("type") == "image_url":
                tokens += 85 + 170 * 4  # size unknown here; assume a mid-size image
    return tokens + chars // 4 + 4 * len(messages)


def json_block(data: Any) -> str:
    """Data for the model as a fenced JSON block (the local test server parses the same block)."""
    # Compact: `indent` would switch json to its pure-Python encoder, 10x slower per call.
    return "```json\n" + json.dumps(data, ensure_ascii=False, default=str) + "\n```"


def labelled_images(refs: list[ImageRef], max_side: int | None = None) -> list[dict[str, Any]]:
    """ "Image 1:" then the image, for each image: models follow numbered references better so."""
    parts: list[dict[str, Any]] = []
    for i, ref in enumerate(refs):
        parts.append(text_part(f"Image {i + 1}:"))
        parts.append(image_part(ref, max_side))
    return parts
