"""`verl` format: RL Parquet that verl's RLHFDataset reads, plus reward, tools and a launch script.

Layout of OUT:

    train.parquet, test.parquet  data_source, prompt, images, ability, reward_model, extra_info, agent_name
    mifg_reward.py               compute_score(data_source, solution_str, ground_truth, extra_info)
    mifg_tools.py                VisualReflectionTool, VisualConfirmationTool (verl BaseTool subclasses)
    tool_config.yaml             verl tool config: tools: - class_name / config / tool_schema
    run_verl_grpo.sh             python -m verl.trainer.main_ppo pointed at all of the above
    README.md                    dataset card

Each prompt is one user message whose text has exactly one `<image>` per image, in order; verl
splits the text on `<image>` and pairs the placeholders with `images` (counts must be equal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from pipeline.export import dataset_card
from pipeline.export.assets import asset_text
from pipeline.export.facts import ExportFacts
from pipeline.export.parquet_sink import SplitParquetSink, card_configs, card_splits, with_hf_features
from pipeline.export.prompts import placeholder_prompt
from pipeline.export.splits import SPLITS, TEST, TRAIN
from schemas import Sample
from schemas.arrow import BOX_STRUCT, IMAGE_STRUCT

DATA_SOURCE = "mifg_qa"
ABILITY = "multi_image_fine_grained"
AGENT_NAME = "tool_agent"  # verl's ToolAgentLoop
REFLECTION = "visual_reflection"
CONFIRMATION = "visual_confirmation"

_CREATE_KWARGS = pa.struct(
    [
        ("images", pa.list_(pa.binary())),  # the encoded originals; verl gives a tool only its create_kwargs
        ("sizes", pa.list_(pa.list_(pa.int32(), 2))),  # [width, height] per image
        ("image_count", pa.int32()),
    ]
)
_TOOL_KWARGS = pa.struct([("create_kwargs", _CREATE_KWARGS)])
VERL_SCHEMA_FIELDS = [
    ("data_source", pa.string()),
    ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("images", pa.list_(IMAGE_STRUCT)),
    ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    (
        "extra_info",
        pa.struct(
            [
                ("index", pa.int64()),
                ("split", pa.string()),
                ("id", pa.string()),
                ("question", pa.string()),
                ("options", pa.list_(pa.string())),
                ("num_options", pa.int32()),
                ("answer", pa.string()),
                ("answer_text", pa.string()),
                ("task_type", pa.string()),
                ("domain", pa.string()),
                ("evidence", pa.list_(BOX_STRUCT)),
                ("need_tools_kwargs", pa.bool_()),
                ("tools_kwargs", pa.struct([(REFLECTION, _TOOL_KWARGS), (CONFIRMATION, _TOOL_KWARGS)])),
            ]
        ),
    ),
    ("agent_name", pa.string()),
]


def verl_schema() -> pa.Schema:
    """Arrow schema of a verl row; `images` carry Image() metadata so `datasets` shows them as images."""
    from datasets import Features

    feats = Features.from_arrow_schema(pa.schema(VERL_SCHEMA_FIELDS)).to_dict()
    feats["images"] = {"feature": {"_type": "Image"}, "_type": "List"}
    return with_hf_features(pa.schema(VERL_SCHEMA_FIELDS), feats)


def verl_row(sample: Sample, split: str, index: int) -> dict[str, Any]:
    """One verl RL row of a sample."""
    create = {
        "images": [img.bytes for img in sample.images],
        "sizes": [[m.width, m.height] for m in sample.image_meta],
        "image_count": len(sample.images),
    }
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": placeholder_prompt(sample)}],
        "images": [{"bytes": img.bytes, "path": img.path} for img in sample.images],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": sample.answer},
        "extra_info": {
            "index": index,
            "split": split,
            "id": sample.id,
            "question": sample.question,
            "options": list(sample.options),
            "num_options": len(sample.options),
            "answer": sample.answer,
            "answer_text": sample.answer_text,
            "task_type": sample.task_type.value,
            "domain": sample.domain.value,
            "evidence": [{"image_index": b.image_index, "bbox": list(b.bbox)} for b in sample.evidence],
            "need_tools_kwargs": True,
            "tools_kwargs": {REFLECTION: {"create_kwargs": create}, CONFIRMATION: {"create_kwargs": create}},
        },
        "agent_name": AGENT_NAME,
    }


def tool_config() -> dict[str, Any]:
    """verl tool config (tool_config.yaml) for our two tools."""
    return {
        "tools": [
            {
                "class_name": "mifg_tools.VisualReflectionTool",
                "config": {"type": "native"},
                "tool_schema": {
                    "type": "function",
                    "function": {
                        "name": REFLECTION,
                        "description": (
                            "Visual reflection: look at the original image(s) again, in full. Use it when you "
                            "need to re-check the images during long reasoning."
                        ),
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "image_indices": {
                                    "type": "array",
                                    "items": {"type": "integer"},
                                    "description": "Image numbers to show again (1 = first image). Empty: all.",
                                }
                            },
                            "required": [],
                        },
                    },
                },
            },
            {
                "class_name": "mifg_tools.VisualConfirmationTool",
                "config": {"type": "native"},
                "tool_schema": {
                    "type": "function",
                    "function": {
                        "name": CONFIRMATION,
                        "description": (
                            "Visual confirmation: crop a region of one image and zoom into it to verify a small "
                            "detail. The crop is always taken from the original image."
                        ),
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "image_index": {
                                    "type": "integer",
                                    "description": "Which image to zoom into (1 = first image).",
                                },
                                "bbox_2d": {
                                    "type": "array",
                                    "items": {"type": "number"},
                                    "description": (
                                        "Region [x1, y1, x2, y2], top-left and bottom-right corners, normalised "
                                        "to 0..1 of the image width/height (pixel coordinates are accepted too)."
                                    ),
                                },
                            },
                            "required": ["image_index", "bbox_2d"],
                        },
                    },
                },
            },
        ]
    }


RUN_SCRIPT = """\
#!/usr/bin/env bash
# Train on this export with verl's GRPO and the multi-turn tool agent. Adjust the model and sizes.
# Needs verl installed (with sglang or vllm). Append Hydra overrides as arguments, e.g.
#   ./run_verl_grpo.sh trainer.n_gpus_per_node=8
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$DIR${PYTHONPATH:+:$PYTHONPATH}"  # tool_config.yaml names mifg_tools.*
MODEL="${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"
python3 -m verl.trainer.main_ppo \\
  algorithm.adv_estimator=grpo \\
  data.train_files="$DIR/train.parquet" \\
  data.val_files="$DIR/{val}.parquet" \\
  data.image_key=images \\
  data.return_raw_chat=True \\
  data.max_prompt_length=4096 \\
  data.max_response_length=4096 \\
  data.filter_overlong_prompts=True \\
  actor_rollout_ref.model.path="$MODEL" \\
  actor_rollout_ref.rollout.name="${ROLLOUT:-sglang}" \\
  actor_rollout_ref.rollout.mode=async \\
  actor_rollout_ref.rollout.n=8 \\
  actor_rollout_ref.rollout.multi_turn.enable=True \\
  actor_rollout_ref.rollout.multi_turn.max_assistant_turns=5 \\
  actor_rollout_ref.rollout.multi_turn.tool_config_path="$DIR/tool_config.yaml" \\
  custom_reward_function.path="$DIR/mifg_reward.py" \\
  custom_reward_function.name=compute_score \\
  trainer.project_name=mifg \\
  trainer.experiment_name=imagent_grpo \\
  "$@"
