"""Every mistake on the `mifg` command line: one line `mifg: error: ...` on stderr, exit 2, no traceback.

The real entry point runs in a subprocess (`python -m pipeline.cli`), so what typer/click print on
their own (usage blocks, tracebacks from exceptions they raise) would show here; in-process tests of
`main()` would not see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# (id, argv, a piece of the error line); {out} a directory that does not exist yet, {file} a regular
# file, {dir} an existing empty directory, {users} a users file that does not exist yet.
ERRORS = [
    ("typo-option", ["generate", "--concurency", "4"], "--concurency"),
    ("typo-command", ["genrate"], "'genrate'"),
    ("typo-root-option", ["--verbose"], "--verbose"),
    ("missing-required-option", ["generate"], "--out"),
    ("option-without-value", ["generate", "--out"], "--out"),
    ("missing-argument", ["stats"], "run_dir"),
    ("bad-int", ["generate", "--out", "{out}", "-n", "abc"], "-n"),
    ("zero-items", ["generate", "--out", "{out}", "-n", "0"], "-n 0"),
    ("negative-items", ["generate", "--out", "{out}", "-n", "-3"], "-n -3"),
    ("out-is-a-file", ["generate", "--out", "{file}", "-n", "2"], "is a file"),
    ("export-out-is-a-file", ["export", "{dir}", "--out", "{file}"], "is a file"),
    # -o is --agent-option in generate; export takes --out only, so the short flag never means two things
    ("export-short-o", ["export", "{dir}", "-o", "{out}"], "-o"),
    ("review-overlap-0", ["review", "{dir}", "--open", "--overlap", "0"], "--overlap"),
    ("review-users-no-terminal", ["review-users", "add", "{users}", "bob"], "--password-stdin"),
    ("project-error", ["stats", "{out}"], "no such run directory"),
    ("project-error-config", ["generate", "--out", "{out}", "--backend", "nope"], "offline or openai"),
]

# (id, argv, a piece of stdout)
OK = [
    ("bare", [], "Usage: mifg"),
    ("help", ["--help"], "Usage: mifg"),
    ("h", ["-h"], "Usage: mifg"),
    ("command-h", ["generate", "-h"], "--concurrency"),
    ("group-bare", ["review-users"], "Usage: mifg review-users"),
    ("train-help", ["train", "--help"], "--seed"),
    ("version", ["--version"], "mifg "),
]


def _fill(argv: list[str], paths: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *argv],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,  # no terminal: a password prompt must not wait or fall over
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """All cases, two subprocesses at a time (each pays the CLI's import time once)."""
    root = tmp_path_factory.mktemp("cli")
    paths = {"out": root / "new-run", "file": root / "a-file.txt", "dir": root / "empty", "users": root / "users.toml"}
    paths["file"].write_text("not a directory\n")
    paths["dir"].mkdir()
    cases = {name: _fill(argv, paths) for name, argv, _ in ERRORS + OK}
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(cases, pool.map(_run, cases.values()), strict=True))
    return done, paths


@pytest.mark.parametrize(("name", "needle"), [(n, s) for n, _, s in ERRORS], ids=[n for n, _, _ in ERRORS])
def test_user_error_is_one_line_and_exit_2(results, name, needle):
    done, paths = results
    p = done[name]
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("mifg: error: "), p.stderr
    assert needle.lower() in lines[0].lower(), p.stderr
    assert p.stdout == "", p.stdout  # no usage block, no help text
    assert not paths["out"].exists()  # nothing refused created the run directory
    assert not paths["users"].exists()


@pytest.mark.parametrize(("name", "needle"), [(n, s) for n, _, s in OK], ids=[n for n, _, _ in OK])
def test_help_and_version_exit_0(results, name, needle):
    p = results[0][name]
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert p.stderr == "", p.stderr
    assert needle in p.stdout, p.stdout


def test_h_is_help_and_bare_mifg_shows_it(results):
    done = results[0]
    assert done["h"].stdout == done["help"].stdout == done["bare"].stdout


def test_version_line(results):
    p = results[0]["version"]
    assert (p.returncode, p.stdout) == (0, f"mifg {version('mifg')}\n")


def test_help_shows_no_bool_metavar_and_seed_is_explained(results):
    done = results[0]
    for name in ("help", "command-h", "train-help"):
        assert "<bool>" not in done[name].stdout, done[name].stdout
    seed = [line for line in done["train-help"].stdout.splitlines() if "--seed" in line]
    assert seed and "seed" in seed[0].split("--seed", 1)[1].lower(), seed
