"""Which photos of a pool are related: the same subject, scene or place in other shots.

Three signals join photos into groups (connected components): the describer's captions and tags
overlapping (Jaccard over their words, `caption_similarity`) or their embeddings close (cosine,
`embedding_similarity`, when an embeddings model is given); the hash index's related pairs (bursts,
near-duplicates, stereo pairs); and the user's own groups: a `datasets` column (`--group-column`)
or sub-folders (photos in one folder that does not merely name a domain).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agents.base import ImageRef, PhotoPool
from agents.llm.describer import Description
from schemas import Domain

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an the of on in at with and or to from by for is are its it this that these those photo image picture"
    " view close up shot some two three one".split()
)
_DOMAINS = frozenset(d.value for d in Domain)


def words(d: Description) -> frozenset[str]:
    """The content words of a description's tags and caption."""
    text = " ".join(d.tags) + " " + d.caption
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def user_group(ref: ImageRef) -> str | None:
    """The user's own group of a photo: its dataset group column, else its sub-folder (see `folder_of`)."""
    if ref.group:
        return "group:" + ref.group
    folder = folder_of(ref)
    return None if folder is None else "folder:" + folder


def folder_of(ref: ImageRef) -> str | None:
    """The user's sub-folder of a `dir:` photo, unless it only names a domain; None otherwise."""
    if not ref.source.startswith("dir:") or "/" not in ref.source:
        return None
    folder = ref.source[4:].rsplit("/", 1)[0]
    last = folder.rsplit("/", 1)[-1].lower().rstrip("s")
    return None if last in _DOMAINS else folder


def related_groups(
    pool: PhotoPool,
    descriptions: dict[str, Description],
    min_similarity: float,
    embeddings: Sequence[Sequence[float]] | None = None,
    min_cosine: float = 0.8,
) -> list[list[int]]:
    """Groups (photo indices, each of >= 2) of related photos; a photo is in at most one group."""
    n = len(pool.photos)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    described = [(i, descriptions.get(p.sha256)) for i, p in enumerate(pool.photos)]
    bags = {i: words(d) for i, d in described if d is not None}
    keys = sorted(bags)
    for a, i in enumerate(keys):
        for j in keys[a + 1 :]:
            if embeddings is not None:
                u, v = embeddings[i], embeddings[j]
                num = sum(x * y for x, y in zip(u, v, strict=True))
                den = (sum(x * x for x in u) * sum(y * y for y in v)) ** 0.5
                if den and num / den >= min_cosine:
                    join(i, j)
            elif jaccard(bags[i], bags[j]) >= min_similarity:
                join(i, j)
    for i, j, _ in pool.related:
        join(i, j)
    by_group: dict[str, list[int]] = {}
    for i, p in enumerate(pool.photos):
        g = user_group(p)
        if g is not None:
            by_group.setdefault(g, []).append(i)
    for members in by_group.values():
        for j in members[1:]:
            join(members[0], j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) >= 2), key=lambda g: g[0])
