"""The CPU demo's data, made by the real generation pipeline: `mifg generate` + `mifg export`.

The offline agents' opt-in "fine_texture" kind (agents/offline/edits.py `texture_cell`) makes sets
of three 96 px copies of a photo crop with a yellow-framed cell of a 2x2 grid: image 1 and one
other hold flat grey there, the remaining one a 3 px checkerboard of exactly that mean. The writer
asks which image has the checkerboard (which_differs, chance 1/2), the verifier re-derives the
answer by differencing the pixels, and the critic rejects any sample whose 16 px thumbnails (the
tiny policy's overview) still answer it. Box-filtered to 16 px all three images are identical, so
only a visual_confirmation zoom into the framed cell shows the answer.

The candidates are exported with `--include-unverified` (the pipeline's verifier and critic are
this task's check; there is no human review in a demo) in the hf layout, split train/test by
source photo, which is what `mifg train` reads.

Status: `mifg train-demo --data-source pipeline` runs end to end, but with rl/demo_train.toml the
tiny policy does not learn this 3-image variant in 150 steps (test accuracy 0.473, its crops hit
the framed cell 22% of the time, i.e. no better than a random cell), while it learns the 2-image
procedural task (rl/demo_data.py) to 1.000; the default demo therefore still uses the latter.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from schemas.errors import MifgError

DEMO_AGENT_OPTIONS = ('kinds=["fine_texture"]', "image_side=96", "thumbnail_side=16", "max_images=3")
"""`-o` options of `mifg generate` for the demo task (tiny policy: 16 px overview, 2x2 zoom cells)."""


def demo_commands(
    root: str | Path, n: int, test_fraction: float, seed: int = 0, workers: int | None = None
) -> list[list[str]]:
    """The `mifg` argument lists that make the demo data under ROOT (gen/ run, data/ hf export)."""
    root = Path(root)
    gen = ["generate", "--out", str(root / "gen"), "-n", str(n), "--seed", str(seed), "--no-progress"]
    if workers:
        gen += ["--workers", str(workers)]
    for opt in DEMO_AGENT_OPTIONS:
        gen += ["-o", opt]
    export = ["export", str(root / "gen"), "--format", "hf", "--out", str(root / "data")]
    export += ["--include-unverified", "--test-fraction", str(test_fraction), "--seed", str(seed), "--overwrite"]
    return [gen, export]


def shell_line(args: list[str]) -> str:
    """One copy-pasteable `mifg ...` command line."""
    return " ".join(["mifg", *(shlex.quote(a) for a in args)])


def make_demo_data(
    root: str | Path, n: int = 1000, test_fraction: float = 0.2, seed: int = 0, workers: int | None = None
) -> Path:
    """Run the pipeline (generate, then export) in-process; returns the hf export ROOT/data.

    Re-running resumes the generation (finished items are skipped) and re-exports.
    """
    from pipeline.cli import main

    for args in demo_commands(root, n, test_fraction, seed, workers):
        print(f"$ {shell_line(args)}", flush=True)
        rc = main(args)
        if rc != 0:
            raise MifgError(f"`{shell_line(args)}` failed with exit code {rc}")
    return Path(root) / "data"
