"""`mifg stats`: what a run (or a merge of runs) produced, from its item records and its shards.

Shard figures count what the shard files hold, read through `pipeline.store_reader.StoreReader`
(each listed shard checked against its manifest, each id once): a missing, truncated or changed
shard is one warning line and a `skipped` count, not rows taken from the manifest.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pipeline.difficulty import format_card, run_difficulty
from pipeline.graph import failure_code
from pipeline.item_store import ItemRecord, ItemStore
from pipeline.run_config import REJECTED, RUN_JSON, STATE
from pipeline.shard_store import MANIFESTS
from pipeline.stats_agents import AgentFigures, format_agent_figures
from pipeline.stats_diversity import Diversity, format_diversity
from pipeline.store_reader import StoreReader
from schemas.errors import InputError


def _load(run_dir: Path) -> tuple[list[ItemRecord], dict[tuple[str, str], Any], list[dict]]:
    paths = sorted((run_dir / STATE).glob("*.sqlite"))
    if not paths:
        raise InputError(f"{run_dir}: not a mifg run directory (no {STATE}/*.sqlite item record)")
    records: list[ItemRecord] = []
    skipped: dict[tuple[str, str], Any] = {}
    metas: list[dict] = []
    for p in paths:
        try:
            store = ItemStore(p, readonly=True)
            records.extend(store.records())
            for s in store.skipped():  # every shard of a run validates the same inputs: count each once
                skipped[(s.source_id, s.reason)] = s
            metas.append(store.meta())
            store.close()
        except Exception as e:
            raise InputError(f"{p}: unreadable item record ({e})") from e
    return records, skipped, metas


def _rate(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def collect_stats(run_dir: str | Path) -> dict[str, Any]:
    """All figures of `mifg stats` as a JSON-able dict."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    records, skipped, metas = _load(run_dir)
    outcomes = Counter(r.outcome for r in records)
    n = len(records)

    planned = None
    if (run_dir / RUN_JSON).exists():
        try:
            planned = json.loads((run_dir / RUN_JSON).read_text("utf-8")).get("n")
        except (OSError, ValueError):
            planned = None

    stages = {
        "paired": sum(1 for r in records if r.n_images > 0),
        "written": sum(1 for r in records if r.task_type),
        "verified": sum(1 for r in records if r.verifier_agrees is not None),
        "critiqued": sum(1 for r in records if r.critic_history),
        "accepted": outcomes["accepted"],
    }

    def breakdown(key: str) -> dict[str, dict[str, int]]:
        table: dict[str, Counter] = defaultdict(Counter)
        for r in records:
            value = getattr(r, key) or "(none)"
            table[value][r.outcome] += 1
            table[value]["total"] += 1
        return {k: dict(v) for k, v in sorted(table.items())}

    critic_verdicts: Counter = Counter()
    critic_reasons: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        for c in r.critic_history:
            critic_verdicts[c["verdict"]] += 1
            for reason in c.get("reasons") or []:
                critic_reasons[c["verdict"]][reason] += 1
    verifier = {
        "agree": sum(1 for r in records if r.verifier_agrees is True),
        "disagree": sum(1 for r in records if r.verifier_agrees is False),
        "not_run": sum(1 for r in records if r.verifier_agrees is None),
    }
    revisions = Counter(str(r.revisions) for r in records if r.critic_history)
    rejection_reasons = Counter(reason for r in records if r.outcome == "rejected" for reason in (r.reasons or ["?"]))
    failures = Counter(failure_code(r.failure) for r in records if r.outcome == "failed")
    failure_examples = {}
    for r in records:
        if r.outcome == "failed":
            failure_examples.setdefault(failure_code(r.failure), r.failure)
    tokens = {
        "prompt": sum(r.prompt_tokens for r in records),
        "completion": sum(r.completion_tokens for r in records),
        "calls": sum(r.calls for r in records),
        "cost_usd": round(sum(r.cost_usd for r in records), 6),
    }
    tokens["per_accepted_sample"] = round((tokens["prompt"] + tokens["completion"]) / max(outcomes["accepted"], 1), 1)
    tokens["cost_per_accepted_sample"] = round(tokens["cost_usd"] / max(outcomes["accepted"], 1), 6)
    tokens["calls_per_accepted_sample"] = round(tokens["calls"] / max(outcomes["accepted"], 1), 2)
    seconds = [r.seconds for r in records if r.seconds > 0]

    shards: dict[str, Any] = {}
    figures = AgentFigures()
    diversity = Diversity()
    for r in records:
        figures.add_record(r.usage_parts)
    for name, root in (("accepted", run_dir), ("rejected", run_dir / REJECTED)):
        shards[name] = {"files": 0, "rows": 0, "skipped": {}}
        if (root / MANIFESTS).is_dir():
            reader = StoreReader(root, "mifg stats")
            for sample in reader.samples():  # rows validated, ids once (images are decoded by export / train)
                figures.add(sample.sample, accepted=name == "accepted")
                if name == "accepted":
                    diversity.add(sample.sample)
            rep = reader.report
            shards[name] = {"files": rep.shards, "rows": rep.rows, "skipped": dict(sorted(rep.skipped.items()))}

    pool = {
        k: sum(int(m.get(k, 0) or 0) for m in metas[:1]) for k in ("pool_photos", "pool_considered", "related_pairs")
    }
    return {
        "run_dir": str(run_dir),
        "planned": planned,
        "items": n,
        "outcomes": {k: outcomes[k] for k in ("accepted", "rejected", "failed")},
        "acceptance_rate": _rate(outcomes["accepted"], n),
        "stages": stages,
        "task_types": breakdown("task_type"),
        "domains": breakdown("domain"),
        "image_set_kinds": breakdown("kind"),
        "verifier": verifier,
        "critic": {
            "verdicts": dict(critic_verdicts),
            "reasons": {k: dict(v.most_common()) for k, v in sorted(critic_reasons.items())},
        },
        "revisions": dict(sorted(revisions.items())),
        "rejection_reasons": dict(rejection_reasons.most_common()),
        "failures": dict(failures.most_common()),
        "failure_examples": failure_examples,
        "tokens": tokens,
        "seconds_per_item": round(sum(seconds) / len(seconds), 4) if seconds else 0.0,
        "skipped_inputs": dict(Counter(s.reason for s in skipped.values()).most_common()),
        "pool": pool,
        "shards": shards,
        "agents": figures.as_dict(),
        "diversity": diversity.as_dict(),
        "difficulty": run_difficulty(run_dir),  # naive solvers on (at most 2000 of) the accepted shards
    }


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) if d else "none"


