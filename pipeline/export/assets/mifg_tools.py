"""The two IMAgent tools as verl tools, copied into verl exports by `mifg export`.

- VisualReflectionTool ("visual_reflection"): bring the sample's image(s) back into the context.
- VisualConfirmationTool ("visual_confirmation"): crop a region of one image and zoom into it.

verl loads them from `tool_config.yaml` (`class_name: mifg_tools.VisualConfirmationTool`), so the
export folder must be on PYTHONPATH (run_verl_grpo.sh does that). verl hands a tool only the row's
`extra_info.tools_kwargs.<tool>.create_kwargs`, which is why each row carries its images there.
A call that executes is counted in the rollout's `extra_fields["tool_calls"]` (verl's ToolAgentLoop
passes its AgentData to `execute`; those fields reach the reward's `extra_info`): mifg_reward.py pays
the tool bonus on that count, never for an unknown tool, malformed arguments or a box it refused.

verl is imported only when available: outside verl (tests, inspection) minimal stand-ins for
BaseTool and ToolResponse keep this file importable. Needs only Pillow besides verl.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any
from uuid import uuid4

from PIL import Image

try:  # inside verl
    from verl.tools.base_tool import BaseTool
    from verl.tools.schemas import ToolResponse

    RUNNING_IN_VERL = True
except ImportError:  # outside verl: stand-ins with the same shape
    RUNNING_IN_VERL = False

    class ToolResponse:  # type: ignore[no-redef]
        """Stand-in for verl.tools.schemas.ToolResponse (text and/or images)."""

        def __init__(self, text: str | None = None, image: list | None = None, video: list | None = None) -> None:
            self.text, self.image, self.video = text, image, video

    class BaseTool:  # type: ignore[no-redef]
        """Stand-in for verl.tools.base_tool.BaseTool."""

        def __init__(self, config: dict, tool_schema: Any) -> None:
            self.config = config
            self.tool_schema = tool_schema
            fn = getattr(tool_schema, "function", None)
            self.name = fn.name if fn is not None else tool_schema["function"]["name"]


MIN_CROP_SIDE = 28  # pixels; Qwen2.5-VL patches are 28 px, smaller crops are padded by the processor anyway
ZOOM_SHORT_SIDE = 336  # the crop is upscaled so its short side is at least this many pixels
MAX_SIDE = 1344  # ... and its long side at most this


def record_call(kwargs: dict[str, Any]) -> None:
    """Count one executed call in the rollout's extra_fields (verl's ToolAgentLoop passes `agent_data`)."""
    fields = getattr(kwargs.get("agent_data"), "extra_fields", None)
    if isinstance(fields, dict):
        fields["tool_calls"] = int(fields.get("tool_calls") or 0) + 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_image(item: Any) -> Image.Image:
    """A PIL image from what a row may carry: bytes, {"bytes": ...}, a data URL, a path, or a PIL image."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, dict):
        item = item.get("bytes") or item.get("image") or item.get("path")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(item))).convert("RGB")
    if isinstance(item, str) and item.startswith("data:"):
        return Image.open(io.BytesIO(base64.b64decode(item.split(",", 1)[1]))).convert("RGB")
    if isinstance(item, str):
        return Image.open(item).convert("RGB")
    raise ValueError(f"cannot decode an image from {type(item).__name__}")


