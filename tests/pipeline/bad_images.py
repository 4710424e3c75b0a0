"""A corpus of awkward input files, made on the fly: what users' photo folders really contain."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.factories import make_image


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (patched IHDR with a valid CRC)."""
    data = bytearray(_png(Image.new("L", (64, 64))))
    # IHDR chunk: length(4) 'IHDR'(4) width(4) height(4) ... crc(4); it starts right after the 8-byte signature
    struct.pack_into(">II", data, 16, width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    struct.pack_into(">I", data, 29, crc)
    return bytes(data)


def photo(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A small deterministic RGB picture."""
    return make_image(seed, size=size)


def make_corpus(root: Path) -> dict[str, str | None]:
    """Write the corpus under `root`; returns {relative name: expected skip reason or None if usable}."""
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str | None] = {}

    def put(name: str, data: bytes, reason: str | None) -> None:
        (root / name).write_bytes(data)
        expect[name] = reason

    good = photo(1, (120, 90))
    put("good.png", _png(good), None)
    jpg = io.BytesIO()
    photo(2, (160, 120)).save(jpg, format="JPEG", quality=90)
    put("truncated.jpg", jpg.getvalue()[: len(jpg.getvalue()) // 2], "truncated")
    put("truncated.png", _png(photo(3, (160, 120)))[:300], "corrupt")
    put("empty.jpg", b"", "empty_file")
    put("bomb.png", bomb_png(), "decompression_bomb")
    cmyk = io.BytesIO()
    photo(4).convert("CMYK").save(cmyk, format="JPEG")
    put("cmyk.jpg", cmyk.getvalue(), None)
    gray16 = Image.fromarray((np.arange(96 * 72, dtype=np.uint16).reshape(72, 96) * 9).astype(np.uint16))
    put("gray16.png", _png(gray16), None)
    pal = photo(5).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    put("palette_alpha.png", buf.getvalue(), None)
    rgba = photo(6).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white, not black
    put("transparent.png", _png(rgba), None)
    put("la.png", _png(photo(7).convert("LA")), None)
    put("onebit.png", _png(photo(8).convert("1")), None)
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("animated.gif", gif.getvalue(), None)
    rot = photo(9, (80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    rot.save(buf, format="JPEG", exif=exif.tobytes())
    put("exif_rotated.jpg", buf.getvalue(), None)
    put("notes.jpg", b"hello, this is a text file pretending to be a photo\n", "not_an_image")
    put("vector.jpg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10"/>', "not_an_image")
    put("garbage.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200), "corrupt")
    put("tiny.png", _png(Image.new("RGB", (1, 1))), "too_small")
    put("strip.png", _png(Image.new("RGB", (20000, 20))), "too_small")
    put("banner.png", _png(Image.new("RGB", (2000, 40), (10, 200, 30))), "extreme_aspect")
    put("ünïcödé 名前 .png", _png(photo(10)), None)
    put("new\nline.png", _png(photo(11)), None)
    put("-dash.png", _png(photo(12)), None)
    bad_name = os.fsencode(str(root)) + b"/bad\xffname.png"  # not valid UTF-8: allowed on Linux
    with open(bad_name, "wb") as f:
        f.write(_png(photo(13)))
    expect[os.fsdecode(b"bad\xffname.png")] = None
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    expect["loop_a.jpg"] = "symlink_loop"
    expect["loop_b.jpg"] = "symlink_loop"
    os.symlink("does_not_exist.jpg", root / "dangling.jpg")
    expect["dangling.jpg"] = "broken_symlink"
    (root / "sub").mkdir()
    (root / "sub" / "nested.png").write_bytes(_png(photo(14)))
    expect["sub/nested.png"] = None
    os.symlink("..", root / "sub" / "up")  # a folder loop
    expect["sub/up"] = "symlink_loop"
    put(".hidden.png", _png(photo(15)), None)  # a hidden file is used like any other
    return expect
