"""The Gradio layout of the review app: components and wiring only; every action is a ReviewService call."""

from __future__ import annotations

import errno
import os
import socket
from html import escape
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no outside connection, before gradio is imported

import gradio as gr
from gradio.utils import get_cache_folder, get_upload_folder
from starlette.middleware import Middleware

from annotation_ui.auth import is_loopback, make_checker
from annotation_ui.guard import Guard
from annotation_ui.service import REJECT_REASONS, SKIP_REASONS, ReviewService, Screen
from annotation_ui.sessions import LoginThrottle, SessionKeys
from schemas import LETTERS
from schemas.errors import ConfigError

KEYS_HTML = (
    '<div class="mifg-keys" id="mifg-keys"><b>Keyboard</b> <kbd>a</kbd> accept · <kbd>r</kbd> reject, '
    "<kbd>1</kbd>–<kbd>7</kbd> reason, <kbd>Enter</kbd> confirm · <kbd>e</kbd> edit, "
    "<kbd>Ctrl</kbd>+<kbd>Enter</kbd> save · <kbd>s</kbd> skip · <kbd>b</kbd> boxes · "
    "<kbd>Esc</kbd> cancel or leave a field · "
    "<kbd>z</kbd> or click an image: compare the set (zoom at the pointer in every image, <kbd>x</kbd> flicker, "
    "<kbd>g</kbd> go to box). Keys are ignored while you type in a field.</div>"
)
OPEN_ANNOTATOR = "local"


def _asset(name: str) -> str:
    # a plain path next to this file: works from a checkout, an editable install and a wheel alike
    return (Path(__file__).parent / name).read_text("utf-8")


SCRIPTS = ("viewer.js", "drafts.js", "review.js")  # the set viewer, drafts kept across a reload, the keys


def head_html() -> str:
    """The `<head>` addition: our stylesheet (unscoped, so it reaches body classes and the viewer) and scripts."""
    scripts = "".join(f"<script>{_asset(f'static/{name}')}</script>" for name in SCRIPTS)
    return f"<style>{_asset('static/review.css')}</style>{scripts}"


