"""What one Ray task runs: the ordinary single-machine generation of one `--shard i/N`, into the shared RUN_DIR.

A shard is the plain `LocalExecutor` run of its part of the plan, with its own tag, record and
shard files, so a shard that Ray runs again after its worker died resumes from its own record, just
as `mifg generate --shard i/N` run again would. Three things differ from a local run, all from the
driver (`pipeline.executors.ray_executor`):
- the model client of each endpoint takes its rate limit from the job's shared bucket actor;
- each finished item is reported to the job's progress board (the driver prints progress), and the
  board's stop flag stops the shard the way Ctrl-C stops a local run (finish what is in flight, flush);
- what the shard prints goes to RUN_DIR/logs/<tag>.log, not to the driver's terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from agents.base import AgentSet, PhotoPool
from agents.llm.rate_limit import share_limits
from pipeline.executors.local import LocalExecutor
from pipeline.executors.ray_rate_limit import SharedLimiter
from pipeline.graph import GenState
from pipeline.run.run import Run
from pipeline.run.summary import RunSummary
from pipeline.run_config import RunConfig

LOGS = "logs"  # RUN_DIR/logs/<tag>.log: what each shard printed, over all its attempts


class ShardExecutor(LocalExecutor):
    """`LocalExecutor` that reports each finished item to the job's board and stops when the board says so."""

    def __init__(self, board: Any, *, poll_s: float = 1.0) -> None:
        super().__init__(None, progress=False)
        self.board = board
        self.poll_s = poll_s
        self.watcher: asyncio.Task | None = None

    def start(self, run: Run, pool: PhotoPool) -> None:
        """Report the items finished by earlier attempts, and start watching the board's stop flag."""
        super().start(run, pool)  # nothing: a shard runs its items in this process
        done = run.record.store.done()
        self.board.resumed.remote(run.cfg.tag, {idx: outcome for idx, (outcome, _) in done.items()})
        self.watcher = asyncio.get_running_loop().create_task(self._watch(run))

    async def _watch(self, run: Run) -> None:
        while True:
            if await self.board.stopping.remote():
                self._on_signal(run, signal.SIGINT)  # as Ctrl-C: finish the items in flight, flush
                return
            await asyncio.sleep(self.poll_s)

    async def run_one(self, run: Run, idx: int) -> tuple[GenState, float]:
        """Run item `idx` in this process and tell the board how it ended."""
        state, seconds = await super().run_one(run, idx)
        self.board.finished.remote(run.cfg.tag, idx, state.get("outcome", "failed"))
        return state, seconds

    def shutdown(self) -> None:
        """Stop watching the board."""
        if self.watcher is not None:
            self.watcher.cancel()
        super().shutdown()


def run_shard(cfg: RunConfig, limiters: dict[str, Any], board: Any) -> RunSummary:
    """Run (or resume) the shard `cfg.tag` of a job and return its summary (the body of the Ray task)."""
    from pipeline.cli_generate import _build_agents  # the same agents `mifg generate` builds (and checks)

    log_dir = cfg.out / LOGS
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{cfg.tag}.log", "a", encoding="utf-8", buffering=1) as log, _own_signals():
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            print(f"--- shard {cfg.tag}: attempt in process {os.getpid()}", file=sys.stderr)
            board.started.remote(cfg.tag, os.getpid())
            shared = {url: SharedLimiter(actor) for url, actor in limiters.items()}
            share_limits(shared.get)
            try:
                agents, _ = _build_agents(cfg.backend, cfg.base_url, cfg.model, dict(cfg.agent_options))
                summary = asyncio.run(_run(cfg, agents, board))
            except BaseException:
                traceback.print_exc()  # into the shard's log; Ray reports the error to the driver
                raise
            finally:
                share_limits(None)  # this worker process may run another job's task next
            print(f"--- shard {cfg.tag}: exit {summary.exit_code}", file=sys.stderr)
            return summary


async def _run(cfg: RunConfig, agents: AgentSet, board: Any) -> RunSummary:
    # Awaited, never `ray.get`: a task blocked in `ray.get` lends its CPU to another task, and more
    # shards than CPUs would run at once.
    try:
        if await board.stopping.remote():  # the job was stopped before this shard began: run nothing
            return RunSummary(out=cfg.out, tag=cfg.tag, exit_code=130, stopped_reason="interrupted")
        return await ShardExecutor(board).execute(Run(cfg, agents, None))
    finally:
        if agents.backend == "openai":
            from agents.llm import aclose_agents

            await aclose_agents(agents)


@contextlib.contextmanager
def _own_signals() -> Iterator[None]:
    """Give back the Ray worker's own SIGINT/SIGTERM handlers after the run (asyncio resets them to defaults)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            with contextlib.suppress(ValueError, TypeError):  # not the main thread / not a Python handler
                signal.signal(sig, handler)
