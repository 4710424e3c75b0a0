"""`mifg export`: verified samples to hf / verl / trl / vlmevalkit / lmms-eval."""

from __future__ import annotations

from pathlib import Path

import typer

FORMAT_NAMES = ["hf", "verl", "trl", "vlmevalkit", "lmms-eval"]


def export(
    store: Path = typer.Argument(..., help="VERIFIED_DIR written by `mifg verified` (any mifg shard store works)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the export to (replaced atomically)."),
    fmt: str = typer.Option("hf", "--format", "-f", help="One of: " + ", ".join(FORMAT_NAMES) + "."),
    test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of samples in the test split, [0, 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split; same input + seed = same bytes."),
    contamination_dir: Path | None = typer.Option(
        None, "--contamination-dir", help="Benchmark image folder: samples with a near-duplicate image are excluded."
    ),
    contamination_threshold: int = typer.Option(
        8, "--contamination-threshold", help="Max Hamming distance (of 64 phash bits) that counts as a hit."
    ),
    include_unverified: bool = typer.Option(
        False, "--include-unverified", help="Also export unreviewed candidates (never rejected samples)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    push_to_hub: str | None = typer.Option(
        None, "--push-to-hub", help="Also upload to this Hub dataset repo (user/name); token from HF_TOKEN."
    ),
    private: bool = typer.Option(False, "--private", help="Create the Hub repo as private."),
) -> None:
    """Export verified samples with leakage-free train/test splits (grouped by source photo)."""
    from pipeline.export.exporter import ExportConfig, run_export

    cfg = ExportConfig(
        store=store,
        out=out,
        fmt=fmt,
        test_fraction=test_fraction,
        seed=seed,
        contamination_dir=contamination_dir,
        contamination_threshold=contamination_threshold,
        include_unverified=include_unverified,
        overwrite=overwrite,
        push_to_hub=push_to_hub,
        private=private,
    )
    result = run_export(cfg)
    typer.echo(result.summary())


def register(app: typer.Typer) -> None:
    """Add `mifg export` to the app."""
    app.command("export")(export)
