"""The `mifg` command line: one typer app; each room registers its own subcommands.

Every user error, whether typer/click finds it (unknown option or command, missing or bad value) or a
command raises it (`schemas.errors.MifgError`), prints one line `mifg: error: <message>` on stderr
and exits 2, with no traceback. Other exit codes: 0 done, 1 a run stopped on failures (see
`mifg generate`) or on a full disk (one line naming the file and what was kept), 130 / 143
interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import typer

from schemas.errors import ConfigError, MifgError

USAGE_EXIT = 2  # the exit code of every user error
PROG = "mifg"

app = typer.Typer(
    name=PROG,
    help="Multi-image fine-grained QA: generate, review, export, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every subcommand
)


def package_version() -> str:
    """The installed distribution's version, else the one in pyproject.toml (a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mifg")
    except PackageNotFoundError:
        pass
    try:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text("utf-8")
    except OSError:
        return "unknown"
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return m.group(1) if m else "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the mifg version and exit."
    ),
) -> None:
    """Multi-image fine-grained QA: generate, review, export, train."""
    # An explicit callback keeps subcommand names required even when only one room is installed.


# Each module defines `register(app)`; heavy imports (torch, gradio) stay inside the commands.
_ROOMS = [
    "pipeline.cli_generate",  # generate, stats, merge
    "annotation_ui.cli",  # review, review-report, verified
    "pipeline.export.cli",  # export
    "rl.cli",  # train, eval
]

for _mod in _ROOMS:
    try:
        importlib.import_module(_mod).register(app)
    except ModuleNotFoundError as _e:  # a room not installed/built yet must not break the others
        if _e.name is None or not _mod.startswith(_e.name):
            raise

# Commands whose output is a directory: (command, parameter name). An existing regular file there is
# refused up front, before the command creates anything (`mifg eval --out` / `train-plot --out` are files).
_OUT_DIRS = {
    ("generate", "out"),
    ("merge", "out"),
    ("verified", "out"),
    ("review-report", "out"),
    ("export", "out"),
    ("train", "out"),
    ("train-demo", "out"),
    ("rl-demo-data", "out"),
}

# Exceptions typer/click raise for a mistake on the command line. Matched by class name, since typer
# >= 0.29 vendors click (`typer._click`) and its classes are not `click.exceptions.*`.
_USAGE_ERRORS = {
    "ClickException",
    "UsageError",
    "BadParameter",
    "NoSuchOption",
    "MissingParameter",
    "BadOptionUsage",
    "BadArgumentUsage",
    "FileError",
}


def _kinds(e: BaseException) -> set[str]:
    return {c.__name__ for c in type(e).__mro__}


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _error(message: str) -> int:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return USAGE_EXIT


def _usage_message(e: Exception) -> str:
    message = e.format_message()  # type: ignore[attr-defined]
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", None)
    if "UsageError" in _kinds(e) and path:
        message = f"{message.rstrip()} (see '{path} --help')"
    return message


def _refuse_file_out(callback: Any, param: str, label: str) -> Any:
    def checked(*args: Any, **kwargs: Any) -> Any:
        value = kwargs.get(param)
        if value is not None and Path(value).is_file():
            raise ConfigError(f"{label} {value}: is a file; give a directory")
        return callback(*args, **kwargs)

    return checked


def _hide_flag_types() -> None:
    """typer >= 0.29 shows flags as `--resume <bool>` in --help; a flag takes no value, so show none."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(original, "_mifg_flag_aware", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._mifg_flag_aware = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


def build_command() -> Any:
    """The Click command of `app` (built per call: tests may change `app`), with the --out checks."""
    _hide_flag_types()
    command = typer.main.get_command(app)
    for name, sub in getattr(command, "commands", {}).items():
        for p in sub.params:
            if (name, p.name) in _OUT_DIRS and sub.callback is not None:
                label = max(p.opts, key=len) if p.param_type_name == "option" else p.name.upper()
                sub.callback = _refuse_file_out(sub.callback, p.name, label)
    return command


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; a user error prints `mifg: error: ...` (one line) and returns 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        args = ["--help"]  # plain `mifg`: the help, exit 0
    try:
        # without standalone mode click *returns* the code of `typer.Exit(n)` and raises usage errors
        rc = build_command().main(args=args, prog_name=PROG, standalone_mode=False)
    except MifgError as e:
        print(f"{PROG}: error: {_one_line(str(e)) or type(e).__name__}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        kinds = _kinds(e)
        if "NoArgsIsHelpError" in kinds:  # a command group run bare (`mifg review-users`): its help
            text = e.format_message()  # type: ignore[attr-defined]
            if text.strip():  # typer's rich help is printed already, the plain one is the message
                typer.echo(text)
            return 0
        if "Exit" in kinds and isinstance(getattr(e, "exit_code", None), int):
            return e.exit_code  # type: ignore[attr-defined]
        if "Abort" in kinds:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        if kinds & _USAGE_ERRORS and hasattr(e, "format_message"):
            return _error(_usage_message(e))
        from pipeline.write_guard import disk_full_message, is_disk_full

        if is_disk_full(e):  # a writer without its own message: still one line, files written before kept
            _error(f"{disk_full_message(e)}; files finished before this one are kept")
            return 1
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
