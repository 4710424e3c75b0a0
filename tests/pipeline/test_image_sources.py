"""Image sources: directory walk order and domains, the skimage default, `datasets` images."""

from __future__ import annotations

import io

import pytest

from pipeline.image_sources import SKIMAGE_PHOTOS, directory_source, hf_dataset_source, printable, skimage_source
from pipeline.image_validation import ValidationConfig, validate_source
from schemas import Domain
from schemas.errors import InputError
from tests.pipeline.bad_images import photo


def test_directory_is_recursive_sorted_and_reads_domain_folders(tmp_path):
    for rel in ["b.png", "a.png", "nature/z.png", "nature/deeper/y.png", "misc/x.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        photo(len(rel)).save(tmp_path / rel)
    (tmp_path / ".DS_Store").write_bytes(b"junk")  # a hidden file: listed like any other (and skipped as not an image)
    srcs = list(directory_source(tmp_path))
    ids = [s.source_id for s in srcs]
    want = ["dir:.DS_Store", "dir:a.png", "dir:b.png", "dir:misc/x.png", "dir:nature/deeper/y.png", "dir:nature/z.png"]
    assert ids == want
    assert ids == [s.source_id for s in directory_source(tmp_path)]  # deterministic
    doms = {s.source_id: s.domain for s in srcs}
    assert doms["dir:nature/z.png"] == doms["dir:nature/deeper/y.png"] == Domain.NATURE
    assert doms["dir:misc/x.png"] == Domain.OTHER
    forced = list(directory_source(tmp_path, domain=Domain.URBAN, license="CC-BY-4.0"))
    assert {s.domain for s in forced} == {Domain.URBAN} and forced[0].license == "CC-BY-4.0"


def test_missing_directory_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(directory_source(tmp_path / "nope"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        list(directory_source(tmp_path / "file.txt"))


def test_skimage_default_has_licences_and_domains():
    srcs = list(skimage_source())
    assert len(srcs) == len(SKIMAGE_PHOTOS) + 1  # stereo_motorcycle gives two views
    assert all(s.license and s.license != "unknown" for s in srcs)
    assert len({s.domain for s in srcs}) >= 6
    img = validate_source(next(s for s in srcs if s.source_id == "skimage:camera"), ValidationConfig())
    assert img.mode == "RGB"  # a grayscale photo made RGB


def test_printable_escapes_control_and_undecodable():
    assert printable("a\nb") == "a\\nb"
    assert printable("bad\udcffname") == "bad\\xffname"
    assert printable("名前 ok") == "名前 ok"


@pytest.fixture
def image_dataset(tmp_path):
    import datasets

    imgs = []
    for i in range(3):
        buf = io.BytesIO()
        photo(i).save(buf, format="PNG")
        imgs.append({"bytes": buf.getvalue(), "path": f"{i}.png"})
    feats = datasets.Features(
        {"picture": datasets.Image(), "domain": datasets.Value("string"), "scene": datasets.Value("string")}
    )
    rows = {"picture": imgs, "domain": ["nature", "urban", "zzz"], "scene": ["harbour", " ", "harbour"]}
    ds = datasets.Dataset.from_dict(rows, features=feats)
    ds.save_to_disk(str(tmp_path / "saved"))
    ds.to_parquet(str(tmp_path / "data.parquet"))
    return tmp_path


def test_hf_dataset_from_disk_and_parquet(image_dataset):
    for path in (image_dataset / "saved", image_dataset / "data.parquet"):
        srcs = list(hf_dataset_source(path, image_column="picture"))
        assert [s.source_id for s in srcs] == ["hf:train/0", "hf:train/1", "hf:train/2"]
        assert [s.domain for s in srcs] == [Domain.NATURE, Domain.URBAN, Domain.OTHER]
        img = validate_source(srcs[1], ValidationConfig())
        assert img.size == photo(1).size


def test_hf_dataset_missing_column_names_the_columns(image_dataset):
    with pytest.raises(InputError, match=r"no column 'image' \(columns: picture, domain, scene\)"):
        list(hf_dataset_source(image_dataset / "saved"))
    (image_dataset / "empty").mkdir()
    with pytest.raises(InputError, match="neither a saved dataset"):
        list(hf_dataset_source(image_dataset / "empty", image_column="picture"))


def test_hf_dataset_group_column_marks_related_photos(image_dataset, tmp_path):
    from agents.llm.grouping import related_groups
    from pipeline.photo_pool import build_pool

    srcs = list(hf_dataset_source(image_dataset / "saved", image_column="picture", group_column="scene"))
    assert [s.group for s in srcs] == ["harbour", None, "harbour"]  # a blank cell is no group
    pool, _ = build_pool(srcs, tmp_path / "images")
    assert [p.group for p in pool.photos] == ["harbour", None, "harbour"]
    assert related_groups(pool, {}, min_similarity=1.0) == [[0, 2]]  # no captions: the column alone
    with pytest.raises(InputError, match=r"no column 'place' .*check --group-column"):
        list(hf_dataset_source(image_dataset / "saved", image_column="picture", group_column="place"))
