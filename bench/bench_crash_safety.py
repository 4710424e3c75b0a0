"""Crash safety of `mifg generate`: SIGKILL at random moments, restart, compare with an uninterrupted run.

    .venv/bin/python bench/bench_crash_safety.py                 # n=300, 20 kills, seed 7
    .venv/bin/python bench/bench_crash_safety.py --kills 4 -n 120

1. An uninterrupted reference run: `mifg generate --out REF -n N --seed S` (offline backend, the
   bundled photos, worker processes as by default).
2. The same command on a fresh RUN, killed with SIGKILL (the main process only: its worker processes
   must die with it) at K moments drawn uniformly over what the restart still has to do, restarted
   after each kill; after each kill every shard must read, the manifests must match the files, and
   every sample in a shard must have its item record (records of samples whose shard had not landed
   yet are allowed: the next start redoes those items).
3. A last restart runs to the end. Then: the accepted and rejected id sets equal the reference's;
   0 duplicate ids; every shard is readable (full Parquet decode + schema check of every row); each
   manifest lists exactly the shard files on disk with their row counts and sha256; every item of the
   plan has exactly one record, and the records name exactly the ids in the shards.

Exit status 1 on any difference. Writes bench/results/bench_crash_safety.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.endpoint_harness import ROOT, env, last_summary, machine, write_json


def command(out: Path, n: int, seed: int) -> list[str]:
    """The `mifg generate` command line of both runs (fast drawn kinds: this bench is about durability)."""
    from agents.offline.edits import FAST_GENERATE_FLAGS

    argv = [sys.executable, "-m", "pipeline.cli", "generate", "--out", str(out), "-n", str(n), "--seed", str(seed)]
    return [*argv, *FAST_GENERATE_FLAGS]


def run_to_end(out: Path, n: int, seed: int) -> tuple[int, float, str]:
    """(exit code, seconds, stdout) of one uninterrupted invocation."""
    t0 = time.perf_counter()
    p = subprocess.run(
        [*command(out, n, seed), "--no-progress"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=1800
    )
    if p.returncode != 0:
        raise SystemExit(f"mifg generate failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return p.returncode, time.perf_counter() - t0, p.stdout


def kill_at(out: Path, n: int, seed: int, after_s: float) -> tuple[bool, int]:
    """Start the command, SIGKILL it `after_s` seconds later; (killed before it finished, orphaned workers)."""
    proc = subprocess.Popen(
        [*command(out, n, seed), "--no-progress"],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: we can look for orphaned workers afterwards
    )
    try:
        proc.wait(timeout=after_s)
        return False, 0
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(signal.SIGKILL)  # the main process only, as `kill -9 PID` does
    proc.wait()
    deadline = time.monotonic() + 5
    orphans = _group_members(proc.pid)
    while orphans and time.monotonic() < deadline:
        time.sleep(0.1)
        orphans = _group_members(proc.pid)
    for pid in orphans:  # leave nothing running, but count them: workers must die with their parent
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True, len(orphans)


def _group_members(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid and int(d.name) != pgid:
                    pids.append(int(d.name))
            except (ProcessLookupError, PermissionError):
                continue
    return pids


def check_store(root: Path, settled: bool = True) -> dict:
    """Readability and manifest consistency of one shard store (accepted or rejected).

    Right after a kill (`settled=False`) a shard may be on disk but not yet in its manifest: the kill
    fell between the shard's rename and the manifest's; the next open adopts it (ShardWriter). It must
    still be whole. A manifest entry without its file is a problem either way.
    """
    import pyarrow.parquet as pq

    from schemas import table_to_samples

    problems: list[str] = []
    ids: list[str] = []
    manifests = sorted((root / "manifests").glob("*.json")) if (root / "manifests").is_dir() else []
    listed: dict[str, dict] = {}
    for m in manifests:
        data = json.loads(m.read_text())
        for s in data.get("shards", []):
            listed[s["file"]] = s
    on_disk = (
        sorted(p.relative_to(root).as_posix() for p in (root / "shards").glob("*.parquet"))
        if (root / "shards").is_dir()
        else []
    )
    unlisted = sorted(set(on_disk) - set(listed))
    if sorted(set(listed) - set(on_disk)) or (settled and unlisted):
        problems.append(f"{root}: manifest lists {sorted(listed)} but disk has {on_disk}")
    temps = list((root / "shards").glob(".*")) if (root / "shards").is_dir() else []
    for rel in on_disk:
        path = root / rel
        try:
            table = pq.read_table(path)
            samples = table_to_samples(table)  # full decode + pydantic validation of every row
        except Exception as e:  # noqa: BLE001 - a broken shard is the finding
            problems.append(f"{rel}: unreadable ({type(e).__name__}: {e})")
            continue
        ids += [s.id for s in samples]
        entry = listed.get(rel)
        if entry is not None:
            if entry.get("rows") != len(samples):
                problems.append(f"{rel}: manifest says {entry.get('rows')} rows, file has {len(samples)}")
            if entry.get("sha256") and entry["sha256"] != hashlib.sha256(path.read_bytes()).hexdigest():
                problems.append(f"{rel}: sha256 differs from the manifest")
    return {
        "files": len(on_disk),
        "rows": len(ids),
        "ids": ids,
        "problems": problems,
        "temp_files": len(temps),
        "unlisted_complete_shards": len(unlisted),
    }


def check_run(out: Path, n: int, settled: bool = True) -> dict:
    """What must hold in a run directory: after any crash, or (`settled`) after a run that ended.

    Right after a kill, records may name samples whose shard never landed (recorded just before the
    shard is written, by design; the next start deletes those records and redoes the items), but
    every sample in a shard must have its record. After a run that ended, they must agree exactly.
    """
    acc, rej = check_store(out, settled), check_store(out / "rejected", settled)
    records: list[tuple[int, str, str]] = []
    for db in sorted((out / "state").glob("*.sqlite")):
        with sqlite3.connect(db) as c:
            records += c.execute("SELECT idx, outcome, sample_id FROM items").fetchall()
    problems = acc["problems"] + rej["problems"]
    dup_acc = sum(c - 1 for c in Counter(acc["ids"]).values() if c > 1)
    dup_rej = sum(c - 1 for c in Counter(rej["ids"]).values() if c > 1)
    dup_records = sum(c - 1 for c in Counter(r[0] for r in records).values() if c > 1)
    rec_acc = sorted(r[2] for r in records if r[1] == "accepted")
    rec_rej = sorted(r[2] for r in records if r[1] == "rejected" and r[2])
    for name, recorded, in_shards in (("accepted", rec_acc, acc["ids"]), ("rejected", rec_rej, rej["ids"])):
        if settled and recorded != sorted(in_shards):
            problems.append(f"{name} records and {name} shard ids differ")
        if not settled and not set(in_shards) <= set(recorded):
            problems.append(f"{len(set(in_shards) - set(recorded))} {name} samples in shards without a record")
    return {
        "accepted": sorted(set(acc["ids"])),
        "rejected": sorted(set(rej["ids"])),
        "records": len(records),
        "duplicates": dup_acc + dup_rej + dup_records,
        "shards": acc["files"] + rej["files"],
        "problems": problems,
        "complete": len({r[0] for r in records}) == n,
        "pending": len(set(rec_acc) - set(acc["ids"])) + len(set(rec_rej) - set(rej["ids"])),
        "unlisted_shards": acc["unlisted_complete_shards"] + rej["unlisted_complete_shards"],
    }


def crash_loop(tmp: Path, n: int, kills: int, seed: int, rng_seed: int, log=print) -> dict:
    """The whole experiment; returns the figures (and `ok`)."""
    ref_out, out = tmp / "reference", tmp / "killed"
    _, ref_s, _ = run_to_end(ref_out, n, seed)
    ref = check_run(ref_out, n)
    summary = last_summary(ref_out)
    setup_s = ref_s - summary["loop_seconds"]  # process start, photo pool, workers
    per_item_s = summary["loop_seconds"] / n
    log(
        f"reference: {len(ref['accepted'])} accepted, {len(ref['rejected'])} rejected in {ref_s:.1f} s"
        f" (start-up {setup_s:.1f} s, {per_item_s * 1000:.0f} ms/item)"
    )
    rng = random.Random(rng_seed)
    moments, killed, orphans, mid_checks, interrupted = [], 0, 0, [], 0
    mid_problems: list[str] = []
    remaining = work_left = n
    for k in range(kills):
        # uniform over what this restart would take to the end: start-up, then the items still to do
        at = rng.uniform(0.2, setup_s + remaining * per_item_s)
        was_killed, orph = kill_at(out, n, seed, at)
        killed += was_killed
        interrupted += was_killed and work_left > 0  # else it only tested a restart with nothing to do
        orphans += orph
        empty = {"records": 0, "problems": [], "duplicates": 0, "pending": 0, "unlisted_shards": 0}
        state = check_run(out, n, settled=False) if (out / "state").exists() else empty
        mid_checks.append(not state["problems"] and not state["duplicates"])
        work_left = n - state["records"]
        remaining = max(work_left, 1)
        moments.append(round(at, 2))
        log(
            f"kill {k + 1:2d}/{kills} at {at:5.1f} s: {'killed' if was_killed else 'finished first'};"
            f" {state['records']} items recorded ({state['pending']} awaiting their shard,"
            f" {state['unlisted_shards']} whole shard(s) awaiting their manifest);"
            f" problems {len(state['problems'])}, duplicates {state['duplicates']}"
        )
        for p in state["problems"]:
            log(f"   {p}")
        mid_problems += [f"after kill {k + 1}: {p}" for p in state["problems"]]
        if state["duplicates"]:
            mid_problems.append(f"after kill {k + 1}: {state['duplicates']} duplicates")
    t0 = time.perf_counter()
    run_to_end(out, n, seed)
    final_s = time.perf_counter() - t0
    fin = check_run(out, n)
    same_acc = fin["accepted"] == ref["accepted"]
    same_rej = fin["rejected"] == ref["rejected"]
    ok = same_acc and same_rej and not fin["duplicates"] and not fin["problems"] and fin["complete"]
    ok = ok and all(mid_checks) and orphans == 0
    return {
        "n": n,
        "seed": seed,
        "kills_requested": kills,
        "killed": killed,
        "killed_with_work_left": interrupted,
        "kill_moments_s": moments,
        "reference_seconds": round(ref_s, 1),
        "final_resume_seconds": round(final_s, 1),
        "reference_accepted": len(ref["accepted"]),
        "reference_rejected": len(ref["rejected"]),
        "final_accepted": len(fin["accepted"]),
        "final_rejected": len(fin["rejected"]),
        "same_accepted_ids": same_acc,
        "same_rejected_ids": same_rej,
        "missing_vs_reference": len(set(ref["accepted"]) - set(fin["accepted"])),
        "extra_vs_reference": len(set(fin["accepted"]) - set(ref["accepted"])),
        "duplicates": fin["duplicates"],
        "shards": fin["shards"],
        "problems": mid_problems + fin["problems"],
        "consistent_after_every_kill": all(mid_checks),
        "orphaned_workers": orphans,
        "ok": ok,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the experiment, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rng-seed", type=int, default=0, help="seed of the kill moments")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mifg-bench-crash-") as tmp:
        r = crash_loop(Path(tmp), args.n, args.kills, args.seed, args.rng_seed)
    r["seconds"] = round(time.perf_counter() - t0, 1)
    r["machine"] = machine()
    r["command"] = f"mifg generate --out RUN -n {args.n} --seed {args.seed} (SIGKILL + restart x{args.kills})"
    print()
    for key in (
        "killed", "killed_with_work_left", "reference_accepted", "final_accepted",
        "reference_rejected", "final_rejected",
        "same_accepted_ids", "same_rejected_ids", "duplicates", "shards", "consistent_after_every_kill",
        "orphaned_workers", "ok",
    ):  # fmt: skip
        print(f"  {key:<28} {r[key]}")
    print(f"wrote {write_json('bench_crash_safety', r)}")
    print("RESULT:", "OK" if r["ok"] else "FAIL")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
