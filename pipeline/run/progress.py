"""The progress bar of `mifg generate` on stderr, fed from the run's `RunSummary`."""

from __future__ import annotations

import time

from pipeline.run.summary import RunSummary


class ProgressBar:
    """A rich progress bar on stderr (counts of accepted / rejected / failed and the rate)."""

    def __init__(self, total: int, summary: RunSummary, enabled: bool) -> None:
        self.summary = summary
        self.enabled = enabled
        self.total = total
        if enabled:
            # imported only when a bar is shown (not with --no-progress)
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]generate[/] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self.progress.start()
            s = self.summary
            self.task = self.progress.add_task(s.tag, total=self.total, completed=s.resumed_done, counts="", rate="")
            self.t0 = time.perf_counter()
        return self

    def advance(self) -> None:
        """One more item finished: move the bar, refresh the counts and the rate."""
        if not self.enabled:
            return
        s = self.summary
        rate = s.finished / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(
            self.task,
            advance=1,
            counts=f"acc {s.accepted} rej {s.rejected} fail {s.failed}",
            rate=f"{rate:.1f}/s",
        )

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()
