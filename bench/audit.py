"""Blind human audit of a generation run: render samples for a person to answer, then score the answers.

    .venv/bin/python -m bench.audit render RUN_DIR --n 20 --seed 0 --out DIR [--with-boxes] [--force]
    .venv/bin/python -m bench.audit score DIR --answers DIR/answers_template.json

`render` picks N random accepted samples (seeded) from RUN_DIR's shards and writes, per sample NN:

    DIR/NN.png             the composite: every image labelled "Image k" (side by side, 2x2 for 4 images),
                           scaled to at most ~1600 px wide, with the question and lettered options below
    DIR/NN_full_k.png      image k at full resolution (k = 1..), for zooming
    DIR/NN_key.png         only with --with-boxes: the composite with the evidence boxes and the answer

and DIR/key.json (answers, evidence, construction: do not show it to the auditor), DIR/answers_template.json
(one blank entry per sample, for the auditor to fill) and DIR/README.txt (the auditor's instructions).
Nothing the auditor is meant to look at shows the answer, the evidence boxes or the task type.

`score` compares the filled answers with key.json, prints the rates and writes DIR/score.json:
label right (auditor's letter == key), visibility rates (glance / look / zoom / unfindable), artefact rate
(over the found samples and over all), a per task_type breakdown and a pass/fail line against the targets
(label right >= 97%, at a glance <= 15%, artefact <= 30% of the found ones, unfindable <= 5%).
Exit status: 0 pass, 1 fail, 2 bad input.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from bench.audit_compose import MAX_WIDTH, compose

VISIBILITY = ("glance", "look", "zoom", "unfindable")
FOUND = ("glance", "look", "zoom")
TARGETS = {  # name: (metric key in the overall figures, comparison, threshold)
    "label right": ("label_right_rate", ">=", 0.97),
    "at a glance": ("glance_rate", "<=", 0.15),
    "artefact (found)": ("artefact_rate_found", "<=", 0.30),
    "unfindable": ("unfindable_rate", "<=", 0.05),
}
KEY_JSON = "key.json"
TEMPLATE_JSON = "answers_template.json"
SCORE_JSON = "score.json"
README_TXT = "README.txt"
_AUDIT_FILE = re.compile(r"^(\d+(_full_\d+|_key)?\.png|score\.json)$")

README = """\
Blind audit of {n} multiple-choice samples
==========================================

For each sample NN there is
    NN.png           the composite: the images (labelled "Image 1", "Image 2", ...), the question and the options
    NN_full_k.png    image k of that sample at full resolution (the composite may be scaled down)

Do not open key.json, score.json or any NN_key.png until you have answered everything.

For each sample, answer from the composite first (NN.png); open the NN_full_k.png images only if you
cannot find the answer there. Fill in answers_template.json (a copy of it is fine), one entry per sample:

    "answer"      the option letter you pick ("A", "B", ...). Always give one: guess if you must.
    "visibility"  how you found the detail the question is about:
                    "glance"      seen at once in the composite
                    "look"        found by searching the composite
                    "zoom"        only found in the full-resolution images
                    "unfindable"  not found at all (then guess the answer anyway)
    "artefact"    true if, once found, the change looks pasted, drawn or obviously synthetic; false if it
                  looks natural; leave null if you did not find it
    "note"        anything worth saying (a wrong or ambiguous question, two right options, ...)

Then score it:
    .venv/bin/python -m bench.audit score {out} --answers {out}/answers_template.json
