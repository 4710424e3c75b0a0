"""`RayExecutor`: a whole run as N shards on Ray, one Ray task per `--shard i/N`, then merged.

Where `LocalExecutor` says where one *item* runs, this says where one *shard* runs, as datatrove's
Ray executor adds only how ranks are launched: each shard is the ordinary single-machine generation
of its part of the plan (`pipeline.executors.ray_shard`), writing its own tag into the same RUN_DIR.
- Ray retries a shard whose worker died (`max_retries`); the retry resumes from that shard's record.
  An error the shard raised (a bad input, a full disk) is not retried: it is the job's error.
- One `BucketActor` per endpoint is the rate limit of every shard (`requests_per_s`,
  `tokens_per_min` of the openai backend hold for the job, not per shard).
- The driver prints one progress line per update from the `ProgressBoard` actor; Ctrl-C (or
  SIGTERM) asks every shard to stop as a local run would (finish what is in flight, flush); a second
  one kills them. When every shard is done the run is merged into RUN_DIR/merged with `mifg merge`'s
  own code (`pipeline.merge.merge_runs`).
Ray is an optional extra: this module imports it only when a job starts (`require_ray`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pipeline.executors.ray_progress import JobSummary, ProgressBoard, Ticker, progress_line, recorded
from pipeline.executors.ray_rate_limit import BucketActor, endpoints_of
from pipeline.executors.ray_shard import run_shard
from pipeline.merge import merge_runs
from pipeline.run_config import RunConfig, check_or_write_run_json
from schemas.errors import ConfigError, MifgError

MERGED = "merged"  # RUN_DIR/merged: the merged store of a finished job
SECRETS = ("OPENAI_API_KEY", "MIFG_VERIFIER_API_KEY")  # passed to the workers of a cluster we connect to


def require_ray() -> Any:
    """The `ray` module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, an optional extra: pip install 'mifg[ray]'") from None
    return ray


class _Terminated(Exception):
    """SIGTERM reached the driver (handled like Ctrl-C, exit 143)."""


