"""The real review app (Gradio server behind the guard, login required) on a free localhost port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from annotation_ui.auth import hash_password
from annotation_ui.review_store import ReviewStore
from annotation_ui.service import ReviewService
from annotation_ui.sessions import LoginThrottle

USERS = {"alice": "alice-pass-1", "bob": "bob-pass-12"}
HASHES = {name: hash_password(pw) for name, pw in USERS.items()}


def free_port() -> int:
    """A localhost port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(run: Path, overlap: int = 1, throttle: LoginThrottle | None = None) -> Iterator[tuple[str, ReviewStore]]:
    """(url, store) of the app over `run`; sessions are signed with the secret in `run`."""
    from annotation_ui.app import build_demo, launch

    store = ReviewStore(run, overlap=overlap)
    store.import_shards()
    demo = build_demo(ReviewService(store), run_name=run.name)
    url = launch(
        demo,
        host="127.0.0.1",
        port=free_port(),
        users=HASHES,
        secret_dir=run,
        throttle=throttle,
        prevent_thread_lock=True,
        quiet=True,
    )
    try:
        yield url.rstrip("/"), store
    finally:
        demo.close()
        store.close()