"""


# --------------------------------------------------------------------------------------------- reading


def _pick_samples(run_dir: Path, n: int, seed: int) -> list:
    """`n` random accepted samples (not status rejected) of a store root, chosen by `seed`."""
    import pyarrow.parquet as pq

    from pipeline.shard_store import shard_paths
    from schemas import table_to_samples
    from schemas.errors import InputError

    candidates: list[tuple[int, int]] = []  # (shard number, row) of every accepted row
    paths = shard_paths(run_dir)
    for si, path in enumerate(paths):
        try:
            names = pq.read_schema(path).names
            cols = ["id", "status"] if "status" in names else ["id"]
            table = pq.read_table(path, columns=cols)
        except Exception as e:  # any unreadable shard is an input problem
            raise InputError(f"{path}: unreadable shard ({e})") from e
        statuses = table.column("status").to_pylist() if "status" in cols else [None] * table.num_rows
        candidates.extend((si, r) for r, st in enumerate(statuses) if st != "rejected")
    if not candidates:
        raise InputError(f"{run_dir}: no accepted samples in its shards")
    if n > len(candidates):
        print(f"note: only {len(candidates)} accepted samples in {run_dir}; rendering all of them", file=sys.stderr)
    chosen = random.Random(seed).sample(candidates, min(n, len(candidates)))  # order of the audit, too
    by_shard: dict[int, list[int]] = {}
    for si, r in chosen:
        by_shard.setdefault(si, []).append(r)
    loaded: dict[tuple[int, int], object] = {}
    for si, rows in by_shard.items():
        table = pq.read_table(paths[si]).take(rows)
        for r, sample in zip(rows, table_to_samples(table), strict=True):
            loaded[(si, r)] = sample
    return [loaded[c] for c in chosen]


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.convert("RGB")


# --------------------------------------------------------------------------------------------- render


def render(
    run_dir: str | Path,
    out: str | Path,
    *,
    n: int = 20,
    seed: int = 0,
    with_boxes: bool = False,
    force: bool = False,
    max_width: int = MAX_WIDTH,
) -> list[dict]:
    """Write the audit folder `out` for `n` random accepted samples of `run_dir`; returns the key entries."""
    from schemas.errors import InputError

    run_dir, out = Path(run_dir), Path(out)
    if n < 1:
        raise InputError(f"--n {n}: must be >= 1")
    if (out / KEY_JSON).exists() and not force:
        raise InputError(f"{out} already holds an audit ({KEY_JSON}); pass --force to overwrite it")
    samples = _pick_samples(run_dir, n, seed)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():  # a forced re-render leaves nothing of the previous audit behind
        if _AUDIT_FILE.match(stale.name) and stale.is_file():
            stale.unlink()
    digits = max(2, len(str(len(samples))))
    key, template = [], []
    for i, s in enumerate(samples, start=1):
        nn = f"{i:0{digits}d}"
        images = [_decode(im.bytes) for im in s.images]
        composite, scale = compose(images, s.question, s.options, max_width=max_width)
        composite.save(out / f"{nn}.png", optimize=False)
        for k, im in enumerate(images, start=1):
            im.save(out / f"{nn}_full_{k}.png")  # re-encoded: no metadata of the source file travels
        boxes = [(b.image_index, b.bbox) for b in s.evidence]
        if with_boxes:
            footer = f"Answer: {s.answer}. {s.answer_text}    ({s.task_type.value})"
            keyed, _ = compose(images, s.question, s.options, max_width=max_width, boxes=boxes, footer=footer)
            keyed.save(out / f"{nn}_key.png")
        try:
            construction = json.loads(s.provenance.construction or "{}")
        except ValueError:
            construction = s.provenance.construction
        key.append(
            {
                "n": i,
                "id": s.id,
                "answer": s.answer,
                "answer_text": s.answer_text,
                "options": list(s.options),
                "task_type": s.task_type.value,
                "domain": s.domain.value,
                "n_images": len(images),
                "image_sizes": [list(im.size) for im in images],
                "scale": round(scale, 4),
                "composite_size": list(composite.size),
                "evidence": [{"image_index": bi, "image": bi + 1, "bbox": list(bb)} for bi, bb in boxes],
                "construction": construction,
            }
        )
        template.append({"n": i, "answer": "", "visibility": "", "artefact": None, "note": ""})
    meta = {"run_dir": str(run_dir.resolve()), "seed": seed, "n": len(samples), "max_width": max_width}
    _write_json(out / KEY_JSON, {**meta, "samples": key})
    _write_json(out / TEMPLATE_JSON, template)
    (out / README_TXT).write_text(README.format(n=len(samples), out=out), "utf-8")
    return key


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", "utf-8")


# --------------------------------------------------------------------------------------------- score


def _load_answers(path: Path) -> dict[int, dict]:
    from schemas.errors import InputError

    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable answers ({e})") from e
    if isinstance(data, dict):
        data = data.get("answers", data.get("samples"))
    if not isinstance(data, list) or not all(isinstance(a, dict) and "n" in a for a in data):
        raise InputError(f'{path}: expected a list of {{"n": .., "answer": .., ...}} entries')
    out: dict[int, dict] = {}
    for a in data:
        try:
            nn = int(a["n"])
        except (TypeError, ValueError):
            raise InputError(f"{path}: bad sample number {a['n']!r}") from None
        if nn in out:
            raise InputError(f"{path}: sample {nn} answered twice")
        out[nn] = a
    return out


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _figures(rows: list[dict]) -> dict:
    """Rates over `rows` (one per keyed sample, with the normalised answer fields)."""
    answered = [r for r in rows if r["answer"]]
    # an unanswerable twin has nothing to find: its visibility says nothing about how findable changes are
    vis = [r for r in rows if r["visibility"] and not r["twin"]]
    found = [r for r in vis if r["visibility"] in FOUND]
    art_found = [r for r in found if r["artefact"] is not None]
    fig = {
        "n": len(rows),
        "answered": len(answered),
        "label_right": sum(r["right"] for r in answered),
        "label_right_rate": _rate(sum(r["right"] for r in answered), len(answered)),
        "with_visibility": len(vis),
        "twins": sum(r["twin"] for r in rows),
    }
    for v in VISIBILITY:
        fig[f"{v}_rate"] = _rate(sum(r["visibility"] == v for r in vis), len(vis))
    fig["found"] = len(found)
    fig["artefact"] = sum(r["artefact"] is True for r in rows)
    fig["artefact_rate_found"] = _rate(sum(r["artefact"] is True for r in art_found), len(art_found))
    fig["artefact_rate_all"] = _rate(fig["artefact"], len(rows))
    return fig


def score(audit_dir: str | Path, answers: str | Path | None = None) -> dict:
    """Score the answers against `audit_dir`/key.json; writes and returns the figures (score.json)."""
    from schemas.errors import InputError

    audit_dir = Path(audit_dir)
    answers_path = Path(answers) if answers else audit_dir / TEMPLATE_JSON
    try:
        key = json.loads((audit_dir / KEY_JSON).read_text("utf-8"))["samples"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{audit_dir}: no readable {KEY_JSON} ({e})") from e
    given = _load_answers(answers_path)
    problems: list[str] = []
    unknown = sorted(set(given) - {k["n"] for k in key})
    if unknown:
        problems.append(f"answers for samples not in the key: {unknown}")
    rows, missing = [], []
    for k in key:
        a = given.get(k["n"], {})
        letter = str(a.get("answer") or "").strip().upper().rstrip(".")
        vis = str(a.get("visibility") or "").strip().lower()
        art = a.get("artefact")
        if isinstance(art, str):
            art = {"true": True, "yes": True, "false": False, "no": False}.get(art.strip().lower(), None)
        elif not isinstance(art, bool):
            art = None
        if letter and letter not in "ABCDEFGHIJ"[: len(k.get("options") or "ABCDEFGHIJ")]:
            problems.append(f"sample {k['n']}: answer {a.get('answer')!r} is not an option letter")
            letter = ""
        if vis and vis not in VISIBILITY:
            problems.append(
                f"sample {k['n']}: visibility {a.get('visibility')!r} is not one of {', '.join(VISIBILITY)}"
            )
            vis = ""
        if not letter or not vis:
            missing.append(k["n"])
        rows.append(
            {
                "n": k["n"],
                "task_type": k["task_type"],
                "answer": letter,
                "right": bool(letter) and letter == k["answer"],
                "twin": bool((k.get("construction") or {}).get("twin")),
                "visibility": vis,
                "artefact": art,
                "note": str(a.get("note") or ""),
            }
        )
    overall = _figures(rows)
    by_task = {t: _figures([r for r in rows if r["task_type"] == t]) for t in sorted({r["task_type"] for r in rows})}
    checks = {}
    for name, (metric, op, thr) in TARGETS.items():
        val = overall[metric]
        ok = val is not None and (val >= thr if op == ">=" else val <= thr)
        checks[name] = {"metric": metric, "value": val, "target": f"{op} {thr:.0%}", "pass": ok}
    passed = all(c["pass"] for c in checks.values()) and not missing
    result = {
        "answers_file": str(answers_path),
        "overall": overall,
        "by_task_type": by_task,
        "targets": checks,
        "incomplete": missing,
        "problems": problems,
        "wrong": [
            {"n": r["n"], "task_type": r["task_type"], "given": r["answer"], "note": r["note"]}
            for r in rows
            if r["answer"] and not r["right"]
        ],
        "pass": passed,
    }
    _write_json(audit_dir / SCORE_JSON, result)
    return result


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.1%}"


def format_score(result: dict) -> str:
    """Human-readable report of `score`'s result."""
    o = result["overall"]
    lines = [
        f"audit: {o['n']} samples, {o['answered']} answered, {o['found']} found",
        f"  label right     {_pct(o['label_right_rate'])}  ({o['label_right']}/{o['answered']})",
        f"  visibility of the {o['with_visibility']} samples with a change ({o['twins']} unanswerable twins left out):",
        f"  at a glance     {_pct(o['glance_rate'])}",
        f"  look            {_pct(o['look_rate'])}",
        f"  zoom            {_pct(o['zoom_rate'])}",
        f"  unfindable      {_pct(o['unfindable_rate'])}",
        f"  artefact        {_pct(o['artefact_rate_found'])} of the found, {_pct(o['artefact_rate_all'])} of all",
        "",
        f"  {'task_type':<18} {'n':>3}  {'right':>6} {'glance':>6} {'look':>6} {'zoom':>6} {'unfind':>6} {'artef':>6}",
    ]
    for t, f in result["by_task_type"].items():
        lines.append(
            f"  {t:<18} {f['n']:>3}  {_pct(f['label_right_rate'])} {_pct(f['glance_rate'])} {_pct(f['look_rate'])}"
            f" {_pct(f['zoom_rate'])} {_pct(f['unfindable_rate'])} {_pct(f['artefact_rate_found'])}"
        )
    if result["wrong"]:
        lines += ["", "  wrong labels (auditor disagrees with the key):"]
        lines += [f"    #{w['n']} {w['task_type']}: gave {w['given']}  {w['note']}".rstrip() for w in result["wrong"]]
    for p in result["problems"]:
        lines.append(f"  warning: {p}")
    if result["incomplete"]:
        lines.append(f"  incomplete: no answer or visibility for samples {result['incomplete']}")
    checks = "; ".join(
        f"{name} {_pct(c['value']).strip()} {c['target']} {'ok' if c['pass'] else 'FAIL'}"
        for name, c in result["targets"].items()
    )
    lines += ["", f"{'PASS' if result['pass'] else 'FAIL'}: {checks}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.audit",
        description=textwrap.dedent(__doc__.split("\n\n")[0]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="render N random accepted samples of a run for a blind audit")
    r.add_argument("run_dir", type=Path)
    r.add_argument("--n", type=int, default=20, help="samples to render (default 20)")
    r.add_argument("--seed", type=int, default=0, help="seed of the random pick (default 0)")
    r.add_argument("--out", type=Path, required=True, help="audit folder to write")
    r.add_argument("--with-boxes", action="store_true", help="also write NN_key.png with evidence boxes + answer")
    r.add_argument("--force", action="store_true", help="overwrite an existing audit folder")
    r.add_argument("--max-width", type=int, default=MAX_WIDTH, help=f"composite width limit (default {MAX_WIDTH})")
    s = sub.add_parser("score", help="score the filled answers against the key")
    s.add_argument("audit_dir", type=Path)
    s.add_argument("--answers", type=Path, default=None, help="filled answers (default DIR/answers_template.json)")
    args = parser.parse_args(argv)

    from schemas.errors import MifgError

    try:
        if args.cmd == "render":
            key = render(
                args.run_dir,
                args.out,
                n=args.n,
                seed=args.seed,
                with_boxes=args.with_boxes,
                force=args.force,
                max_width=args.max_width,
            )
            print(f"rendered {len(key)} samples into {args.out} (instructions: {args.out / README_TXT})")
            print(f"give the auditor only NN.png, NN_full_k.png, {TEMPLATE_JSON} and {README_TXT}; not {KEY_JSON}")
            return 0
        result = score(args.audit_dir, args.answers)
    except MifgError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(format_score(result))
    print(f"written to {args.audit_dir / SCORE_JSON}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
