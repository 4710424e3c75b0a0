"""The CPU demo's data, made by the real generation pipeline: `mifg generate` + `mifg export`.

The offline agents' opt-in "fine_texture" kind (agents/offline/edits.py `texture_cell`) makes sets
of two 96 px copies of a photo crop with a yellow-framed cell of a 2x2 grid: one image (either)
holds a 3 px checkerboard there, the other flat grey of exactly its mean. The writer asks which
image has the checkerboard (options "Image 1"/"Image 2" in image order, chance 1/2); the verifier
re-derives the answer from the pixels (differencing finds the cell, the mean absolute Laplacian
inside it tells which image is textured) and the critic rejects any sample whose 16 px thumbnails
(the tiny policy's overview) still answer it. Box-filtered to 16 px both images are identical, so
only a visual_confirmation zoom into the framed cell shows the answer.

The candidates are exported with `--include-unverified` (the pipeline's verifier and critic are
this task's check; there is no human review in a demo) in the hf layout, split train/test by
source photo, which is what `mifg train` reads. This is `mifg train-demo`'s default data.

History: a first variant used three images (image 1 always the flat reference, options "Image 2"/
"Image 3"); the tiny policy stayed at chance on it (0.473 after 150 steps, crops on the framed cell
22% of the time). Its answer head ties letter k to image k (a 16 px policy cannot read option
texts), so with two images in image order it learns the task like the procedural one (rl/demo_data.py).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from schemas.errors import MifgError

DEMO_AGENT_OPTIONS = ('kinds=["fine_texture"]', "image_side=96", "thumbnail_side=16")
"""`-o` options of `mifg generate` for the demo task (tiny policy: 16 px overview, 2x2 zoom cells)."""


def demo_commands(
    root: str | Path, n: int, test_fraction: float, seed: int = 0, workers: int | None = None
) -> list[list[str]]:
    """The `mifg` argument lists that make the demo data under ROOT (gen/ run, data/ hf export)."""
    root = Path(root)
    gen = ["generate", "--out", str(root / "gen"), "-n", str(n), "--seed", str(seed), "--no-progress"]
    gen += ["--max-side", "512"]  # the demo's square crops come from the 512-px photos it was tuned on
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