class RayExecutor:
    """Runs a `RunConfig` as `shards` Ray tasks (a local Ray instance, or the cluster at `address`)."""

    def __init__(
        self,
        shards: int,
        *,
        address: str | None = None,
        cpus: int | None = None,
        progress: bool = True,
        interval: float = 2.0,
        max_retries: int = 3,
    ) -> None:
        if shards < 1:
            raise ConfigError(f"--shards {shards}: give at least 1")
        if cpus is not None and cpus < 1:
            raise ConfigError(f"--ray-cpus {cpus}: give at least 1")
        self.shards = shards
        self.address = address
        self.cpus = cpus
        self.progress = progress
        self.interval = interval
        self.max_retries = max_retries

    def plan(self, cfg: RunConfig) -> list[RunConfig]:
        """The shard configs: `--shard i/N` of `cfg`, one process each, a budget share each."""
        options = dict(cfg.agent_options)
        if options.get("max_cost") is not None:  # a budget is for the job: each shard spends its share
            options["max_cost"] = options["max_cost"] / self.shards
        if options.get("max_total_tokens") is not None:
            options["max_total_tokens"] = math.ceil(options["max_total_tokens"] / self.shards)
        return [
            replace(cfg, shard_index=i, shard_count=self.shards, workers=1, agent_options=options)
            for i in range(self.shards)
        ]

    def execute(self, cfg: RunConfig) -> JobSummary:
        """Run (or resume) every shard of `cfg` on Ray, merge them when all are done; the job's summary."""
        ray = require_ray()
        t0 = time.perf_counter()
        shards = self.plan(cfg)
        check_or_write_run_json(shards[0])  # once, before the shards race to write it (and refuse a mismatch)
        job = JobSummary(out=cfg.out, shards=shards, before={c.tag: set(recorded(c)) for c in shards})
        started_ray = self._connect(ray)
        actors: list[Any] = []
        errors: list[tuple[str, MifgError]] = []
        try:
            limiters = self._limiters(ray, cfg, actors)
            planned = {c.tag: len(range(c.shard_index, c.n, c.shard_count)) for c in shards}
            board = ray.remote(num_cpus=0)(ProgressBoard).remote(planned)
            actors.append(board)
            task = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(run_shard)
            t_submit = time.perf_counter()
            refs = {task.options(name=f"mifg-shard-{c.tag}").remote(c, limiters, board): c.tag for c in shards}
            errors = self._wait(ray, refs, board, job)
            job.seconds = time.perf_counter() - t_submit
            job.attempts = ray.get(board.snapshot.remote())["attempts"]
            for url, actor in limiters.items():
                job.rate_limits[url] = ray.get(actor.stats.remote())
        finally:
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
            if started_ray:
                ray.shutdown()
        if errors:  # a shard's own error (the same for every shard, as a rule): the job's, one line
            tag, e = errors[0]
            raise type(e)(f"shard {tag}: {e}")
        self._merge(job)
        job.total_seconds = time.perf_counter() - t0
        return job

    # ------------------------------------------------------------------ set-up

    def _connect(self, ray: Any) -> bool:
        """Connect to the cluster at `address`, or start a local instance; True if this call started one."""
        if ray.is_initialized():  # e.g. a notebook or a test that started Ray itself
            return False
        import logging

        common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if self.address:
            env = {k: os.environ[k] for k in SECRETS if os.environ.get(k)}
            try:
                ray.init(address=self.address, runtime_env={"env_vars": env} if env else None, **common)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ConfigError(
                    f"--ray-address {self.address}: no Ray cluster there ({' '.join(str(e).split())[:160]});"
                    " start one with `ray start --head`"
                ) from None
            return True
        cpus = self.cpus or min(self.shards, os.cpu_count() or 1)
        # the shards return small summaries: a small object store is plenty
        ray.init(num_cpus=cpus, object_store_memory=256 * 2**20, **common)
        return True

    def _limiters(self, ray: Any, cfg: RunConfig, actors: list[Any]) -> dict[str, Any]:
        """One shared bucket actor per endpoint when the openai backend has a rate limit, else none."""
        o = cfg.agent_options
        if cfg.backend != "openai" or not (o.get("requests_per_s") or o.get("tokens_per_min")):
            return {}
        bucket = ray.remote(num_cpus=0, max_restarts=3, max_task_retries=3)(BucketActor)
        limiters = {}
        for url in endpoints_of(cfg.base_url, cfg.model, o):
            actor = bucket.options(name=f"mifg-rate-limit:{cfg.run_id}:{url}", namespace="mifg").remote(
                o.get("requests_per_s"), o.get("tokens_per_min"), o.get("burst")
            )
            actors.append(actor)
            limiters[url] = actor
        return limiters

    # ------------------------------------------------------------------ running

    def _wait(self, ray: Any, refs: dict[Any, str], board: Any, job: JobSummary) -> list[tuple[str, MifgError]]:
        """Wait for every shard, printing progress; returns the shards' own errors."""
        ticker = Ticker(self.progress, self.interval)
        t0, pending, errors, interrupts = time.perf_counter(), dict(refs), [], 0
        with self._term_as_interrupt():
            while pending:
                try:
                    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=self.interval)
                    for ref in ready:
                        self._collect(ray, ref, pending.pop(ref), job, errors)
                    snap = ray.get(board.snapshot.remote())
                    ticker.show(progress_line(snap, len(refs), len(refs) - len(pending), time.perf_counter() - t0))
                except (KeyboardInterrupt, _Terminated) as e:
                    interrupts += 1
                    job.exit_code = 143 if isinstance(e, _Terminated) else 130
                    if interrupts == 1:
                        print(
                            "\nmifg: stopping: the shards finish the items in flight (interrupt again to kill them)",
                            file=sys.stderr,
                            flush=True,
                        )
                        board.request_stop.remote()
                    else:
                        for ref in pending:
                            ray.cancel(ref, force=True)
        return errors

    def _collect(self, ray: Any, ref: Any, tag: str, job: JobSummary, errors: list) -> None:
        """Keep a finished shard's summary, its own error, or why it ended without either."""
        try:
            s = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, MifgError):
                errors.append((tag, cause))
            else:
                job.problems.append(
                    f"{tag} failed: {type(cause).__name__}: {_one_line(cause)}; see {job.out}/logs/{tag}.log"
                )
                job.exit_code = job.exit_code or 1
            return
        except ray.exceptions.RayError as e:  # its worker died more often than Ray retries, or it was killed
            job.problems.append(f"{tag} ended: {type(e).__name__}: {_one_line(e)}")
            job.exit_code = job.exit_code or 1
            return
        job.results[tag] = s
        if s.exit_code and not job.exit_code:
            job.exit_code = s.exit_code

    @contextlib.contextmanager
    def _term_as_interrupt(self) -> Iterator[None]:
        """SIGTERM raises `_Terminated` in the wait loop (main thread only), like Ctrl-C does KeyboardInterrupt."""

        def on_term(signum: int, frame: Any) -> None:
            raise _Terminated()

        try:
            previous = signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    # ------------------------------------------------------------------ merging

    def _merge(self, job: JobSummary) -> None:
        """Merge RUN_DIR into RUN_DIR/merged (replacing an older merge) once every shard is done."""
        if job.exit_code or job.problems or len(job.results) < len(job.shards):
            job.merge_skipped = "not every shard finished"
            return
        target = job.out / MERGED
        aside = job.out / f".{MERGED}.previous"
        shutil.rmtree(aside, ignore_errors=True)
        if target.exists():
            os.replace(target, aside)  # kept until the new merge is in place
        try:
            job.merge = merge_runs([job.out], target)
        except BaseException:
            if aside.exists() and not target.exists():
                os.replace(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)


def _one_line(e: object, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
