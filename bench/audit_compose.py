"""Drawing the blind audit's composites: a sample's images in a grid, its question and options.

Used by `bench.audit` (render); only PIL and the option letters of `schemas`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

MAX_WIDTH = 1600  # composite width limit (px)
MIN_TEXT_WIDTH = 900  # the text area is at least this wide, even under small images
PAD = 16  # outer margin and gap between cells (px)
_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"), Path("/usr/share/fonts"))


@functools.cache
def _font(size: int, bold: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    names = ("DejaVuSans-Bold.ttf",) if bold else ("DejaVuSans.ttf",)
    for d in _FONT_DIRS:
        for name in names:
            for p in (d / name, *d.rglob(name)) if d.is_dir() else ():
                if p.is_file():
                    try:
                        return ImageFont.truetype(str(p), size)
                    except OSError:
                        continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _text_width(font, text: str) -> float:
    return font.getlength(text) if hasattr(font, "getlength") else len(text) * 6


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of `text` to lines at most `width` px wide (a too-long word gets its own line)."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        words, line = para.split(), ""
        for w in words:
            trial = f"{line} {w}".strip()
            if line and _text_width(font, trial) > width:
                lines.append(line)
                line = w
            else:
                line = trial
        lines.append(line)
    return lines


def _line_height(font) -> int:
    box = font.getbbox("Ag|")
    return int((box[3] - box[1]) * 1.35) + 2


def _grid(n: int) -> tuple[int, int]:
    """(columns, rows) of the image grid: one row, a 2x2 grid for 4, two rows for 5..8."""
    if n == 4:
        return 2, 2
    if n <= 3:
        return n, 1
    return (n + 1) // 2, 2


def compose(
    images: Sequence[Image.Image],
    question: str,
    options: Sequence[str],
    *,
    max_width: int = MAX_WIDTH,
    boxes: Sequence[tuple[int, tuple[float, float, float, float]]] = (),
    footer: str = "",
) -> tuple[Image.Image, float]:
    """The composite of one sample and the scale its images were drawn at (<= 1: never enlarged).

    `boxes` (image_index, normalised xyxy) are drawn only when given (the key image); so is `footer`.
    """
    from schemas import LETTERS

    cols, rows = _grid(len(images))
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    scale = min(1.0, (max_width - PAD * (cols + 1)) / (cols * cell_w))
    sw, sh = max(1, int(cell_w * scale)), max(1, int(cell_h * scale))
    label_font, q_font, o_font = _font(22, bold=True), _font(24), _font(22)
    label_h = _line_height(label_font) + 4
    grid_w = PAD * (cols + 1) + cols * sw
    width = max(grid_w, min(max_width, MIN_TEXT_WIDTH))
    text_w = width - 2 * PAD

    q_lines = _wrap(question, q_font, text_w)
    o_blocks = []
    for i, opt in enumerate(options):
        head = f"{LETTERS[i]}.  "
        indent = int(_text_width(o_font, head)) + 1
        body = _wrap(opt, o_font, text_w - indent)
        o_blocks.append((head, indent, body))
    f_lines = _wrap(footer, q_font, text_w) if footer else []
    qh, oh = _line_height(q_font), _line_height(o_font)
    text_h = PAD + len(q_lines) * qh + PAD // 2 + sum(len(b) for _, _, b in o_blocks) * oh
    text_h += (PAD + len(f_lines) * qh if f_lines else 0) + PAD
    grid_h = PAD + rows * (label_h + sh + PAD)
    canvas = Image.new("RGB", (width, grid_h + text_h), "white")
    draw = ImageDraw.Draw(canvas)
    x0 = (width - grid_w) // 2

    for k, im in enumerate(images):
        c, r = k % cols, k // cols
        cx = x0 + PAD + c * (sw + PAD)
        cy = PAD + r * (label_h + sh + PAD)
        draw.text((cx, cy), f"Image {k + 1}", fill="black", font=label_font)
        w, h = max(1, int(im.width * scale)), max(1, int(im.height * scale))
        ix, iy = cx + (sw - w) // 2, cy + label_h + (sh - h) // 2
        shown = im if (w, h) == im.size else im.resize((w, h), Image.Resampling.LANCZOS)
        canvas.paste(shown, (ix, iy))
        draw.rectangle((ix - 1, iy - 1, ix + w, iy + h), outline=(150, 150, 150))
        for bi, (x1, y1, x2, y2) in boxes:
            if bi != k:
                continue
            bx1, by1, bx2, by2 = ix + x1 * w, iy + y1 * h, ix + x2 * w, iy + y2 * h
            grow = max(0.0, (14 - (bx2 - bx1)) / 2), max(0.0, (14 - (by2 - by1)) / 2)  # tiny boxes stay visible
            draw.rectangle(
                (bx1 - grow[0] - 3, by1 - grow[1] - 3, bx2 + grow[0] + 3, by2 + grow[1] + 3),
                outline=(255, 0, 255),
                width=3,
            )

    y = grid_h + PAD
    for line in q_lines:
        draw.text((PAD, y), line, fill="black", font=q_font)
        y += qh
    y += PAD // 2
    for head, indent, body in o_blocks:
        draw.text((PAD, y), head, fill="black", font=o_font)
        for line in body:
            draw.text((PAD + indent, y), line, fill="black", font=o_font)
            y += oh
    if f_lines:
        y += PAD
        for line in f_lines:
            draw.text((PAD, y), line, fill=(180, 0, 0), font=q_font)
            y += qh
    return canvas, scale
