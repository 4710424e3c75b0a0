"""Every awkward input is either made into a clean RGB photo or skipped with one reason code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.image_sources import SkipImage, directory_source
from pipeline.image_validation import ValidationConfig, validate_input, validate_source
from pipeline.photo_pool import build_pool
from tests.pipeline.bad_images import bomb_png, make_corpus, photo

CFG = ValidationConfig(max_side=512)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


def _outcomes(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for src in directory_source(root):
        rel = src.source_id.removeprefix("dir:")
        try:
            out[rel] = validate_source(src, CFG)
        except SkipImage as e:
            out[rel] = e.reason
    return out


def test_each_file_gets_its_expected_outcome(corpus):
    root, expect = corpus
    got = _outcomes(root)
    for name, reason in expect.items():
        key = next(k for k in got if k == name or k == name.replace("\n", "\\n") or "bad" in name and "bad" in k)
        if reason is None:
            assert isinstance(got[key], Image.Image), f"{name!r}: expected usable, got {got[key]!r}"
            assert got[key].mode == "RGB"
        else:
            assert got[key] == reason, f"{name!r}: expected {reason}, got {got[key]!r}"
    assert isinstance(got[".hidden.png"], Image.Image)  # a hidden file is a file like any other


def test_conversions_keep_the_picture(corpus):
    root, _ = corpus
    got = _outcomes(root)
    assert got["exif_rotated.jpg"].size == (40, 80)  # orientation 6: displayed upright, sides swapped
    white = np.asarray(got["transparent.png"])
    assert white.min() >= 250  # transparency composited over white, not black
    gray = np.asarray(got["gray16.png"])
    assert gray.max() > 200 and gray.min() < 10  # 16-bit range mapped onto 8 bits, not clipped to white
    first = np.asarray(got["animated.gif"])
    assert first[..., 0].mean() > 200 and first[..., 1].mean() < 50  # the first (red) frame
    cmyk = np.asarray(got["cmyk.jpg"], dtype=float)
    ref = np.asarray(photo(4), dtype=float)
    assert np.abs(cmyk - ref).mean() < 40


def test_bomb_is_refused_before_decoding():
    with pytest.raises(SkipImage) as e:
        validate_input(bomb_png(30_000, 30_000), ValidationConfig(max_pixels=10_000_000))
    assert e.value.reason == "decompression_bomb"
    assert "900000000" in e.value.detail


def test_downsizes_to_max_side():
    img = validate_input(photo(1, (900, 300)), ValidationConfig(max_side=300))
    assert img.size == (300, 100)


def test_pool_reports_one_line_per_skip_and_continues(corpus, tmp_path, capsys):
    root, expect = corpus
    lines = []
    pool, report = build_pool(
        directory_source(root), tmp_path / "images", CFG, on_skip=lambda s: lines.append(s.line())
    )
    bad = [n for n, r in expect.items() if r is not None]
    assert len([s for s in report.skipped if s.reason not in ("duplicate", "near_duplicate")]) == len(bad)
    assert all("\n" not in line for line in lines)  # a newline in a file name must not split the line
    assert any("banner.png: extreme_aspect" in line for line in lines)
    assert any("bad\\xffname.png" in p.source for p in pool.photos)  # undecodable bytes escaped, still usable
    assert len(pool.photos) >= 10


def test_unreadable_file_is_skipped(tmp_path):
    """chmod 000 does not stop root: as root, check from a child process that dropped to `nobody`."""
    base = Path("/tmp") / f"mifg-perm-{os.getpid()}" if os.geteuid() == 0 else tmp_path
    base.mkdir(exist_ok=True)
    os.chmod(base, 0o755)
    secret = base / "secret.png"
    photo(1).save(secret)
    os.chmod(secret, 0o000)
    script = textwrap.dedent(
        f"""
        import os, sys
        from pipeline.image_sources import directory_source, SkipImage
        from pipeline.image_validation import validate_source, ValidationConfig
        import PIL.PngImagePlugin, PIL.JpegImagePlugin  # everything imported before dropping privileges
        if os.geteuid() == 0:
            os.setgid(65534); os.setuid(65534)
        (src,) = list(directory_source({str(base)!r}))
        try:
            validate_source(src, ValidationConfig())
            print("ACCEPTED")
        except SkipImage as e:
            print("SKIP", e.reason)
        """
    )
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    try:
        assert res.stdout.strip() == "SKIP unreadable", res.stderr[-2000:]
    finally:
        os.chmod(secret, 0o644)
        if os.geteuid() == 0:
            secret.unlink()
            base.rmdir()
