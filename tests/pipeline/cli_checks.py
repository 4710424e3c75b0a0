"""What every CLI test checks of a refused command: exit 2, one line, `mifg: error: ...`."""

from __future__ import annotations

from pipeline.cli import main


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run `mifg argv`; assert it exits 2 with one `mifg: error:` line holding every needle; return it."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.count("\n") == 0 and err.startswith("mifg: error: "), err
    for needle in needles:
        assert needle in err, err
    return err
