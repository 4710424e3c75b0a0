"""LLM pairer: chooses where each set comes from and, for sets of different photos, which photos.

Sources (`set_mix`, weights recorded in every set's construction as `set_source`):
- procedural: the offline pairer's natural edit families on one photo (answer known by construction);
- views: its crop and close-up families (views of one high-resolution photo);
- related: different photos the describer and the hash index found related (`agents.llm.grouping`):
  `same_source` sets (Image 1, exactly one other shot of its subject among unrelated photos, or none:
  answer known by construction) and `attribute_compare` sets (photos of one group compared; the
  writer decides the question and the blind verifier's votes decide whether it holds).
For the procedural sources the offline writer turns the construction into the true option and the
options (`construction["truth"]`), which the LLM writer must keep to and the verifier checks.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from agents.base import AgentContext, ImageSet, Pairer, WorkItem
from agents.llm.client import LLMClient
from agents.llm.config import SET_SOURCES, LLMConfig
from agents.llm.describer import Describer
from agents.llm.errors import carry_usage
from agents.llm.grouping import related_groups
from schemas import LETTERS, Domain, TokenUsage
from schemas.errors import ConfigError

VIEW_FAMILIES = ("crop_match", "zoom_locate")
RELATED_FAMILIES = ("same_source", "attribute_compare")
NONE_OPTION = "None of the images"


def offline_pairer(options: dict, families: tuple[str, ...]) -> Pairer:
    """The offline pairer restricted to `families` (imported lazily: agents.llm does not need it at import)."""
    try:
        from agents.offline import build_offline_agents
    except ImportError as e:  # pragma: no cover - only when the offline backend is missing
        raise ConfigError(f"the LLM pairer builds procedural sets with the offline pairer, unavailable: {e}") from e
    opts = {**options, "related_rate": 0.0}
    wanted = tuple(f for f in opts.pop("families", families) if f in families) or families
    try:
        return build_offline_agents({**opts, "families": list(wanted)}).pairer
    except ValueError as e:  # bad offline option: a user error, reported before any work
        raise ConfigError(f"LLM backend: {e}") from e


def truth_of(images: ImageSet, seed: int) -> dict[str, Any]:
    """The true option's text, the options and the evidence boxes of a procedural set, by construction."""
    from agents.offline.scene_writer import write_scene

    draft = write_scene(images, seed, [])
    return {
        "answer": draft.options[LETTERS.index(draft.answer)],
        "options": list(draft.options),
        "evidence": [b.model_dump(mode="json") for b in draft.evidence],
    }


