"""`mifg generate`, `mifg stats` and `mifg merge`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from schemas.errors import ConfigError


def _build_agents(backend: str, base_url: str, model: str, options: dict):
    """(AgentSet, factory for worker processes or None) of a backend; openai is checked against its endpoint first."""
    if backend == "offline":
        from agents.offline import build_offline_agents

        return build_offline_agents(options), build_offline_agents
    if backend == "openai":
        from agents.llm import LLMConfig, build_llm_agents, check_endpoint, verifier_endpoint

        key = os.environ.get("OPENAI_API_KEY")
        agents = build_llm_agents(base_url, model, key, options)  # a bad -o option fails here, before any call
        check_endpoint(base_url, model, key)  # one clear EndpointError before any work
        v_url, v_model, v_key = verifier_endpoint(base_url, model, key, LLMConfig.from_options(options))
        if (v_url, v_model) != (base_url, model):
            check_endpoint(v_url, v_model, v_key)  # the verifier's own endpoint, just as early
        return agents, None  # I/O-bound: one process, many in flight
    raise ConfigError(f"--backend {backend!r}: choose offline or openai")


def register(app: typer.Typer) -> None:
    """Add generate, stats and merge to the `mifg` app."""

    @app.command()
    def generate(
        out: str = typer.Option(
            ...,
            "--out",
            help="Run directory (created; re-run the same command to resume), or a store URL: s3://bucket/run,"
            " gs://..., abfs://..., hdfs://..., any fsspec URL (worked on in --work-dir, uploaded shard by shard).",
        ),
        work_dir: Path | None = typer.Option(
            None,
            "--work-dir",
            help="--out URL: local working dir (item record, image cache); default ~/.cache/mifg/remote/<url>-<hash>.",
        ),
        images: Path | None = typer.Option(
            None,
            "--images",
            help="Folder of photos (recursive; hidden folders skipped, hidden files used). Photos under a folder"
            " named after a domain (nature/, urban/, document/...) get it; other folders give 'other' (listed once).",
        ),
        follow_links: bool = typer.Option(
            False, "--follow-links", help="--images: also walk folder symlinks that point outside the folder."
        ),
        hf_dataset: Path | None = typer.Option(
            None, "--hf-dataset", help="A `datasets` image dataset: a save_to_disk folder or Parquet file(s)."
        ),
        image_column: str = typer.Option("image", "--image-column", help="Image column of --hf-dataset."),
        group_column: str | None = typer.Option(
            None,
            "--group-column",
            help="--hf-dataset: a column whose equal values mark related photos (same scene, object, burst);"
            " the openai backend builds sets of different photos from these groups.",
        ),
        n: int = typer.Option(2000, "-n", "--n", help="Work items (candidate samples) in the whole run."),
        backend: str = typer.Option("offline", "--backend", help="offline (procedural, no model) or openai."),
        base_url: str | None = typer.Option(
            None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (env OPENAI_BASE_URL)."
        ),
        model: str | None = typer.Option(None, "--model", help="Model name served by the endpoint."),
        concurrency: int = typer.Option(32, "--concurrency", help="Samples in flight at once."),
        workers: int | None = typer.Option(
            None, "--workers", help="Processes running offline agents (CPU-bound); default: CPU cores, at most 8."
        ),
        shard: str | None = typer.Option(None, "--shard", help="i/N: run the items with index % N == i."),
        executor: str = typer.Option(
            "local",
            "--executor",
            help="local (this machine) or ray: --shards N Ray tasks, retried when a worker dies, merged at the end"
            " (needs the optional ray extra).",
        ),
        shards: int | None = typer.Option(
            None, "--shards", help="--executor ray: shards of the run (each a Ray task, tag s{i}of{N}); default 4."
        ),
        ray_address: str | None = typer.Option(
            None,
            "--ray-address",
            help="--executor ray: a running cluster (auto or HOST:PORT); default: start one here.",
        ),
        ray_cpus: int | None = typer.Option(
            None,
            "--ray-cpus",
            help="--executor ray: CPUs of the Ray instance started here (default: min(shards, cores)).",
        ),
        seed: int = typer.Option(0, "--seed", help="Run seed; item seeds derive from it and the item index."),
        max_revisions: int = typer.Option(2, "--max-revisions", help="Critic -> writer revisions per sample."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="On resume, run failed items again."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (logs, CI)."),
        max_side: int = typer.Option(
            4096,
            "--max-side",
            help="Downsize larger photos to this longest side (native resolution below it); under 1024 the"
            " bundled 1200x900 earth tiles are left out of the default photos.",
        ),
        max_pixels: int = typer.Option(
            50_000_000,  # ValidationConfig's default (not imported here: PIL would slow down `mifg --help`)
            "--max-pixels",
            help="Skip photos with more pixels than this (decompression-bomb guard, read from the header"
            " before decoding).",
        ),
        verifier_model: str | None = typer.Option(
            None, "--verifier-model", help="openai: another model casts the verifier's blind votes."
        ),
        verifier_base_url: str | None = typer.Option(
            None,
            "--verifier-base-url",
            help="openai: the verifier's own endpoint (its key from env MIFG_VERIFIER_API_KEY).",
        ),
        max_cost: float | None = typer.Option(
            None, "--max-cost", help="openai: stop cleanly once this invocation spent this many USD (resumable)."
        ),
        max_tokens: int | None = typer.Option(
            None, "--max-tokens", help="openai: stop cleanly once this invocation spent this many tokens (resumable)."
        ),
        agent_option: list[str] = typer.Option(
            [],
            "--agent-option",
            "-o",
            help="KEY=VALUE backend option, repeatable (openai: timeout=30 max_attempts=4 requests_per_s=20 "
            "http_path=sdk; offline: related_rate=0.2). Values are parsed as JSON when they can be.",
        ),
    ) -> None:
        """Generate multi-image fine-grained QA candidates into RUN_DIR (resumable)."""
        if n < 1:
            raise ConfigError(f"-n {n}: give at least 1 work item")
        if max_pixels < 1:
            raise ConfigError(f"--max-pixels {max_pixels}: give a positive number of pixels")
        if follow_links and images is None:
            raise ConfigError("--follow-links applies to --images")
        if group_column is not None and hf_dataset is None:
            raise ConfigError("--group-column applies to --hf-dataset (with --images, sub-folders are the groups)")
        from pipeline.image_validation import ValidationConfig
        from pipeline.run_config import RunConfig, parse_shard
        from pipeline.runner import format_summary
        from pipeline.runner import generate as run

        if images is not None and hf_dataset is not None:
            raise ConfigError("give either --images or --hf-dataset, not both")
        if images is not None:
            source = f"dir:{images.resolve()}"
        elif hf_dataset is not None:
            source = f"hf:{hf_dataset.resolve()}"
        else:
            source = "skimage"
        if backend == "offline" and (base_url or model):
            raise ConfigError("--base-url/--model need --backend openai")
        if backend != "offline" and workers not in (None, 1):
            raise ConfigError(
                "--workers applies to --backend offline; the openai backend runs many requests in one process"
            )
        on_ray = _check_executor(executor, shard, shards, ray_address, ray_cpus, workers)
        from pipeline.remote_store import is_url, resolve_out

        if on_ray and is_url(out):
            raise ConfigError(
                f"--executor ray needs --out on a filesystem every node sees, not {out}: run --shard i/N per"
                f" machine with --out {out} (each uploads its own tag), then mifg merge {out} --out ..."
            )
        local_out, remote_url = resolve_out(out, work_dir)
        if workers is None:
            workers = min(os.cpu_count() or 1, 8) if backend == "offline" and not on_ray else 1
        base_url = base_url or os.environ.get("OPENAI_BASE_URL", "")
        shard_index, shard_count = parse_shard(shard)
        options: dict = parse_agent_options(agent_option)
        llm_flags = {  # flag: (agent option, value)
            "--verifier-model": ("verifier_model", verifier_model),
            "--verifier-base-url": ("verifier_base_url", verifier_base_url),
            "--max-cost": ("max_cost", max_cost),
            "--max-tokens": ("max_total_tokens", max_tokens),
        }
        given = {flag: kv for flag, kv in llm_flags.items() if kv[1] is not None}
        if backend != "openai" and given:
            raise ConfigError(f"{', '.join(given)}: only for --backend openai")
        if backend == "openai":
            options.setdefault("concurrency", concurrency)
            options.update(dict(given.values()))
        cfg = RunConfig(
            out=local_out,
            remote=remote_url,
            n=n,
            seed=seed,
            backend=backend,
            model=model or "",
            base_url=base_url,
            source=source,
            image_column=image_column,
            group_column=group_column or "",
            concurrency=concurrency,
            workers=workers,
            shard_index=shard_index,
            shard_count=shard_count,
            max_revisions=max_revisions,
            retry_failed=retry_failed,
            agent_options=options,
            follow_links=follow_links,
            validation=ValidationConfig(max_side=max_side, max_pixels=max_pixels),
        )
        if on_ray:
            from pipeline.executors.ray_executor import RayExecutor, require_ray
            from pipeline.executors.ray_progress import format_job_summary

            require_ray()  # before the agents are built: the missing extra is the first thing to hear about
            _build_agents(backend, base_url, model or "", options)  # bad options and endpoint: one line, now
            ray_job = RayExecutor(shards or 4, address=ray_address, cpus=ray_cpus, progress=not no_progress)
            job = ray_job.execute(cfg)
            typer.echo(format_job_summary(job))
            if job.exit_code:
                raise typer.Exit(job.exit_code)
            return
        agents, factory = _build_agents(backend, base_url, model or "", options)
        summary = run(cfg, agents, factory=factory, progress=not no_progress)
        typer.echo(format_summary(summary))
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)

    @app.command()
    def stats(
        run_dir: str = typer.Argument(..., help="A run directory (or a merged one), or its store URL (s3://...)."),
        as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    ) -> None:
        """Counts per stage, verdict, task type and domain; acceptance, tokens and cost, failures, skips."""
        from pipeline.remote_store import local_copy
        from pipeline.stats import collect_stats, format_stats

        with local_copy(run_dir) as local:
            st = {**collect_stats(local), "run_dir": run_dir}  # a store URL, not its temporary copy
        typer.echo(json.dumps(st, indent=2, sort_keys=True) if as_json else format_stats(st))

    @app.command()
    def merge(
        run_dirs: list[str] = typer.Argument(
            ..., help="Run directories or store URLs, e.g. the --shard i/N runs of one job."
        ),
        out: str = typer.Option(..., "--out", help="New directory (or store URL) for the merged shards."),
    ) -> None:
        """Merge runs into one store; ids de-duplicated, one consistent manifest."""
        from pipeline.merge import merge_stores

        s = merge_stores(run_dirs, out)
        typer.echo(
            f"merged {len(s.inputs)} runs into {s.out}: {s.accepted} accepted, {s.rejected} rejected samples"
            f" in {s.shards} shards; {s.duplicates} duplicate ids dropped"
        )
        if s.identities_differ:
            typer.echo("note: the inputs were made with different settings (see merge.json)")


def _check_executor(
    executor: str, shard: str | None, shards: int | None, address: str | None, cpus: int | None, workers: int | None
) -> bool:
    """Check the executor flags together; True for `--executor ray`."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor {executor!r}: choose local or ray")
    if executor == "local":
        given = [
            f for f, v in (("--shards", shards), ("--ray-address", address), ("--ray-cpus", cpus)) if v is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --executor ray (or run --shard i/N yourself)")
        return False
    if shard is not None:
        raise ConfigError("--shard i/N runs one shard; with --executor ray give --shards N and Ray runs them all")
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards {shards}: give at least 1")
    if address is not None and cpus is not None:
        raise ConfigError("--ray-cpus sizes the Ray instance started here; a cluster at --ray-address has its own")
    if workers not in (None, 1):
        raise ConfigError("--workers: with --executor ray each shard is one process on one Ray CPU; use more --shards")
    return True


def parse_agent_options(pairs: list[str]) -> dict:
    """`["timeout=30", "http_path=sdk"]` -> `{"timeout": 30, "http_path": "sdk"}` (JSON values when valid)."""
    options: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--agent-option wants KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        options[key.strip()] = value
    return options