def build_demo(
    service: ReviewService,
    *,
    open_annotator: str | None = None,
    guidelines: str | None = None,
    run_name: str = "",
) -> gr.Blocks:
    """The review app; `open_annotator` names the single user of an app started without auth."""

    def who(request: gr.Request | None) -> str:
        name = getattr(request, "username", None) if request is not None else None
        if name:
            return name
        if open_annotator:
            return open_annotator
        raise gr.Error("not signed in")

    with gr.Blocks(title="mifg review", analytics_enabled=False, fill_width=True) as demo:
        current = gr.State(None)  # the shown sample id lives server-side; the store re-checks it on every action
        with gr.Row(elem_id="mifg-header", equal_height=True):
            brand = f"<small>{escape(run_name)}</small>" if run_name else ""
            gr.HTML(f'<div class="mifg-brand">mifg review{brand}</div>', scale=2, min_width=180)
            progress = gr.HTML(elem_id="mifg-progress", scale=5, min_width=520)
            gr.HTML(
                "" if open_annotator else '<a class="mifg-logout" href="/logout">Log out</a>', scale=0, min_width=80
            )
        with gr.Tabs(elem_id="mifg-tabs"):
            with gr.Tab("Review", id="review"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=7, min_width=480):
                        images = gr.HTML(elem_id="mifg-images")
                    with gr.Column(scale=4, min_width=380, elem_id="mifg-side"):
                        message = gr.HTML(elem_id="mifg-message")
                        question = gr.HTML(elem_id="mifg-question")
                        with gr.Group(elem_id="mifg-actions"):
                            boxes = gr.Checkbox(
                                label="Show evidence boxes   b", value=False, elem_id="mifg-boxes-toggle"
                            )
                            accept_btn = gr.Button("Accept   a", variant="primary", elem_id="mifg-accept")
                            with gr.Row():
                                reject_btn = gr.Button("Reject…   r", variant="stop", elem_id="mifg-reject")
                                edit_btn = gr.Button("Edit…   e", variant="secondary", elem_id="mifg-edit")
                                skip_btn = gr.Button("Skip…   s", variant="secondary", elem_id="mifg-skip")
                        reject_panel, reason, note, confirm_reject, cancel_reject = _reason_panel(
                            "reject", REJECT_REASONS, "Why reject? (keys 1–7)", "stop", reason_id="mifg-reason"
                        )
                        skip_panel, skip_reason, skip_note, confirm_skip, cancel_skip = _reason_panel(
                            "skip", SKIP_REASONS, "Why skip? Someone else reviews it (keys 1–4)", "primary"
                        )
                        gr.HTML(KEYS_HTML)
                with gr.Group(visible=False, elem_id="mifg-edit-panel") as edit_panel:
                    with gr.Row():
                        with gr.Column(scale=3):
                            e_question = gr.Textbox(
                                label="Question", lines=2, max_length=2000, elem_id="mifg-e-question"
                            )
                            e_options = gr.Textbox(
                                label="Options (one per line; letters A, B, C… follow the order)",
                                lines=4,
                                elem_id="mifg-e-options",
                            )
                        with gr.Column(scale=2):
                            e_answer = gr.Radio(list(LETTERS), label="Answer", elem_id="mifg-e-answer")
                            e_evidence = gr.Textbox(
                                label="Evidence boxes: 'image: x1 y1 x2 y2' per line, 0–1 (left top right bottom)",
                                lines=3,
                                elem_id="mifg-e-evidence",
                            )
                    with gr.Row():
                        save_edit = gr.Button(
                            "Save edit and accept   Ctrl+Enter", variant="primary", elem_id="mifg-save-edit"
                        )
                        cancel_edit = gr.Button("Cancel   Esc", elem_id="mifg-cancel-edit")
            with gr.Tab("Guidelines", id="guidelines"):
                gr.Markdown(guidelines or _asset("guidelines.md"), elem_id="mifg-guidelines")
            with gr.Tab("Team dashboard", id="dashboard") as dash_tab:
                with gr.Row(elem_id="mifg-dash-head"):
                    gr.HTML(
                        '<div class="mifg-muted">Figures over every annotator; refreshed when you open this tab.</div>'
                    )
                    refresh = gr.Button("Refresh", size="sm", elem_id="mifg-refresh", scale=0, min_width=120)
                dashboard = gr.HTML(elem_id="mifg-dashboard")

        screen_outputs = [
            current,
            images,
            question,
            progress,
            message,
            e_question,
            e_options,
            e_answer,
            e_evidence,
            reject_panel,
            edit_panel,
            reason,
            note,
            skip_panel,
            skip_reason,
            skip_note,
        ]

        def show(s: Screen) -> list[Any]:
            """Gradio outputs for a Screen; a refused action only updates the message (the form stays open)."""
            if not s.ok:
                return [gr.skip()] * 3 + [s.progress, s.message] + [gr.skip()] * 11
            return [
                s.sample_id,
                s.images,
                s.question,
                s.progress,
                s.message,
                s.edit_question,
                s.edit_options,
                s.edit_answer or None,
                s.edit_evidence,
                gr.update(visible=False),
                gr.update(visible=False),
                None,
                "",
                gr.update(visible=False),
                None,
                "",
            ]

        def on_load(request: gr.Request):
            return show(service.current(who(request)))

        def on_accept(sample_id, request: gr.Request):
            return show(service.accept(who(request), sample_id))

        def on_reject(sample_id, why, text, request: gr.Request):
            return show(service.reject(who(request), sample_id, why, text))

        def on_edit(sample_id, q, opts, ans, ev, request: gr.Request):
            return show(service.edit_accept(who(request), sample_id, q, opts, ans, ev))

        def on_skip(sample_id, why, text, request: gr.Request):
            return show(service.skip(who(request), sample_id, why, text))

        def on_dashboard():
            return service.dashboard()

        # Every event is "private": left out of Gradio's API description and of its client libraries.
        hidden = {"api_visibility": "private"}
        # decisions skip Gradio's progress overlay: the next sample replacing this one is the feedback
        fast = {**hidden, "show_progress": "hidden"}
        demo.load(on_load, outputs=screen_outputs, **hidden)
        accept_btn.click(on_accept, inputs=[current], outputs=screen_outputs, **fast)
        confirm_reject.click(on_reject, inputs=[current, reason, note], outputs=screen_outputs, **fast)
        confirm_skip.click(on_skip, inputs=[current, skip_reason, skip_note], outputs=screen_outputs, **fast)
        save_edit.click(
            on_edit, inputs=[current, e_question, e_options, e_answer, e_evidence], outputs=screen_outputs, **fast
        )
        # Opening and closing panels is pure client-side state.
        panels = [reject_panel, edit_panel, skip_panel]

        def only(panel):
            return lambda: tuple(gr.update(visible=p is panel) for p in panels)

        reject_btn.click(only(reject_panel), outputs=panels, **hidden)
        edit_btn.click(only(edit_panel), outputs=panels, **hidden)
        skip_btn.click(only(skip_panel), outputs=panels, **hidden)

        def closed():
            return gr.update(visible=False), None, ""

        cancel_reject.click(closed, outputs=[reject_panel, reason, note], **hidden)
        cancel_skip.click(closed, outputs=[skip_panel, skip_reason, skip_note], **hidden)
        cancel_edit.click(lambda: gr.update(visible=False), outputs=[edit_panel], **hidden)
        boxes.change(
            None, inputs=[boxes], js="(v) => { document.body.classList.toggle('mifg-show-boxes', !!v); }", **hidden
        )
        dash_tab.select(on_dashboard, outputs=[dashboard], **hidden)
        refresh.click(on_dashboard, outputs=[dashboard], **hidden)
    return demo


