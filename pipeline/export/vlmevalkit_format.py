"""`vlmevalkit` format: one multiple-choice TSV per split, as VLMEvalKit's image MCQ datasets use.

Layout of OUT:

    MIFG_QA_TEST.tsv, MIFG_QA_TRAIN.tsv   index, question, A, B, ..., answer, image, image_path, category, ...
    README.md                             dataset card

`image` holds a JSON list of base64 strings (one per image) and `image_path` a JSON list of file
names: VLMEvalKit's multi-image datasets parse both with `toliststr` and decode each image to
`<LMUData>/images/<dataset>/<name>`. Names are content hashes, so identical bytes share one file.
Option columns a sample lacks stay empty (NaN when read). Rows are written one at a time, so a split
never sits in memory as base64; rows are in sample-id order (the exporter streams them so).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from pathlib import Path
from typing import IO

from pipeline.export import dataset_card
from pipeline.export.facts import ExportFacts
from pipeline.export.splits import SPLITS
from schemas import LETTERS, Sample, image_file_name

TSV_NAMES = {s: f"MIFG_QA_{s.upper()}.tsv" for s in SPLITS}
COLUMNS = ["index", "question", *LETTERS, "answer", "image", "image_path", "category", "l2-category", "id", "split"]


def image_names(sample: Sample) -> list[str]:
    """File names VLMEvalKit will decode the images to: content hashes of their bytes.

    One name always means the same bytes (VLMEvalKit decodes a name once and reuses the file), and a
    name says nothing about the image but its content.
    """
    return [image_file_name(hashlib.sha256(img.bytes).hexdigest(), Path(img.path).suffix) for img in sample.images]


def tsv_row(sample: Sample, split: str, index: int) -> list[str | int]:
    """One TSV row (values in COLUMNS order)."""
    options = [sample.options[i] if i < len(sample.options) else "" for i in range(len(LETTERS))]
    b64 = [base64.b64encode(img.bytes).decode("ascii") for img in sample.images]
    return [
        index,
        sample.question,
        *options,
        sample.answer,
        json.dumps(b64),
        json.dumps(image_names(sample)),
        sample.task_type.value,
        sample.domain.value,
        sample.id,
        split,
    ]


VLMEVALKIT_USAGE = """\
- `MIFG_QA_TEST.tsv` (and `MIFG_QA_TRAIN.tsv`): VLMEvalKit multiple-choice TSV. `image` is a JSON
  list of base64 images, `image_path` a JSON list of file names, `category` the task type,
  `l2-category` the domain.

Copy the TSV into `$LMUData` (default `~/LMUData`) and evaluate it as a custom MCQ dataset, e.g.
`python run.py --data MIFG_QA_TEST --model Qwen2.5-VL-7B-Instruct` after registering it as an
`ImageMCQDataset` (see VLMEvalKit's docs on custom datasets)."""


class VlmevalkitWriter:
    """Writes the vlmevalkit format into a staging directory."""

    name = "vlmevalkit"

    def __init__(self, out: Path, final_out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, IO[str]] = {}
        self._writers = {}

    def add(self, split: str, index: int, sample: Sample) -> None:
        """Append one sample to `split` as row `index` (a split's file appears with its first row)."""
        if split not in self._writers:
            f = open(self.out / TSV_NAMES[split], "w", encoding="utf-8", newline="")
            w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            w.writerow(COLUMNS)
            self._files[split], self._writers[split] = f, w
        self._writers[split].writerow(tsv_row(sample, split, index))

    def close(self, facts: ExportFacts) -> list[Path]:
        """Finish the files; returns the paths written (relative to the export root)."""
        for f in self._files.values():
            f.close()
        (self.out / "README.md").write_text(dataset_card.render(facts, VLMEVALKIT_USAGE), encoding="utf-8")
        return [Path("README.md"), *(Path(TSV_NAMES[s]) for s in SPLITS if s in self._files)]
