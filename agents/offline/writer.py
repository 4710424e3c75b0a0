"""The offline question writer: turns a constructed image set into a multiple-choice question.

The writer knows the ground truth (the pairer's construction record) and picks a task type the set
supports, words the question, draws distractors and shuffles the options with a seeded RNG.
A revision replays the first draft's plan and applies every critic feedback code in order
(balance option lengths, move the answer, drop confusable distractors, change task type), so a
revision is deterministic and always differs from the draft it replaces.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace

from agents.base import AgentContext, Draft, ImageSet
from agents.offline.colours import COLOUR_NAMES, hue_gap
from agents.offline.reasons import codes_in, quoted
from agents.offline.regions import Region, all_regions, grid_note, region_containing, region_text
from schemas import LETTERS, Box, TaskType, TokenUsage

WHERE_OPTIONS = 4  # answer + 3 distractor regions of the 3x3 grid
COLOUR_OPTIONS = 4

TEMPLATES: dict[str, list[str]] = {
    "which_differs": [
        "Image 1 is the reference. Exactly one of the other images differs from it in a small detail. "
        "Which image is it?",
        "All images but one are exact copies of image 1; one has a small local change. Which image has the change?",
        "Compare every other image with image 1 at full resolution. Which one is not identical to image 1?",
    ],
    "which_texture": [
        "Both images have a yellow-framed square at the same place; in exactly one of them the square is filled "
        "with a fine checkerboard instead of plain grey. Which image is it?",
        "Each image shows a framed square in the same place. In one image it is plain grey, in the other it holds "
        "a fine checkerboard. Which image has the checkerboard?",
    ],
    "odd_one_out": [
        "All but one of these images are identical. Which image is the odd one out?",
        "One image differs from all the others in a small detail. Which one is it?",
    ],
    "where_pair": [
        "The two images are identical except for one small region. Where in the image is that region?",
        "Compare image 1 and image 2 closely. In which part of the image do they differ?",
    ],
    "where_many": [
        "These images are identical except for one small region that differs in some of them. Where is it?",
        "Some of these images differ from the others in one small spot. In which part of the image is it?",
    ],
    "count_shape": [
        "How many of these images contain a small {colour} {shape}?",
        "In how many of these images can you find a tiny {colour} {shape}?",
    ],
    "count_tint": [
        "How many of these images contain a small detail tinted {colour}?",
        "In how many of these images is a small detail tinted {colour}?",
    ],
    "attribute": [
        "A small detail differs between image {i} and image {j}. What colour is that detail in image {j}?",
        "Look for the small change from image {i} to image {j}. What colour does the changed detail have in image {j}?",
    ],
    "same_clean": [
        "Images 2 and 3 show the scene of image 1 in another shot, and one of them has a small added mark. "
        "Which one shows the scene with nothing added?",
    ],
    "same_edited": [
        "Images 2 and 3 show the scene of image 1 in another shot. Which one has a small mark that is not in image 1?",
    ],
}

_LETTER = re.compile(r"\bletter ([A-J])\b")


@dataclass
class Truth:
    """The ground truth of an image set, read from its construction record."""

    set_kind: str  # "edit" | "related"
    edit: str  # edit kind
    n: int
    marked: list[int]  # indices of edited images
    bbox: tuple[float, float, float, float]
    intended: TaskType
    colour: str | None = None
    shape: str | None = None
    clean: int = -1  # related sets: the unedited candidate
    edited: int = -1  # related sets: the edited candidate

    @property
    def unmarked(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.marked]

    @classmethod
    def of(cls, images: ImageSet) -> Truth:
        c = images.construction
        if not c or "task" not in c:
            raise ValueError("the offline writer needs the offline pairer's construction record (got none)")
        return cls(
            set_kind=images.kind,
            edit=str(c.get("edit_kind", "")),
            n=len(images.images),
            marked=[int(i) for i in c.get("marked", [])],
            bbox=tuple(c["bbox"]),
            intended=TaskType(c["task"]),
            colour=c.get("colour"),
            shape=c.get("shape"),
            clean=int(c.get("clean", -1)),
            edited=int(c.get("edited", -1)),
        )


def compatible_tasks(t: Truth) -> list[TaskType]:
    """Task types this image set supports, the pairer's intended one first."""
    if t.set_kind == "related":
        return [TaskType.SAME_SOURCE]
    if t.edit == "fine_texture":  # which of the two images holds the checkerboard; "where" shows at any size
        return [TaskType.WHICH_DIFFERS]
    out: list[TaskType] = []
    k = len(t.marked)
    first_marked = 0 in t.marked
    differing = [i for i in range(1, t.n) if (i in t.marked) != first_marked]
    if t.n >= 3 and len(differing) == 1:
        out.append(TaskType.WHICH_DIFFERS)
    if t.n >= 3 and k in (1, t.n - 1):
        out.append(TaskType.ODD_ONE_OUT)
    if region_containing(t.bbox, 3) or region_containing(t.bbox, 2):
        out.append(TaskType.WHERE_DIFFERS)
    if t.colour and t.n >= 3 and 1 <= k <= t.n - 1:
        out.append(TaskType.COUNT_ACROSS)
    if t.colour and 1 <= k < t.n:
        out.append(TaskType.ATTRIBUTE_COMPARE)
    if t.intended in out:
        out.remove(t.intended)
        out.insert(0, t.intended)
    return out


@dataclass
class Plan:
    """Every choice behind one draft; revisions change the plan, the draft is rendered from it."""

    task: TaskType
    template: int
    order_seed: int = 0
    style: str = "names"  # where_differs wording: names | coords | quadrants
    balance_lengths: bool = False
    far_distractors: bool = False
    polarity: str = "clean"  # same_source: ask for the clean or the edited candidate
    avoid: frozenset[str] = frozenset()  # distractor texts (lowercase) the critic found confusable
    forbidden_letters: frozenset[str] = frozenset()
    used_tasks: tuple[TaskType, ...] = field(default_factory=tuple)


def _where_region(t: Truth, style: str) -> Region | None:
    return region_containing(t.bbox, 2 if style == "quadrants" else 3)


def _describe(t: Truth) -> str:
    if t.edit == "recolor":
        return f"a small detail is tinted {t.colour}"
    if t.edit == "paste_shape":
        return f"a small {t.colour} {t.shape} was added"
    if t.edit == "paste_patch":
        return "a small patch from elsewhere in the photo was pasted"
    if t.edit == "remove":
        return "a small detail was erased"
    if t.edit == "move":
        return "a small detail was shifted"
    if t.edit == "fine_texture":
        return "the framed square holds a fine checkerboard instead of plain grey"
    return "a small detail changed"


def _place_words(bbox: tuple[float, float, float, float]) -> str:
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    r = Region(3, min(2, int(cy * 3)), min(2, int(cx * 3)))
    return (
        f"in the {region_text(r, 'names')} of the image (x {bbox[0]:.2f}-{bbox[2]:.2f}, y {bbox[1]:.2f}-{bbox[3]:.2f})"
    )


def _pick_distractors(pool: list[str], answer: str, k: int, plan: Plan, rng: random.Random, gap=None) -> list[str]:
    """k distractors from `pool`: seeded, minus confusable ones, nearest in length when balancing."""
    cands = [p for p in pool if p != answer and p.lower() not in plan.avoid]
    if plan.far_distractors and gap is not None:
        far = [p for p in cands if gap(p) >= 0.5]
        cands = far if len(far) >= min(k, 2) else cands
    rng.shuffle(cands)
    if plan.balance_lengths:
        cands.sort(key=lambda p: abs(len(p) - len(answer)))  # stable: ties keep the seeded order
    return cands[:k]


@dataclass
class _Body:
    question: str
    answer: str
    distractors: list[str]
    rationale: str
    evidence: list[Box]


