"""The `mifg` command line: one typer app; each room registers its own subcommands."""

from __future__ import annotations

import importlib
import sys

import click
import typer

from schemas.errors import MifgError

app = typer.Typer(
    name="mifg",
    help="Multi-image fine-grained QA: generate, review, export, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Multi-image fine-grained QA: generate, review, export, train."""
    # An explicit callback keeps subcommand names required even when only one room is installed.


# Each module defines `register(app)`; heavy imports (torch, gradio) stay inside the commands.
_ROOMS = [
    "pipeline.cli_generate",  # generate, stats, merge
    "annotation_ui.cli",  # review, verified
    "pipeline.export.cli",  # export
    "rl.cli",  # train, eval
]

for _mod in _ROOMS:
    try:
        importlib.import_module(_mod).register(app)
    except ModuleNotFoundError as _e:  # a room not installed/built yet must not break the others
        if _e.name is None or not _mod.startswith(_e.name):
            raise


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors print one line and exit non-zero, no traceback."""
    try:
        # without standalone mode click *returns* the code of `typer.Exit(n)` instead of raising it
        rc = app(args=argv, standalone_mode=False)
    except MifgError as e:
        print(f"mifg: error: {e}", file=sys.stderr)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("mifg: interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
