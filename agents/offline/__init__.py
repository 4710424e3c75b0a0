"""The offline (procedural) backend of the four agents: real photos, known edits, pixel checks.

`build_offline_agents()` is the entry point the pipeline uses. Options (all optional):
  related_rate  share of items made from related photo pairs when the pool has any (0.12)
  max_images    largest image set the pairer makes, 3 or 4 (4)
  families      task families of the default sets (default: all ten of `scene_sets.BUILDERS`)
  twin_rate     share of sets that are unanswerable twins ("none of them", "no difference"; 0.15)
  cap_answer, cap_question  accepted samples per (photo, family, answer) (3) and per question string (40)
  cap_object    accepted samples per object of a photo that an edit acted on (20)
  kinds         edit kinds; default "natural" (= `NATURAL_KINDS`: clone, heal, recolour or move an object,
                in the families of `scene_sets`); the drawn kinds of earlier versions (`EDIT_KINDS`: recolor,
                paste_shape, ... on pixel copies) are opt-in, e.g. kinds=["recolor","paste_shape"], as is
                "fine_texture" (`OPT_IN_KINDS`) makes zoom-only texture sets, e.g. kinds=["fine_texture"]
  tau, min_px   pixel-difference threshold (0-255) and the fewest changed pixels that count
  image_side    side of fine_texture images, an even multiple of the thumbnail side (default: from the photo)
  thumbnail_side  the size "not fine-grained" is judged at by the critic and the pairer (default: the
                pipeline's, 64); e.g. 16 for the tiny RL policy's overview
"""

from __future__ import annotations

from typing import Any

from agents.base import AgentSet
from agents.offline.critic import CAP_ANSWER, CAP_OBJECT, CAP_QUESTION, OfflineCritic
from agents.offline.edits import EDIT_KINDS, OPT_IN_KINDS
from agents.offline.natural_edits import NATURAL_KINDS
from agents.offline.pairer import OfflinePairer
from agents.offline.pixel_solver import MIN_PX, TAU
from agents.offline.reasons import REASON_CODES
from agents.offline.scene_sets import BUILDERS, DEFAULT_FAMILIES
from agents.offline.verifier import OfflineVerifier
from agents.offline.writer import OfflineWriter
from schemas.errors import ConfigError

PROMPT_VERSION = "offline-v2"
"""Recorded in provenance; bump when a change alters what the offline agents produce."""

_KNOWN = {
    "related_rate",
    "max_images",
    "kinds",
    "tau",
    "min_px",
    "image_side",
    "thumbnail_side",
    "families",
    "twin_rate",
    "cap_answer",
    "cap_question",
    "cap_object",
}


def _number(opts: dict[str, Any], name: str, default: Any, kind: type = int) -> Any:
    """Option `name` as an int (or float), or `default`; a value that is not one is a one-line ConfigError."""
    value = opts.get(name, default)
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"offline option {name!r} must be {'an integer' if kind is int else 'a number'}; got {value!r}"
        ) from None


def build_offline_agents(options: dict[str, Any] | None = None) -> AgentSet:
    """The four offline agents, configured by `options` (see the module docstring)."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - _KNOWN)
    if unknown:
        raise ConfigError(f"unknown offline agent option(s): {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}")
    raw = opts.get("kinds", NATURAL_KINDS)
    kinds = NATURAL_KINDS if raw in ("natural", ["natural"]) else tuple(raw)
    known_kinds = NATURAL_KINDS + EDIT_KINDS + OPT_IN_KINDS
    families = tuple(opts.get("families", DEFAULT_FAMILIES))
    if not families or any(f not in BUILDERS for f in families):
        raise ConfigError(
            f"offline option 'families' must be a non-empty subset of {', '.join(BUILDERS)}; got {families}"
        )
    twin_rate = _number(opts, "twin_rate", 0.15, float)
    if not 0.0 <= twin_rate <= 1.0:
        raise ConfigError(f"offline option 'twin_rate' must be in [0, 1]; got {twin_rate}")
    bad = [k for k in kinds if k not in known_kinds]
    if bad or not kinds:
        raise ConfigError(f"offline option 'kinds' must be a non-empty subset of {', '.join(known_kinds)}; got {kinds}")
    tau, min_px = _number(opts, "tau", TAU), _number(opts, "min_px", MIN_PX)
    image_side = _number(opts, "image_side", None) or None
    thumb = _number(opts, "thumbnail_side", None) or None
    if thumb is not None and thumb < 4:
        raise ConfigError(f"offline option 'thumbnail_side' must be at least 4 px; got {thumb}")
    if image_side is not None:
        t = thumb or 64
        if image_side % t or (image_side // t) % 2 or t % 2:
            raise ConfigError(
                f"offline option 'image_side' ({image_side}) must be an even multiple of thumbnail_side ({t}),"
                " so that fine_texture checkerboards average out exactly"
            )
    cap_object = _number(opts, "cap_object", CAP_OBJECT)
    return AgentSet(
        pairer=OfflinePairer(
            related_rate=_number(opts, "related_rate", 0.12, float),
            max_images=_number(opts, "max_images", 4),
            kinds=kinds,
            image_side=image_side,
            thumbnail_side=thumb,
            families=families,
            twin_rate=twin_rate,
            cap_object=cap_object,  # the pairer passes over what the critic would reject for it
        ),
        writer=OfflineWriter(),
        verifier=OfflineVerifier(tau=tau, min_px=min_px),
        critic=OfflineCritic(
            tau=tau,
            min_px=min_px,
            thumbnail_side=thumb,
            cap_answer=_number(opts, "cap_answer", CAP_ANSWER),
            cap_question=_number(opts, "cap_question", CAP_QUESTION),
            cap_object=cap_object,
            twin_rate=twin_rate,
        ),
        backend="offline",
        model="",
        prompt_version=PROMPT_VERSION,
    )


__all__ = [
    "EDIT_KINDS",
    "OPT_IN_KINDS",
    "PROMPT_VERSION",
    "REASON_CODES",
    "OfflineCritic",
    "OfflinePairer",
    "OfflineVerifier",
    "OfflineWriter",
    "build_offline_agents",
]
