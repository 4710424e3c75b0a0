"""The describer: one VLM call per photo of the pool (caption, tags, domain), cached in the run directory.

Descriptions are appended to `RUN_DIR/descriptions.jsonl` as they arrive, keyed by the photo's
sha256, and read back when a run resumes, so no photo is described twice. All photos are described
together the first time a set of different photos is asked for (grouping needs them all); items
asking meanwhile wait for the same pass, and the pass's cost is counted to the item that began it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.base import ImageRef
from agents.llm.client import LLMClient
from agents.llm.config import LLMConfig
from agents.llm.content import image_part, text_part
from agents.llm.errors import LLMCallError
from agents.llm.replies import DescriberReply
from agents.prompts import load_prompt
from schemas import Domain, TokenUsage

FILE = "descriptions.jsonl"


@dataclass(frozen=True)
class Description:
    """What the describer said of one photo."""

    caption: str
    tags: tuple[str, ...]
    domain: Domain


class Describer:
    """Describes every photo of a pool once per run (see the module docstring)."""

    def __init__(self, client: LLMClient, config: LLMConfig) -> None:
        self.client = client
        self.config = config
        self.known: dict[str, Description] = {}
        self._loaded_from: Path | None = None
        self._pass: asyncio.Task | None = None

    def load(self, run_dir: Path) -> None:
        """Read the descriptions a previous invocation of this run wrote (once)."""
        if self._loaded_from == run_dir:
            return
        self._loaded_from = run_dir
        path = run_dir / FILE
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                self.known[row["sha256"]] = Description(row["caption"], tuple(row["tags"]), Domain(row["domain"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: that photo is described again

    async def describe_one(self, ref: ImageRef, run_dir: Path) -> TokenUsage:
        """Describe `ref` and append it to the run's file."""
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": load_prompt("describer", self.config.prompt_version)},
            {
                "role": "user",
                "content": [text_part("Photo:"), image_part(ref, self.config.describer_image_side)],
            },
        ]
        reply, usage = await self.client.complete_json(
            messages, DescriberReply.model_validate, max_tokens=self.config.max_tokens["describer"], label="describer"
        )
        d = Description(" ".join(reply.caption.split()), tuple(reply.tags), reply.domain)
        self.known[ref.sha256] = d
        row = {
            "sha256": ref.sha256,
            "source": ref.source,
            "caption": d.caption,
            "tags": list(d.tags),
            "domain": d.domain.value,
        }
        with open(run_dir / FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return usage

    async def _describe_all(self, photos: list[ImageRef], run_dir: Path) -> TokenUsage:
        todo = [p for p in photos if p.sha256 not in self.known]
        results = await asyncio.gather(*(self.describe_one(p, run_dir) for p in todo), return_exceptions=True)
        usage = TokenUsage()
        for r in results:
            if isinstance(r, TokenUsage):
                usage = usage.add(r)
            elif isinstance(r, LLMCallError):
                usage = usage.add(r.usage)  # that photo stays undescribed: it joins no group this run
            elif isinstance(r, BaseException):
                raise r
        return usage

    async def ensure(self, photos: list[ImageRef], run_dir: Path) -> TokenUsage:
        """Every photo described (waiting for a pass under way); the usage this caller began, else zero."""
        self.load(run_dir)
        if all(p.sha256 in self.known for p in photos):
            return TokenUsage()
        if self._pass is not None and not self._pass.done():
            await asyncio.shield(self._pass)
            return TokenUsage()
        self._pass = asyncio.ensure_future(self._describe_all(photos, run_dir))
        return await asyncio.shield(self._pass)
