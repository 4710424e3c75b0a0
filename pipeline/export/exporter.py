"""Run one export: choose samples, check contamination, split, write a format, install atomically.

    scan store (pass 1) -> contamination check -> plan splits -> stream samples, neutralised and in
    sample-id order, into a format writer (pass 2) -> splits.json / contamination.json / export.json
    -> rename into --out

Everything is written into a hidden staging folder next to --out and renamed into place at the
end, so --out is either the previous export or the complete new one, never half of each. One export
at a time per --out (`pipeline.write_guard.out_lock`); what a killed export left next to --out is
removed by the next one; a full disk stops it with one line, --out unchanged.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.export.contamination import DEFAULT_THRESHOLD, Hit, ImageKey, find_hits, index_benchmark, report
from pipeline.export.facts import ExportFacts
from pipeline.export.hf_format import HfWriter
from pipeline.export.lmms_eval_format import LmmsEvalWriter
from pipeline.export.scan import iter_sorted, scan_store
from pipeline.export.splits import SPLITS, SplitItem, SplitPlan, plan_splits
from pipeline.export.trl_format import TrlWriter
from pipeline.export.verl_format import VerlWriter
from pipeline.export.vlmevalkit_format import VlmevalkitWriter
from pipeline.shard_store import atomic_write_json
from pipeline.write_guard import disk_full_stops, out_lock, remove_stale
from schemas import Sample
from schemas.errors import ConfigError, InputError


class FormatWriter(Protocol):
    """What every format writer does: take samples per split, then finish its files."""

    name: str

    def add(self, split: str, index: int, sample: Sample) -> None: ...

    def close(self, facts: ExportFacts) -> list[Path]: ...


FORMATS: dict[str, Callable[[Path, Path], FormatWriter]] = {
    "hf": HfWriter,
    "verl": VerlWriter,
    "trl": TrlWriter,
    "vlmevalkit": VlmevalkitWriter,
    "lmms-eval": LmmsEvalWriter,
}


@dataclass
class ExportConfig:
    """Everything `mifg export` can be told."""

    store: Path
    out: Path
    fmt: str = "hf"
    test_fraction: float = 0.1
    seed: int = 0
    contamination_dir: Path | None = None
    contamination_threshold: int = DEFAULT_THRESHOLD
    include_unverified: bool = False
    overwrite: bool = False
    push_to_hub: str | None = None
    private: bool = False


@dataclass
class ExportResult:
    """What an export wrote and counted."""

    out: Path
    files: list[Path]
    facts: ExportFacts
    plan: SplitPlan
    hits: list[Hit] = field(default_factory=list)
    pushed: str | None = None

    def summary(self) -> str:
        """Human summary: counts per split and task type, skips, contamination, where files went."""
        f = self.facts
        types = f.task_types
        width = max([len(t) for t in types] + [8])
        lines = [f"mifg export: {f.total} samples ({f.fmt}) -> {self.out}"]
        lines.append(f"  {'split':<6} {'samples':>7} {'groups':>6}  " + "  ".join(f"{t:>{width}}" for t in types))
        for s in SPLITS:
            counts = "  ".join(f"{f.by_task[s].get(t, 0):>{width}}" for t in types)
            lines.append(f"  {s:<6} {f.rows(s):>7} {f.groups.get(s, 0):>6}  {counts}")
        lines.append("  splits grouped by source photo: no source image is in both splits (splits.json)")
        if f.skipped:
            lines.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(f.skipped.items())))
        if f.contamination is not None:
            c = f.contamination
            lines.append(
                f"  contamination: {len(c['hits'])} hits on {c['benchmark_images']} benchmark images "
                f"(threshold {c['threshold']} bits) -> {len(c['excluded_samples'])} samples excluded "
                "(contamination.json)"
            )
        lines.append("  files: " + ", ".join(str(p) for p in self.files))
        if self.pushed:
            lines.append(f"  pushed: {self.pushed}")
        return "\n".join(lines)


def _check_out(cfg: ExportConfig) -> None:
    out, store = cfg.out.resolve(), cfg.store.resolve()
    if out == store or out in store.parents:
        raise ConfigError(f"--out {cfg.out} must not be the input store or a folder containing it")
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {cfg.out} exists and is not a directory")
        if any(out.iterdir()) and not cfg.overwrite:
            raise ConfigError(f"--out {cfg.out} exists and is not empty; pass --overwrite to replace it")


def _validate(cfg: ExportConfig) -> None:
    if cfg.fmt not in FORMATS:
        raise ConfigError(f"--format {cfg.fmt!r}: expected one of {', '.join(FORMATS)}")
    if not 0.0 <= cfg.test_fraction < 1.0:
        raise ConfigError(f"--test-fraction {cfg.test_fraction}: expected a number in [0, 1)")
    if not 0 <= cfg.contamination_threshold <= 64:
        raise ConfigError(f"--contamination-threshold {cfg.contamination_threshold}: expected 0..64 bits")
    if not cfg.store.is_dir():
        raise InputError(f"{cfg.store}: input store does not exist or is not a directory")
    _check_out(cfg)
    if cfg.push_to_hub:
        from pipeline.export.hub import hub_token

        if not hub_token():  # fail before the long part, not after it
            raise ConfigError("--push-to-hub needs a Hugging Face token: set HF_TOKEN (or run `hf auth login`)")


def _install(staging: Path, out: Path) -> None:
    """Put the finished staging folder at `out`, replacing what was there in one rename."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def _stderr(msg: str) -> None:
    print(f"mifg export: {msg}", file=sys.stderr, flush=True)


