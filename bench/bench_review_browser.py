"""Keypress to next sample, in real browsers: N annotators in headless Chromium against `mifg review`.

    .venv/bin/python bench/bench_review_browser.py [--run RUN_DIR] [--annotators 8] [--decisions 20]

Without `--run` it first makes a run with `mifg generate -n 60` (native-resolution photos: the
payload the app really serves). The run is copied, the app started behind its guard with one user
per annotator (overlap 1), and every annotator signs in in its own browser context; all of them
then press `a` (accept) `--decisions` times at once. Each latency runs from the keypress until the
page shows another sample id and every image of it has loaded and decoded (`img.complete` and a
natural width). Reported: p50 / p95 / max over all decisions, the mean of the first and the last
five decisions of a session (does anything pile up in the page?), the bytes of the page per update,
and the same accept through `ReviewService` in process, for the browser / in-process ratio.
Needs Debian's chromium (`make browser`). Writes bench/results/bench_review_browser.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-quic"]
SHOWN = """(before) => {
  const id = document.querySelector('#mifg-question .mifg-id');
  if (!id || id.innerText.trim() === before) return false;
  const imgs = [...document.querySelectorAll('#mifg-images img')];
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def _make_run(out: Path) -> Path:
    cmd = [str(ROOT / ".venv/bin/mifg"), "generate", "--out", str(out), "-n", "60"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


async def _annotator(browser, url: str, name: str, password: str, decisions: int, start: asyncio.Event) -> dict:
    ctx = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await ctx.new_page()
    page.set_default_timeout(60_000)
    await page.goto(url)
    await page.get_by_label("username").fill(name)
    await page.get_by_label("password").fill(password)
    await page.get_by_role("button", name="Login").click()
    await page.wait_for_function(SHOWN, arg="")
    await start.wait()
    times: list[float] = []
    for _ in range(decisions):
        before = (await page.locator("#mifg-question .mifg-id").inner_text()).strip()
        if before.lower().startswith("no "):
            break
        await page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not an input
        t0 = time.perf_counter()
        await page.keyboard.press("a")
        await page.wait_for_function(SHOWN, arg=before, polling="raf")
        times.append((time.perf_counter() - t0) * 1000)
    html_bytes = await page.evaluate("document.querySelector('#mifg-images').innerHTML.length")
    await ctx.close()
    return {"name": name, "ms": times, "images_html_bytes": html_bytes}


async def _browsers(url: str, users: dict[str, str], decisions: int) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        start = asyncio.Event()
        tasks = [asyncio.create_task(_annotator(browser, url, n, pw, decisions, start)) for n, pw in users.items()]
        await asyncio.sleep(0)  # everyone signs in first, then all start pressing together
        while not all(t.done() for t in tasks) and not start.is_set():
            await asyncio.sleep(2.0)
            start.set()
        results = await asyncio.gather(*tasks)
        await browser.close()
    return results


def _in_process(run: Path, decisions: int) -> list[float]:
    from annotation_ui.review_store import ReviewStore
    from annotation_ui.service import ReviewService

    times = []
    with ReviewStore(run, overlap=1) as store:
        store.import_shards()
        svc = ReviewService(store)
        view = svc.current("solo")
        for _ in range(decisions):
            if not view.sample_id:
                break
            t0 = time.perf_counter()
            view = svc.accept("solo", view.sample_id)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--decisions", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/bench_review_browser.json")
    args = ap.parse_args(argv)
    from annotation_ui.app import build_demo, launch
    from annotation_ui.auth import hash_password
    from annotation_ui.review_store import ReviewStore
    from annotation_ui.service import ReviewService
    from tests.annotation_ui.live_app import free_port

    with tempfile.TemporaryDirectory() as tmp:
        src = args.run or _make_run(Path(tmp) / "made")
        run = Path(tmp) / "run"
        shutil.copytree(src, run, ignore=shutil.ignore_patterns("review.sqlite*", "review-secret.json"))
        users = {f"ann{i}": f"pass-{i}-benchmark" for i in range(args.annotators)}
        store = ReviewStore(run, overlap=1)
        store.import_shards()
        demo = build_demo(ReviewService(store), run_name="bench")
        url = launch(
            demo,
            port=free_port(),
            users={n: hash_password(p) for n, p in users.items()},
            secret_dir=run,
            prevent_thread_lock=True,
            quiet=True,
        ).rstrip("/")
        try:
            results = asyncio.run(_browsers(url, users, args.decisions))
        finally:
            demo.close()
            store.close()
        solo = Path(tmp) / "solo"
        shutil.copytree(src, solo, ignore=shutil.ignore_patterns("review.sqlite*", "review-secret.json"))
        inproc = _in_process(solo, args.decisions)
    ms = [t for r in results for t in r["ms"]]
    first = [t for r in results for t in r["ms"][:5]]
    last = [t for r in results for t in r["ms"][-5:]]
    summary = {
        "annotators": args.annotators,
        "decisions": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(_pct(ms, 0.95), 1),
        "max_ms": round(max(ms), 1),
        "first5_mean_ms": round(statistics.mean(first), 1),
        "last5_mean_ms": round(statistics.mean(last), 1),
        "images_html_bytes": max(r["images_html_bytes"] for r in results),
        "in_process_p50_ms": round(statistics.median(inproc), 1),
        "browser_over_in_process_p50": round(statistics.median(ms) / statistics.median(inproc), 1),
        "target_p95_ms": 300,
    }
    lines = [
        f"{args.annotators} annotators x {args.decisions} decisions in headless Chromium ({len(ms)} timed)",
        f"  keypress -> next sample shown, images decoded: p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms,"
        f" max {summary['max_ms']} ms",
        f"  first 5 of a session {summary['first5_mean_ms']} ms, last 5 {summary['last5_mean_ms']} ms",
        f"  image HTML per update {summary['images_html_bytes']} bytes;"
        f" in process p50 {summary['in_process_p50_ms']} ms",
        f"  browser / in-process (p50): {summary['browser_over_in_process_p50']}x;"
        f" target p95 <= 300 ms: {'met' if summary['p95_ms'] <= 300 else 'not met'}",
    ]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "per_annotator_ms": {r["name"]: r["ms"] for r in results}}, indent=2))


if __name__ == "__main__":
    main()
