"""Photo folders as users have them: links out of the folder, hidden files, library warnings, huge and
float images, folders named after anything. The walker and the validator directly, then one real
`mifg generate --images` in a subprocess (where a raw warning would really show)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.image_sources import SkipImage, directory_source
from pipeline.image_validation import ValidationConfig, validate_input
from pipeline.photo_pool import build_pool
from schemas import Domain
from tests.pipeline.bad_images import bomb_png, photo

REPO = Path(__file__).resolve().parents[2]


def _save(path: Path, seed: int, size: tuple[int, int] = (96, 72)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed, size).save(path)


def tiff_with_torn_tag(size: tuple[int, int] = (64, 48)) -> bytes:
    """A TIFF whose description tag claims more bytes than the file has: PIL warns, then cannot open it."""
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 99, 199)).save(buf, format="TIFF", tiffinfo={270: "a description kept outside the IFD"})
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 270:
            struct.pack_into("<I", data, entry + 4, 100_000)
    return bytes(data)


def jpeg_with_torn_exif(seed: int) -> bytes:
    """A good JPEG whose EXIF block claims an entry past its end: PIL warns when reading it, the photo is fine."""
    ifd = b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHII", 0x010F, 2, 1000, 100) + b"\x00" * 4
    buf = io.BytesIO()
    photo(seed).save(buf, format="JPEG", exif=b"Exif\x00\x00" + ifd)
    return buf.getvalue()


def float_tiff(path: Path) -> np.ndarray:
    """A float (mode F) TIFF: a 0..1 gradient with NaN, +inf and -inf pixels; returns the array."""
    arr = np.tile(np.linspace(0.0, 1.0, 96, dtype=np.float32), (72, 1))
    arr[0, 0], arr[10, 10], arr[20, 20] = np.nan, np.inf, -np.inf
    Image.fromarray(arr, mode="F").save(path)
    return arr


# ---------------------------------------------------------------- the walker


def test_folder_links_out_of_the_root_are_not_followed_unless_asked(tmp_path):
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    _save(root / "nature" / "a.png", 1)
    _save(elsewhere / "b.png", 2)
    os.symlink(elsewhere, root / "linked")  # out of the root
    os.symlink(root / "nature", root / "alias")  # inside the root: followed as before
    srcs = {s.source_id: s for s in directory_source(root)}
    assert "dir:linked/b.png" not in srcs and "dir:alias/a.png" in srcs
    with pytest.raises(SkipImage) as e:
        srcs["dir:linked"].load()
    assert e.value.reason == "outside_root" and "--follow-links" in e.value.detail
    followed = [s.source_id for s in directory_source(root, follow_links=True)]
    assert "dir:linked/b.png" in followed and "dir:linked" not in followed


def test_hidden_files_are_used_and_hidden_folders_skipped(tmp_path):
    _save(tmp_path / ".IMG_0001.png", 1)
    _save(tmp_path / "nature" / ".kept.png", 2)
    _save(tmp_path / ".git" / "objects" / "x.png", 3)
    _save(tmp_path / ".thumbnails" / "t.png", 4)
    ids = [s.source_id for s in directory_source(tmp_path)]
    assert ids == ["dir:.IMG_0001.png", "dir:nature/.kept.png"]


def test_any_folder_name_gives_a_domain_and_the_mapping_is_printed_once(tmp_path):
    for rel in ["pets/cat.png", "pets/dogs/rex.png", "space/m31.png", "Nature/tree.png", "objects/cup.png", "x.png"]:
        _save(tmp_path / rel, len(rel))
    notes: list[str] = []
    doms = {s.source_id: s.domain for s in directory_source(tmp_path, on_note=notes.append)}
    assert doms["dir:Nature/tree.png"] == Domain.NATURE and doms["dir:objects/cup.png"] == Domain.OBJECT
    assert doms["dir:pets/cat.png"] == doms["dir:pets/dogs/rex.png"] == doms["dir:space/m31.png"] == Domain.OTHER
    assert len(notes) == 1 and notes[0].startswith("domains: pets -> other, space -> other ("), notes
    assert "Nature" not in notes[0].split("(")[0] and "x.png" not in notes[0]
    notes.clear()
    list(directory_source(tmp_path, domain=Domain.URBAN, on_note=notes.append))
    assert notes == []  # a forced domain maps nothing


# ---------------------------------------------------------------- the validator


def test_library_warnings_become_the_skip_line_and_never_print(tmp_path):
    (tmp_path / "torn_tag.tif").write_bytes(tiff_with_torn_tag())
    (tmp_path / "torn_exif.jpg").write_bytes(jpeg_with_torn_exif(5))
    _save(tmp_path / "good.png", 6)
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        pool, report = build_pool(
            directory_source(tmp_path), tmp_path / "cache", on_skip=lambda s: lines.append(s.line()), workers=2
        )
    assert [str(w.message) for w in shown] == []
    assert len(lines) == 1 and "torn_tag.tif: " in lines[0] and "UserWarning: Truncated File Read" in lines[0]
    assert report.kept == 2  # the JPEG with the torn EXIF block is a usable photo: used, silently


def test_float_images_with_nan_and_inf_are_scaled_on_their_finite_values(tmp_path):
    arr = float_tiff(tmp_path / "f.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" must not happen
        got = np.asarray(validate_input(tmp_path / "f.tif", ValidationConfig()).convert("L"), dtype=float)
    assert got.mean() > 100  # not all black
    want = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0) * 255
    assert np.abs(got - want).max() <= 1.0
    assert got[10, 10] == 255 and got[0, 0] == 0 == got[20, 20]
    with pytest.raises(SkipImage, match="no finite pixel"):
        validate_input(Image.fromarray(np.full((48, 64), np.nan, dtype=np.float32), mode="F"), ValidationConfig())


def test_max_pixels_above_pils_own_limit_is_honoured():
    header_only = bomb_png(12_000, 12_000)  # 144 MP claimed: over PIL's 89 MP warning, under ours
    with pytest.raises(SkipImage) as e:
        validate_input(header_only, ValidationConfig(max_pixels=200_000_000))
    assert e.value.reason != "decompression_bomb"  # passed the guard; the tiny file then fails to decode
    with pytest.raises(SkipImage) as e:
        validate_input(header_only, ValidationConfig(max_pixels=100_000_000))
    assert e.value.reason == "decompression_bomb" and "limit 100000000" in e.value.detail


# ---------------------------------------------------------------- the command


def _generate(*args: str) -> subprocess.CompletedProcess:
    from agents.offline.edits import FAST_GENERATE_FLAGS

    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", "NO_COLOR": "1", "PYTHONWARNINGS": "always"}
    cmd = [sys.executable, "-m", "pipeline.cli", "generate", *args, "--no-progress", "--workers", "1"]
    return subprocess.run([*cmd, *FAST_GENERATE_FLAGS], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_generate_over_an_awkward_folder(tmp_path):
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    for i in range(4):
        _save(root / "pets" / f"p{i}.png", 10 + i)
        _save(root / "nature" / f"n{i}.png", 20 + i)
        _save(root / "big" / f"b{i}.png", 30 + i, (200, 150))  # 30000 px
    _save(root / ".hidden.png", 40)
    (root / "torn_tag.tif").write_bytes(tiff_with_torn_tag())
    (root / "torn_exif.jpg").write_bytes(jpeg_with_torn_exif(41))
    float_tiff(root / "float.tif")
    _save(elsewhere / "e.png", 42)
    os.symlink(elsewhere, root / "linked")
    out = tmp_path / "run"

    job = _generate("--images", str(root), "--out", str(out), "-n", "2", "--max-pixels", "20000")
    assert job.returncode == 0, job.stderr[-3000:]
    err = job.stderr.splitlines()
    assert not [ln for ln in err if "Warning" in ln and not ln.startswith("skipped ")], job.stderr
    assert "Traceback" not in job.stderr
    skipped = {ln.split(": ")[0].rsplit("/", 1)[-1]: ln for ln in err if ln.startswith("skipped ")}
    assert sorted(skipped) == ["b0.png", "b1.png", "b2.png", "b3.png", "linked", "torn_tag.tif"], skipped
    assert "decompression_bomb" in skipped["b0.png"] and "limit 20000" in skipped["b0.png"]
    assert "outside_root" in skipped["linked"] and "Truncated File Read" in skipped["torn_tag.tif"]
    domain_lines = [ln for ln in err if ln.startswith("domains: ")]
    assert len(domain_lines) == 1 and domain_lines[0].startswith("domains: big -> other, pets -> other ("), err

    bad = _generate("--images", str(root), "--out", str(tmp_path / "r2"), "-n", "2", "--max-pixels", "0")
    assert bad.returncode == 2 and bad.stderr.strip() == "mifg: error: --max-pixels 0: give a positive number of pixels"
    r3 = tmp_path / "r3"
    followed = _generate("--images", str(root), "--out", str(r3), "-n", "1", "--max-pixels", "20000", "--follow-links")
    assert followed.returncode == 0, followed.stderr[-3000:]
    assert "outside_root" not in followed.stderr
    assert _pool_photos(r3) == _pool_photos(out) + 1  # elsewhere/e.png joined


def _pool_photos(run: Path) -> int:
    from pipeline.stats import collect_stats

    return collect_stats(run)["pool"]["pool_photos"]
