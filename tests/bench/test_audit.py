"""The blind audit tool: render hides the key, score counts right labels and visibility."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from bench import audit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny offline run on the bundled photos."""
    from agents.offline import build_offline_agents
    from agents.offline.edits import EDIT_KINDS
    from pipeline.image_validation import ValidationConfig
    from pipeline.run_config import RunConfig
    from pipeline.runner import generate

    out = tmp_path_factory.mktemp("audit") / "run"
    cfg = RunConfig(out=out, n=8, workers=1, concurrency=4, validation=ValidationConfig(max_side=512))
    s = generate(cfg, build_offline_agents({"kinds": list(EDIT_KINDS)}), progress=False)
    assert s.exit_code == 0
    return out


@pytest.fixture(scope="module")
def rendered(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "out"
    key = audit.render(run_dir, out, n=3, seed=0)
    return out, key


def _filled(out, key):
    answers = json.loads((out / audit.TEMPLATE_JSON).read_text())
    for a, k in zip(answers, key, strict=True):
        a.update(answer=k["answer"], visibility="look", artefact=False)
    return answers


def test_render_writes_composites_full_images_and_no_key_in_sight(rendered):
    out, key = rendered
    assert len(key) == 3
    names = sorted(p.name for p in out.iterdir())
    for k in key:
        nn = f"{k['n']:02d}"
        assert f"{nn}.png" in names
        assert [f"{nn}_full_{i}.png" for i in range(1, k["n_images"] + 1)] == sorted(
            n for n in names if n.startswith(f"{nn}_full_")
        )
        comp = Image.open(out / f"{nn}.png")
        assert comp.width <= audit.MAX_WIDTH and list(comp.size) == k["composite_size"]
        assert 0 < k["scale"] <= 1.0
        full = Image.open(out / f"{nn}_full_1.png")
        assert list(full.size) == k["image_sizes"][0]
    assert not [n for n in names if n.endswith("_key.png")]  # boxes only on request
    listing = " ".join(names)
    for k in key:  # nothing in the file names gives a sample away
        assert k["id"] not in listing and k["task_type"] not in listing
    template = json.loads((out / audit.TEMPLATE_JSON).read_text())
    assert template == [{"n": i, "answer": "", "visibility": "", "artefact": None, "note": ""} for i in (1, 2, 3)]
    assert "unfindable" in (out / audit.README_TXT).read_text()
    stored = json.loads((out / audit.KEY_JSON).read_text())["samples"]
    assert [s["answer"] for s in stored] == [k["answer"] for k in key]
    assert all(s["evidence"] and isinstance(s["construction"], dict) for s in stored)


def test_render_is_seeded_and_refuses_to_overwrite(run_dir, rendered, tmp_path):
    out, key = rendered
    again = audit.render(run_dir, tmp_path / "again", n=3, seed=0)
    assert [k["id"] for k in again] == [k["id"] for k in key]
    from schemas.errors import InputError

    with pytest.raises(InputError):
        audit.render(run_dir, out, n=3, seed=0)


def test_with_boxes_writes_key_images(run_dir, tmp_path):
    key = audit.render(run_dir, tmp_path / "boxed", n=2, seed=1, with_boxes=True, max_width=600)
    for k in key:
        assert (tmp_path / "boxed" / f"{k['n']:02d}_key.png").is_file()
        assert Image.open(tmp_path / "boxed" / f"{k['n']:02d}.png").width <= 600
        assert k["scale"] < 1.0  # the bundled photos are wider than 600 px side by side: scaled down


def test_score_all_right_then_one_wrong(rendered, tmp_path):
    out, key = rendered
    answers = _filled(out, key)
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    res = audit.score(out, path)
    o = res["overall"]
    assert o["n"] == 3 and o["label_right_rate"] == 1.0 and o["look_rate"] == 1.0 and o["glance_rate"] == 0.0
    assert o["artefact_rate_found"] == 0.0 and res["pass"] and not res["incomplete"]
    assert sum(f["n"] for f in res["by_task_type"].values()) == 3
    assert json.loads((out / audit.SCORE_JSON).read_text())["pass"] is True
    assert "PASS" in audit.format_score(res)

    letters = key[0]["options"]
    answers[0]["answer"] = next(chr(65 + i) for i in range(len(letters)) if chr(65 + i) != key[0]["answer"])
    answers[1].update(visibility="unfindable", artefact=None)
    answers[2].update(visibility="glance", artefact=True)
    path.write_text(json.dumps(answers))
    res = audit.score(out, path)
    o = res["overall"]
    assert o["label_right_rate"] == round(2 / 3, 4) and o["unfindable_rate"] == round(1 / 3, 4)
    assert o["artefact_rate_found"] == 0.5 and o["artefact_rate_all"] == round(1 / 3, 4)
    assert not res["pass"] and [w["n"] for w in res["wrong"]] == [1]
    assert "FAIL" in audit.format_score(res)


def test_score_cli_flags_bad_and_missing_entries(rendered, tmp_path, capsys):
    out, key = rendered
    answers = _filled(out, key)
    answers[0]["visibility"] = "squint"
    answers[1]["answer"] = ""
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    assert audit.main(["score", str(out), "--answers", str(path)]) == 1
    text = capsys.readouterr().out
    assert "squint" in text and "incomplete" in text and "FAIL" in text
    path.write_text("not json")
    assert audit.main(["score", str(out), "--answers", str(path)]) == 2
