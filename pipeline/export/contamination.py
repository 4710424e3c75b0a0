"""Contamination check: perceptual hashes of our images against a benchmark image folder.

Every image of every exported sample is hashed with `imagehash.phash` (64 bits, computed from the
pixels, not trusted from metadata) and compared with the phash of every image file under the
user's benchmark folder. A Hamming distance <= threshold is a hit; a sample with any hit is
excluded from the export and reported (which sample, which image, which benchmark file, distance).
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from schemas.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
DEFAULT_THRESHOLD = 8  # bits out of 64; near-duplicates after re-encoding/resizing sit well below it


def phash_int(image_bytes: bytes) -> int:
    """64-bit perceptual hash of encoded image bytes, as an int."""
    import imagehash
    from PIL import Image

    with Image.open(io.BytesIO(image_bytes)) as img:
        return int(str(imagehash.phash(img.convert("RGB"))), 16)


@dataclass
class BenchmarkIndex:
    """Perceptual hashes of every readable image under a benchmark folder."""

    root: Path
    files: list[str]  # paths relative to root, sorted
    hashes: np.ndarray  # uint64, parallel to files
    unreadable: list[str] = field(default_factory=list)  # "relpath: reason"


def index_benchmark(folder: str | Path) -> BenchmarkIndex:
    """Hash every image file under `folder` (recursively); unreadable files are reported, not fatal."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: contamination benchmark folder does not exist or is not a directory")
    files: list[str] = []
    hashes: list[int] = []
    unreadable: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(root).as_posix()
        try:
            h = phash_int(path.read_bytes())
        except Exception as e:  # noqa: BLE001 - any undecodable file is reported and skipped
            msg = f"{rel}: unreadable image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            print(f"mifg export: warning: {root}/{msg}", file=sys.stderr)
            unreadable.append(msg)
            continue
        files.append(rel)
        hashes.append(h)
    return BenchmarkIndex(root, files, np.array(hashes, dtype=np.uint64), unreadable)


@dataclass(frozen=True)
class ImageKey:
    """One of our images: the sample it belongs to and its position."""

    sample_id: str
    image_index: int
    sha256: str


@dataclass(frozen=True)
class Hit:
    """One of our images within `threshold` bits of a benchmark image."""

    sample_id: str
    image_index: int
    image_sha256: str
    benchmark_file: str
    distance: int


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    # numpy < 2.0: count bits byte by byte
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1)


def find_hits(
    keys: list[ImageKey], hashes: list[int], index: BenchmarkIndex, threshold: int = DEFAULT_THRESHOLD
) -> list[Hit]:
    """Every (our image, benchmark image) pair within `threshold` bits, in a deterministic order."""
    if not keys or len(index.files) == 0:
        return []
    ours = np.array(hashes, dtype=np.uint64)
    hits: list[Hit] = []
    chunk = max(1, 4_000_000 // max(len(index.files), 1))  # bound the (chunk x benchmark) distance matrix
    for start in range(0, len(ours), chunk):
        dist = _popcount(ours[start : start + chunk, None] ^ index.hashes[None, :])
        for i, j in zip(*np.nonzero(dist <= threshold), strict=True):
            k = keys[start + int(i)]
            hits.append(Hit(k.sample_id, k.image_index, k.sha256, index.files[int(j)], int(dist[i, j])))
    return sorted(hits, key=lambda h: (h.sample_id, h.image_index, h.distance, h.benchmark_file))


def report(index: BenchmarkIndex, hits: list[Hit], threshold: int, images_checked: int) -> dict:
    """JSON-able contamination report (written as contamination.json)."""
    return {
        "method": "imagehash.phash (64-bit), Hamming distance",
        "threshold": threshold,
        "benchmark_images": len(index.files),
        "benchmark_unreadable": index.unreadable,
        "images_checked": images_checked,
        "excluded_samples": sorted({h.sample_id for h in hits}),
        "hits": [
            {
                "sample_id": h.sample_id,
                "image_index": h.image_index,
                "image_sha256": h.image_sha256,
                "benchmark_file": h.benchmark_file,
                "distance": h.distance,
            }
            for h in hits
        ],
    }
