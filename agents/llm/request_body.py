"""A chat request's JSON body as bytes, with its image data URLs spliced in rather than re-escaped.

A call carries up to a few MB of base64 images; `json.dumps` would scan and escape every character
of them on every call (about half of the client's CPU per call with the agents' many votes and
probes). Base64 data URLs need no JSON escaping, so the body is encoded with a short placeholder per
image made here (`content.DataUrl`) and the URLs' bytes are joined in afterwards: the same bytes
`json.dumps` would give. Any other URL is encoded as usual.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from agents.llm.content import DataUrl

_TOKEN = "\x00mifg-image-" + uuid.uuid4().hex  # cannot occur in the text: json.dumps escapes \x00
_QUOTED = json.dumps(_TOKEN)[1:-1]  # how the token reads inside the encoded body


def encode_chat_body(body: dict[str, Any]) -> bytes:
    """`json.dumps(body, separators=(",", ":"), ensure_ascii=False)` as UTF-8, images spliced in."""
    return b"".join(chat_body_pieces(body))


def chat_body_pieces(body: dict[str, Any]) -> list[bytes]:
    """The encoded body in pieces (text, image URL, text, ...), so the caller joins it once with its head."""
    urls: list[str] = []
    messages = []
    for message in body.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            messages.append(message)
            continue
        parts = []
        for part in content:
            image = part.get("image_url") if isinstance(part, dict) else None
            url = image.get("url") if isinstance(image, dict) else None
            if isinstance(url, DataUrl):
                urls.append(url)
                part = {**part, "image_url": {**image, "url": _TOKEN}}
            parts.append(part)
        messages.append({**message, "content": parts})
    text = json.dumps({**body, "messages": messages} if urls else body, separators=(",", ":"), ensure_ascii=False)
    if not urls:
        return [text.encode("utf-8")]
    pieces = text.split(_QUOTED)
    assert len(pieces) == len(urls) + 1, "an image placeholder was lost"
    out = [pieces[0].encode("utf-8")]
    for url, rest in zip(urls, pieces[1:], strict=True):
        out.append(url.encode("ascii"))
        out.append(rest.encode("utf-8"))
    return out