"""

VERL_USAGE = """\
- `train.parquet`, `test.parquet`: verl RL rows (`data_source`, `prompt` with one `<image>` per image,
  `images`, `ability`, `reward_model` {style: rule, ground_truth}, `extra_info` with `index`, `split`,
  `question`, `answer`, per-row `tools_kwargs` for both tools, and `agent_name: tool_agent`).
  Rows carry each image three times (once for the prompt, once per tool's `create_kwargs`),
  because verl hands a tool only its own `create_kwargs`.
- `mifg_reward.py`: `compute_score` = 0.8 accuracy − 0.2 [malformed] + 1.2 [tool used and correct].
- `mifg_tools.py` + `tool_config.yaml`: visual_reflection and visual_confirmation (crop + zoom).
- `run_verl_grpo.sh`: `python -m verl.trainer.main_ppo` with all of the above wired in.

```bash
MODEL=Qwen/Qwen2.5-VL-7B-Instruct bash OUT/run_verl_grpo.sh trainer.n_gpus_per_node=8
```"""


class VerlWriter:
    """Writes the verl format into a staging directory."""

    name = "verl"

    def __init__(self, out: Path, final_out: Path) -> None:
        self.out = out
        self.sink = SplitParquetSink({s: out / f"{s}.parquet" for s in SPLITS}, verl_schema(), batch_rows=32)

    def add(self, split: str, index: int, sample: Sample) -> None:
        """Append one sample to `split` as row `index`."""
        self.sink.add(split, verl_row(sample, split, index))

    def close(self, facts: ExportFacts) -> list[Path]:
        """Finish the files; returns the paths written (relative to the export root)."""
        files = self.sink.close()
        (self.out / "mifg_reward.py").write_text(asset_text("mifg_reward.py"), encoding="utf-8")
        (self.out / "mifg_tools.py").write_text(asset_text("mifg_tools.py"), encoding="utf-8")
        (self.out / "tool_config.yaml").write_text(
            yaml.safe_dump(tool_config(), sort_keys=False, width=1000), encoding="utf-8"
        )
        script = self.out / "run_verl_grpo.sh"
        val = TEST if TEST in files else TRAIN  # verl needs val_files; --test-fraction 0 leaves only train
        script.write_text(RUN_SCRIPT.replace("{val}", val), encoding="utf-8")
        script.chmod(0o755)
        card = dataset_card.render(facts, VERL_USAGE, card_configs(files, self.out), card_splits(files))
        (self.out / "README.md").write_text(card, encoding="utf-8")
        parquet = [f.path.relative_to(self.out) for f in files.values()]
        names = ["mifg_reward.py", "mifg_tools.py", "tool_config.yaml", "run_verl_grpo.sh"]
        return [Path("README.md"), *parquet, *(Path(n) for n in names)]
