"""Fixtures for the offline agents: a small pool of real scikit-image photos cached as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.base import AgentContext, ImageRef, ImageSet, PhotoPool, SetRegistry
from agents.image_cache import store_image
from agents.offline.edits import EDIT_KINDS
from schemas import Domain

MAX_SIDE = 256  # small photos keep the tests fast
THUMB = 32  # 256/32 has the geometry of the real 512/64: edits and thumbnails scale with the ratio
PHOTOS = {
    "chelsea": Domain.NATURE,
    "coffee": Domain.OBJECT,
    "astronaut": Domain.PEOPLE,
    "brick": Domain.TEXTURE,
    "camera": Domain.PEOPLE,
    "text": Domain.DOCUMENT,
}


def _store(arr: np.ndarray, image_dir: Path, source: str, domain: Domain) -> ImageRef:
    img = Image.fromarray(arr).convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return store_image(img, image_dir, source=source, license="CC0-1.0", domain=domain)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offline-images")


@pytest.fixture(scope="session")
def pool(image_dir: Path) -> PhotoPool:
    """Six photos, no related pairs."""
    import skimage.data

    photos = [_store(getattr(skimage.data, n)(), image_dir, f"skimage:{n}", d) for n, d in PHOTOS.items()]
    return PhotoPool(photos=photos)


@pytest.fixture(scope="session")
def stereo_pool(image_dir: Path, pool: PhotoPool) -> PhotoPool:
    """The pool plus the two views of the stereo motorcycle, registered as a related pair."""
    import skimage.data

    left, right, _ = skimage.data.stereo_motorcycle()
    extra = [
        _store(left, image_dir, "skimage:stereo_motorcycle_left", Domain.INDOOR),
        _store(right, image_dir, "skimage:stereo_motorcycle_right", Domain.INDOOR),
    ]
    n = len(pool.photos)
    return PhotoPool(photos=[*pool.photos, *extra], related=[(n, n + 1, 6)])


@pytest.fixture
def ctx(image_dir: Path, pool: PhotoPool) -> AgentContext:
    return AgentContext(image_dir=image_dir, pool=pool, registry=SetRegistry(), thumbnail_side=THUMB)


@pytest.fixture
def stereo_ctx(image_dir: Path, stereo_pool: PhotoPool) -> AgentContext:
    return AgentContext(image_dir=image_dir, pool=stereo_pool, registry=SetRegistry(), thumbnail_side=THUMB)


def hand_made_set(
    ctx: AgentContext, base: ImageRef, variant: np.ndarray, marked: list[int], n: int, construction: dict
) -> ImageSet:
    """An image set built in a test: `n` images, the `marked` ones replaced by `variant`."""
    vref = store_image(Image.fromarray(variant), ctx.image_dir, source=base.source, role="variant:test")
    images = [vref if i in marked else base for i in range(n)]
    return ImageSet(images=images, domain=base.domain, construction=construction)


@pytest.fixture(scope="session")
def edit_sets(image_dir: Path, pool: PhotoPool) -> list[tuple[int, ImageSet]]:
    """(seed, image set) for seeds 0..119, made once: most tests only read them."""
    from agents.base import WorkItem
    from agents.offline import OfflinePairer

    ctx = AgentContext(image_dir=image_dir, pool=pool, registry=SetRegistry(), thumbnail_side=THUMB)
    pairer = OfflinePairer(kinds=EDIT_KINDS, related_rate=0.0)
    return [(s, pairer.make(WorkItem(index=s, seed=s), ctx)) for s in range(120)]
