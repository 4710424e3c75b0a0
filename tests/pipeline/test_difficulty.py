"""The difficulty card: naive solvers do what they claim, the card counts right, stats and export show it."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.difficulty import (
    SOLVERS,
    DifficultyTally,
    answer_prior,
    difficulty_card,
    format_card,
    markdown_card,
    run_difficulty,
)
from pipeline.difficulty_solvers import plain_subtraction, wants_smallest
from schemas import Provenance, Sample, TaskType, image_entry, option_letter
from tests.factories import make_image, png_bytes

SIZE = (96, 72)
REGIONS = ["top left", "top centre", "top right", "middle left", "middle centre", "middle right"]


def _sample(images: list[Image.Image], question: str, options: list[str], answer: int, task: TaskType) -> Sample:
    entries = [image_entry(png_bytes(im), width=im.width, height=im.height, source="test:x") for im in images]
    return Sample(
        images=[e for e, _ in entries],
        image_meta=[m for _, m in entries],
        question=question,
        options=options,
        answer=option_letter(answer),
        task_type=task,
        provenance=Provenance(backend="offline"),
    )


def _marked(base: Image.Image, x: int, y: int) -> Image.Image:
    img = base.copy()
    ImageDraw.Draw(img).rectangle([x, y, x + 5, y + 5], fill=(20, 230, 40))
    return img


def _shifted(img: Image.Image, shift: int) -> Image.Image:
    arr = np.asarray(img, dtype=np.int16) + shift
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _family_sets(seed: int, shifts: bool) -> list[Sample]:
    """which_differs / where_differs / count_across samples made of identical copies plus edits.

    With `shifts`, every image also gets its own global brightness shift (another exposure).
    """
    rng = random.Random(seed)
    out = []
    for k in range(12):
        base = make_image(seed * 1000 + k, SIZE)

        def expose(img: Image.Image) -> Image.Image:
            return _shifted(img, rng.choice([-1, 1]) * rng.randint(12, 40)) if shifts else img

        # which image differs from image 1 (options name images 2..n)
        n = 3 + k % 2
        target = rng.randrange(1, n)
        imgs = [_marked(base, rng.randrange(80), rng.randrange(60)) if i == target else base for i in range(n)]
        q = "Image 1 is the reference. Exactly one of the other images differs from it. Which image is it?"
        out.append(
            _sample(
                [expose(i) for i in imgs],
                q,
                [f"Image {i + 1}" for i in range(1, n)],
                target - 1,
                TaskType.WHICH_DIFFERS,
            )
        )
        # where do two images differ (region names of the 3x3 grid)
        cell = rng.randrange(len(REGIONS))
        row, col = divmod(cell, 3)
        x, y = col * SIZE[0] // 3 + 10, row * SIZE[1] // 3 + 8
        opts = rng.sample([r for r in REGIONS if r != REGIONS[cell]], 3) + [REGIONS[cell]]
        rng.shuffle(opts)
        q = "The two images are identical except for one small region. Where in the image is that region?"
        out.append(
            _sample(
                [expose(base), expose(_marked(base, x, y))], q, opts, opts.index(REGIONS[cell]), TaskType.WHERE_DIFFERS
            )
        )
        # how many images carry the mark (never image 1)
        marked = set(rng.sample(range(1, 4), rng.randint(1, 2)))
        imgs = [_marked(base, 40, 30) if i in marked else base for i in range(4)]
        q = "How many of these images contain a small green square?"
        out.append(_sample([expose(i) for i in imgs], q, ["0", "1", "2", "3"], len(marked), TaskType.COUNT_ACROSS))
    return out


def test_plain_subtraction_solves_identical_copies_and_fails_on_exposure_changes():
    clean = difficulty_card(_family_sets(1, shifts=False))
    for task in ("which_differs", "where_differs", "count_across"):
        assert clean["task_types"][task]["plain_subtraction"] == 1.0, task

    shifted = difficulty_card(_family_sets(1, shifts=True))
    # every image differs from image 1 now: counting and "which one" break down
    assert shifted["task_types"]["count_across"]["plain_subtraction"] <= 0.5
    assert shifted["task_types"]["which_differs"]["plain_subtraction"] <= 0.75
    assert shifted["overall"]["plain_subtraction"] <= clean["overall"]["plain_subtraction"] - 0.3


def test_plain_subtraction_reads_the_question():
    base = make_image(5, SIZE)
    arrays = [np.asarray(im) for im in (base, _marked(base, 10, 10), base)]
    assert plain_subtraction(arrays, "Which one is not identical to image 1?", ["Image 2", "Image 3"]) == 0
    assert plain_subtraction(arrays, "Which one shows the scene with nothing added?", ["Image 2", "Image 3"]) == 1
    # no reference (image 1 is a candidate): the image farthest from all the others
    assert plain_subtraction(arrays, "Which image is the odd one out?", ["Image 1", "Image 2", "Image 3"]) == 1
    same = [np.asarray(base)] * 3
    assert plain_subtraction(same, "Which image differs?", ["Image 2", "Image 3", "None of them"]) == 2
    assert wants_smallest("All but one are identical. Which one matches image 1?")
    assert wants_smallest("Three images have a small change. Which image is the only one without a change?")
    assert not wants_smallest("All but one of these images are identical. Which image is the odd one out?")


def _text_sample(options: list[str], answer_text: str, k: int = 0, task: TaskType = TaskType.ODD_ONE_OUT) -> Sample:
    imgs = [Image.new("RGB", (8, 8), (10 * i, k % 256, k // 256)) for i in range(3)]  # k: a distinct sample id
    q = "All but one of these images are identical. Which image is the odd one out?"
    return _sample(imgs, q, options, options.index(answer_text), task)


def test_answer_prior_exploits_a_planted_bias_and_sits_near_chance_otherwise():
    rng = random.Random(7)
    names = ["Image 1", "Image 2", "Image 3"]
    biased = []
    for k in range(30):
        opts = rng.sample(names, 3)  # the position varies, the text does not
        biased.append(_text_sample(opts, "Image 2", k))
    picks = answer_prior(biased)
    assert all(s.options[p] == "Image 2" for s, p in zip(biased, picks, strict=True))
    card = difficulty_card(biased)
    assert card["samples"] == 30 and card["task_types"]["odd_one_out"]["answer_prior"] == 1.0

    balanced = [_text_sample(rng.sample(names, 3), rng.choice(names), k) for k in range(90)]
    card = difficulty_card(balanced)
    assert card["samples"] == 90 and abs(card["overall"]["answer_prior"] - 1 / 3) < 0.15

    # leave-one-out: a text seen only as this very sample's answer gives no hint; the position the
    # other sample's answer took breaks the tie
    lone = [_text_sample(["red", "blue"], "red", 1), _text_sample(["green", "yellow"], "yellow", 2)]
    assert answer_prior(lone) == [1, 0]


def test_card_rows_chance_and_subset():
    base = make_image(3, SIZE)
    two = [base, _marked(base, 20, 20)]
    samples = [
        _sample(two, "Which image differs?", ["Image 1", "Image 2"], 1, TaskType.WHICH_DIFFERS),
        _sample(two, "Which image differs?", ["Image 2", "Image 1"], 0, TaskType.WHICH_DIFFERS),
        _sample(two, "Which image is the odd one?", ["Image 1", "Image 2"], 1, TaskType.WHICH_DIFFERS),
        _sample(
            [base, base, _marked(base, 50, 40), base],
            "Which image differs?",
            ["Image 1", "Image 2", "Image 3", "Image 4"],
            2,
            TaskType.WHICH_DIFFERS,
        ),
        _sample(two, "Where do they differ?", ["top left", "top centre", "bottom right"], 0, TaskType.WHERE_DIFFERS),
        _sample(two, "Where do they differ?", ["top centre", "top left", "bottom right"], 1, TaskType.WHERE_DIFFERS),
    ]
    card = difficulty_card(samples)
    json.dumps(card)  # JSON-able
    assert card["samples"] == card["of"] == 6
    rows = card["task_types"]
    assert set(rows) == {"which_differs", "where_differs"}
    assert rows["which_differs"]["n"] == 4 and rows["where_differs"]["n"] == 2
    assert rows["which_differs"]["chance"] == pytest.approx((3 * 0.5 + 0.25) / 4, abs=1e-4)
    assert rows["where_differs"]["chance"] == pytest.approx(1 / 3, abs=1e-4)
    assert card["overall"]["n"] == 6
    assert card["overall"]["chance"] == pytest.approx((3 * 0.5 + 0.25 + 2 / 3) / 6, abs=1e-4)
    for row in [*rows.values(), card["overall"]]:
        assert all(0.0 <= row[name] <= 1.0 for name in SOLVERS)
    text = format_card(card)
    assert "which_differs" in text and "where_differs" in text and "overall" in text
    assert all(name in text for name in SOLVERS) and "| **overall** | 6 |" in markdown_card(card)

    # the capped subset is the same whether it is fixed up front or kept while streaming
    capped = difficulty_card(samples, cap=3)
    assert capped["samples"] == 3 and capped["of"] == 6
    streamed, selected = DifficultyTally(cap=3, seed=1), DifficultyTally(cap=3, seed=1)
    selected.select(s.id for s in samples)
    for s in samples:
        streamed.add(s)
        selected.add(s)
    assert set(streamed.rows) == set(selected.rows) and len(selected.rows) == 3


def test_stats_and_dataset_card_show_the_difficulty_table(photo_dir, tmp_path):
    from pipeline.export.dataset_card import render
    from pipeline.export.facts import ExportFacts
    from pipeline.run_config import RunConfig
    from pipeline.runner import generate
    from pipeline.shard_store import ShardWriter
    from pipeline.stats import collect_stats, format_stats
    from tests.pipeline.agent_doubles import make_agents

    out = tmp_path / "run"
    cfg = RunConfig(out=out, n=4, source=f"dir:{photo_dir}", concurrency=2, workers=1)
    generate(cfg, make_agents("accept"), progress=False)
    st = collect_stats(out)
    accepted = st["shards"]["accepted"]["rows"]
    assert accepted > 0
    card = st["difficulty"]
    assert card["samples"] == card["of"] == card["overall"]["n"] == accepted
    assert sum(r["n"] for r in card["task_types"].values()) == accepted
    text = format_stats(st)
    assert "difficulty: naive solvers' accuracy" in text and "plain_subtraction" in text
    assert format_card(card) in text

    # a capped card solves a subset; a damaged shard is skipped, not fatal
    assert run_difficulty(out, cap=2)["samples"] == min(2, accepted)
    extra = ShardWriter(out, "extra").write([_text_sample(["Image 1", "Image 2", "Image 3"], "Image 2", 999)])
    (out / extra.file).write_bytes(b"not parquet")
    damaged = run_difficulty(out)
    assert damaged["samples"] == accepted and damaged["skipped"] == {"unreadable_shard": 1}

    facts = ExportFacts()
    for s in _family_sets(2, shifts=False)[:6]:
        facts.add("train", s)
    readme = render(facts, "usage")
    assert "## Difficulty: naive solvers" in readme
    assert "| which_differs | 2 |" in readme and "| **overall** | 6 |" in readme
