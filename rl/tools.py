"""The two tools of IMAgent, as pure functions over the episode's ORIGINAL images.

* visual_reflection: re-present the original image(s) — all, or the 1-based ones named — at full
  resolution (optionally capped), so the policy looks again.
* visual_confirmation: crop a box of one image and zoom it. The box is normalised [0, 1] or pixel
  coordinates of the original image ("auto": all coordinates <= 1 means normalised). It is sorted,
  clamped to the image, grown to `min_crop_px` per side around its centre (DeepEyes/Qwen need >= 28 px)
  and zoomed so its longer side is `zoom_size`. Crops are always taken from the original image,
  never from an earlier crop (DeepEyes), so zooming twice cannot compound resampling.

Errors (bad index, box outside the image) come back as `ToolError` values, never exceptions:
the environment turns them into an error observation the policy can recover from.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class ToolResult:
    """What a tool shows the policy: text, images, and where each image came from."""

    text: str
    images: list[Image.Image]
    image_info: list[dict]  # per image: {"image": 0-based source index, "bbox": normalised xyxy}


@dataclass(frozen=True)
class ToolError:
    """A tool call that could not be executed; `message` is shown to the policy."""

    message: str


def visual_reflection(
    images: list[Image.Image], which: list[int] | None = None, max_side: int | None = None
) -> ToolResult | ToolError:
    """Re-present original images (1-based `which`, default all), optionally capped to `max_side`."""
    n = len(images)
    which = list(range(1, n + 1)) if which is None else which
    bad = [i for i in which if not 1 <= i <= n]
    if bad:
        return ToolError(f"visual_reflection: image number(s) {bad} out of range 1..{n}")
    which = list(dict.fromkeys(which))  # asking twice for one image shows it once
    shown = [cap_side(images[i - 1], max_side) for i in which]
    names = ", ".join(str(i) for i in which)
    info = [{"image": i - 1, "bbox": (0.0, 0.0, 1.0, 1.0)} for i in which]
    return ToolResult(f"Image(s) {names} again, at full resolution.", shown, info)


def visual_confirmation(
    images: list[Image.Image],
    image: int,
    bbox: list[float],
    coords: str = "auto",
    min_crop_px: int = 28,
    zoom_size: int = 448,
) -> ToolResult | ToolError:
    """Crop `bbox` of 1-based `image` from the original and zoom it so its longer side is `zoom_size`."""
    n = len(images)
    if not 1 <= image <= n:
        return ToolError(f"visual_confirmation: image {image} out of range 1..{n}")
    img = images[image - 1]
    box = crop_box(bbox, img.width, img.height, coords, min_crop_px)
    if isinstance(box, ToolError):
        return box
    x1, y1, x2, y2 = box
    crop = img.crop(box)
    if zoom_size > 0:
        scale = zoom_size / max(crop.width, crop.height)
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop = crop.resize(size, Image.Resampling.BICUBIC)
    norm = (x1 / img.width, y1 / img.height, x2 / img.width, y2 / img.height)
    text = f"Zoomed crop of image {image}, region [{norm[0]:.2f}, {norm[1]:.2f}, {norm[2]:.2f}, {norm[3]:.2f}]."
    return ToolResult(text, [crop], [{"image": image - 1, "bbox": norm}])


def crop_box(
    bbox: list[float], width: int, height: int, coords: str = "auto", min_crop_px: int = 28
) -> tuple[int, int, int, int] | ToolError:
    """Pixel box (x1, y1, x2, y2) of a requested box: sorted, clamped, grown to `min_crop_px` per side."""
    x1, y1, x2, y2 = (float(c) for c in bbox)
    # "auto": a box whose coordinates are all <= ~1 is normalised; the slack keeps a slight overshoot
    # ([0.5, 0.5, 1.01, 1.01]) from being read as a 1-px box in the top-left corner.
    normalised = coords == "norm" or (coords == "auto" and max(abs(x1), abs(y1), abs(x2), abs(y2)) <= 1.05)
    if normalised:
        x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:  # nothing of the box is inside the image
        return ToolError(f"visual_confirmation: bbox {list(bbox)} lies outside the {width}x{height} image")
    x1, x2 = _grow(max(0.0, x1), min(float(width), x2), min_crop_px, width)
    y1, y2 = _grow(max(0.0, y1), min(float(height), y2), min_crop_px, height)
    return round(x1), round(y1), round(x2), round(y2)


def _grow(lo: float, hi: float, min_side: int, limit: int) -> tuple[float, float]:
    """Grow [lo, hi] around its centre to at least `min_side` (or the whole axis), kept inside [0, limit]."""
    side = min(float(max(min_side, 1)), float(limit))
    if hi - lo >= side:
        return lo, hi
    centre = (lo + hi) / 2
    lo = min(max(0.0, centre - side / 2), limit - side)
    return lo, lo + side


def cap_side(img: Image.Image, max_side: int | None) -> Image.Image:
    """`img` resized so its longer side is at most `max_side` (unchanged when 0/None or already small)."""
    if not max_side or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC)