def crop_box(bbox: list[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """Pixel box for `bbox` (normalised [0,1] xyxy, or pixels if any value > 1), at least MIN_CROP_SIDE."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return None  # numbers only, as the tool schema says: "0.2" is a malformed call, not a coordinate
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if max(x1, y1, x2, y2) <= 1.0:  # normalised, like the samples' evidence boxes
        x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    x1, x2 = sorted((max(0.0, min(x1, width)), max(0.0, min(x2, width))))
    y1, y2 = sorted((max(0.0, min(y1, height)), max(0.0, min(y2, height))))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    # grow a too-small box around its centre (never past the image), as DeepEyes does
    side_w, side_h = max(x2 - x1, min(MIN_CROP_SIDE, width)), max(y2 - y1, min(MIN_CROP_SIDE, height))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = min(max(cx - side_w / 2, 0.0), width - side_w)
    top = min(max(cy - side_h / 2, 0.0), height - side_h)
    return (math.floor(left), math.floor(top), math.ceil(left + side_w), math.ceil(top + side_h))


def zoom(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """Crop `box` from the original image and upscale it so the detail becomes visible."""
    crop = image.crop(box)
    w, h = crop.size
    scale = max(1.0, ZOOM_SHORT_SIDE / min(w, h))
    scale = min(scale, MAX_SIDE / max(w, h)) if max(w, h) * scale > MAX_SIDE else scale
    if scale > 1.0:
        crop = crop.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    return crop


class _ImageTool(BaseTool):
    """Shared state: per instance, the row's original images (decoded lazily, once)."""

    def __init__(self, config: dict, tool_schema: Any) -> None:
        super().__init__(config, tool_schema)
        self._instances: dict[str, dict[str, Any]] = {}

    def get_openai_tool_schema(self) -> Any:
        """The schema from tool_config.yaml."""
        return self.tool_schema

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        """Start an instance for one rollout; `create_kwargs` holds the row's images."""
        instance_id = instance_id or str(uuid4())
        create_kwargs = kwargs.get("create_kwargs")
        kwargs = {**kwargs, **(create_kwargs if create_kwargs is not None else {})}
        images = kwargs.get("images")
        if images is None or len(images) == 0:  # may be a list or a numpy object array
            raise ValueError(f"{self.name}: create_kwargs has no 'images'")
        self._instances[instance_id] = {"raw": list(images), "decoded": {}}
        return instance_id, ToolResponse()

    def _image(self, instance_id: str, index: int) -> Image.Image:
        inst = self._instances[instance_id]
        if index not in inst["decoded"]:
            inst["decoded"][index] = decode_image(inst["raw"][index])
        return inst["decoded"][index]

    def _count(self, instance_id: str) -> int:
        return len(self._instances[instance_id]["raw"])

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        """No per-tool reward: the tool-use gain is paid by the outcome reward (mifg_reward.py)."""
        return 0.0

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """Forget the instance's images."""
        self._instances.pop(instance_id, None)


class VisualReflectionTool(_ImageTool):
    """visual_reflection: show the original image(s) again so attention returns to the pixels."""

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[Any, float, dict]:
        """Return the requested images (1-based `image_indices`; all when empty)."""
        n = self._count(instance_id)
        wanted = parameters.get("image_indices") or list(range(1, n + 1))
        if _is_int(wanted):
            wanted = [wanted]
        if not isinstance(wanted, list) or not all(_is_int(i) for i in wanted):
            return ToolResponse(text="Error: image_indices must be a list of image numbers."), 0.0, {"success": False}
        indices = list(wanted)
        bad = [i for i in indices if not 1 <= i <= n]
        if bad:
            return ToolResponse(text=f"Error: image numbers must be 1..{n}, got {bad}."), 0.0, {"success": False}
        images = [self._image(instance_id, i - 1) for i in indices]
        text = (
            "Here " + ("is image " if len(indices) == 1 else "are images ") + ", ".join(map(str, indices)) + " again."
        )
        record_call(kwargs)
        return ToolResponse(text=text, image=images), 0.0, {"success": True, "images": len(images)}


class VisualConfirmationTool(_ImageTool):
    """visual_confirmation: crop a region of one original image and zoom into it."""

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[Any, float, dict]:
        """Zoom into `bbox_2d` of image `image_index` (1-based)."""
        n = self._count(instance_id)
        index = parameters.get("image_index", 1)
        if not _is_int(index) or not 1 <= index <= n:
            return ToolResponse(text=f"Error: image_index must be 1..{n}."), 0.0, {"success": False}
        image = self._image(instance_id, index - 1)
        box = crop_box(parameters.get("bbox_2d"), *image.size)
        if box is None:
            msg = "Error: bbox_2d must be [x1, y1, x2, y2] inside the image (normalised 0..1 or pixels)."
            return ToolResponse(text=msg), 0.0, {"success": False}
        crop = zoom(image, box)
        text = (
            f"Zoomed into image {index}, region {list(box)} (pixels of the original {image.size[0]}x{image.size[1]})."
        )
        record_call(kwargs)
        return ToolResponse(text=text, image=[crop]), 0.0, {"success": True, "crop": list(box)}
