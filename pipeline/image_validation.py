"""Open untrusted image files safely and turn them into plain RGB photos, or a skip reason.

Guards, in the order they run (cheap header checks before any pixel is decoded):
empty / unreadable file -> not an image (SVG, text named .jpg) -> decompression bomb (explicit pixel
limit, PIL's own bomb error/warning caught) -> too small / extreme aspect ratio -> verify + reload ->
full decode (truncated files) -> first frame of animations -> EXIF orientation -> mode conversion
(CMYK, 16-bit, palette/alpha over white, 1-bit) -> downsize to `max_side`.
"""

from __future__ import annotations

import errno
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.image_sources import ImageInput, SkipImage, SourceImage


@dataclass(frozen=True)
class ValidationConfig:
    """Limits applied to every source photo."""

    max_pixels: int = 50_000_000  # decompression-bomb guard, checked on the header before decoding
    max_file_bytes: int = 256 * 1024 * 1024
    min_side: int = 32
    max_aspect: float = 8.0  # longer side / shorter side
    max_side: int = 4096  # native resolution by default; larger photos are downsized to this side (`--max-side`)


_TEXT_PREFIXES = (b"<?xml", b"<svg", b"<!DOCTYPE", b"<html", b"{", b"[")


def _read_file(path: Path, cfg: ValidationConfig) -> bytes:
    try:
        if path.is_dir():
            raise SkipImage("not_a_file", "is a directory")
        size = path.stat().st_size
        if size == 0:
            raise SkipImage("empty_file", "zero bytes")
        if size > cfg.max_file_bytes:
            raise SkipImage("file_too_large", f"{size} bytes > {cfg.max_file_bytes}")
        return path.read_bytes()
    except SkipImage:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SkipImage("symlink_loop", "symbolic link loop") from e
        if isinstance(e, PermissionError):
            raise SkipImage("unreadable", "permission denied") from e
        if isinstance(e, FileNotFoundError):
            raise SkipImage("missing", "file vanished or dangling link") from e
        raise SkipImage("unreadable", e.strerror or str(e)) from e


_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _not_image_reason(data: bytes) -> SkipImage:
    if data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return SkipImage("corrupt", "image signature present but the file is damaged")
    head = data[:512].lstrip()
    if b"<svg" in head.lower() or head.lower().startswith(b"<?xml"):
        return SkipImage("not_an_image", "SVG/XML, not a raster image")
    if head.startswith(_TEXT_PREFIXES) or _looks_like_text(head):
        return SkipImage("not_an_image", "text file, not an image")
    return SkipImage("not_an_image", "unrecognised image format")


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 9 for b in head)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited over white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16") or lo >= 0:
            lo = 0.0  # unsigned data: keep black black; 12-bit sensors in 16-bit files are stretched to 8 bits
            hi = max(hi, 255.0)
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    return img.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV


def _open_checked(data: bytes, cfg: ValidationConfig) -> Image.Image:
    """Header checks, verify, then a full decode of the first frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            probe = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise _not_image_reason(data) from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise SkipImage("decompression_bomb", str(e).split(".")[0]) from e
        except (OSError, ValueError, SyntaxError) as e:
            raise SkipImage("corrupt", str(e) or type(e).__name__) from e
        w, h = probe.size
        if w * h > cfg.max_pixels:
            raise SkipImage("decompression_bomb", f"{w}x{h} = {w * h} pixels > limit {cfg.max_pixels}")
        _check_geometry(w, h, cfg)
        try:
            probe.verify()  # structure/CRC checks; the image object is unusable afterwards
        except Exception as e:
            raise SkipImage("corrupt", f"verify failed: {e}") from e
        try:
            img = Image.open(io.BytesIO(data))
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP/APNG/multi-page TIFF: the first frame
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise SkipImage("decompression_bomb", str(e).split(".")[0]) from e
        except OSError as e:
            msg = str(e)
            reason = "truncated" if "truncated" in msg or "broken data stream" in msg else "corrupt"
            raise SkipImage(reason, msg) from e
        except Exception as e:
            raise SkipImage("corrupt", f"{type(e).__name__}: {e}") from e
    return img


def _check_geometry(w: int, h: int, cfg: ValidationConfig) -> None:
    if min(w, h) < cfg.min_side:
        raise SkipImage("too_small", f"{w}x{h}, need at least {cfg.min_side} px per side")
    if max(w, h) / min(w, h) > cfg.max_aspect:
        raise SkipImage("extreme_aspect", f"{w}x{h}, aspect ratio above {cfg.max_aspect:g}")


def validate_input(value: ImageInput, cfg: ValidationConfig) -> Image.Image:
    """Safe RGB image from a path, encoded bytes or a PIL image; raises SkipImage with a reason."""
    if isinstance(value, Image.Image):
        w, h = value.size
        if w * h > cfg.max_pixels:
            raise SkipImage("decompression_bomb", f"{w}x{h} pixels > limit {cfg.max_pixels}")
        _check_geometry(w, h, cfg)
        img = value
    else:
        data = _read_file(Path(value), cfg) if isinstance(value, Path) else value
        if not data:
            raise SkipImage("empty_file", "zero bytes")
        img = _open_checked(data, cfg)
        try:
            img = ImageOps.exif_transpose(img)  # camera orientation tag -> upright pixels
        except Exception:  # noqa: BLE001 - a damaged EXIF block must not lose an otherwise fine photo
            pass
        _check_geometry(img.width, img.height, cfg)  # a 90-degree turn swaps sides; limits are symmetric
    rgb = _to_rgb(img)
    if max(rgb.size) > cfg.max_side:
        rgb = rgb.copy()
        rgb.thumbnail((cfg.max_side, cfg.max_side), Image.Resampling.LANCZOS)
    return rgb


def validate_source(src: SourceImage, cfg: ValidationConfig) -> Image.Image:
    """Load and validate one source photo; raises SkipImage (never anything else) when unusable."""
    try:
        value = src.load()
        return validate_input(value, cfg)
    except SkipImage:
        raise
    except MemoryError as e:
        raise SkipImage("decompression_bomb", "out of memory while decoding") from e
    except Exception as e:
        raise SkipImage("corrupt", f"{type(e).__name__}: {e}") from e