def _reason_panel(
    action: str, reasons: tuple[str, ...], label: str, variant: str, reason_id: str | None = None
) -> tuple[gr.Group, gr.Radio, gr.Textbox, gr.Button, gr.Button]:
    """A hidden panel (#mifg-ACTION-panel) with a numbered reason list, a note, confirm and cancel."""
    with gr.Group(visible=False, elem_id=f"mifg-{action}-panel") as panel:
        reason = gr.Radio(
            [(f"{i + 1} · {r}", r) for i, r in enumerate(reasons)],
            label=label,
            elem_id=reason_id or f"mifg-{action}-reason",
        )
        note = gr.Textbox(
            label="Note (optional; required for Other)",
            lines=2,
            max_length=2000,
            elem_id="mifg-note" if action == "reject" else f"mifg-{action}-note",
        )
        with gr.Row():
            confirm = gr.Button(f"{action.title()}   Enter", variant=variant, elem_id=f"mifg-confirm-{action}")
            cancel = gr.Button("Cancel   Esc", elem_id=f"mifg-cancel-{action}")
    return panel, reason, note, confirm, cancel


def theme() -> gr.themes.Base:
    """A calm theme with system fonts only (no font downloads)."""
    return gr.themes.Soft(
        primary_hue="indigo",
        neutral_hue="slate",
        font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def launch(
    demo: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    users: dict[str, str] | None = None,
    secret_dir: Path | None = None,
    throttle: LoginThrottle | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    concurrency: int = 16,
) -> str:
    """Start the server behind the guard (see `annotation_ui.guard`) and return its local URL.

    `users` (name -> scrypt hash) turns login on; sessions are signed with the secret kept in
    `secret_dir` (the run dir), so they survive a restart. Without users the app is open, which is
    refused off localhost. A busy port is a ConfigError naming `--port`.
    """
    if users is None and not is_loopback(host):
        raise ConfigError(f"refusing to serve without --users on {host}: open mode is for localhost only")
    check_port_free(host, port)
    keys = SessionKeys(secret_dir, users) if users is not None else None
    checker = make_checker(users) if users is not None else None
    guard = Middleware(Guard, checker=checker, keys=keys, throttle=throttle)
    temp_dirs = [str(Path(p).resolve()) for p in (get_upload_folder(), get_cache_folder())]
    demo.queue(default_concurrency_limit=concurrency)  # handlers are short; the store serialises writes
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            auth=checker,  # Gradio's login page and login_check; the guard answers POST /login itself
            auth_message="mifg review: sign in with your annotator name and password.",
            prevent_thread_lock=True,
            quiet=quiet,
            share=False,
            inbrowser=False,
            footer_links=[],
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
            enable_monitoring=False,
            num_workers=0,  # static workers would serve files beside the guard
            max_file_size=0,
            blocked_paths=temp_dirs,  # Gradio's temp and cache folders are never served, even if a route opened
            app_kwargs={"middleware": [guard]},
            theme=theme(),
            head=head_html(),
        )
    except OSError as e:
        if "Cannot find empty port" in str(e):
            raise ConfigError(f"port {port} is in use; pass --port") from None
        raise
    if not prevent_thread_lock:
        demo.block_thread()
    return demo.local_url


def check_port_free(host: str, port: int) -> None:
    """ConfigError `port N is in use; pass --port` when nothing can listen on `host:port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is not "in use"
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} is in use; pass --port") from None
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); pass --host / --port") from None
