"""`trl` format: prompt-only conversational data with an `images` column, as GRPOTrainer reads VLM data.

Layout of OUT:

    data/train.parquet, data/test.parquet   prompt, images, answer, options, ... (extra columns reach reward funcs)
    mifg_reward.py                          grpo_reward(completions, answer, ...) and compute_score
    README.md                               dataset card

`prompt` is one user message whose content is typed blocks: a text label and an image block
({"type": "image"}) per image, then the question. GRPOTrainer fills each image block from the
`images` list in order (`trl.data_utils.prepare_multimodal_messages`), so block count = image count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.export import dataset_card
from pipeline.export.assets import asset_text
from pipeline.export.facts import ExportFacts
from pipeline.export.parquet_sink import SplitParquetSink, card_configs, card_splits, with_hf_features
from pipeline.export.prompts import content_blocks
from pipeline.export.splits import SPLITS
from schemas import Sample
from schemas.arrow import BOX_STRUCT, IMAGE_STRUCT

_BLOCK = pa.struct([("type", pa.string()), ("text", pa.string())])
TRL_FIELDS = [
    ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.list_(_BLOCK))]))),
    ("images", pa.list_(IMAGE_STRUCT)),
    ("answer", pa.string()),
    ("options", pa.list_(pa.string())),
    ("num_options", pa.int32()),
    ("answer_text", pa.string()),
    ("task_type", pa.string()),
    ("domain", pa.string()),
    ("evidence", pa.list_(BOX_STRUCT)),
    ("id", pa.string()),
]


def trl_schema() -> pa.Schema:
    """Arrow schema of a TRL row, `images` as List(Image()) so GRPOTrainer gets PIL images."""
    from datasets import Features

    feats = Features.from_arrow_schema(pa.schema(TRL_FIELDS)).to_dict()
    feats["images"] = {"feature": {"_type": "Image"}, "_type": "List"}
    return with_hf_features(pa.schema(TRL_FIELDS), feats)


def trl_row(sample: Sample) -> dict[str, Any]:
    """One TRL row of a sample."""
    return {
        "prompt": [{"role": "user", "content": content_blocks(sample)}],
        "images": [{"bytes": img.bytes, "path": img.path} for img in sample.images],
        "answer": sample.answer,
        "options": list(sample.options),
        "num_options": len(sample.options),
        "answer_text": sample.answer_text,
        "task_type": sample.task_type.value,
        "domain": sample.domain.value,
        "evidence": [{"image_index": b.image_index, "bbox": list(b.bbox)} for b in sample.evidence],
        "id": sample.id,
    }


TRL_USAGE = """\
- `data/train.parquet`, `data/test.parquet`: `prompt` (conversational, typed content blocks with one
  `{"type": "image"}` per image), `images` (list of images), `answer` (letter) and other columns
  that GRPOTrainer passes to reward functions as keyword arguments.
- `mifg_reward.py`: `grpo_reward(completions, answer, num_options, ...)`.

```python
import datasets, sys
from trl import GRPOConfig, GRPOTrainer

ds = datasets.load_dataset("parquet", data_dir="OUT/data")
sys.path.insert(0, "OUT"); from mifg_reward import grpo_reward
trainer = GRPOTrainer(model="Qwen/Qwen2.5-VL-3B-Instruct", reward_funcs=grpo_reward,
                      args=GRPOConfig(output_dir="grpo-mifg"), train_dataset=ds["train"])
```"""


class TrlWriter:
    """Writes the trl format into a staging directory."""

    name = "trl"

    def __init__(self, out: Path, final_out: Path) -> None:
        self.out = out
        self.sink = SplitParquetSink({s: out / "data" / f"{s}.parquet" for s in SPLITS}, trl_schema())

    def add(self, split: str, index: int, sample: Sample) -> None:
        """Append one sample to `split`."""
        self.sink.add(split, trl_row(sample))

    def close(self, facts: ExportFacts) -> list[Path]:
        """Finish the files; returns the paths written (relative to the export root)."""
        files = self.sink.close()
        (self.out / "mifg_reward.py").write_text(asset_text("mifg_reward.py"), encoding="utf-8")
        card = dataset_card.render(facts, TRL_USAGE, card_configs(files, self.out), card_splits(files))
        (self.out / "README.md").write_text(card, encoding="utf-8")
        return [Path("README.md"), *(f.path.relative_to(self.out) for f in files.values()), Path("mifg_reward.py")]