def _body(t: Truth, plan: Plan, seed: int) -> _Body:
    """Question, answer, distractors, rationale and evidence of `plan.task` (options not yet ordered)."""
    rng = random.Random(f"{seed}:{plan.task.value}:distractors")
    task, bbox = plan.task, t.bbox

    def tpl(name: str) -> str:
        options = TEMPLATES[name]
        return options[plan.template % len(options)]

    where = _place_words(bbox)
    if task == TaskType.WHICH_DIFFERS and t.edit == "fine_texture":
        target = t.marked[0]
        others = [f"Image {i + 1}" for i in range(t.n) if i != target]
        why = f"Zoomed in, image {target + 1} shows that {_describe(t)} {where}; in the other it is plain grey."
        return _Body(tpl("which_texture"), f"Image {target + 1}", others, why, [Box(image_index=target, bbox=bbox)])
    if task == TaskType.WHICH_DIFFERS:
        first_marked = 0 in t.marked
        target = next(i for i in range(1, t.n) if (i in t.marked) != first_marked)
        others = [f"Image {i + 1}" for i in range(1, t.n) if i != target]
        why = f"Image {target + 1} differs from image 1: {_describe(t)} {where}; the other images are exact copies."
        q = tpl("which_texture" if t.edit == "fine_texture" else "which_differs")
        return _Body(q, f"Image {target + 1}", others, why, [Box(image_index=target, bbox=bbox)])
    if task == TaskType.ODD_ONE_OUT:
        odd = t.marked[0] if len(t.marked) == 1 else t.unmarked[0]
        others = [f"Image {i + 1}" for i in range(t.n) if i != odd]
        if len(t.marked) == 1:
            why = f"In image {odd + 1} {_describe(t)} {where}; the other images are identical."
        else:
            why = f"Image {odd + 1} is the unedited photo; in all the others {_describe(t)} {where}."
        return _Body(tpl("odd_one_out"), f"Image {odd + 1}", others, why, [Box(image_index=odd, bbox=bbox)])
    if task == TaskType.WHERE_DIFFERS:
        region = _where_region(t, plan.style)
        assert region is not None  # compatible_tasks/_fit_style guarantee it
        answer = region_text(region, plan.style)
        pool = [region_text(r, plan.style) for r in all_regions(plan.style)]
        k = min(WHERE_OPTIONS - 1, len(pool) - 1)
        distractors = _pick_distractors(pool, answer, k, plan, rng)
        q = f"{tpl('where_pair') if t.n == 2 else tpl('where_many')} {grid_note(plan.style)}"
        why = f"The images differ only {where}: {_describe(t)}."
        evidence = [Box(image_index=t.marked[0], bbox=bbox), Box(image_index=t.unmarked[0], bbox=bbox)]
        return _Body(q, answer, distractors, why, evidence)
    if task == TaskType.COUNT_ACROSS:
        k = len(t.marked)
        name = "count_shape" if t.edit == "paste_shape" else "count_tint"
        q = tpl(name).format(colour=t.colour, shape=t.shape)
        others = [str(v) for v in range(1, t.n) if v != k]
        listed = ", ".join(str(i + 1) for i in t.marked)
        why = f"Only images {listed} show it ({_describe(t)} {where}); the others are the unedited photo."
        if k == 1:
            why = f"Only image {listed} shows it ({_describe(t)} {where}); the others are the unedited photo."
        return _Body(q, str(k), others, why, [Box(image_index=i, bbox=bbox) for i in t.marked])
    if task == TaskType.ATTRIBUTE_COMPARE:
        ref = t.unmarked[seed % len(t.unmarked)]
        target = t.marked[(seed // 7) % len(t.marked)]
        q = tpl("attribute").format(i=ref + 1, j=target + 1)
        colour = str(t.colour)
        k = COLOUR_OPTIONS - 1
        distractors = _pick_distractors(list(COLOUR_NAMES), colour, k, plan, rng, gap=lambda c: hue_gap(c, colour))
        why = f"Compared with image {ref + 1}, in image {target + 1} {_describe(t)} {where}."
        evidence = [Box(image_index=target, bbox=bbox), Box(image_index=ref, bbox=bbox)]
        return _Body(q, colour, distractors, why, evidence)
    if task == TaskType.SAME_SOURCE:
        clean, edited = f"Image {t.clean + 1}", f"Image {t.edited + 1}"
        if plan.polarity == "clean":
            q, answer, other = tpl("same_clean"), clean, edited
        else:
            q, answer, other = tpl("same_edited"), edited, clean
        why = f"In {edited} {_describe(t)} {where}, which image 1 does not show; {clean} is the other shot unchanged."
        return _Body(q, answer, [other], why, [Box(image_index=t.edited, bbox=bbox)])
    raise ValueError(f"the offline writer cannot write {task.value} questions")


def _arrange(answer: str, distractors: list[str], plan: Plan, seed: int) -> list[str]:
    """Seeded shuffle of the options, keeping the answer off letters the critic found over-used."""
    rng = random.Random(f"{seed}:order:{plan.order_seed}")
    options = [answer, *distractors]
    perm = options[:]
    for _ in range(32):
        perm = options[:]
        rng.shuffle(perm)
        if LETTERS[perm.index(answer)] not in plan.forbidden_letters:
            return perm
    allowed = [i for i in range(len(options)) if LETTERS[i] not in plan.forbidden_letters]
    if allowed:  # move the answer to the first allowed slot, keeping the rest in shuffled order
        rest = [o for o in perm if o != answer]
        rest.insert(allowed[0], answer)
        return rest
    return perm


def render(t: Truth, plan: Plan, seed: int) -> Draft:
    """The draft a plan describes."""
    body = _body(t, plan, seed)
    if t.edit == "fine_texture":
        # options name images: listed in image order, so letter and image agree in every sample (a small
        # policy cannot read an option order); the answer's position stays uniform with the target image
        options = sorted([body.answer, *body.distractors], key=lambda o: (len(o), o))
    else:
        options = _arrange(body.answer, body.distractors, plan, seed)
    return Draft(
        question=body.question,
        options=options,
        answer=LETTERS[options.index(body.answer)],
        task_type=plan.task,
        rationale=body.rationale,
        evidence=body.evidence,
    )


def _fit_style(t: Truth, plan: Plan) -> Plan:
    """A where_differs plan in a wording whose regions contain the difference."""
    if plan.task != TaskType.WHERE_DIFFERS or _where_region(t, plan.style) is not None:
        return plan
    for style in ("names", "coords", "quadrants"):
        if _where_region(t, style) is not None:
            return replace(plan, style=style)
    return plan


def first_plan(t: Truth, seed: int) -> Plan:
    """The plan of the first draft: the intended (else first supported) task, seeded wording."""
    tasks = compatible_tasks(t)
    if not tasks:
        raise ValueError("this image set supports no task type")
    rng = random.Random(f"{seed}:plan")
    plan = Plan(
        task=tasks[0],
        template=rng.randrange(6),
        polarity=rng.choice(["clean", "edited"]),
        used_tasks=(tasks[0],),
    )
    return _fit_style(t, plan)


def _switch_task(t: Truth, plan: Plan) -> Plan:
    """Another task type the set supports; failing that, another wording (or polarity) of this one."""
    for task in compatible_tasks(t):
        if task not in plan.used_tasks:
            return _fit_style(t, replace(plan, task=task, used_tasks=(*plan.used_tasks, task)))
    if plan.task == TaskType.SAME_SOURCE:
        return replace(plan, polarity="edited" if plan.polarity == "clean" else "clean")
    return replace(plan, template=plan.template + 1, order_seed=plan.order_seed + 1)


def revise(t: Truth, plan: Plan, draft: Draft, feedback: str) -> Plan:
    """The plan after one round of critic feedback on `draft`."""
    codes = codes_in(feedback)
    new = plan
    answer_text = draft.options[LETTERS.index(draft.answer)]
    for code in codes:
        if code == "option_length_bias":
            new = replace(new, balance_lengths=True)
            if new.task == TaskType.WHERE_DIFFERS and new.style == "names":
                # coordinates have equal lengths; quadrants when the difference straddles 3x3 cells
                new = replace(new, style="coords" if _where_region(t, "coords") else "quadrants")
        elif code == "answer_position_bias":
            m = _LETTER.search(feedback)
            letter = m.group(1) if m else draft.answer
            new = replace(new, forbidden_letters=new.forbidden_letters | {letter}, order_seed=new.order_seed + 1)
        elif code == "ambiguous":
            confusable = {q.lower() for q in quoted(feedback) if q != answer_text}
            if new.task in (TaskType.ATTRIBUTE_COMPARE, TaskType.WHERE_DIFFERS) and confusable:
                new = replace(new, avoid=new.avoid | confusable, far_distractors=True)
            else:
                new = _switch_task(t, new)
        else:  # near_duplicate, weak_evidence, thumbnail_solvable, ...: try another task type
            new = _switch_task(t, new)
    if not codes:  # free-text feedback we cannot parse: a different task type is the honest change
        new = _switch_task(t, new)
    return new


def _same(a: Draft, b: Draft) -> bool:
    return (a.question, a.options, a.answer, a.task_type) == (b.question, b.options, b.answer, b.task_type)


def plan_for(t: Truth, seed: int, feedback: list[str]) -> tuple[Plan, Draft]:
    """Replay the first plan through every feedback round; each round must change the draft."""
    plan = first_plan(t, seed)
    draft = render(t, plan, seed)
    for text in feedback:
        new_plan = revise(t, plan, draft, text)
        new_draft = render(t, new_plan, seed)
        tries = 0
        while _same(new_draft, draft) and tries < 6:  # e.g. two options and the new order equals the old
            new_plan = replace(new_plan, order_seed=new_plan.order_seed + 1) if tries < 3 else _switch_task(t, new_plan)
            new_draft = render(t, new_plan, seed)
            tries += 1
        plan, draft = new_plan, new_draft
    return plan, draft


class OfflineWriter:
    """Writer agent: several task types, seeded option order, revisions driven by critic codes."""

    async def write(
        self, images: ImageSet, ctx: AgentContext, *, seed: int, feedback: list[str], attempt: int
    ) -> tuple[Draft, TokenUsage]:
        """Write the first draft (attempt 0) or the revision after `feedback` (one entry per round)."""
        return self.write_sync(images, seed=seed, feedback=feedback, attempt=attempt), TokenUsage()

    def write_sync(self, images: ImageSet, *, seed: int, feedback: list[str], attempt: int = 0) -> Draft:
        """Synchronous body of `write`."""
        if images.construction.get("version") == 2:
            from agents.offline.scene_writer import write_scene

            return write_scene(images, seed, list(feedback) + ["revise"] * max(0, attempt - len(feedback)))
        rounds = list(feedback)
        if attempt > len(rounds):  # a revision without recorded feedback still has to change something
            rounds += ["revise"] * (attempt - len(rounds))
        _, draft = plan_for(Truth.of(images), seed, rounds)
        return draft
