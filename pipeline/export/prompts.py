"""The prompt text every training format shares: labelled images, question, lettered options.

Images are labelled "Image 1:", "Image 2:", ... in order so the policy can name one (the tools take
a 1-based image index). The answer goes inside <answer></answer>, which the exported reward reads.
"""

from __future__ import annotations

import re

from schemas import LETTERS, Sample

IMAGE_TOKEN = "<image>"  # verl's placeholder; one per image, in order
ANSWER_INSTRUCTION = (
    "Look closely: the deciding detail is small. You may call visual_reflection to look at the images "
    "again and visual_confirmation to zoom into a region of one image. Put only the letter of the correct "
    "option inside <answer></answer>, for example <answer>A</answer>."
)
_PLACEHOLDER_RE = re.compile(r"<\s*(image|video)\s*>", re.IGNORECASE)


def clean(text: str) -> str:
    """Text with any literal <image>/<video> token defused, so placeholder counts stay exact."""
    return _PLACEHOLDER_RE.sub(lambda m: f"[{m.group(1)}]", text)


def image_label(index: int) -> str:
    """Label shown before the image at `index` (0-based)."""
    return f"Image {index + 1}:"


def options_block(sample: Sample) -> str:
    """The options as "A. ...", one per line."""
    return "\n".join(f"{LETTERS[i]}. {clean(o)}" for i, o in enumerate(sample.options))


def question_block(sample: Sample, instruction: str = ANSWER_INSTRUCTION) -> str:
    """Question, lettered options and the answer-format instruction."""
    text = f"{clean(sample.question)}\n\nOptions:\n{options_block(sample)}"
    return f"{text}\n\n{instruction}" if instruction else text


def placeholder_prompt(sample: Sample) -> str:
    """One user message as a string with one <image> placeholder per image, in order (verl)."""
    lines = [f"{image_label(i)} {IMAGE_TOKEN}" for i in range(len(sample.images))]
    return "\n".join(lines) + "\n\n" + question_block(sample)


def content_blocks(sample: Sample) -> list[dict]:
    """The same prompt as typed content blocks: text labels interleaved with image blocks (TRL)."""
    blocks: list[dict] = []
    for i in range(len(sample.images)):
        blocks.append({"type": "text", "text": image_label(i)})
        blocks.append({"type": "image", "text": None})
    blocks.append({"type": "text", "text": "\n" + question_block(sample)})
    return blocks
