"""Store and load images in a run's content-addressed image cache (PNG, named by sha256)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import imagehash
from PIL import Image

from agents.base import ImageRef
from schemas import Domain


def encode_png(img: Image.Image) -> bytes:
    """Deterministic PNG encoding of an RGB image."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def phash_hex(img: Image.Image) -> str:
    """Perceptual hash (imagehash.phash, 64 bits) as a hex string."""
    return str(imagehash.phash(img))


def store_image(
    img: Image.Image,
    image_dir: Path,
    *,
    source: str,
    license: str = "unknown",
    role: str = "original",
    domain: Domain = Domain.OTHER,
) -> ImageRef:
    """Write `img` to the cache (atomically, once per content) and return its reference."""
    data = encode_png(img)
    sha = hashlib.sha256(data).hexdigest()
    image_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / f"{sha}.png"
    if not path.exists():
        tmp = path.with_name(f".{sha}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return ImageRef(
        path=str(path),
        sha256=sha,
        width=img.width,
        height=img.height,
        source=source,
        phash=phash_hex(img),
        license=license,
        role=role,
        domain=domain,
    )


def load_image(ref: ImageRef) -> Image.Image:
    """Open a cached image as RGB (fully loaded, file closed)."""
    with Image.open(ref.path) as im:
        return im.convert("RGB")


def load_bytes(ref: ImageRef) -> bytes:
    """The cached PNG bytes of an image."""
    return Path(ref.path).read_bytes()
