"""The review app's own API: what every Gradio handler calls (and what the load benchmark drives).

Each action stores the decision (committed) and only then claims and renders the next sample.
Everything the browser sends is checked here: the sample must exist and be assigned to the caller,
the reject reason must be one of the list, an edit must give a valid `schemas.Sample`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from annotation_ui import render
from annotation_ui.dashboard import team_stats
from annotation_ui.editing import EditRefused, apply_edit, evidence_to_text, is_noop_edit, options_to_text
from annotation_ui.review_store import ReviewError, ReviewStore, check_annotator
from schemas import LETTERS

REJECT_REASONS = (
    "Wrong answer",
    "Ambiguous question or options",
    "Not fine-grained (visible at a glance)",
    "Answerable from the text alone",
    "Bad images (broken, duplicate, unrelated)",
    "Evidence boxes wrong",
    "Other (explain in the note)",
)
MAX_NOTE_CHARS = 2000


@dataclass
class Screen:
    """What the review tab shows after an action."""

    sample_id: str | None
    images: str
    question: str
    progress: str
    message: str
    edit_question: str = ""
    edit_options: str = ""
    edit_answer: str = ""
    edit_evidence: str = ""
    answer_choices: list[str] = field(default_factory=list)
    ok: bool = True  # False: the action was refused and the same sample stays on screen
    saved: str | None = None  # the decision stored by this action ("accept" | "reject" | "edit"), None if none


class ReviewService:
    """Review actions for one store; thread-safe because the store is."""

    def __init__(self, store: ReviewStore) -> None:
        self.store = store

    def _screen(self, annotator: str, message: str = "", kind: str = "info", saved: str | None = None) -> Screen:
        sid = self.store.claim_next(annotator)
        progress = render.progress_html(annotator, self.store.progress(annotator))
        if sid is None:
            return Screen(
                None, render.done_html(annotator), "", progress, render.message_html(message, kind), saved=saved
            )
        sample = self.store.load_sample(sid)
        return Screen(
            sid,
            render.images_html(sample),
            render.question_html(sample),
            progress,
            render.message_html(message, kind),
            edit_question=sample.question,
            edit_options=options_to_text(sample.options),
            edit_answer=sample.answer,
            edit_evidence=evidence_to_text(sample),
            answer_choices=list(LETTERS[: max(len(sample.options), 2)]),
            saved=saved,
        )

    def _refused(self, annotator: str, sample_id: str | None, message: str) -> Screen:
        """Keep the current screen; only the message changes."""
        return Screen(
            sample_id,
            "",
            "",
            render.progress_html(annotator, self.store.progress(annotator)),
            render.message_html(message, "error"),
            ok=False,
        )

    def current(self, annotator: str) -> Screen:
        """The annotator's current sample (their open lease first, so a reload or restart resumes it)."""
        check_annotator(annotator)
        return self._screen(annotator)

    def _decide(self, annotator: str, sample_id: str | None, decision: str, **kw) -> Screen:
        check_annotator(annotator)
        if not sample_id:
            return self._screen(annotator, "Nothing to decide: your queue is empty.")
        try:
            rec = self.store.record_decision(annotator, sample_id, decision, **kw)
        except ReviewError as e:
            return self._screen(annotator, f"Not saved: {e}. Showing your current sample.", "error")
        short = sample_id[:8]
        if rec.replayed:
            return self._screen(annotator, f"Sample {short} was already {rec.decision.decision}ed; moved on.")
        verb = {"accept": "Accepted", "reject": "Rejected", "edit": "Edited and accepted"}[decision]
        return self._screen(annotator, f"{verb} {short}. Saved.", "ok", saved=decision)

    def accept(self, annotator: str, sample_id: str | None) -> Screen:
        """Accept the sample as proposed."""
        return self._decide(annotator, sample_id, "accept")

    def reject(self, annotator: str, sample_id: str | None, reason: str | None, note: str = "") -> Screen:
        """Reject with a reason from REJECT_REASONS (and an optional note; required for 'Other')."""
        note = (note or "").strip()
        if reason not in REJECT_REASONS:
            return self._refused(annotator, sample_id, "Pick a reject reason (keys 1–7) before rejecting.")
        if reason == REJECT_REASONS[-1] and not note:
            return self._refused(annotator, sample_id, "Explain 'Other' in the note.")
        if len(note) > MAX_NOTE_CHARS:
            return self._refused(annotator, sample_id, f"The note is longer than {MAX_NOTE_CHARS} characters.")
        return self._decide(annotator, sample_id, "reject", reason=reason, note=note)

    def edit_accept(
        self,
        annotator: str,
        sample_id: str | None,
        question: str,
        options_text: str,
        answer: str,
        evidence_text: str,
    ) -> Screen:
        """Apply an edit and accept; a schema-breaking edit is refused whole with a message."""
        check_annotator(annotator)
        if not sample_id:
            return self._screen(annotator, "Nothing to edit: your queue is empty.")
        try:
            if not self.store.holds(annotator, sample_id):
                raise ReviewError(f"sample {sample_id} is not assigned to {annotator}")
            before = self.store.load_sample(sample_id)
            after = apply_edit(before, question, options_text, answer, evidence_text)
        except EditRefused as e:
            self.store.audit(annotator, "edit_refused", sample_id, {"why": str(e)})
            return self._refused(annotator, sample_id, f"Edit not saved: {e}")
        except ReviewError as e:
            return self._screen(annotator, f"Not saved: {e}. Showing your current sample.", "error")
        if is_noop_edit(before, after):
            return self._decide(annotator, sample_id, "accept")
        return self._decide(annotator, sample_id, "edit", edited=after, before=before)

    def progress(self, annotator: str) -> str:
        """The annotator's progress line."""
        return render.progress_html(annotator, self.store.progress(check_annotator(annotator)))

    def dashboard(self) -> str:
        """The team dashboard HTML."""
        return render.dashboard_html(team_stats(self.store))
