"""`lmms-eval` format: Parquet per split, a task YAML and the utils.py it points at.

Layout of OUT:

    data/train.parquet, data/test.parquet   the hf columns (`images` decode as List(Image()))
    mifg_qa.yaml                            task: generate_until, letter answer, exact_match
    utils.py                                mifg_doc_to_visual / mifg_doc_to_text / mifg_process_results
    README.md                               dataset card

Run with `lmms-eval --include_path OUT --tasks mifg_qa ...`. The YAML names the Parquet files by
absolute path (lmms-eval resolves `data_files` against its working directory), so it is the one
file that changes when the same export is written to another folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.export import dataset_card
from pipeline.export.assets import asset_text
from pipeline.export.facts import ExportFacts
from pipeline.export.hf_format import hf_row, hf_schema
from pipeline.export.parquet_sink import SplitFile, SplitParquetSink, card_configs, card_splits
from pipeline.export.splits import SPLITS, TEST, TRAIN
from schemas import Sample

TASK_NAME = "mifg_qa"
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def task_yaml(data_dir: Path, splits: list[str]) -> str:
    """The lmms-eval task YAML (hand-written text: it needs lmms-eval's `!function` tags)."""
    data_files = "".join(f"\n    {s}: {json.dumps(str(data_dir / f'{s}.parquet'))}" for s in splits)
    test_split = TEST if TEST in splits else TRAIN  # --test-fraction 0: evaluate on what there is
    return f"""\
# lmms-eval task for MIFG-QA (written by `mifg export --format lmms-eval`).
task: {TASK_NAME}
dataset_path: parquet
dataset_kwargs:
  data_files:{data_files}
test_split: {test_split}
output_type: generate_until
doc_to_visual: !function utils.mifg_doc_to_visual
doc_to_text: !function utils.mifg_doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  top_p: 1.0
  num_beams: 1
  do_sample: false
process_results: !function utils.mifg_process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
  - metric: by_task_type
    aggregation: !function utils.mifg_aggregate_by_group
    higher_is_better: true
  - metric: by_domain
    aggregation: !function utils.mifg_aggregate_by_group
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    post_prompt: {json.dumps(POST_PROMPT)}
metadata:
  version: 0.1
"""


LMMS_USAGE = """\
- `data/train.parquet`, `data/test.parquet`: the samples (hf columns; `images` decode as images).
- `mifg_qa.yaml` + `utils.py`: lmms-eval task (multiple choice, letter answer, exact match, plus
  mean accuracy over task types and over domains with a per-group printout).

```bash
lmms-eval --model qwen2_5_vl --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct \\
  --include_path OUT --tasks mifg_qa --batch_size 1
```"""


class LmmsEvalWriter:
    """Writes the lmms-eval format into a staging directory."""

    name = "lmms-eval"

    def __init__(self, out: Path, final_out: Path) -> None:
        self.out = out
        self.final_out = final_out
        self.sink = SplitParquetSink({s: out / "data" / f"{s}.parquet" for s in SPLITS}, hf_schema())

    def add(self, split: str, index: int, sample: Sample) -> None:
        """Append one sample to `split`."""
        self.sink.add(split, hf_row(sample))

    def close(self, facts: ExportFacts) -> list[Path]:
        """Finish the files; returns the paths written (relative to the export root)."""
        files = self.sink.close()
        self._write_task(files)
        (self.out / "utils.py").write_text(asset_text("lmms_eval_utils.py"), encoding="utf-8")
        card = dataset_card.render(facts, LMMS_USAGE, card_configs(files, self.out), card_splits(files))
        (self.out / "README.md").write_text(card, encoding="utf-8")
        parquet = [f.path.relative_to(self.out) for f in files.values()]
        return [Path("README.md"), *parquet, Path(f"{TASK_NAME}.yaml"), Path("utils.py")]

    def _write_task(self, files: dict[str, SplitFile]) -> None:
        text = task_yaml(self.final_out.resolve() / "data", list(files))
        (self.out / f"{TASK_NAME}.yaml").write_text(text, encoding="utf-8")
