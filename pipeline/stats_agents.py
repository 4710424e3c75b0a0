"""The agents' side of `mifg stats`, read from the samples' provenance: where each set came from,
how the critic's probes came out, and what each agent and probe spent per accepted sample.

Spending by agent and probe is read from the item records, which keep it for failed items too (a sample
that failed after the describer's pass rode on it still counts the describer). Records written before they
kept it fall back to the samples' provenance, where failed items have no part.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from schemas import Sample


class AgentFigures:
    """Accumulates the figures over accepted and rejected samples (`add`), then `as_dict`."""

    def __init__(self) -> None:
        self.sources: dict[str, Counter] = defaultdict(Counter)
        self.probes: dict[str, Counter] = defaultdict(Counter)
        self.parts: dict[str, Counter] = defaultdict(Counter)
        self.votes: Counter = Counter()
        self.accepted = 0
        self.record_parts: dict[str, Counter] = defaultdict(Counter)

    def add_record(self, parts: list[dict]) -> None:
        """Count the usage parts of one item record (any outcome)."""
        for part in parts:
            _count_part(
                self.record_parts[part["name"]],
                part["calls"],
                part["prompt_tokens"] + part["completion_tokens"],
                part["cost_usd"],
            )

    def add(self, sample: Sample, accepted: bool) -> None:
        """Count one sample (from the accepted shards or the rejected ones)."""
        self.accepted += accepted
        try:
            source = json.loads(sample.provenance.construction or "{}").get("set_source") or "procedural"
        except ValueError:
            source = "procedural"
        self.sources[source]["total"] += 1
        self.sources[source]["accepted"] += accepted
        for p in sample.provenance.critic.probes:
            c = self.probes[p.name]
            c["run"] += 1
            c["rejected"] += p.rejected
            c["tries"] += p.tries
            c["right"] += p.right
        for part in sample.provenance.usage.parts:
            _count_part(self.parts[part.name], part.calls, part.prompt_tokens + part.completion_tokens, part.cost_usd)
        v = sample.provenance.verifier
        if v.votes:
            self.votes["samples"] += 1
            self.votes["votes"] += len(v.votes)
            self.votes["unanimous"] += len(set(v.votes)) == 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures."""
        per = max(self.accepted, 1)
        parts = self.record_parts or self.parts
        return {
            "set_sources": {k: dict(v) for k, v in sorted(self.sources.items())},
            "probes": {
                k: {**dict(v), "right_share": round(v["right"] / v["tries"], 4) if v["tries"] else 0.0}
                for k, v in sorted(self.probes.items())
            },
            "usage_by_part": {
                k: {
                    "calls": v["calls"],
                    "tokens": v["tokens"],
                    "cost_usd": round(v["cost_usd_micro"] / 1e6, 6),
                    "calls_per_accepted": round(v["calls"] / per, 2),
                    "tokens_per_accepted": round(v["tokens"] / per, 1),
                }
                for k, v in sorted(parts.items())
            },
            "verifier_votes": dict(self.votes),
        }


def _count_part(c: Counter, calls: int, tokens: int, cost_usd: float) -> None:
    c["calls"] += calls
    c["tokens"] += tokens
    c["cost_usd_micro"] += round(cost_usd * 1e6)


def format_agent_figures(f: dict[str, Any], cost_per_accepted: float, calls_per_accepted: float) -> list[str]:
    """The report lines (none for a run whose samples carry no such figures, e.g. offline)."""
    lines: list[str] = []
    if len(f["set_sources"]) > 1 or "procedural" not in f["set_sources"]:
        lines.append("sets by source (accepted / total): " + ", ".join(
            f"{k} {v.get('accepted', 0)} / {v['total']}" for k, v in f["set_sources"].items()
        ))  # fmt: skip
    if f["probes"]:
        lines.append("probes (rejected / run, right share over tries):")
        for name, p in f["probes"].items():
            lines.append(
                f"  {name:<14} {p['rejected']:>5} / {p['run']:<5} right {p['right_share']:.1%} of {p['tries']}"
            )
    if f["verifier_votes"].get("samples"):
        v = f["verifier_votes"]
        lines.append(f"verifier votes: {v['votes']} on {v['samples']} samples, unanimous on {v['unanimous']}")
    if f["usage_by_part"]:
        lines.append(
            f"cost per accepted sample: ${cost_per_accepted:.6f}, {calls_per_accepted:.1f} calls; by agent and probe:"
        )
        for name, u in f["usage_by_part"].items():
            lines.append(
                f"  {name:<20} {u['calls_per_accepted']:>6.2f} calls {u['tokens_per_accepted']:>9.1f} tokens"
                f" ${u['cost_usd']:.6f} in all"
            )
    return lines
