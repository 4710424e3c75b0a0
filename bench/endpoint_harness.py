"""Shared parts of the endpoint benchmarks: a local model server in a subprocess, a photo folder, `mifg generate`.

Used by bench_generate_endpoint.py, bench_endpoint_faults.py and tests/reliability. The server is
`python -m agents.llm.local_server` (real HTTP, its own process so its CPU is not ours); the job is
the real CLI in a subprocess, so what is measured is what a user runs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mifg-test-vlm"


PYCACHE = Path(tempfile.gettempdir()) / "mifg-bench-pycache"


def env() -> dict[str, str]:
    """The environment of child processes: the repo importable, no proxy for localhost.

    Bytecode goes to a cache outside the repo (PYTHONPYCACHEPREFIX): where PYTHONDONTWRITEBYTECODE is
    set, every child would otherwise compile all its imports again (~10 s of CPU per start here),
    which would swamp the restart loops of the crash benchmarks.
    """
    e = {**os.environ, "PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return e


class ServerProcess:
    """`python -m agents.llm.local_server` on a free port; counters and request times over HTTP."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "agents.llm.local_server", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env())
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise SystemExit(f"local server did not start: {line!r}")
        self.base_url = next(w for w in line.split() if w.startswith("http://"))

    def stats(self) -> dict:
        """The server's /_mifg/stats: counters and the arrival time of every chat request."""
        url = self.base_url.removesuffix("/v1") + "/_mifg/stats"
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def close(self) -> None:
        """Stop the server."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_photos(root: Path, n: int = 16, size: tuple[int, int] = (800, 600)) -> Path:
    """`n` island photos (the natural edits find objects on them), half on a blue sea, half on red ground."""
    from tests.agents_llm.conftest import RED, SEA, island_photo

    root.mkdir(parents=True, exist_ok=True)
    for seed in range(n):
        island_photo(seed, SEA if seed % 2 else RED, size).save(root / f"p{seed:02d}.png")
    return root


@dataclass
class JobResult:
    """One `mifg generate` subprocess: exit status, output, CPU and the runner's own summary."""

    rc: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system of the child (whole process, start-up included)
    summary: dict  # the runner's last_summary (loop_seconds, cpu_seconds, counts)


def without_file_override(cmd: list[str]) -> list[str] | None:
    """`cmd` run by root *without* the capabilities that let root read any file; None if not possible here.

    Root reads a chmod-000 file regardless of its mode; dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (util-linux `setpriv`) makes file modes apply, while the process keeps
    root's uid and so can still run the interpreter under /root. Not root: `cmd` as is.
    """
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]


def mifg(*args: str, timeout: float = 900, honour_file_modes: bool = False) -> JobResult:
    """Run `python -m pipeline.cli ARGS` and collect its figures (`honour_file_modes`: even as root)."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    if honour_file_modes:
        cmd = without_file_override(cmd) or cmd
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # cumulative over waited children: diffed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    out_dir = Path(args[args.index("--out") + 1]) if "--out" in args else None
    return JobResult(proc.returncode, out, err, wall, cpu, last_summary(out_dir))


def last_summary(out: Path | None, tag: str = "main") -> dict:
    """The runner's summary of its last invocation, kept in the item record's meta table."""
    if out is None or not (out / "state" / f"{tag}.sqlite").exists():
        return {}
    with sqlite3.connect(out / "state" / f"{tag}.sqlite") as c:
        try:
            rows = dict(c.execute("SELECT k, v FROM meta").fetchall())
        except sqlite3.Error:
            return {}
    raw = rows.get("last_summary")
    return json.loads(raw) if raw else {}


def write_json(name: str, figures: dict) -> Path:
    """bench/results/<name>.json"""
    path = ROOT / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=False) + "\n")
    return path


def machine() -> dict:
    """Where the figures were measured (a shared machine slows wall-clock figures, not CPU per call)."""
    return {
        "cpu_cores": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }
