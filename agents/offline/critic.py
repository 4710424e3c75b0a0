"""The offline adversarial critic: tries to show a sample is broken, shallow, guessable or a repeat.

Checks, in order (the first reject wins; revise reasons are collected and returned together):
1. the verifier disagreed, or the pixels do not single out the draft's answer -> reject
2. too few pixels changed to be sure (weak_evidence) -> reject
3. two options nearly equally supported (ambiguous) -> revise when a distractor is to blame and
   the writer can swap it, else reject
4. the same pixel method answers correctly on `ctx.thumbnail_side`-px thumbnails (or the critic's
   own `thumbnail_side` when set): the sample is not fine-grained (thumbnail_solvable) -> reject
5. the same images, task, answer and place were already accepted (near_duplicate) -> reject
6. text-only shortcuts: the answer option's length stands out (option_length_bias), or its letter
   is over-represented among accepted samples (answer_position_bias) -> revise
Accepting records the sample's duplicate key in `ctx.registry`.

Sets of the default families (`images.kind == "scene"`) take their own path: the full-resolution
answer must hold with enough evidence, the glance views must not answer it (counting only changes
visible at a glance, `agents.offline.view`), the caps per (photo, family, answer) and per question
must have room, and the answer must not tilt its family's answers beyond a fair share (chance, 1 / options;
twins, in every wording one answer: `twin_rate`), so that no answer prior wins. The balance is counted in
the run's registry, so all workers and a resumed run share it.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
from collections import Counter

from agents.base import AgentContext, Draft, ImageSet, count_key
from agents.offline.pixel_solver import MIN_PX, TAU, Solution
from agents.offline.reasons import REASON_CODES
from agents.offline.regions import parse_region
from agents.offline.scene_solver import is_none
from agents.offline.verifier import WEAK_PX, measure
from schemas import LETTERS, CriticVerdict, TaskType, TokenUsage, VerifierVerdict

AMBIGUOUS_MARGIN = 0.4  # best option's support minus the runner-up's, below which two options look true
THUMB_MARGIN = 0.5  # a thumbnail answer this clear-cut counts as "answerable at low resolution"
THUMB_MIN_PX = 1  # on a thumbnail, one clearly changed pixel is already a visible blip
POSITION_MIN_SAMPLES = 30  # judge answer-letter balance only after this many accepted samples
POSITION_SLACK = 0.2  # a letter may exceed its fair share 1/k by this much
LOCATION_GRID = 8
CAP_ANSWER = 3  # accepted samples per (source photo, family, answer text)
CAP_QUESTION = 40  # accepted samples per exact question string
# accepted samples per object of a photo that an edit acted on: the bundled earth tiles hold about 30
# such objects, and one island was the change in 31 of 239 demo samples; at 16, with clones that must
# match the grain around them and recolours the colour, the bundled photos ran out at 191 samples
CAP_OBJECT = 20
# an answer may hold its fair share of its family (chance, or the twin rate) plus this share plus BALANCE_LEAD
# samples: a share, not a floor of samples seen, so that small families of a short run are balanced too
BALANCE_SLACK = 0.04
BALANCE_LEAD = 1.5
BALANCE_SLOTS = 10_000  # accepted samples a family's balance is counted over (run-wide, in the registry)
TWIN_CLASS = "(no difference)"  # every wording of "none" is one answer to a reader: counted as one

__all__ = ["REASON_CODES", "OfflineCritic", "duplicate_key", "length_outlier"]


def length_outlier(options: list[str], answer_index: int) -> bool:
    """Whether the answer is the unique longest/shortest option by a clear margin (a blind guess wins)."""
    lengths = [len(o.strip()) for o in options]
    mine = lengths.pop(answer_index)
    if not lengths:
        return False
    med = statistics.median(lengths)
    extreme = mine > max(lengths) or mine < min(lengths)
    return extreme and abs(mine - med) >= max(3.0, 0.3 * med)


def duplicate_key(images: ImageSet, draft: Draft, sol: Solution) -> str:
    """Near-duplicate key: sorted image phashes + task type + answer (canonical) + place of the difference."""
    answer = draft.options[LETTERS.index(draft.answer)]
    region = parse_region(answer)
    canon = region.key if region else " ".join(answer.lower().split())
    place = "-"
    if sol.box is not None:
        cx, cy = (sol.box[0] + sol.box[2]) / 2, (sol.box[1] + sol.box[3]) / 2
        g = LOCATION_GRID
        place = f"{min(g - 1, int(cx * g))},{min(g - 1, int(cy * g))}"
    payload = json.dumps([sorted(r.phash for r in images.images), draft.task_type.value, canon, place])
    return "offline:" + hashlib.sha256(payload.encode()).hexdigest()[:32]


def _cap_key(ctx: AgentContext, base: str, cap: int) -> str | None:
    """The first free one of `cap` numbered keys for `base`, or None when all are taken (cap reached)."""
    digest = hashlib.sha256(base.encode()).hexdigest()[:24]
    for i in range(cap):
        key = count_key(digest, cap, i)
        if not ctx.registry.seen(key):
            return key
    return None


def _slot(base: str, slot: int) -> str:
    return count_key(hashlib.sha256(base.encode()).hexdigest()[:24], BALANCE_SLOTS, slot)


def _taken(ctx: AgentContext, base: str) -> int:
    """How many of `base`'s BALANCE_SLOTS numbered keys are taken (claims fill them in order)."""

    def seen(i: int) -> bool:
        return ctx.registry.seen(_slot(base, i))

    hi = 1
    while hi < BALANCE_SLOTS and seen(hi - 1):
        hi = min(BALANCE_SLOTS, hi * 2)
    lo = hi // 2 if hi > 1 else 0
    while lo < hi:  # first free slot in [lo, hi)
        mid = (lo + hi) // 2
        if seen(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _balance(
    ctx: AgentContext, family: str, answer: str, fair: float, spread: float | None = None
) -> tuple[str, list[str]]:
    """Why accepting `answer` would tilt its family's accepted answers (an answer prior would win), or "";
    and the registry keys that count it once accepted. Counted run-wide, so resumes and workers agree.

    `fair` is the answer's share at most (chance; the twin rate for twins). With `spread` (the non-twin
    answers' whole share) it is also at most `spread` over the answers of the family accepted so far: four
    options drawn from six image pairs must not let one pair be the answer a quarter of the time.
    """
    total_base, answer_base, kinds_base = f"bal:{family}", f"bal:{family}:{answer}", f"bal:{family}/answers"
    total, mine = _taken(ctx, total_base), _taken(ctx, answer_base)
    if total >= BALANCE_SLOTS - 1:  # past the counted window: the first BALANCE_SLOTS samples set the balance
        return "", []
    kinds = _taken(ctx, kinds_base)
    if spread is not None:
        fair = min(fair, spread / max(1, kinds + (mine == 0)))
    limit = (fair + BALANCE_SLACK) * (total + 1) + BALANCE_LEAD
    if mine + 1 > limit:
        share = (mine + 1) / (total + 1)
        return f"'{answer}' would be {share:.0%} of accepted {family} answers (fair share {fair:.0%})", []
    keys = [_slot(total_base, total), _slot(answer_base, mine)]
    if mine == 0 and spread is not None:
        keys.append(_slot(kinds_base, kinds))
    return "", keys


OBJECT_CELL = 16  # px: one object found at two size classes has its top-left corner a px or two apart


def answer_identity(source: str, family: str, answer_text: str) -> str:
    """What `cap_answer` counts: the set's (first image's) source photo, its family and its answer text."""
    return f"{source}:{family}:{answer_text.lower()}"


def question_identity(question: str) -> str:
    """What `cap_question` counts: the question in lower case, runs of spaces as one."""
    return " ".join(question.lower().split())


def object_cell(x: int, y: int) -> tuple[int, int]:
    """What `cap_object` counts an object by: the cell of its top-left corner (`object_px`)."""
    return int(x) // OBJECT_CELL, int(y) // OBJECT_CELL


def _object_base(source: str, cell: tuple[int, int]) -> str:
    return f"capo:{source}:{cell[0]},{cell[1]}"


def object_spent(ctx: AgentContext, source: str, x: int, y: int, cap: int = CAP_OBJECT) -> bool:
    """Whether `cap` accepted samples already edit the object at (x, y): cap_object would reject one more."""
    return _cap_key(ctx, _object_base(source, object_cell(x, y)), cap) is None


def edited_objects(construction: dict) -> set[tuple[int, int]]:
    """The photo objects a set's natural edits acted on (their `object_cell`), from its record."""
    return {
        object_cell(*e["object_px"])
        for im in construction.get("images", [])
        for e in im.get("edits", [])
        if "object_px" in e
    }


def _verdict(verdict: str, items: list[tuple[str, str]]) -> CriticVerdict:
    return CriticVerdict(
        verdict=verdict,  # type: ignore[arg-type]
        reasons=[code for code, _ in items],
        feedback=" | ".join(f"{code}: {text}" for code, text in items),
    )


class OfflineCritic:
    """Critic agent: pixel re-checks at full and thumbnail resolution, text-only bias checks, dedup."""

    def __init__(
        self,
        tau: int = TAU,
        min_px: int = MIN_PX,
        thumb_min_px: int = THUMB_MIN_PX,
        thumbnail_side: int | None = None,
        cap_answer: int = CAP_ANSWER,
        cap_question: int = CAP_QUESTION,
        twin_rate: float = 0.15,
        cap_object: int = CAP_OBJECT,
    ) -> None:
        self.cap_answer, self.cap_question, self.cap_object = cap_answer, cap_question, cap_object
        self.twin_rate = twin_rate  # the twins' fair share of a family's accepted answers
        self.tau, self.min_px, self.thumb_min_px = tau, min_px, thumb_min_px
        self.thumbnail_side = thumbnail_side  # overrides ctx.thumbnail_side, e.g. a small policy's overview size
        self._lock = threading.Lock()
        self._letters: Counter[tuple[int, int]] = Counter()  # (n options, answer index) of accepted samples
        self._accepted: Counter[int] = Counter()  # n options -> accepted samples

    async def critique(
        self, images: ImageSet, draft: Draft, verdict: VerifierVerdict, ctx: AgentContext, *, attempt: int
    ) -> tuple[CriticVerdict, TokenUsage]:
        """Accept, reject (with reason codes) or send back for revision (with feedback the writer acts on)."""
        return self.critique_sync(images, draft, verdict, ctx, attempt=attempt), TokenUsage()

    def critique_sync(
        self, images: ImageSet, draft: Draft, verdict: VerifierVerdict, ctx: AgentContext, *, attempt: int = 0
    ) -> CriticVerdict:
        """Synchronous body of `critique`."""
        answer = LETTERS.index(draft.answer)
        if not verdict.agrees:
            said = verdict.answer or "no answer"
            return _verdict("reject", [("verifier_disagrees", f"the verifier answered {said}, not {draft.answer}")])
        if images.kind == "scene":
            return self._scene(images, draft, ctx)
        full = measure(images, draft, tau=self.tau, min_px=self.min_px)
        if full.answer != answer:
            return _verdict("reject", [("verifier_disagrees", f"the pixels do not single out {draft.answer}")])
        if full.strength < WEAK_PX:
            return _verdict("reject", [("weak_evidence", f"only {full.strength} pixels differ")])
        if full.margin < AMBIGUOUS_MARGIN:
            return self._ambiguous(draft, full)
        side = self.thumbnail_side or ctx.thumbnail_side
        thumb = measure(images, draft, side=side, tau=self.tau, min_px=self.thumb_min_px, relaxed=True)
        if thumb.answer == answer and thumb.margin >= THUMB_MARGIN:
            text = f"answerable at {side} px ({thumb.notes}): not fine-grained"
            return _verdict("reject", [("thumbnail_solvable", text)])
        key = duplicate_key(images, draft, full)
        if ctx.registry.seen(key):
            return _verdict("reject", [("near_duplicate", "an accepted sample has the same images, answer and place")])
        revise: list[tuple[str, str]] = []
        if length_outlier(draft.options, answer):
            revise.append(("option_length_bias", "the answer is the only option of its length; balance option lengths"))
        letter_note = self._position_bias(len(draft.options), answer)
        if letter_note:
            revise.append(("answer_position_bias", letter_note))
        if revise:
            return _verdict("revise", revise)
        self.note_accepted(len(draft.options), answer)
        ctx.registry.add(key)
        return CriticVerdict(verdict="accept", reasons=[], feedback="")

    def _scene(self, images: ImageSet, draft: Draft, ctx: AgentContext) -> CriticVerdict:
        """Default families: full-resolution answer, glance view, caps, letter balance."""
        answer = LETTERS.index(draft.answer)
        text = draft.options[answer]
        full = measure(images, draft)
        if full.answer != answer:
            return _verdict("reject", [("verifier_disagrees", f"the pixels do not single out {draft.answer}")])
        twin = is_none(text) or text.strip() == "0"
        if not twin and full.strength < WEAK_PX:
            return _verdict("reject", [("weak_evidence", f"only {full.strength} pixels differ")])
        if not twin:  # a twin's "nothing there" is what any blurred look says: the glance view proves nothing
            g = measure(images, draft, glance=True)
            if g.answer == answer:
                return _verdict("reject", [("glance_solvable", f"answerable on the glance view ({g.notes})")])
        family = str(images.construction.get("family", draft.task_type.value))
        source = images.images[0].source
        answer_key = _cap_key(ctx, f"cap:{answer_identity(source, family, text)}", self.cap_answer)
        if answer_key is None:
            return _verdict("reject", [("cap_photo_family_answer", f"{self.cap_answer} accepted already")])
        question_key = _cap_key(ctx, f"capq:{question_identity(draft.question)}", self.cap_question)
        if question_key is None:
            return _verdict("reject", [("cap_question", f"{self.cap_question} accepted already")])
        object_keys = [
            _cap_key(ctx, _object_base(source, cell), self.cap_object) for cell in edited_objects(images.construction)
        ]
        if None in object_keys:
            return _verdict(
                "reject", [("cap_object", f"an object edited here is in {self.cap_object} accepted already")]
            )
        answer_class = TWIN_CLASS if twin else " ".join(text.lower().split())
        if twin:
            balance_note, balance_keys = _balance(ctx, family, answer_class, self.twin_rate)
        else:
            fair = 1 / len(draft.options)
            balance_note, balance_keys = _balance(ctx, family, answer_class, fair, spread=1 - self.twin_rate)
        if balance_note:
            return _verdict("reject", [("answer_balance", balance_note)])
        letter_note = self._position_bias(len(draft.options), answer)
        if letter_note:
            return _verdict("revise", [("answer_position_bias", letter_note)])
        self.note_accepted(len(draft.options), answer)
        for key in (answer_key, question_key, *object_keys, *balance_keys):
            ctx.registry.add(key)  # type: ignore[arg-type]
        return CriticVerdict(verdict="accept", reasons=[], feedback="")

    def note_accepted(self, n_options: int, answer_index: int) -> None:
        """Count an accepted answer position (the position-bias check compares against these counts)."""
        with self._lock:
            self._letters[(n_options, answer_index)] += 1
            self._accepted[n_options] += 1

    def _ambiguous(self, draft: Draft, full: Solution) -> CriticVerdict:
        rival = full.runner_up
        support = ", ".join(f"'{draft.options[i]}' {s:.2f}" for i, s in enumerate(full.scores) if s > 0)
        fixable = draft.task_type in (TaskType.ATTRIBUTE_COMPARE, TaskType.WHERE_DIFFERS) and rival is not None
        if fixable:
            text = f"options {support} are all supported by the pixels; replace the confusable distractor"
            return _verdict("revise", [("ambiguous", text)])
        return _verdict("reject", [("ambiguous", f"the pixels barely separate the options ({full.notes})")])

    def _position_bias(self, k: int, answer: int) -> str:
        with self._lock:
            total = self._accepted[k]
            if total < POSITION_MIN_SAMPLES:
                return ""
            share = (self._letters[(k, answer)] + 1) / (total + 1)
        if share <= 1 / k + POSITION_SLACK:
            return ""
        return f"letter {LETTERS[answer]} would hold {share:.0%} of accepted {k}-option answers; move the answer"
