"""Open untrusted image files safely and turn them into plain RGB photos, or a skip reason.

Guards, in the order they run (cheap header checks before any pixel is decoded):
empty / unreadable file -> not an image (SVG, text named .jpg) -> decompression bomb (our pixel
limit on the header, `--max-pixels`; PIL's own bomb error caught) -> too small / extreme aspect ratio
-> verify + reload -> full decode (truncated files) -> first frame of animations -> EXIF orientation
-> mode conversion (CMYK, 16-bit, float with NaN/inf, palette/alpha over white, 1-bit) -> downsize
to `max_side`.
PIL / numpy warnings never print: they join the skip line of the photo that raised them (see
`library_warnings_routed`, which `build_pool` holds around its decoding threads).
"""

from __future__ import annotations

import errno
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
        return _scaled_to_rgb(np.asarray(img, dtype=np.float64), mode)
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


def _scaled_to_rgb(arr: np.ndarray, mode: str) -> Image.Image:
    """A 16-bit / 32-bit / float grey image scaled to 8 bits; NaN and +-inf left out of the scaling.

    Unsigned data keeps black black (12-bit sensors in 16-bit files are stretched to 8 bits); floats in
    [0, 1] are the usual convention and map to 0..255; anything else is stretched min..max of its
    finite values. NaN becomes black, +inf white, -inf black.
    """
    finite = np.isfinite(arr)
    if not finite.any():
        raise SkipImage("corrupt", "no finite pixel values (all NaN or infinite)")
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if mode == "F" and 0.0 <= lo and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif mode.startswith("I;16") or lo >= 0:
        lo, hi = 0.0, max(hi, 255.0)
    arr = np.where(np.isnan(arr), lo, np.clip(arr, lo, hi))  # +-inf clipped to the ends of the finite range
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L").convert("RGB")


# ---- library warnings -> skip lines
#
# PIL and numpy report recoverable trouble (corrupt EXIF, odd TIFF tags, bad casts) as warnings, which
# would print raw lines between the skip lines, from several decoding threads at once. While photos are
# validated, every warning goes to the photo its thread is loading instead: a photo that is skipped
# carries its warnings in its skip line's detail; a photo that loads anyway is used and its warnings
# are dropped (PIL recovered). `warnings.catch_warnings` is process-wide and not thread-safe, so it is
# entered once around the whole pool (`library_warnings_routed`), and each thread only swaps its own list.

_THREAD = threading.local()  # .messages: the warnings of the photo this thread is validating


@contextmanager
def library_warnings_routed(max_pixels: int) -> Iterator[None]:
    """While photos are validated (in any thread), warnings go to the photo being loaded.

    The pixel limit is ours (`max_pixels`, checked on the header), so PIL's DecompressionBombWarning
    is dropped, and PIL's own limit (an error at twice it) is raised to `max_pixels` when that is higher,
    so that `--max-pixels` above PIL's default is honoured.
    """
    show_as_usual = warnings.showwarning

    def route(message, category, filename, lineno, file=None, line=None) -> None:
        messages = getattr(_THREAD, "messages", None)
        if messages is None:  # a warning of some other work going on meanwhile: shown as usual
            show_as_usual(message, category, filename, lineno, file, line)
        elif not issubclass(category, Image.DecompressionBombWarning):
            messages.append(f"{category.__name__}: {' '.join(str(message).split())}")

    route.routes_photo_warnings = True  # type: ignore[attr-defined]
    saved_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # each photo sees its own warnings, not only the first of a kind
        warnings.showwarning = route
        if saved_limit is not None:
            Image.MAX_IMAGE_PIXELS = max(saved_limit, max_pixels)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit


@contextmanager
def _photo_warnings(cfg: ValidationConfig) -> Iterator[list[str]]:
    """The warnings this thread raises in the block (nested blocks share the outer list)."""
    outer = getattr(_THREAD, "messages", None)
    if outer is not None:
        yield outer
        return
    with ExitStack() as stack:
        if not getattr(warnings.showwarning, "routes_photo_warnings", False):  # called alone: route here
            stack.enter_context(library_warnings_routed(cfg.max_pixels))
        _THREAD.messages = messages = []
        try:
            yield messages
        finally:
            _THREAD.messages = None


def _with_warnings(e: SkipImage, messages: list[str]) -> SkipImage:
    """`e` with the photo's library warnings added to its detail (each distinct one once)."""
    if not messages:
        return e
    extra = "; ".join(dict.fromkeys(messages))
    return SkipImage(e.reason, f"{e.detail}; {extra}" if e.detail else extra)


def _open_checked(data: bytes, cfg: ValidationConfig) -> Image.Image:
    """Header checks (our pixel limit first), verify, then a full decode of the first frame."""
    try:
        probe = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise _not_image_reason(data) from e
    except Image.DecompressionBombError as e:
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
    except Image.DecompressionBombError as e:
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
    with _photo_warnings(cfg) as messages:
        try:
            return _validated(value, cfg)
        except SkipImage as e:
            raise _with_warnings(e, messages) from e


def _validated(value: ImageInput, cfg: ValidationConfig) -> Image.Image:
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
    """Load and validate one source photo; raises SkipImage (never anything else, no warning) when unusable."""
    with _photo_warnings(cfg) as messages:
        try:
            value = src.load()
            return validate_input(value, cfg)
        except SkipImage:
            raise
        except MemoryError as e:
            raise _with_warnings(SkipImage("decompression_bomb", "out of memory while decoding"), messages) from e
        except Exception as e:
            raise _with_warnings(SkipImage("corrupt", f"{type(e).__name__}: {e}"), messages) from e
