"""Counts gathered while exporting: per split and task type, domains, licences, how samples were made.

They feed the printed summary, export.json and the dataset card, so all three agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.difficulty import DifficultyTally
from pipeline.export.splits import SPLITS
from schemas import Sample


@dataclass
class ExportFacts:
    """Everything the summary and the dataset card say about the exported samples."""

    fmt: str = "hf"
    seed: int = 0
    test_fraction: float = 0.1
    include_unverified: bool = False
    by_task: dict[str, Counter] = field(default_factory=lambda: {s: Counter() for s in SPLITS})
    by_domain: dict[str, Counter] = field(default_factory=lambda: {s: Counter() for s in SPLITS})
    images_per_sample: Counter = field(default_factory=Counter)
    licences: Counter = field(default_factory=Counter)  # per distinct source photo
    backends: Counter = field(default_factory=Counter)  # "offline" / "openai:<model>"
    prompt_versions: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    annotators: set[str] = field(default_factory=set)
    decisions: Counter = field(default_factory=Counter)
    groups: dict[str, int] = field(default_factory=dict)  # split -> source groups
    contamination: dict | None = None  # summary when a check ran
    skipped: Counter = field(default_factory=Counter)
    difficulty: DifficultyTally = field(default_factory=DifficultyTally)  # naive solvers, for the card
    _sources_seen: set[str] = field(default_factory=set)

    def add(self, split: str, sample: Sample) -> None:
        """Count one exported sample."""
        self.by_task[split][sample.task_type.value] += 1
        self.by_domain[split][sample.domain.value] += 1
        self.images_per_sample[len(sample.images)] += 1
        self.difficulty.add(sample)
        for meta in sample.image_meta:
            if meta.source not in self._sources_seen:
                self._sources_seen.add(meta.source)
                self.licences[meta.license or "unknown"] += 1
        prov = sample.provenance
        self.backends[prov.backend + (f":{prov.model}" if prov.model else "")] += 1
        if prov.prompt_version:
            self.prompt_versions[prov.prompt_version] += 1
        self.statuses[sample.status.value] += 1
        if sample.review is not None:
            for d in sample.review.decisions:
                self.annotators.add(d.annotator)
                self.decisions[d.decision] += 1

    def rows(self, split: str) -> int:
        """Number of samples exported to `split`."""
        return sum(self.by_task[split].values())

    @property
    def total(self) -> int:
        """Number of samples exported."""
        return sum(self.rows(s) for s in SPLITS)

    @property
    def task_types(self) -> list[str]:
        """Task types present in any split, sorted."""
        return sorted({t for s in SPLITS for t in self.by_task[s]})

    @property
    def domains(self) -> list[str]:
        """Domains present in any split, sorted."""
        return sorted({d for s in SPLITS for d in self.by_domain[s]})

    def to_json(self) -> dict:
        """JSON-able summary (written as export.json); no timestamps or paths, so it is reproducible."""
        return {
            "format": self.fmt,
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "include_unverified": self.include_unverified,
            "samples": {s: self.rows(s) for s in SPLITS},
            "source_groups": dict(sorted(self.groups.items())),
            "by_task_type": {s: dict(sorted(self.by_task[s].items())) for s in SPLITS},
            "by_domain": {s: dict(sorted(self.by_domain[s].items())) for s in SPLITS},
            "images_per_sample": {str(k): v for k, v in sorted(self.images_per_sample.items())},
            "source_photo_licences": dict(sorted(self.licences.items())),
            "backends": dict(sorted(self.backends.items())),
            "prompt_versions": dict(sorted(self.prompt_versions.items())),
            "statuses": dict(sorted(self.statuses.items())),
            "annotators": len(self.annotators),
            "review_decisions": dict(sorted(self.decisions.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "contamination": self.contamination,
        }
