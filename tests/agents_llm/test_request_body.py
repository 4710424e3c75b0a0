"""The spliced request body is byte for byte what json.dumps gives, for any mix of parts."""

from __future__ import annotations

import json
import os

from agents.llm.content import png_data_url
from agents.llm.request_body import encode_chat_body


def _dumps(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_spliced_body_equals_json_dumps():
    url = png_data_url(os.urandom(3000))
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": 'quotes " and \\ and \x00 and é, 名前'},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Image 1:"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": url}},  # the same image twice
                    {"type": "image_url", "image_url": {"url": str(url) + '"\n'}},  # not ours: escaped as usual
                    {"type": "text", "text": "\x00mifg-image- lookalike"},
                ],
            },
        ],
        "max_tokens": 5,
        "response_format": {"type": "json_object"},
    }
    assert encode_chat_body(body) == _dumps(body)
    text_only = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert encode_chat_body(text_only) == _dumps(text_only)