def format_stats(st: dict[str, Any]) -> str:
    """Human-readable `mifg stats` report."""
    o = st["outcomes"]
    planned = f" of {st['planned']} planned" if st.get("planned") else ""
    lines = [
        f"run {st['run_dir']}: {st['items']} items finished{planned}",
        f"  outcomes: accepted {o['accepted']}, rejected {o['rejected']}, failed {o['failed']}"
        f"  (acceptance rate {st['acceptance_rate']:.1%})",
        "  stages: " + " -> ".join(f"{k} {v}" for k, v in st["stages"].items()),
        "",
        "per task type (accepted / total):",
    ]
    for name, c in st["task_types"].items():
        lines.append(f"  {name:<20} {c.get('accepted', 0):>6} / {c['total']:<6}")
    lines.append("per domain (accepted / total):")
    for name, c in st["domains"].items():
        lines.append(f"  {name:<20} {c.get('accepted', 0):>6} / {c['total']:<6}")
    v = st["verifier"]
    lines += [
        "",
        "agents:",
        f"  verifier: agree {v['agree']}, disagree {v['disagree']}, not run {v['not_run']}",
        f"  critic verdicts: {_counts(st['critic']['verdicts'])}",
    ]
    for verdict, reasons in st["critic"]["reasons"].items():
        lines.append(f"    {verdict} reasons: {_counts(reasons)}")
    lines += [
        f"  revisions per critiqued sample: {_counts(st['revisions'])}",
        f"  rejection reasons: {_counts(st['rejection_reasons'])}",
        f"  failures: {_counts(st['failures'])}",
    ]
    for example in st["failure_examples"].values():
        lines.append(f"    e.g. {example}")
    t = st["tokens"]
    lines += [
        "",
        f"tokens: prompt {t['prompt']}, completion {t['completion']}, calls {t['calls']},"
        f" cost ${t['cost_usd']:.4f}, {t['per_accepted_sample']} tokens per accepted sample",
        f"time: {st['seconds_per_item']:.3f} s per item (sum of item wall times / items)",
        f"inputs: {st['pool'].get('pool_photos', 0)} photos in pool,"
        f" {st['pool'].get('related_pairs', 0)} related pairs; skipped: {_counts(st['skipped_inputs'])}",
        f"shards: accepted {st['shards']['accepted']['rows']} rows in {st['shards']['accepted']['files']} files,"
        f" rejected {st['shards']['rejected']['rows']} rows in {st['shards']['rejected']['files']} files",
    ]
    for name, sh in st["shards"].items():
        if sh.get("skipped"):
            lines.append(f"  {name} shards skipped: {_counts(sh['skipped'])} (see the warnings above)")
    if st.get("diversity"):
        lines += format_diversity(st["diversity"])
    if st.get("agents"):
        lines += format_agent_figures(st["agents"], t["cost_per_accepted_sample"], t["calls_per_accepted_sample"])
    if "difficulty" in st:
        lines += ["", format_card(st["difficulty"])]
    return "\n".join(lines)
