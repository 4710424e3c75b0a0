"""The run's photo pool: its image source (`cfg.source`), validated, cached and de-duplicated."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agents.base import PhotoPool
from pipeline.image_sources import SourceImage, bundled_source, directory_source, hf_dataset_source
from pipeline.item_store import ItemStore
from pipeline.photo_pool import PoolReport, SkippedInput, build_pool
from pipeline.run.summary import RunSummary
from pipeline.run_config import RunConfig
from schemas.errors import InputError


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sources_for(cfg: RunConfig) -> Iterator[SourceImage]:
    """The image source named by `cfg.source`."""
    kind, _, arg = cfg.source.partition(":")
    if kind == "skimage":
        return bundled_source(cfg.validation.max_side)
    if kind == "dir":
        return directory_source(Path(arg), follow_links=cfg.follow_links, on_note=_note)
    if kind == "hf":
        return hf_dataset_source(Path(arg), image_column=cfg.image_column, group_column=cfg.group_column)
    raise InputError(f"unknown image source {cfg.source!r}")


def _make_pool(cfg: RunConfig) -> tuple[PhotoPool, PoolReport]:
    """Validate, cache and de-duplicate the source photos (runs in a thread: no SQLite here)."""

    def on_skip(s: SkippedInput) -> None:
        print(s.line(), file=sys.stderr, flush=True)

    return build_pool(
        sources_for(cfg),
        cfg.image_dir,
        cfg.validation,
        dup_radius=cfg.dup_radius,
        related_radius=cfg.related_radius,
        on_skip=on_skip,
    )


async def open_pool(cfg: RunConfig, store: ItemStore, summary: RunSummary) -> PhotoPool:
    """The run's PhotoPool; skipped inputs recorded for `mifg stats`."""
    # in a thread, so that Ctrl-C is answered while a big folder is validated
    with ThreadPoolExecutor(max_workers=1) as ex:
        pool, report = await asyncio.get_running_loop().run_in_executor(ex, _make_pool, cfg)
    store.set_skipped(report.skipped)
    store.set_meta(pool_photos=report.kept, pool_considered=report.considered, related_pairs=report.related_pairs)
    summary.skipped_inputs = len(report.skipped)
    summary.pool_photos = report.kept
    if not pool.photos:
        raise InputError(
            f"no usable photos in {cfg.source} ({report.considered} considered, {len(report.skipped)} skipped)"
        )
    return pool
