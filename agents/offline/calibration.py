"""Measure the offline agents on the bundled photos: acceptance per task type, reasons, CPU ms/sample.

    .venv/bin/python -m agents.offline.calibration -n 400 --revisions 2

Runs pair -> write -> verify -> critique (revising up to K times, as the graph does) in one
process without the graph, so the figures are the agents' own cost: CPU time on one core,
PNG encoding of the variants included. Used to tune edit sizes and critic thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import imagehash
from PIL import Image

from agents.base import AgentContext, AgentSet, ImageRef, PhotoPool, SetRegistry, WorkItem
from agents.image_cache import store_image
from agents.offline import build_offline_agents
from schemas import Domain

BUNDLED = (
    "astronaut coffee chelsea rocket hubble_deep_field retina immunohistochemistry camera brick grass gravel coins "
    "clock text cell"
).split()


def bundled_pool(image_dir: Path, max_side: int = 512, names: tuple[str, ...] | None = None) -> PhotoPool:
    """The scikit-image photos (plus the stereo pair as a related pair), downsized and cached as PNG."""
    import numpy as np
    import skimage.data

    arrays: list[tuple[str, np.ndarray]] = []
    for name in names or BUNDLED:
        arrays.append((f"skimage:{name}", getattr(skimage.data, name)()))
    if names is None or "stereo_motorcycle" in names:
        left, right, _ = skimage.data.stereo_motorcycle()
        arrays += [("skimage:stereo_motorcycle_left", left), ("skimage:stereo_motorcycle_right", right)]
    photos: list[ImageRef] = []
    for source, arr in arrays:
        img = Image.fromarray(arr).convert("RGB")
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        photos.append(store_image(img, image_dir, source=source, license="see skimage.data", domain=Domain.OTHER))
    related = []
    for i in range(len(photos)):
        for j in range(i + 1, len(photos)):
            d = imagehash.hex_to_hash(photos[i].phash) - imagehash.hex_to_hash(photos[j].phash)
            if 0 < d <= 16:
                related.append((i, j, int(d)))
    return PhotoPool(photos=photos, related=related)


async def run_one(agents: AgentSet, item: WorkItem, ctx: AgentContext, max_revisions: int) -> tuple[str, str, list]:
    """One sample through the four agents; returns (outcome, task type, reasons)."""
    images, _ = await agents.pairer.pair(item, ctx)
    feedback: list[str] = []
    revisions = 0
    while True:
        draft, _ = await agents.writer.write(images, ctx, seed=item.seed, feedback=feedback, attempt=revisions)
        verdict, _ = await agents.verifier.verify(images, draft, ctx)
        if not verdict.agrees:
            return "rejected", draft.task_type.value, ["verifier_disagrees"]
        critic, _ = await agents.critic.critique(images, draft, verdict, ctx, attempt=revisions)
        if critic.verdict == "accept":
            return "accepted", draft.task_type.value, [f"revised:{revisions}"] if revisions else []
        if critic.verdict == "reject" or revisions >= max_revisions:
            return "rejected", draft.task_type.value, list(critic.reasons)
        feedback.append(critic.feedback)
        revisions += 1


def main(argv: list[str] | None = None) -> None:
    """Run the measurement and print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--revisions", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-side", type=int, default=512)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = Path(tmp)
        pool = bundled_pool(image_dir, args.max_side)
        ctx = AgentContext(image_dir=image_dir, pool=pool, registry=SetRegistry())
        agents = build_offline_agents()
        outcome: dict[str, Counter] = defaultdict(Counter)
        reasons: Counter = Counter()

        async def run_all() -> None:
            for i in range(args.n):
                item = WorkItem(index=i, seed=args.seed * 1_000_003 + i)
                result, task, why = await run_one(agents, item, ctx, args.revisions)
                outcome[task][result] += 1
                reasons.update(why)

        t0, c0 = time.perf_counter(), time.process_time()
        asyncio.run(run_all())
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    total = sum(sum(c.values()) for c in outcome.values())
    accepted = sum(c["accepted"] for c in outcome.values())
    print(f"{total} candidates, {accepted} accepted ({accepted / total:.0%}) over {len(pool.photos)} photos")
    print(f"CPU {1000 * cpu / total:.1f} ms/sample, wall {1000 * wall / total:.1f} ms/sample (one process)")
    for task, c in sorted(outcome.items()):
        n = sum(c.values())
        print(f"  {task:18s} {n:5d} candidates  {c['accepted'] / n:6.0%} accepted")
    print("reasons:", ", ".join(f"{k} {v}" for k, v in reasons.most_common()))


if __name__ == "__main__":
    main()
