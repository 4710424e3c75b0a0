"""`mifg review`, `mifg review-report`, `mifg review-users` and `mifg verified`: the review room's commands."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from schemas.errors import ConfigError, InputError

if TYPE_CHECKING:
    from annotation_ui.review_store import ReviewStore

QUARANTINE_LINES = 20  # start-up lines naming quarantined rows; the dashboard lists them all


def review(
    run_dir: Path = typer.Argument(..., help="Generation run directory (shards/ + manifests/)."),
    users: Path | None = typer.Option(None, "--users", help="Users file with hashed passwords (see review-users)."),
    overlap: int | None = typer.Option(
        None, "--overlap", min=1, help="Distinct annotators per sample (default: the run's own, 1 for a new run)."
    ),
    change_overlap: bool = typer.Option(
        False, "--change-overlap", help="Allow --overlap to differ from the one the review was started with."
    ),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but localhost needs --users."),
    open_mode: bool = typer.Option(False, "--open", help="No login (localhost only); you review as --annotator."),
    annotator: str = typer.Option("local", "--annotator", help="Your name in --open mode."),
    lease_minutes: float = typer.Option(20.0, "--lease-minutes", help="Minutes before an untouched sample returns."),
    guidelines: Path | None = typer.Option(None, "--guidelines", help="Markdown file replacing the guidelines."),
) -> None:
    """Serve the review app for RUN_DIR: annotators accept, reject, edit or skip candidates in a browser.

    The overlap is fixed when the review starts: reopening the run with another --overlap is refused
    (one line) unless --change-overlap is given; without --overlap the run's own is kept. Rows that
    fail the sample schema are quarantined at import (listed below and in the dashboard), never
    assigned. Sessions are signed with RUN_DIR/review-secret.json (mode 600): a restart keeps
    everyone signed in. A busy port is one line naming --port. Ctrl+C or SIGTERM stops the server
    with the same closing summary, exit 0.
    """
    from annotation_ui.auth import is_loopback, load_users
    from annotation_ui.dashboard import team_stats
    from annotation_ui.review_store import ReviewStore, check_annotator

    if users is None and not open_mode:
        raise ConfigError("give --users FILE (make one with `mifg review-users add FILE NAME`) or --open for localhost")
    if users is not None and open_mode:
        raise ConfigError("--users and --open exclude each other")
    if open_mode and not is_loopback(host):
        raise ConfigError(f"--open serves without login and is for localhost only, not --host {host}")
    table = None
    if users is not None:
        table = load_users(users)
        if not table:
            raise ConfigError(f"{users}: no users; add one with `mifg review-users add {users} NAME`")
    else:
        check_annotator(annotator)
    guide = None
    if guidelines is not None:
        try:
            guide = guidelines.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{guidelines}: cannot read guidelines ({e})") from e
    from annotation_ui.app import check_port_free  # gradio: imported only when serving

    check_port_free(host, port)  # before the shards are imported, not after
    store = ReviewStore(run_dir, overlap=overlap, change_overlap=change_overlap, lease_seconds=lease_minutes * 60)
    try:
        _serve(store, run_dir, table, host, port, annotator if open_mode else None, guide)
    finally:
        stats = team_stats(store)
        print(
            f"stopped; {stats.decisions} decisions stored of {stats.target} wanted, {stats.complete} samples "
            f"complete, {stats.verified} verified (`mifg verified {run_dir} --out DIR` writes them)"
        )
        store.close()


def _serve(
    store: ReviewStore,
    run_dir: Path,
    users: dict[str, str] | None,
    host: str,
    port: int,
    open_as: str | None,
    guide: str | None,
) -> None:
    """Import, print the start-up lines, serve until Ctrl+C or SIGTERM."""
    from annotation_ui.app import build_demo, launch
    from annotation_ui.service import ReviewService

    rep = store.import_shards()
    for line in rep.bad:
        print(f"mifg review: skipped {line}", file=sys.stderr)
    quarantined = store.quarantined()
    for q in quarantined[:QUARANTINE_LINES]:
        print(f"mifg review: quarantined {q.line()}", file=sys.stderr)
    if len(quarantined) > QUARANTINE_LINES:
        more = len(quarantined) - QUARANTINE_LINES
        print(f"mifg review: … and {more} more quarantined (see the dashboard)", file=sys.stderr)
    print(
        f"review store {store.db_path}: {store.count_samples()} samples "
        f"(+{rep.added} new from {rep.shards} shard(s); {rep.duplicates} duplicate ids, "
        f"{rep.not_candidates} not candidates, {len(rep.bad)} bad, {len(quarantined)} quarantined), "
        f"overlap {store.overlap}"
    )
    demo = build_demo(ReviewService(store), open_annotator=open_as, guidelines=guide, run_name=run_dir.name)
    stop = threading.Event()
    # both signals only set the event: a KeyboardInterrupt raised between two statements (right after the
    # "serving on" line, or in the middle of closing) would skip the closing summary
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        url = launch(demo, host=host, port=port, users=users, secret_dir=run_dir, prevent_thread_lock=True, quiet=True)
        mode = f"open, as {open_as}" if open_as else "login required"
        print(f"serving on {url} ({mode}); Ctrl+C or SIGTERM to stop", flush=True)
        while not stop.wait(0.25):
            pass
    finally:
        demo.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def verified(
    run_dir: Path = typer.Argument(..., help="Reviewed run directory (holds review.sqlite)."),
    out: Path = typer.Option(
        ..., "--out", help="Output store dir: shards/verified-*.parquet + manifests/verified.json."
    ),
    min_agree: int | None = typer.Option(None, "--min-agree", help="Keeping reviews needed (default: the overlap)."),
    shard_size: int = typer.Option(500, "--shard-size", help="Samples per shard."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier verified export in --out."),
) -> None:
    """Write the verified samples (accepted or edited, with their review metadata) as shards."""
    from annotation_ui.verified import export_verified, summary_line

    def show(rep) -> None:
        print(f"\r  {rep.verified} verified / {rep.reviewed} reviewed", end="", file=sys.stderr, flush=True)

    rep = export_verified(run_dir, out, min_agree=min_agree, shard_size=shard_size, force=force, progress=show)
    print(file=sys.stderr)
    print(summary_line(rep))


def review_report(
    run_dir: Path = typer.Argument(..., help="Reviewed run directory (holds review.sqlite)."),
    out: Path | None = typer.Option(None, "--out", help="Report dir (default: RUN_DIR/review-report/)."),
    rule: str = typer.Option("majority", "--rule", help="Several annotators: majority | any-reject."),
) -> None:
    """How well each agent's verdict predicts the annotators' keep / reject: report.json, reliability.png, a table.

    Per verifier agreement, critic verdict and critic reason: precision and recall of "agent says
    good" against "annotators kept"; per score (verifier confidence, vote share): reliability bins and
    the lowest auto-accept threshold that lets through <= 2% of the samples the annotators rejected,
    with the share of reviews it saves. A run without decisions prints one line and exits 1.
    """
    from annotation_ui.calibration import RULES, from_store
    from annotation_ui.calibration_report import text_lines, write_report
    from annotation_ui.review_store import DB_NAME, ReviewStore

    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run directory not found")
    if rule not in RULES:
        raise ConfigError(f"--rule {rule!r}: choose {' or '.join(RULES)}")
    if not (run_dir / DB_NAME).is_file():
        why = f"no {DB_NAME}; run `mifg review {run_dir}`"
        print(f"mifg review-report: {run_dir} has no review decisions ({why})", file=sys.stderr)
        raise typer.Exit(1)
    with ReviewStore(run_dir) as store:
        cal = from_store(store, rule)
    if not cal.reviewed:
        print(f"mifg review-report: {run_dir} has no review decisions yet (skips are not decisions)", file=sys.stderr)
        raise typer.Exit(1)
    report, plot = write_report(cal, run_dir, out if out is not None else run_dir / "review-report")
    for line in text_lines(cal, run_dir):
        print(line)
    print(f"wrote {report} and {plot}")


users_app = typer.Typer(help="Manage the review app's users file (hashed passwords).", no_args_is_help=True)


@users_app.command("add")
def users_add(
    users: Path = typer.Argument(..., help="Users file (created if missing)."),
    name: str = typer.Argument(..., help="Annotator name (letters, digits, _ . @ -)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Add (or reset) an annotator; the password is stored as a salted scrypt hash."""
    from annotation_ui.auth import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin is None or not sys.stdin.isatty():
        raise ConfigError("no terminal to ask the password on: pipe it in with --password-stdin")
    else:
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    existed = add_user(users, name, password)
    print(f"{'updated' if existed else 'added'} {name} in {users}")


@users_app.command("list")
def users_list(users: Path = typer.Argument(..., help="Users file.")) -> None:
    """List the annotators of a users file."""
    from annotation_ui.auth import load_users

    for name in sorted(load_users(users)):
        print(name)


def register(app: typer.Typer) -> None:
    """Add the review room's commands to the `mifg` app."""
    app.command("review")(review)
    app.command("review-report")(review_report)
    app.command("verified")(verified)
    app.add_typer(users_app, name="review-users")
