"""The review app's own API: what every Gradio handler calls (and what the load benchmark drives).

Each action stores the decision (committed) and only then claims and renders the next sample.
Everything the browser sends is checked here: the sample must exist and be assigned to the caller,
the reject reason must be one of the list, an edit must give a valid `schemas.Sample`.

Nobody is ever stuck: a sample that cannot be loaded (its shard changed or broke on disk,
its row no longer validates) is quarantined with the reason and the next one is shown, and an
annotator can always skip a sample with a reason (someone else reviews it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

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
SKIP_REASONS = (
    "Not sure: let someone else decide",
    "Needs expertise I do not have",
    "Images do not load or are unreadable",
    "Other (explain in the note)",
)
MAX_NOTE_CHARS = 2000
# What reading one sample raises when its shard or row is broken (pydantic's ValidationError is a
# ValueError); anything else is a bug of ours and must not quarantine the run sample by sample.
SAMPLE_LOAD_ERRORS = (ReviewError, ValueError, KeyError, TypeError, IndexError, OSError, pa.ArrowException)


def _reason_problem(reason: str | None, note: str, reasons: tuple[str, ...], action: str) -> str:
    """Why a reason + note cannot be stored ('' when they can): the reason is one of `reasons`, whose
    last one ('Other') needs a note, and notes are bounded."""
    if reason not in reasons:
        return f"Pick a {action} reason (keys 1–{len(reasons)}) before you {action}."
    if reason == reasons[-1] and not note:
        return "Explain 'Other' in the note."
    if len(note) > MAX_NOTE_CHARS:
        return f"The note is longer than {MAX_NOTE_CHARS} characters."
    return ""


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
    saved: str | None = None  # what this action stored ("accept" | "reject" | "edit" | "skip"), None if nothing


class ReviewService:
    """Review actions for one store; thread-safe because the store is."""

    def __init__(self, store: ReviewStore) -> None:
        self.store = store

    def _screen(self, annotator: str, message: str = "", kind: str = "info", saved: str | None = None) -> Screen:
        while True:  # each failed round quarantines one sample, so this ends
            sid = self.store.claim_next(annotator)
            if sid is None:
                progress = render.progress_html(annotator, self.store.progress(annotator))
                return Screen(
                    None, render.done_html(annotator), "", progress, render.message_html(message, kind), saved=saved
                )
            try:
                sample = self.store.load_sample(sid)
            except SAMPLE_LOAD_ERRORS as e:  # the sample's data is broken: it must not stop the annotator
                reason = f"cannot be loaded: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
                self.store.quarantine_sample(sid, reason)
                message = f"{message} Sample {sid[:8]} {reason}; it was set aside and the next one is shown.".strip()
                kind = "error"
                continue
            break
        progress = render.progress_html(annotator, self.store.progress(annotator))
        return Screen(
            sid,
            render.images_html(sample, self._prefetch(annotator, sid)),
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

    def _prefetch(self, annotator: str, current: str) -> str:
        """Prefetch hints for the sample likely to come after `current` (none when the guess fails)."""
        nxt = self.store.likely_next(annotator, current)
        if nxt is None:
            return ""
        try:
            return render.prefetch_html(self.store.load_sample(nxt))
        except SAMPLE_LOAD_ERRORS:  # it is set aside when it is given out; a hint is not worth more
            return ""

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
        problem = _reason_problem(reason, note, REJECT_REASONS, "reject")
        if problem:
            return self._refused(annotator, sample_id, problem)
        return self._decide(annotator, sample_id, "reject", reason=reason, note=note)

    def skip(self, annotator: str, sample_id: str | None, reason: str | None, note: str = "") -> Screen:
        """Hand the sample back with a reason from SKIP_REASONS: never shown to this annotator again."""
        check_annotator(annotator)
        note = (note or "").strip()
        if not sample_id:
            return self._screen(annotator, "Nothing to skip: your queue is empty.")
        problem = _reason_problem(reason, note, SKIP_REASONS, "skip")
        if problem:
            return self._refused(annotator, sample_id, problem)
        try:
            self.store.skip(annotator, sample_id, reason, note)
        except ReviewError as e:
            return self._screen(annotator, f"Not skipped: {e}. Showing your current sample.", "error")
        return self._screen(annotator, f"Skipped {sample_id[:8]}; someone else will review it.", "ok", saved="skip")

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
