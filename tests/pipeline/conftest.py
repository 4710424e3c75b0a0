"""Shared fixtures: a small folder of photos (fast to validate) for runner tests."""

from __future__ import annotations

import pytest

from tests.pipeline.bad_images import photo


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """Eight small distinct photos in two domain folders."""
    root = tmp_path_factory.mktemp("photos")
    for i in range(8):
        sub = root / ("nature" if i % 2 else "urban")
        sub.mkdir(exist_ok=True)
        photo(100 + i, (96, 72)).save(sub / f"p{i}.png")
    return root
