"""`mifg review`, `mifg review-users` and `mifg verified`: the review room's commands."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from schemas.errors import ConfigError, InputError


def review(
    run_dir: Path = typer.Argument(..., help="Generation run directory (shards/ + manifests/)."),
    users: Path | None = typer.Option(None, "--users", help="Users file with hashed passwords (see review-users)."),
    overlap: int = typer.Option(1, "--overlap", min=1, help="Distinct annotators per sample."),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but localhost needs --users."),
    open_mode: bool = typer.Option(False, "--open", help="No login (localhost only); you review as --annotator."),
    annotator: str = typer.Option("local", "--annotator", help="Your name in --open mode."),
    lease_minutes: float = typer.Option(20.0, "--lease-minutes", help="Minutes before an untouched sample returns."),
    guidelines: Path | None = typer.Option(None, "--guidelines", help="Markdown file replacing the guidelines."),
) -> None:
    """Serve the review app for RUN_DIR: annotators accept, reject or edit candidates in a browser."""
    from annotation_ui.auth import is_loopback, load_users, make_checker
    from annotation_ui.dashboard import team_stats
    from annotation_ui.review_store import ReviewStore, check_annotator
    from annotation_ui.service import ReviewService

    if users is None and not open_mode:
        raise ConfigError("give --users FILE (make one with `mifg review-users add FILE NAME`) or --open for localhost")
    if users is not None and open_mode:
        raise ConfigError("--users and --open exclude each other")
    if open_mode and not is_loopback(host):
        raise ConfigError(f"--open serves without login and is for localhost only, not --host {host}")
    auth = None
    if users is not None:
        table = load_users(users)
        if not table:
            raise ConfigError(f"{users}: no users; add one with `mifg review-users add {users} NAME`")
        auth = make_checker(table)
    else:
        check_annotator(annotator)
    guide = None
    if guidelines is not None:
        try:
            guide = guidelines.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{guidelines}: cannot read guidelines ({e})") from e
    store = ReviewStore(run_dir, overlap=overlap, lease_seconds=lease_minutes * 60)
    rep = store.import_shards()
    for line in rep.bad:
        print(f"mifg review: skipped {line}", file=sys.stderr)
    print(
        f"review store {store.db_path}: {store.count_samples()} samples "
        f"(+{rep.added} new from {rep.shards} shard(s); {rep.duplicates} duplicate ids, "
        f"{rep.not_candidates} not candidates, {len(rep.bad)} bad), overlap {overlap}"
    )
    from annotation_ui.app import build_demo, launch  # gradio: imported only when serving

    demo = build_demo(
        ReviewService(store),
        open_annotator=annotator if open_mode else None,
        guidelines=guide,
        run_name=run_dir.name,
    )
    try:
        url = launch(demo, host=host, port=port, auth=auth, prevent_thread_lock=True, quiet=True)
        print(f"serving on {url} ({'open, as ' + annotator if open_mode else 'login required'}); Ctrl+C to stop")
        demo.block_thread()
    finally:
        demo.close()
        stats = team_stats(store)
        print(
            f"stopped; {stats.decisions} decisions stored of {stats.target} wanted, {stats.complete} samples "
            f"complete, {stats.verified} verified (`mifg verified {run_dir} --out DIR` writes them)"
        )
        store.close()


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
    app.command("verified")(verified)
    app.add_typer(users_app, name="review-users")
