"""Natural edits leave no trace a person would call an edit: no glow, no outline, no seam, no washed-out clone."""

from __future__ import annotations

import random

import numpy as np

from agents.offline.natural_edits import MIN_DELTA_E, _healed_like_ground, delta_e_top, natural_edit
from agents.offline.objects import build_index

GROUND = np.array((70.0, 110.0, 160.0))  # a calm sea
LAND = np.array((150.0, 170.0, 120.0))


def _sea(seed: int = 0, halo: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Calm textured sea with isolated islands of about 30 px; `halo`: a pale shallows ring this much lighter."""
    rng = np.random.default_rng(seed)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    islands = [(150, 150, 14), (420, 300, 15), (650, 430, 13)]
    for cx, cy, r in islands:
        d = np.hypot(xx - cx, yy - cy)
        if halo:
            img[(d > r) & (d <= r + 7)] += halo
        img[d <= r] = LAND + rng.normal(0, 3, (int((d <= r).sum()), 3))
    return img.clip(0, 255).astype(np.uint8), islands


def _edits(kind: str, img: np.ndarray, seeds: int) -> list:
    """The `kind` edits made on `img` over `seeds` seeds (about 30 px objects, anywhere but the border)."""
    made = (natural_edit(kind, img, random.Random(s), 30, (40, 40, 760, 560)) for s in range(seeds))
    return [e for e in made if e is not None]


def _removal(img: np.ndarray, seed: int = 0):
    for s in range(20):
        e = natural_edit("removed", img, random.Random(seed + s), 30, (40, 40, 760, 560))
        if e is not None:
            return e
    raise AssertionError("no removal made on a calm sea with isolated islands")


def test_removal_leaves_plain_ground_and_touches_nothing_else():
    img, islands = _sea()
    e = _removal(img)
    x1, y1, x2, y2 = e.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    (ix, iy, r) = min(islands, key=lambda t: abs(t[0] - cx) + abs(t[1] - cy))
    place = e.variant[iy - r : iy + r, ix - r : ix + r].astype(np.float32)
    assert np.abs(place.reshape(-1, 3).mean(0) - GROUND).max() < 4, "the island's place is sea again"
    assert place.mean(2).std() < 6, "no remnant of the island, no smear"
    # nothing changes beyond the mask and its short fade
    far = np.ones(img.shape[:2], bool)
    far[y1 - 12 : y2 + 12, x1 - 12 : x2 + 12] = False
    assert (e.variant[far] == img[far]).all()


def test_a_pale_ring_around_an_object_goes_with_it():
    """An island's pale shallows lie outside its segment: a heal that stopped short left a lighter oval."""
    img, islands = _sea(1, halo=12.0)
    e = _removal(img, 5)
    x1, y1, x2, y2 = e.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    (ix, iy, r) = min(islands, key=lambda t: abs(t[0] - cx) + abs(t[1] - cy))
    yy, xx = np.mgrid[0:600, 0:800]
    d = np.hypot(xx - ix, yy - iy)
    ring_px = e.variant[(d > r) & (d <= r + 7)].astype(np.float32)
    assert np.abs(ring_px.mean(0) - GROUND).max() < 4, "the shallows were healed over too"


def test_heal_check_refuses_a_lighter_spot_and_a_remnant():
    img, _ = _sea()
    e = _removal(img)
    index = build_index(img, 30)
    obj = min(index.objects, key=lambda o: abs(o.x - e.box[0]) + abs(o.y - e.box[1]))
    assert _healed_like_ground(img, e.variant, obj)
    lighter = e.variant.copy()
    win = lighter[obj.y : obj.y + obj.h, obj.x : obj.x + obj.w]
    win[obj.mask] = (win[obj.mask].astype(np.int16) + 9).clip(0, 255).astype(np.uint8)
    assert not _healed_like_ground(img, lighter, obj), "a lighter oval where the island was"
    assert not _healed_like_ground(img, img, obj), "the island itself is no heal"


def test_objects_near_other_structure_are_not_lifted_off():
    """Rocks a few px off an island's shore: no plain ground to heal it with (recolour it, never remove it)."""
    img, islands = _sea(2)
    img = img.copy()
    yy, xx = np.mgrid[0:600, 0:800]
    cx, cy, r = islands[0]
    for ang in (0.0, 2.1, 4.2):
        rx, ry = cx + (r + 8) * np.cos(ang), cy + (r + 8) * np.sin(ang)
        img[np.hypot(xx - rx, yy - ry) <= 3] = LAND.astype(np.uint8)
    index = build_index(img, 30)
    near = [o for o in index.objects if o.x < 200]
    lone = [o for o in index.objects if o.x > 300]
    assert near and lone, "all three islands are objects"
    assert all(o.isolated for o in lone) and not any(o.isolated for o in near)
    rng = random.Random(0)
    assert all(index.pick(rng, 30, (0, 0, 250, 600), [], isolated=True) is None for _ in range(5))


def test_clone_stands_out_from_its_new_ground_as_from_its_own():
    img, _ = _sea(3)
    e = None
    for s in range(20):
        e = natural_edit("added", img, random.Random(s), 30, (40, 40, 760, 560))
        if e is not None:
            break
    assert e is not None
    x1, y1, x2, y2 = e.box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    core = e.variant[cy - 6 : cy + 6, cx - 6 : cx + 6].reshape(-1, 3).astype(np.float32).mean(0)
    assert np.abs(core - LAND).max() < 12, "a full-strength island, not a faded copy"


def test_a_change_a_person_cannot_see_is_not_an_edit():
    """delta E, not grey levels: +30 in blue on a navy sea is invisible, green to brown is not."""
    navy = np.full((20, 20, 3), (10, 20, 45), np.uint8)
    bluer = navy.copy()
    bluer[..., 2] += 30
    assert delta_e_top(navy, bluer, 120) < MIN_DELTA_E
    green = np.full((20, 20, 3), (90, 140, 70), np.uint8)
    brown = np.full((20, 20, 3), (140, 110, 70), np.uint8)
    assert delta_e_top(green, brown, 120) > MIN_DELTA_E


def test_recolour_takes_a_kindred_colour_never_the_ground_around():
    """Green and brown islands and pale shallows on one sea: an island turns brown or green, never sea-pale."""
    rng = np.random.default_rng(4)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    colours = {
        (150, 150): (90, 150, 70),
        (420, 300): (150, 115, 70),
        (650, 430): (90, 150, 70),
        (250, 450): (105, 145, 150),
    }  # the last: pale shallows, lighter than the sea like an island
    for (cx, cy), c in colours.items():
        img[np.hypot(xx - cx, yy - cy) <= 14] = c
    img = img.clip(0, 255).astype(np.uint8)
    made = _edits("recoloured", img, 12)
    for e in made:
        to = np.array(e.record["to_rgb"], np.float32)
        assert min(np.abs(to - np.array(c)).max() for c in [(90, 150, 70), (150, 115, 70)]) < 12, to
    assert len(made) >= 3


def _sea_with_glows(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """Calm sea with sharp islands and soft pale glows (a seamount's shallows) of the same size and contrast."""
    rng = np.random.default_rng(seed)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    sharp, soft = [(150, 150), (650, 430)], [(420, 300), (200, 450)]
    for cx, cy in sharp:
        img[np.hypot(xx - cx, yy - cy) <= 14] = LAND
    for cx, cy in soft:
        glow = np.exp(-((np.hypot(xx - cx, yy - cy) / 11.0) ** 4))  # a plateau that fades over ~10 px
        img += glow[..., None] * (LAND - GROUND)
    return img.clip(0, 255).astype(np.uint8), sharp, soft


def test_only_objects_with_an_outline_are_edited():
    """A soft glow cloned onto open sea or recoloured looked painted, and its removal went unseen."""
    from agents.offline.objects import EDGE_MIN

    img, sharp, soft = _sea_with_glows()
    index = build_index(img, 30)

    def near(o, places):
        cx, cy = o.x + o.w / 2, o.y + o.h / 2
        return any(abs(cx - x) < 8 and abs(cy - y) < 8 for x, y in places)

    assert all(o.edge >= EDGE_MIN for o in index.objects if near(o, sharp))
    assert all(o.edge < EDGE_MIN for o in index.objects if near(o, soft))
    assert any(near(o, soft) for o in index.objects), "the glows are objects, just not ones to edit"
    for seed in range(12):
        e = natural_edit("added", img, random.Random(seed), 30, (40, 40, 760, 560), objects=index)
        if e is not None:
            fx, fy = e.record["from_px"]
            src = next(o for o in index.objects if (o.x, o.y) == (fx, fy))
            assert near(src, sharp), "only an outlined object is cloned"
        e = natural_edit("removed", img, random.Random(seed), 30, (40, 40, 760, 560), objects=index)
        if e is not None:
            cx, cy = (e.box[0] + e.box[2]) / 2, (e.box[1] + e.box[3]) / 2
            assert any(abs(cx - x) < 12 and abs(cy - y) < 12 for x, y in sharp), "only an outlined object goes"
    islands = [o.box for o in index.objects if near(o, sharp)]
    assert index.pick(random.Random(0), 30, (40, 40, 760, 560), islands, isolated=True) is None
    glow = index.pick(random.Random(0), 30, (40, 40, 760, 560), islands, isolated=True, outlined=False)
    assert glow is not None and near(glow, soft), "a region holding only a glow still holds an object"


def _archipelago(cluster: bool) -> np.ndarray:
    """The calm sea with one island alone at the left and, if `cluster`, a swarm of like islands at the right."""
    rng = np.random.default_rng(3)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    centres = [(150, 300)]
    if cluster:
        centres += [(470 + 75 * i, 110 + 75 * j) for i in range(4) for j in range(6)]
    for cx, cy in centres:
        d = np.hypot(xx - cx, yy - cy)
        img[d <= 13] = LAND + rng.normal(0, 3, (int((d <= 13).sum()), 3))
    return img.clip(0, 255).astype(np.uint8)


def test_no_change_among_a_crowd_of_like_objects():
    """An island removed among two dozen like it is never found (the Hubble field); the lone one may go."""
    from agents.offline.objects import CROWD_MAX, CROWD_REACH

    img = _archipelago(cluster=True)
    idx = build_index(img, 30)
    assert idx.crowd((140, 290, 160, 310), 30) == 0
    assert idx.crowd((540, 250, 560, 270), 30) > CROWD_MAX  # in the swarm, CROWD_REACH * 30 px around
    assert CROWD_REACH * 30 < 320  # ... while the lone island is further than that from the swarm
    edits = [natural_edit("removed", img, random.Random(s), 30, (40, 40, 760, 560)) for s in range(12)]
    made = [e for e in edits if e is not None]
    assert made, "the lone island can still be removed"
    assert all(e.box[2] < 300 for e in made), "nothing in the swarm is edited"
    added = [natural_edit("added", img, random.Random(s), 30, (40, 40, 760, 560)) for s in range(12)]
    assert all(e.box[2] < 430 for e in added if e is not None), "no clone set down in the swarm"
    # without the swarm the same islands would be fair game: the rule, not the island, refused them
    sparse = _archipelago(cluster=False)
    assert build_index(sparse, 30).crowd((540, 250, 560, 270), 30) == 0


def test_a_field_of_like_objects_is_never_edited():
    """A star field (here 192 like islands) holds no change a person could find: no edit is made in it."""
    from agents.offline.objects import objects_of

    rng = np.random.default_rng(5)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    for cx in range(40, 800, 50):
        for cy in range(40, 600, 50):
            d = np.hypot(xx - cx, yy - cy)
            img[d <= 8] = LAND
    img = img.clip(0, 255).astype(np.uint8)
    assert objects_of(img, 18).field
    assert all(
        natural_edit(k, img, random.Random(s), 18, (20, 20, 780, 580)) is None
        for k in ("removed", "added")
        for s in range(4)
    )
    assert not objects_of(_archipelago(cluster=False), 30).field


def test_a_thin_sliver_is_never_the_edit(monkeypatch):
    """A strip a few px wide, removed or cloned, went unfound by auditors: edits act on objects >= 12 px across."""
    import agents.offline.objects as objects

    rng = np.random.default_rng(7)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    for x, y in ((150, 150), (420, 300), (600, 450)):
        img[y : y + 6, x : x + 20] = LAND + rng.normal(0, 3, (6, 20, 3))
    img = img.clip(0, 255).astype(np.uint8)
    index = build_index(img, 18)
    slivers = [o for o in index.objects if min(o.w, o.h) < objects.MIN_PICK_SHORT_PX <= max(o.w, o.h)]
    assert slivers, "the strips are objects"
    within = (40, 40, 760, 560)
    assert all(index.pick(random.Random(s), 18, within, [], isolated=True) is None for s in range(6))
    monkeypatch.setattr(objects, "MIN_PICK_SHORT_PX", 0)
    assert any(index.pick(random.Random(s), 18, within, [], isolated=True) for s in range(6)), "the rule refused them"


def test_a_clone_lands_well_away_from_its_original():
    """The same island twice, side by side, is a copy anyone sees: a clone keeps CLONE_MIN_AWAY sizes off."""
    from agents.offline.natural_edits import CLONE_MIN_AWAY

    img, _ = _sea(3)
    made = _edits("added", img, 30)
    for e in made:
        fx, fy = e.record["from_px"]
        x1, y1, x2, y2 = e.box
        size = max(x2 - x1, y2 - y1)
        gap = max(fx - x2, x1 - (fx + size), fy - y2, y1 - (fy + size))  # px between the two boxes, one axis
        assert gap >= CLONE_MIN_AWAY * size - size, (e.box, (fx, fy))
    assert len(made) >= 3


def _sea_by_white_land(seed: int = 0) -> np.ndarray:
    """A green island in open sea on the left; on the right, sea channels between large white landmasses."""
    rng = np.random.default_rng(seed)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    img[np.hypot(xx - 150, yy - 300) <= 14] = LAND
    for cx in (470, 640, 800):
        for cy in (0, 170, 340, 510):
            img[np.hypot(xx - cx, yy - cy) <= 55] = (235.0, 238.0, 240.0)  # ice: too large to be an object
    return img.clip(0, 255).astype(np.uint8)


def test_a_clone_does_not_land_among_things_of_another_colour(monkeypatch):
    """A green island cloned into the channels of white Arctic land was called pasted at once."""
    import agents.offline.natural_edits as ne

    img = _sea_by_white_land()
    within = (360, 40, 760, 560)  # only the channels: the island's own open sea is out of reach

    def clones() -> list:
        made = (natural_edit("added", img, random.Random(s), 30, within) for s in range(16))
        return [e for e in made if e is not None]

    assert clones() == []
    monkeypatch.setattr(ne, "KIN_SHARE", 0.0)
    assert clones(), "the channels take a clone when its colour is not checked"


def _sea_with_a_hook(seed: int = 0) -> np.ndarray:
    """Calm sea with one island shaped like an L (a bar and a foot pointing right): its mirror image differs."""
    rng = np.random.default_rng(seed)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    img[280:314, 140:152] = LAND  # the bar
    img[300:314, 152:172] = LAND  # the foot
    return img.clip(0, 255).astype(np.uint8)


def _bar_on_the_right(img: np.ndarray, variant: np.ndarray) -> bool:
    """Whether the L that `variant` adds to `img` has its bar (its fullest column) in its right half."""
    land = np.abs(img.astype(np.float32) - LAND).max(-1) < 25
    new = (np.abs(variant.astype(np.float32) - LAND).max(-1) < 25) & ~land
    ys, xs = np.nonzero(new)
    cols = new[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].sum(0)
    return int(np.argmax(cols)) > len(cols) / 2


def test_a_clone_is_the_mirror_image_of_its_source(monkeypatch):
    """Two identical islands in one photo are a copy anyone recognises: a clone is mirrored left to right."""
    img = _sea_with_a_hook()
    made = _edits("added", img, 30)
    assert len(made) >= 2
    for e in made:
        assert _bar_on_the_right(img, e.variant), "the bar stands right of the foot in the clone"
        assert e.record["mirrored"] is True
    # control: without the mirror the clone is the same L (the bar at the left), so the check can fail
    from agents.offline import natural_edits

    monkeypatch.setattr(natural_edits, "mirrored", lambda im, o: (im, o))
    for e in _edits("added", img, 30)[:2]:
        assert not _bar_on_the_right(img, e.variant)


def _sea_by_relief_land(island_relief: float, seed: int = 0) -> np.ndarray:
    """A green island in open sea on the left; on the right, sea channels between large green landmasses
    shaded by their relief (a ripple of +-12 grey levels). `island_relief`: the island's own ripple."""
    rng = np.random.default_rng(seed)
    img = GROUND + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    relief = (np.sin(xx / 3.0) * np.cos(yy / 4.0))[..., None]
    island = np.hypot(xx - 150, yy - 300) <= 14
    img[island] = (LAND + island_relief * relief)[island]
    for cx in (470, 640, 800):
        for cy in (0, 170, 340, 510):
            land = np.hypot(xx - cx, yy - cy) <= 55  # too large to be an object itself
            img[land] = (LAND + 12.0 * relief)[land]
    return img.clip(0, 255).astype(np.uint8)


def test_a_clone_does_not_land_among_things_of_another_grain(monkeypatch):
    """A flat green island set down among green islands shaded by their relief was called pasted at once."""
    import agents.offline.natural_edits as ne

    within = (360, 40, 760, 560)  # only the channels: the island's own open sea is out of reach

    def clones(img: np.ndarray) -> list:
        made = (natural_edit("added", img, random.Random(s), 30, within) for s in range(16))
        return [e for e in made if e is not None]

    flat = _sea_by_relief_land(0.0)
    assert clones(flat) == []
    assert clones(_sea_by_relief_land(12.0)), "an island with the land's own relief may land there"
    monkeypatch.setattr(ne, "KIN_GRAIN", (0.0, float("inf")))
    assert clones(flat), "the channels take the flat island when its grain is not checked"


def test_an_islet_too_thin_to_show_relief_counts_as_flat():
    """A 25 x 14 px islet 6-7 px across had no px 3 inside its outline, so its grain went unchecked and it
    was set down among relief-shaded islands (called pasted twice): it counts as flat, as it looks."""
    from agents.offline.natural_edits import _clone_grain, _grain_fits
    from agents.offline.objects import Obj

    rng = np.random.default_rng(0)
    img = (LAND + rng.normal(0, 20, (14, 25, 3))).clip(0, 255).astype(np.uint8)  # as rough as it gets
    body = np.zeros((14, 25), bool)
    body[4:10, 2:23] = True  # 6 px across
    grain = _clone_grain(img, Obj(0, 0, np.ones((14, 25), bool), 60.0, body))
    assert grain == 0.0
    assert not _grain_fits(grain, 2.5), "not among things with relief"
    assert _grain_fits(grain, 1.0), "among plain things, or on open sea, it may land"


def _arctic(green_near: bool, seed: int = 0) -> np.ndarray:
    """White islets on a calm sea at the left; a light green islet far to the right (or, `green_near`, one
    of the islets at the left is green too)."""
    rng = np.random.default_rng(seed)
    img = GROUND + rng.normal(0, 3, (600, 1400, 3))
    yy, xx = np.mgrid[0:600, 0:1400]
    white, green = (235.0, 238.0, 240.0), (170.0, 215.0, 160.0)
    islets = [((200, 300), white), ((300, 250), white), ((290, 380), green if green_near else white)]
    for (cx, cy), colour in [*islets, ((1300, 300), green)]:
        img[np.hypot(xx - cx, yy - cy) <= 14] = colour
    return img.clip(0, 255).astype(np.uint8)


def test_a_recolour_takes_the_colour_of_things_around(monkeypatch):
    """A white Arctic islet turned the colour of land far away was called painted: the new colour is one
    of its neighbours' (or, with nothing near, of the nearest things)."""
    import agents.offline.natural_edits as ne

    def recolours(img: np.ndarray) -> list:
        made = (natural_edit("recoloured", img, random.Random(s), 30, (40, 40, 560, 560)) for s in range(12))
        return [e for e in made if e is not None]

    assert recolours(_arctic(green_near=False)) == []
    assert recolours(_arctic(green_near=True)), "a green neighbour lends its colour"
    monkeypatch.setattr(ne, "KIN_SHARE", 0.0)
    assert recolours(_arctic(green_near=False)), "the far green is taken when the colour around is not checked"