def run_export(cfg: ExportConfig, progress: Callable[[str], None] | None = _stderr) -> ExportResult:
    """Export the verified samples of `cfg.store` to `cfg.out` in `cfg.fmt`."""
    _validate(cfg)
    with out_lock(cfg.out, "mifg export"):  # a second export to the same --out is refused
        remove_stale(cfg.out, "mifg export")
        _check_out(cfg)  # again, under the lock: another export may have finished meanwhile
        kept = f"{cfg.out} unchanged (the unfinished export was removed)"
        with disk_full_stops(cfg.out, kept):
            return _export(cfg, progress)


def _export(cfg: ExportConfig, progress: Callable[[str], None] | None) -> ExportResult:
    say = progress or (lambda _msg: None)
    scan = scan_store(cfg.store, cfg.include_unverified, with_phash=cfg.contamination_dir is not None, progress=say)
    if not scan.items:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(scan.statuses.items())) or "no valid rows"
        hint = " (pass --include-unverified to export candidates)" if scan.statuses.get("candidate") else ""
        raise InputError(f"{cfg.store}: no samples to export: {scan.rows} rows, statuses: {statuses}{hint}")
    if cfg.include_unverified and scan.statuses.get("candidate"):
        n = scan.statuses["candidate"]
        _stderr(f"warning: exporting up to {n} unverified candidates (--include-unverified)")

    facts = ExportFacts(cfg.fmt, cfg.seed, cfg.test_fraction, cfg.include_unverified)
    facts.skipped.update(scan.skipped)
    hits: list[Hit] = []
    contamination_json = None
    if cfg.contamination_dir is not None:
        index = index_benchmark(cfg.contamination_dir)
        keys = [ImageKey(it.id, i, sha) for it in scan.items for i, sha in enumerate(it.image_sha256)]
        hashes = [h for it in scan.items for h in it.phashes]
        hits = find_hits(keys, hashes, index, cfg.contamination_threshold)
        contamination_json = report(index, hits, cfg.contamination_threshold, len(keys))
        facts.contamination = contamination_json
        if hits:
            facts.skipped["contaminated"] = len(contamination_json["excluded_samples"])
        say(f"contamination: {len(hits)} hits against {len(index.files)} benchmark images")
    excluded = {h.sample_id for h in hits}
    # Sample-id order from here on (split plan, rows of every split): the export does not depend on
    # how the same samples were spread over shards.
    chosen = sorted((it for it in scan.items if it.id not in excluded), key=lambda it: it.id)
    if not chosen:
        raise InputError(f"{cfg.store}: every sample was excluded by the contamination check")

    # Link samples by source id and also by identical image bytes: one photo found under two paths
    # (two source ids) must not land in both splits.
    items = [
        SplitItem(it.id, it.sources + tuple(f"sha256:{h}" for h in it.image_sha256), it.task_type) for it in chosen
    ]
    plan = plan_splits(items, cfg.test_fraction, cfg.seed)
    for s in SPLITS:
        facts.groups[s] = sum(1 for ids in plan.groups.values() if plan.split_of[ids[0]] == s)

    facts.difficulty.select(it.id for it in chosen)  # the card's solved subset, fixed before the samples stream
    out = cfg.out
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        writer = FORMATS[cfg.fmt](staging, out)
        index_in = dict.fromkeys(SPLITS, 0)
        for n, sample in enumerate(iter_sorted(chosen, staging / ".spill"), 1):
            split = plan.split_of[sample.id]
            writer.add(split, index_in[split], sample)
            index_in[split] += 1
            facts.add(split, sample)
            if n % 500 == 0:
                say(f"wrote {n}/{len(chosen)} samples")
        files = writer.close(facts)
        atomic_write_json(staging / "splits.json", plan.to_json())
        files.append(Path("splits.json"))
        if contamination_json is not None:
            atomic_write_json(staging / "contamination.json", contamination_json)
            files.append(Path("contamination.json"))
        atomic_write_json(staging / "export.json", facts.to_json())
        files.append(Path("export.json"))
        _install(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    result = ExportResult(out, files, facts, plan, hits)
    if cfg.push_to_hub:
        from pipeline.export.hub import push_to_hub

        say(f"pushing {out} to the Hub dataset repo {cfg.push_to_hub}")
        result.pushed = push_to_hub(out, cfg.push_to_hub, private=cfg.private)
    return result
