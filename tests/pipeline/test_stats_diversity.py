"""The diversity lines of `mifg stats` count photos, edited objects and questions as the caps do."""

from __future__ import annotations

import json

from pipeline.stats_diversity import Diversity, format_diversity
from tests.factories import make_sample


def _scene(seed: int, source: str, question: str, objects: list[tuple[int, int]], twin: bool = False):
    s = make_sample(seed, source=source)
    edits = [{"kind": "added" if i % 2 else "removed", "object_px": list(xy)} for i, xy in enumerate(objects)]
    construction = {"family": "which_differs", "source": source, "twin": twin, "images": [{"edits": edits}, {}]}
    provenance = s.provenance.model_copy(update={"construction": json.dumps(construction)})
    return s.model_copy(update={"question": question, "provenance": provenance})


def test_diversity_counts_photos_objects_questions_and_edits():
    d = Diversity()
    d.add(_scene(0, "basemap:bmng@0,0", "Which image differs?", [(100, 100)]))
    # the same island found at another size class (top-left a px or two off) is the same object
    d.add(_scene(1, "basemap:bmng@0,0", "Which  image DIFFERS?", [(101, 102), (400, 40)]))
    d.add(_scene(2, "basemap:etopo1@1200,0", "Which shot is unchanged?", [], twin=True))
    fig = d.as_dict()
    assert fig["samples"] == 3
    assert fig["photos"] == {"distinct": 2, "most": 2, "most_from": "basemap:bmng@0,0"}
    assert fig["collections"] == {"basemap:bmng": 2, "basemap:etopo1": 1}
    assert fig["edited_objects"] == {"distinct": 2, "most": 2}
    assert fig["questions"] == {"distinct": 2, "most": 2}, "case and spaces do not make another question"
    assert fig["edits"] == {"removed": 2, "added": 1} and fig["twins"] == 1
    text = "\n".join(format_diversity(fig))
    assert "photos: 2 (at most 2 samples from one, basemap:bmng@0,0)" in text
    assert "edited objects: 2 (at most 2 samples change one)" in text
    assert format_diversity(Diversity().as_dict()) == []
