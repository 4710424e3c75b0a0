"""Word a default-family set (construction version 2) as a multiple-choice question.

Every family has at least five phrasings, 3-5 options, options shuffled with a seeded RNG (the
answer letter is uniform), and a none-style option wherever the family has unanswerable twins, in
every sample of that family (so its presence tells nothing). Questions never name the source photo.
Revisions re-order the options away from over-used letters or switch to another phrasing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agents.base import Draft, ImageSet
from agents.offline.regions import Region, all_regions, grid_note, region_text
from schemas import LETTERS, Box, TaskType

PHRASINGS: dict[str, list[str]] = {
    "which_differs": [
        "The images are separate shots of one scene; lighting and framing vary a little. Compared with Image 1, which "
        "image has a real change in its content?",
        "Apart from small differences in exposure, colour balance and framing, which image shows something that is "
        "not the same as in Image 1?",
        "Image 1 is the reference shot. Which of the other shots differs from it in a small detail of the scene?",
        "Ignore global changes of brightness, white balance and crop. Which image contains a local difference from "
        "Image 1?",
        "Look closely: one of the other images may differ from Image 1 in a small part of the scene. Which one?",
    ],
    "which_unchanged": [
        "Each of the other shots may have a small local change compared with Image 1 (lighting and framing vary "
        "anyway). Which shot shows exactly the same scene content as Image 1?",
        "Ignoring exposure, colour balance and small shifts of framing, which image has the same content as Image 1?",
        "All but possibly one of the other images differ from Image 1 in a small detail. Which image has no such "
        "difference?",
        "Which of the other shots is unchanged with respect to Image 1, apart from lighting and framing?",
        "Compare every other image with Image 1 in detail. Which one has no local change at all?",
    ],
    "odd_one_out": [
        "These shots of one scene differ in lighting and framing. One of them also differs in a small detail of the "
        "content from all the others. Which one?",
        "Which image is the odd one out, showing a small content difference that the others do not share?",
        "All images but one show the same scene content (ignore brightness, colour balance and crop). Which image "
        "is different?",
        "One image does not match the others in a small part of the scene. Which is it?",
        "Ignoring global changes of exposure and framing, which image's content differs from the rest?",
    ],
    "where_differs": [
        "The two shots differ a little in lighting and framing. Is there also a small change in the scene, and if so "
        "where in Image 1 is it?",
        "Compare Image 1 and Image 2 closely. In which part of Image 1 does the content differ, if anywhere?",
        "Ignoring exposure, white balance and small shifts, where is the local difference between the two images?",
        "Where in Image 1 would you find the small detail that is different in Image 2?",
        "Look for a small difference in content between the two shots. Which region of Image 1 holds it?",
    ],
    "count_across": [
        "Image 1 is the reference. How many of the other images differ from it in a small detail of the scene "
        "(ignore lighting and framing)?",
        "Compared with Image 1, in how many of the other shots has some small part of the scene changed?",
        "How many of the other images are not identical in content to Image 1, apart from exposure and crop?",
        "Count the images, besides Image 1, that show a local change of the scene relative to Image 1.",
        "Ignoring global changes of brightness, colour and framing, how many other images differ from Image 1?",
    ],
    "count_changes": [
        "How many separate local differences are there between the two images (ignore lighting and framing)?",
        "Apart from exposure, colour balance and crop, how many small content changes separate Image 1 from Image 2?",
        "Count the places where the scene in Image 2 differs from the scene in Image 1.",
        "The two shots show one scene. In how many separate spots does their content differ?",
        "How many distinct small edits would turn Image 1's scene into Image 2's?",
    ],
    "change_kind": [
        "Between Image 1 and Image 2 (which also differ in lighting and framing), what happened to the scene?",
        "What kind of change turns the scene of Image 1 into that of Image 2?",
        "Ignoring exposure, white balance and crop, how does the content of Image 2 differ from Image 1?",
        "Look for a small difference between the two shots. Which description of the change from Image 1 to Image 2 "
        "is correct?",
        "Going from Image 1 to Image 2, what changed in the scene?",
    ],
    "matching_pair": [
        "These shots of one scene differ in lighting and framing, and all but two also differ in a small detail. "
        "Which two images show exactly the same content?",
        "Which pair of images is identical in content, apart from exposure, colour balance and crop?",
        "Only two of these images agree in every detail of the scene. Which two?",
        "Ignoring global changes, which two images have no content difference between them?",
        "Find the two images whose scenes match exactly. Which are they?",
    ],
    "crop_match": [
        "The other images are enlarged close-ups of parts of Image 1, and some were altered. Which close-up is an "
        "unaltered part of Image 1?",
        "Each close-up shows a part of Image 1, possibly with a small change. Which close-up matches Image 1 exactly?",
        "Which of the close-ups comes unchanged from Image 1 (lighting may differ)?",
        "Compare each close-up with the same place in Image 1. Which one has no change in content?",
        "Some close-ups of Image 1 were edited in a small detail. Which close-up was not?",
    ],
    "zoom_locate": [
        "Image 2 is an enlarged close-up of part of Image 1. Where in Image 2 is its content different from Image 1, "
        "if anywhere?",
        "Compare the close-up (Image 2) with the same part of Image 1. Which region of the close-up holds a change?",
        "The close-up in Image 2 may contain a small change relative to Image 1. In which part of Image 2 is it?",
        "Find where the close-up (Image 2) does not match Image 1. Which region of Image 2 is it?",
        "Image 2 enlarges part of Image 1, perhaps with one small difference. Where in Image 2 is that difference?",
    ],
}
NONE_IMAGE = ("None of them", "None of the images", "No image qualifies")
NONE_WHERE = ("Nowhere: they show the same content", "No difference")
NONE_ZOOM = ("Nowhere: the close-up matches", "No change")
KIND_TEXT = {  # worded apart from the construction's kind names, which stay in provenance
    "added": "Something appeared",
    "removed": "Something disappeared",
    "recoloured": "Something changed colour",
    "moved": "Something changed place",
    "nothing": "Nothing changed",
}
WHERE_OPTIONS = 4  # answer region + distractors + the none option


@dataclass
class ScenePlan:
    """The choices behind one draft."""

    template: int
    order_seed: int = 0
    forbidden: frozenset[str] = frozenset()


def _image_options(c: dict, rng: random.Random) -> tuple[list[str], str]:
    cands = c.get("candidates") or list(range(1, c["n_images"] + 1))
    none = NONE_IMAGE[rng.randrange(len(NONE_IMAGE))]
    options = [f"Image {k}" for k in cands]
    if c["family"] in ("which_differs", "which_unchanged", "crop_match"):
        options.append(none)
    answer = none if c["answer"] == "none" else f"Image {c['answer']}"
    return options, answer


def _where_options(c: dict, rng: random.Random, none_texts: tuple[str, ...]) -> tuple[list[str], str]:
    style = rng.choice(["names", "coords"])
    none = none_texts[rng.randrange(len(none_texts))]
    regions = all_regions(style)
    if c["answer"] == "none":
        answer_region = None
        picks = rng.sample(regions, WHERE_OPTIONS - 1)
    else:
        g, r, col = int(c["answer"][1]), int(c["answer"][3]), int(c["answer"][5])
        answer_region = Region(g, r, col)
        others = [x for x in regions if x != answer_region]
        picks = [answer_region, *rng.sample(others, WHERE_OPTIONS - 2)]
    options = [region_text(x, style) for x in picks] + [none]
    answer = none if answer_region is None else region_text(answer_region, style)
    return options, answer


def _options(c: dict, rng: random.Random) -> tuple[list[str], str]:
    fam = c["family"]
    if fam in ("which_differs", "which_unchanged", "odd_one_out", "crop_match"):
        return _image_options(c, rng)
    if fam == "where_differs":
        return _where_options(c, rng, NONE_WHERE)
    if fam == "zoom_locate":
        return _where_options(c, rng, NONE_ZOOM)
    if fam == "count_across":
        return [str(v) for v in range(c["max_count"] + 1)], c["answer"]
    if fam == "count_changes":
        return ["0", "1", "2", "3"], c["answer"]
    if fam == "change_kind":
        return list(KIND_TEXT.values()), KIND_TEXT[c["answer"]]
    if fam == "matching_pair":
        n = c["n_images"]
        pairs = [f"Images {i} and {j}" for i in range(1, n + 1) for j in range(i + 1, n + 1)]
        a, b = c["answer"].split("-")
        answer = f"Images {a} and {b}"
        distractors = rng.sample([p for p in pairs if p != answer], min(3, len(pairs) - 1))
        return [answer, *distractors], answer
    raise ValueError(f"unknown family {fam!r}")


def _evidence(c: dict) -> list[Box]:
    boxes = []
    for k, im in enumerate(c["images"]):
        for e in im["edits"]:
            boxes.append(Box(image_index=k, bbox=tuple(e["bbox"])))
    return boxes


def _rationale(c: dict, answer: str) -> str:
    edited = [k + 1 for k, im in enumerate(c["images"]) if im["edits"]]
    if not edited:
        return f"After registering the shots and matching their tones, no local content difference remains: {answer}."
    parts = []
    for k, im in enumerate(c["images"]):
        for e in im["edits"]:
            x1, y1, x2, y2 = e["bbox"]
            parts.append(f"image {k + 1}: {KIND_TEXT[e['kind']].lower()} at x {x1:.2f}-{x2:.2f}, y {y1:.2f}-{y2:.2f}")
    return "Local changes after registration (" + "; ".join(parts) + f"), so the answer is {answer}."


def render_scene(images: ImageSet, plan: ScenePlan, seed: int) -> Draft:
    """The draft of a version-2 set under `plan`."""
    c = images.construction
    fam = c["family"]
    rng = random.Random(f"{seed}:{fam}:options")
    options, answer = _options(c, rng)
    phrasings = PHRASINGS[fam]
    question = phrasings[plan.template % len(phrasings)]
    if fam in ("where_differs", "zoom_locate"):  # "row 1, column 1" means nothing until the grid is named
        style = "coords" if any(o.lower().startswith("row ") for o in options) else "names"
        question = f"{question} {grid_note(style, 'Image 1' if fam == 'where_differs' else 'Image 2')}"
    order = random.Random(f"{seed}:order:{plan.order_seed}")
    perm = options[:]
    for _ in range(32):
        order.shuffle(perm)
        if LETTERS[perm.index(answer)] not in plan.forbidden:
            break
    return Draft(
        question=question,
        options=perm,
        answer=LETTERS[perm.index(answer)],
        task_type=TaskType(c["task"]),
        rationale=_rationale(c, answer),
        evidence=_evidence(c),
    )


def write_scene(images: ImageSet, seed: int, feedback: list[str]) -> Draft:
    """First draft, or the draft after each round of critic feedback (deterministic)."""
    plan = ScenePlan(
        template=random.Random(f"{seed}:template").randrange(len(PHRASINGS[images.construction["family"]]))
    )
    draft = render_scene(images, plan, seed)
    for text in feedback:
        if "answer_position_bias" in text:
            plan = ScenePlan(plan.template, plan.order_seed + 1, plan.forbidden | {draft.answer})
        else:
            plan = ScenePlan(plan.template + 1, plan.order_seed + 1, plan.forbidden)
        draft = render_scene(images, plan, seed)
    return draft
