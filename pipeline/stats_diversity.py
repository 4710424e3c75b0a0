"""The diversity lines of `mifg stats`: over how many photos, edited objects and question strings the
accepted samples spread, and which edits they carry.

The critic's caps (`agents.offline.critic`: per (photo, family, answer), per question string, per edited
object of a photo) bound the largest counts; these figures show what they left, e.g. that every sample
of a run edits one of a few dozen islands. Photos come from the samples' image metadata (any backend);
the edited objects, edit kinds and unanswerable twins from the offline scene sets' construction record,
which is audit-only ground truth: it is counted here, never shown to a model.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from agents.offline.critic import answer_identity, edited_objects, question_identity
from schemas import Sample


def _collection(source: str) -> str:
    """The photo's collection: its source id up to a tile position ("basemap:bmng@2400,0" -> "basemap:bmng")."""
    return source.split("@", 1)[0]


class Diversity:
    """Accumulates the accepted samples (`add`), then `as_dict`."""

    def __init__(self) -> None:
        self.samples = 0
        self.photos: Counter = Counter()
        self.collections: Counter = Counter()
        self.objects: Counter = Counter()
        self.questions: Counter = Counter()
        self.answers: Counter = Counter()  # (photo, family, answer), as `cap_answer` counts them
        self.edits: Counter = Counter()
        self.twins = 0

    def add(self, sample: Sample) -> None:
        """Count one accepted sample."""
        self.samples += 1
        sources = sorted({m.source for m in sample.image_meta})
        for s in sources:
            self.photos[s] += 1
        for c in sorted({_collection(s) for s in sources}):
            self.collections[c] += 1
        self.questions[question_identity(sample.question)] += 1
        try:
            construction = json.loads(sample.provenance.construction or "{}")
        except ValueError:
            construction = {}
        family = construction.get("family") or sample.task_type.value
        answer = sample.options[ord(sample.answer) - ord("A")] if sample.options else sample.answer
        first = sample.image_meta[0].source if sample.image_meta else ""
        self.answers[answer_identity(first, family, answer)] += 1
        self.twins += bool(construction.get("twin"))
        for image in construction.get("images") or []:
            for e in image.get("edits") or []:
                self.edits[e.get("kind", "?")] += 1
        # the objects as the critic's cap_object counts them (one object found at two sizes is one)
        for cell in edited_objects(construction):
            self.objects[(construction.get("source", ""), cell)] += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures: distinct counts, the largest share of one, edits by kind."""

        def spread(c: Counter) -> dict[str, Any]:
            top = c.most_common(1)
            return {"distinct": len(c), "most": top[0][1] if top else 0}

        top_photo = self.photos.most_common(1)
        return {
            "samples": self.samples,
            "photos": {**spread(self.photos), "most_from": top_photo[0][0] if top_photo else ""},
            "collections": dict(self.collections.most_common()),
            "edited_objects": spread(self.objects),
            "questions": spread(self.questions),
            "photo_family_answer": spread(self.answers),
            "edits": dict(self.edits.most_common()),
            "twins": self.twins,
        }


def format_diversity(d: dict[str, Any]) -> list[str]:
    """The report lines (none when no sample was accepted)."""
    if not d.get("samples"):
        return []
    p, o, q, a = d["photos"], d["edited_objects"], d["questions"], d["photo_family_answer"]
    lines = [
        f"diversity of the {d['samples']} accepted samples:",
        f"  photos: {p['distinct']} (at most {p['most']} samples from one, {p['most_from']});"
        f" collections: {', '.join(f'{k} {v}' for k, v in d['collections'].items())}",
        f"  question strings: {q['distinct']} (at most {q['most']} samples share one);"
        f" (photo, family, answer): {a['distinct']} (at most {a['most']} share one)",
    ]
    if o["distinct"] or d["edits"]:
        edits = ", ".join(f"{k} {v}" for k, v in d["edits"].items()) or "none"
        lines.append(
            f"  edited objects: {o['distinct']} (at most {o['most']} samples change one);"
            f" edits: {edits}; unanswerable twins {d['twins']}"
        )
    return lines