class LLMPairer:
    """Draws a source per item (seeded), makes the set, and records the truth where it is known."""

    def __init__(self, client: LLMClient, config: LLMConfig, base: Pairer | None = None) -> None:
        self.client = client
        self.config = config
        self.describer = Describer(client, config)
        self._bases: dict[str, Pairer] = {}
        if base is not None:
            self._bases = {"procedural": base, "views": base}
        self._groups: list[list[int]] | None = None
        self.twin_rate = float(config.offline_options.get("twin_rate", 0.15))

    def base(self, source: str) -> Pairer:
        """The offline pairer of a procedural source (built on first use)."""
        if source not in self._bases:
            if source == "views":
                families = VIEW_FAMILIES
            else:
                from agents.offline.scene_sets import DEFAULT_FAMILIES

                families = tuple(f for f in DEFAULT_FAMILIES if f not in VIEW_FAMILIES)
            self._bases[source] = offline_pairer(self.config.offline_options, families)
        return self._bases[source]

    def _source(self, rng: random.Random) -> str:
        mix = {k: self.config.set_mix.get(k, 0.0) for k in SET_SOURCES}
        if self._groups is not None and not self._groups:
            mix["related"] = 0.0  # the pool has no related photos: its share goes to the others
        if not sum(mix.values()):
            mix = {"procedural": 1.0, "views": 0.0, "related": 0.0}
        return rng.choices(list(mix), weights=list(mix.values()))[0]

    async def pair(self, item: WorkItem, ctx: AgentContext) -> tuple[ImageSet, TokenUsage]:
        """Make the set of `item`: procedural or views through the offline pairer, related from the groups."""
        rng = random.Random(item.seed ^ 0x5E75)
        usage = TokenUsage()
        if self.config.set_mix.get("related", 0.0) > 0 and self._groups is None:
            usage = await self._group(ctx)
        try:
            images, source, drawn, u = await self._first_set(item, ctx, rng)
        except Exception as e:
            carry_usage(e, usage)  # the describer's pass rides on this item: a failure must not lose it
            raise
        usage = usage.add(u)
        images = self._with_domain(images)
        record = {**images.construction, "set_source": source, "set_mix": dict(self.config.set_mix)}
        if source != drawn:
            record["set_drawn"] = drawn  # the drawn source could not make a set on this pool
        return images.model_copy(update={"construction": record}), usage

    async def _first_set(
        self, item: WorkItem, ctx: AgentContext, rng: random.Random
    ) -> tuple[ImageSet, str, str, TokenUsage]:
        """The set of the drawn source, or of the first fallback that can make one: (set, source, drawn, usage)."""
        drawn = self._source(rng)
        failed: list[str] = []
        for source in self._fallbacks(drawn):
            try:
                images, u = await self._make(source, item, ctx, rng)
                return images, source, drawn, u
            except ValueError as e:  # e.g. no photo of the pool can hold a procedural edit
                failed.append(f"{source}: {e}")
        raise ValueError("; ".join(failed))

    def _fallbacks(self, drawn: str) -> list[str]:
        """The drawn source, then the other sources the mix weighs above 0 (related only with groups)."""
        others = [
            s
            for s in SET_SOURCES
            if s != drawn and self.config.set_mix.get(s, 0.0) > 0 and (s != "related" or self._groups)
        ]
        return [drawn, *others]

    async def _make(
        self, source: str, item: WorkItem, ctx: AgentContext, rng: random.Random
    ) -> tuple[ImageSet, TokenUsage]:
        """One source's set; procedural and views sets carry the truth of the offline construction."""
        if source == "related":
            return self._related(rng, ctx), TokenUsage()
        base = self.base(source)
        usage = TokenUsage()
        if hasattr(base, "make"):  # the offline pairer: CPU-bound, so off the event loop
            images = await asyncio.to_thread(base.make, item, ctx)
        else:
            images, usage = await base.pair(item, ctx)
        truth = truth_of(images, item.seed)
        return images.model_copy(update={"construction": {**images.construction, "truth": truth}}), usage

    async def _group(self, ctx: AgentContext) -> TokenUsage:
        """Describe the pool (once) and group it; with `embeddings_model`, by the captions' embeddings."""
        usage = await self.describer.ensure(ctx.pool.photos, ctx.image_dir.parent)
        if self._groups is not None:  # another item grouped while this one waited
            return usage
        vectors = None
        if self.config.embeddings_model:
            known = self.describer.known
            texts = [
                (known[p.sha256].caption + " " + " ".join(known[p.sha256].tags)) if p.sha256 in known else ""
                for p in ctx.pool.photos
            ]
            vectors, u = await self.client.embed(texts, self.config.embeddings_model)
            usage = usage.add(u)
        self._groups = related_groups(
            ctx.pool, self.describer.known, self.config.caption_similarity, vectors, self.config.embedding_similarity
        )
        return usage

    def _with_domain(self, images: ImageSet) -> ImageSet:
        if images.domain != Domain.OTHER:
            return images
        found = [self.describer.known[r.sha256].domain for r in images.images if r.sha256 in self.describer.known]
        return images.model_copy(update={"domain": found[0]}) if found else images

    def _related(self, rng: random.Random, ctx: AgentContext) -> ImageSet:
        groups = self._groups or []
        photos = ctx.pool.photos
        group = rng.choice(groups)
        in_group = set(group)
        others = [i for i in range(len(photos)) if i not in in_group]
        family = rng.choice(RELATED_FAMILIES) if others else "attribute_compare"
        k = self.config.related_max_images
        if family == "same_source":
            anchor, match = rng.sample(group, 2)
            twin = rng.random() < self.twin_rate
            distractors = rng.sample(others, min(len(others), k - 1 - (0 if twin else 1)))
            if not distractors or (twin and len(distractors) < 2):
                family = "attribute_compare"
            else:
                candidates = distractors + ([] if twin else [match])
                rng.shuffle(candidates)
                chosen = [anchor, *candidates]
                labels = [f"Image {p + 2}" for p in range(len(candidates))]
                answer = NONE_OPTION if twin else labels[candidates.index(match)]
                options = labels + [NONE_OPTION]
                roles = ["anchor"] + ["match" if c == match and not twin else "distractor" for c in candidates]
                return self._set(chosen, family, roles, {"answer": answer, "options": options, "evidence": []}, ctx)
        chosen = rng.sample(group, min(len(group), k))
        return self._set(chosen, "attribute_compare", ["member"] * len(chosen), None, ctx)

    def _set(self, chosen: list[int], family: str, roles: list[str], truth, ctx: AgentContext) -> ImageSet:
        refs = [ctx.pool.photos[i] for i in chosen]
        captions = [self.describer.known[r.sha256].caption if r.sha256 in self.describer.known else "" for r in refs]
        construction: dict[str, Any] = {
            "version": 2,
            "family": family,
            "photos": [r.source for r in refs],
            "photo_indices": chosen,
            "image_roles": roles,
            "captions": captions,
            "n_images": len(refs),
        }
        if truth is not None:
            construction["truth"] = truth
        domain = refs[0].domain
        return ImageSet(images=refs, domain=domain, kind="related", construction=construction)
