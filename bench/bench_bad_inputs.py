"""`mifg generate --images DIR` on a folder of bad files mixed with good photos: 0 crashes, each reported once.

    .venv/bin/python bench/bench_bad_inputs.py            # the corpus below + 12 good photos, -n 40

The corpus (tests/pipeline/bad_images.py, plus an unreadable file): truncated JPEG and PNG, zero
bytes, a decompression bomb (header claims 10^10 pixels), CMYK, 16-bit grey, palette + alpha,
transparent RGBA, LA, 1-bit, animated GIF, EXIF-rotated, text and SVG named .jpg, random bytes
behind a PNG signature, 1x1, a 20000x20 strip, a 2000x40 banner, a two-link symlink loop, a
dangling symlink, a folder symlink loop, a file without read permission, and unicode / space /
newline / leading-dash / non-UTF-8 file names. Some are unusable (must be skipped with a reason),
some only awkward (must be converted and used).

Started as root, the command runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (`setpriv`), because
root reads a chmod-000 file regardless of its mode. Checked: exit status 0 and no traceback; every unusable
file named in exactly one `skipped PATH: REASON` line with the expected reason; no usable file
skipped (other than as a duplicate); `mifg stats --json` counts the same reasons.

Exit status 1 if a check fails. Writes bench/results/bench_bad_inputs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

from agents.offline.edits import FAST_GENERATE_FLAGS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.endpoint_harness import machine, make_photos, mifg, without_file_override, write_json

DUPLICATE_REASONS = ("duplicate", "near_duplicate")


def make_folder(root: Path, good: int = 12) -> dict[str, str | None]:
    """The bad corpus plus `good` photos under `root`; {relative name: expected skip reason or None}."""
    from tests.pipeline.bad_images import make_corpus, photo

    expect = make_corpus(root)
    secret = root / "secret.png"
    photo(77).save(secret)
    os.chmod(secret, 0o000)
    expect["secret.png"] = "unreadable"
    make_photos(root / "good", good)
    expect.update({f"good/p{i:02d}.png": None for i in range(good)})
    return expect


def run_bad_inputs(tmp: Path, n: int = 40) -> dict:
    """The experiment; returns figures with `ok` and `problems`."""
    images, out = tmp / "images", tmp / "run"
    expect = make_folder(images)
    problems: list[str] = []
    modes_apply = without_file_override(["true"]) is not None
    if not modes_apply:  # root without setpriv: a chmod-000 file is readable, so it is not a bad file here
        os.chmod(images / "secret.png", 0o644)
        expect["secret.png"] = None
    job = mifg(
        "generate",
        "--images",
        str(images),
        "--out",
        str(out),
        "-n",
        str(n),
        "--no-progress",
        *FAST_GENERATE_FLAGS,
        honour_file_modes=True,
    )
    if job.rc != 0:
        problems.append(f"exit status {job.rc}: {job.stderr[-1500:]}")
    if "Traceback" in job.stderr:
        problems.append("a traceback was printed")
    lines = [ln for ln in job.stderr.splitlines() if ln.startswith("skipped ")]
    parsed = []
    for ln in lines:
        m = re.match(r"skipped (.+): ([a-z_]+)(?: \((.*)\))?$", ln)
        if m is None:
            problems.append(f"unparsable skip line {ln!r}")
            continue
        parsed.append((m.group(1), m.group(2)))
    bad = {name: reason for name, reason in expect.items() if reason is not None}
    per_file = {}
    for name, reason in bad.items():
        hits = [(p, r) for p, r in parsed if p.endswith("/" + name)]
        per_file[name] = {"expected": reason, "reported": [r for _, r in hits]}
        if len(hits) != 1:
            problems.append(f"{name}: reported {len(hits)} times (expected once, reason {reason})")
        elif hits[0][1] != reason:
            problems.append(f"{name}: reason {hits[0][1]}, expected {reason}")
    unexpected = [
        (p, r) for p, r in parsed if r not in DUPLICATE_REASONS and not any(p.endswith("/" + name) for name in bad)
    ]
    if unexpected:
        problems.append(f"usable files skipped: {unexpected}")
    stats = {}
    if (out / "state").exists():
        job2 = mifg("stats", str(out), "--json")
        stats = json.loads(job2.stdout) if job2.rc == 0 else {}
        counted = {k: v for k, v in stats.get("skipped_inputs", {}).items() if k not in DUPLICATE_REASONS}
        if counted != dict(Counter(bad.values())):
            problems.append(f"mifg stats skipped {counted} != expected {dict(Counter(bad.values()))}")
    summary = job.summary
    return {
        "files": len(expect),
        "bad_files": len(bad),
        "kinds_of_bad": len(set(bad.values())),
        "awkward_but_usable": sorted(n for n, r in expect.items() if r is None and not n.startswith("good/")),
        "file_modes_apply": modes_apply,
        "exit_status": job.rc,
        "skip_lines": len(lines),
        "per_file": per_file,
        "stats_skipped_inputs": stats.get("skipped_inputs", {}),
        "pool_photos": stats.get("pool", {}).get("pool_photos"),
        "items": {k: summary.get(k) for k in ("accepted", "rejected", "failed")},
        "problems": problems,
        "ok": not problems,
    }


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=40)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mifg-bench-bad-") as tmp:
        r = run_bad_inputs(Path(tmp), args.n)
    r["machine"] = machine()
    print(f"{'file':<22} {'expected':<20} reported")
    for name, v in sorted(r["per_file"].items()):
        print(f"{name:<22} {v['expected']:<20} {', '.join(v['reported']) or '-'}")
    print(
        f"{r['bad_files']} unusable files ({r['kinds_of_bad']} reasons), {len(r['awkward_but_usable'])} awkward but"
        f" usable, file modes apply: {r['file_modes_apply']}: exit {r['exit_status']}, {r['skip_lines']} skip lines,"
        f" pool {r['pool_photos']} photos, items {r['items']}"
    )
    print(f"mifg stats skipped_inputs: {r['stats_skipped_inputs']}")
    for p in r["problems"]:
        print(f"PROBLEM: {p}")
    print(f"wrote {write_json('bench_bad_inputs', r)}")
    print("RESULT:", "OK" if r["ok"] else "FAIL")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
