"""No leaks: nothing a model can read in an export says how the images were made (issue 9, item 6).

A store whose samples carry the construction's words everywhere the pipeline keeps them (roles like
"variant:paste_shape", construction records naming the edit and the marked image, image file names
like "variant.png", as shards written before roles were neutralised have them) is exported in every
format; then every exported file is scanned: Parquet and Arrow cells recursively (with their schema
metadata and the text chunks of every image), JSON, TSV, and everything else as text (YAML, Python,
shell, the dataset card). A leak word anywhere outside the allowed fields (below) fails the test,
and every image file name must be the content hash of its bytes. The scanner is checked too: a leak
planted in an exported file must be found.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.export import FORMATS, ExportConfig, run_export
from pipeline.shard_store import ShardWriter
from schemas import Status
from tests.export.conftest import TASKS, verified
from tests.factories import make_sample

# The construction's words: edit kinds, and what the pairer calls the images. Matched at the start of
# a word, case-insensitively, so "recolored", "removed", "moved", "variants" and "unedited" count too.
LEAK_WORDS = (
    "recolor",
    "recolour",
    "paste_shape",
    "paste_patch",
    "remove",
    "move",
    "clone",
    "inpaint",
    "fine_texture",
    "variant",
    "marked",
    "edited",
)
LEAK_RE = re.compile(r"(?<![a-z0-9])(?:un)?(?:" + "|".join(LEAK_WORDS) + ")", re.IGNORECASE)
NAME_RE = re.compile(r"^[0-9a-f]{16}\.(?:png|jpe?g|webp|bmp|gif|tiff?)$")

# Where construction words may appear: (path pattern, why). A path is the chain of keys from the top of
# a row or JSON document ("*" for any list index); a pattern allows every path it is a prefix of.
ALLOWED: dict[tuple[str, ...], str] = {
    ("provenance",): "the audit record; its construction is ground truth by design, never a prompt",
    ("reward_model",): "verl's ground truth, read by the reward only",
    ("status",): "review status: 'edited' means a human corrected the question text, not an image",
    ("review",): "review metadata (annotators, decisions) for auditing",
    ("image_meta", "*", "source"): "source photo ids: splits group on them (provenance-like metadata)",
    ("statuses",): "export.json: counts of the review statuses",
    ("review_decisions",): "export.json: counts of the review decisions",
    ("groups", "*", "sources"): "splits.json: the source photos of each split group (sorted, not per image)",
}
TEXT = ("<text>",)  # the path of a file scanned as plain text: never allowed


@dataclass(frozen=True)
class Finding:
    """One leak: which file, where in it, and what was found."""

    file: str
    path: tuple[str, ...]
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {'.'.join(self.path)}: {self.what}"


def _allowed(path: tuple[str, ...]) -> bool:
    return any(
        len(path) >= len(pat) and all(p == "*" or p == q for p, q in zip(pat, path, strict=False)) for pat in ALLOWED
    )


class Scanner:
    """Collects findings over the files of one export."""

    def __init__(self, root: Path, forbidden: frozenset[str] = frozenset()) -> None:
        self.root = root
        self.forbidden = forbidden  # literal strings that must not appear outside ALLOWED either
        self.findings: list[Finding] = []
        self.file = ""

    def _add(self, path: tuple[str, ...], what: str) -> None:
        self.findings.append(Finding(self.file, path, what))

    def text(self, value: str, path: tuple[str, ...]) -> None:
        if _allowed(path):
            return
        for m in LEAK_RE.finditer(value):
            start = max(0, m.start() - 30)
            self._add(path, f"leak word {m.group(0)!r} in ...{value[start : m.end() + 30]!r}...")
        for lit in self.forbidden:
            if lit in value:
                self._add(path, f"source id {lit!r}")

    def image(self, data: bytes, path: tuple[str, ...], name: str | None = None) -> None:
        """Encoded image bytes: must decode; their text metadata is scanned; `name` must be their hash."""
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                info = dict(im.info)
        except Exception as e:  # noqa: BLE001 - anything that is not an image is reported
            self._add(path, f"bytes that are not an image ({type(e).__name__})")
            return
        for key, val in info.items():
            if isinstance(val, bytes):
                val = val.decode("latin-1")
            if isinstance(val, str):
                self.text(f"{key}={val}", (*path, "<image-info>"))
        if name is not None:
            digest = hashlib.sha256(data).hexdigest()
            if not (NAME_RE.match(Path(name).name) and Path(name).name.startswith(digest[:16])):
                self._add(path, f"image file name {name!r} is not the content hash {digest[:16]}")
            self.text(name, (*path, "<name>"))

    def value(self, v, path: tuple[str, ...]) -> None:
        if isinstance(v, dict):
            if isinstance(v.get("bytes"), bytes) and "path" in v:  # an image struct {bytes, path}
                self.image(v["bytes"], path, v["path"] or "")
                rest = {k: x for k, x in v.items() if k not in ("bytes", "path")}
            else:
                rest = v
            for k, x in rest.items():
                self.text(str(k), (*path, str(k)))
                self.value(x, (*path, str(k)))
        elif isinstance(v, (list, tuple)):
            for x in v:
                self.value(x, (*path, "*"))
        elif isinstance(v, str):
            self.text(v, path)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            self.image(bytes(v), path)

    def table(self, table: pa.Table) -> None:
        for k, v in (table.schema.metadata or {}).items():
            self.text(k.decode() + "=" + v.decode("utf-8", "replace"), ("<schema>",))
        for row in table.to_pylist():
            self.value(row, ())

    def tsv(self, path: Path) -> None:
        csv.field_size_limit(sys.maxsize)
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                images = [base64.b64decode(b) for b in json.loads(row.pop("image"))]
                names = json.loads(row.pop("image_path"))
                if len(names) != len(images):
                    self._add(("image_path",), f"{len(names)} names for {len(images)} images")
                for data, name in zip(images, names, strict=False):
                    self.image(data, ("image",), name)
                for col, cell in row.items():
                    self.text(str(col), (str(col),))
                    self.text(cell or "", (str(col),))

    def file_(self, path: Path) -> None:
        self.file = path.relative_to(self.root).as_posix()
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            self.table(pq.read_table(path))
        elif suffix == ".arrow":  # datasets' save_to_disk writes Arrow streams
            with pa.memory_map(str(path)) as src:
                self.table(pa.ipc.open_stream(src).read_all())
        elif suffix == ".json":
            self.value(json.loads(path.read_text(encoding="utf-8")), ())
        elif suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self.value(json.loads(line), ())
        elif suffix == ".tsv":
            self.tsv(path)
        else:  # README.md, *.yaml, *.py, *.sh and anything else: plain text, never allowed
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                self._add(TEXT, "a binary file the scanner does not know")
                return
            self.text(text, TEXT)
        self.text(self.file, ("<file name>",))


def scan(root: Path, forbidden: frozenset[str] = frozenset()) -> list[Finding]:
    """Every leak in the export folder `root`."""
    scanner = Scanner(root, forbidden)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert files, f"{root}: nothing to scan"
    for p in files:
        scanner.file_(p)
    return scanner.findings


# ------------------------------------------------------------------------------------------ the store

KINDS = ["paste_shape", "recolor", "paste_patch", "remove", "move", "clone", "inpaint", "fine_texture"]
OLD_NAMES = ["original.png", "variant.png", "edited_2.jpg", "marked"]  # what an old shard might call images


def leaky_samples(n: int = 12) -> list:
    """Verified samples carrying construction words in roles, records and image names (old-shard style)."""
    samples = []
    for i in range(n):
        s = make_sample(500 + i, n_images=2 + i % 3, task_type=TASKS[i % 4], source=f"photo:leak-{i}")
        target, kind = s.answer_index, KINDS[i % len(KINDS)]
        for k, (img, meta) in enumerate(zip(s.images, s.image_meta, strict=True)):
            meta.role = f"variant:{kind}" if k == target else "original"
            img.path = OLD_NAMES[k % len(OLD_NAMES)]
            if i % 4 == 3:  # a related set: another shot of the scene per image, so sources differ
                meta.source = f"photo:leak-{i}-shot{k}"
        s.provenance.construction = json.dumps(
            {"edit_kind": kind, "marked": [target], "edited": target, "variant": f"variant:{kind}"}, sort_keys=True
        )
        samples.append(verified(s, Status.EDITED if i % 3 == 0 else Status.ACCEPTED, f"ann{i % 2}"))
    return samples


def per_image_sources(samples) -> frozenset[str]:
    """Source ids of samples whose images come from different photos: naming one is naming an image."""
    return frozenset(m.source for s in samples if len(set(s.sources)) > 1 for m in s.image_meta)


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """The leaky store, its samples, and one export per format: (samples, {fmt: out})."""
    root = tmp_path_factory.mktemp("leaky") / "store"
    samples = leaky_samples()
    w = ShardWriter(root, "verified")
    w.write(samples[:5])
    w.write(samples[5:])
    outs = {}
    for fmt in FORMATS:
        out = tmp_path_factory.mktemp("leak-exports") / fmt
        run_export(ExportConfig(store=root, out=out, fmt=fmt, test_fraction=0.25), progress=None)
        outs[fmt] = out
    return samples, outs


def test_the_store_really_is_leaky(leaky):
    samples, _ = leaky
    assert any(LEAK_RE.search(m.role) for s in samples for m in s.image_meta)
    assert all(LEAK_RE.search(s.provenance.construction) for s in samples)
    assert any(not NAME_RE.match(img.path) for s in samples for img in s.images)
    assert per_image_sources(samples)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_no_leak_outside_provenance(fmt, leaky):
    samples, outs = leaky
    findings = scan(outs[fmt], per_image_sources(samples))
    assert not findings, f"{len(findings)} leaks in the {fmt} export:\n" + "\n".join(map(str, findings[:30]))


@pytest.mark.parametrize("fmt", ["hf", "lmms-eval"])
def test_old_roles_are_blanked_and_kept_in_the_construction_record(fmt, leaky):
    samples, outs = leaky
    by_id = {s.id: s for s in samples}
    rows = [r for p in sorted((outs[fmt] / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(r["id"] for r in rows) == sorted(by_id)
    for row in rows:
        src = by_id[row["id"]]
        assert [m["role"] for m in row["image_meta"]] == [""] * len(src.images)
        record = json.loads(row["provenance"]["construction"])
        assert record["image_roles"] == [m.role for m in src.image_meta]  # the audit keeps them
        assert record["edit_kind"] == json.loads(src.provenance.construction)["edit_kind"]
        assert [m["source"] for m in row["image_meta"]] == [m.source for m in src.image_meta]  # splits need them
        for img, meta in zip(row["images"], src.image_meta, strict=True):
            assert img["path"] == f"{meta.sha256[:16]}{Path(img['path']).suffix}"


def test_splits_still_group_by_source(leaky):
    samples, outs = leaky
    plan = json.loads((outs["hf"] / "splits.json").read_text())
    split_of = {sid: v["split"] for sid, v in plan["samples"].items()}
    seen: dict[str, str] = {}
    for s in samples:
        for src in s.sources:
            assert seen.setdefault(src, split_of[s.id]) == split_of[s.id]
    assert set(split_of.values()) == {"train", "test"}


# ---------------------------------------------------------------------- the scanner can find leaks


def _rewrite_parquet(path: Path, change) -> None:
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows[0])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _rewrite_tsv(path: Path, change) -> None:
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    change(rows[0])
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _png_with_text(data: bytes, key: str, text: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(key, text)
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _set_path(row: dict, path: str) -> None:
    row["images"][0]["path"] = path


def _append_prompt(row: dict) -> None:
    row["prompt"][0]["content"] += "\nHint: image 2 was recolored."


def _role(row: dict) -> None:
    row["image_meta"][0]["role"] = "variant:move"


def _tool_kwargs(row: dict) -> None:
    row["extra_info"]["task_type"] = "which_differs/paste_patch"


def _image_text(row: dict) -> None:
    row["images"][0]["bytes"] = _png_with_text(row["images"][0]["bytes"], "Comment", "inpainted detail")


def _question(row: dict) -> None:
    row["question"] += " (the edited one)"


def _tsv_name(row: dict) -> None:
    names = json.loads(row["image_path"])
    names[0] = "original_1.png"  # no leak word, but not a content hash
    row["image_path"] = json.dumps(names)


def _source_id(row: dict) -> None:
    row["prompt"][0]["content"][-1]["text"] += " photo:leak-3-shot1"


PLANTS = [
    ("hf", "data/train-00000-of-00001.parquet", _role, ("image_meta", "*", "role"), "variant"),
    ("hf", "data/train-00000-of-00001.parquet", lambda r: _set_path(r, "variant.png"), ("images", "*"), "name"),
    ("verl", "train.parquet", _append_prompt, ("prompt", "*", "content"), "recolored"),
    ("verl", "train.parquet", _tool_kwargs, ("extra_info", "task_type"), "paste_patch"),
    ("trl", "data/train.parquet", _image_text, ("images", "*", "<image-info>"), "inpaint"),
    ("trl", "data/train.parquet", _source_id, ("prompt", "*", "content", "*", "text"), "photo:leak-3-shot1"),
    ("vlmevalkit", "MIFG_QA_TRAIN.tsv", _question, ("question",), "edited"),
    ("vlmevalkit", "MIFG_QA_TRAIN.tsv", _tsv_name, ("image",), "original_1.png"),
]


@pytest.mark.parametrize(("fmt", "file", "change", "where", "word"), PLANTS)
def test_the_scanner_finds_a_planted_leak(fmt, file, change, where, word, leaky, tmp_path):
    samples, outs = leaky
    out = tmp_path / fmt
    shutil.copytree(outs[fmt], out)
    target = out / file
    (_rewrite_tsv if target.suffix == ".tsv" else _rewrite_parquet)(target, change)
    findings = scan(out, per_image_sources(samples))
    assert findings, "the planted leak was not found"
    assert all(f.file == file for f in findings)
    assert any(f.path[: len(where)] == where and word in f.what for f in findings), findings


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("README.md", "\nImage 2 is the marked one.\n"),
        ("mifg_reward.py", "\n# removed the variant check\n"),
        ("tool_config.yaml", "\n# cloned from the original\n"),
    ],
)
def test_the_scanner_reads_text_files(file, text, leaky, tmp_path):
    _, outs = leaky
    out = tmp_path / "verl"
    shutil.copytree(outs["verl"], out)
    with open(out / file, "a", encoding="utf-8") as f:
        f.write(text)
    findings = scan(out)
    assert findings and {f.file for f in findings} == {file} and all(f.path == TEXT for f in findings)


def test_the_scanner_reads_json_keys_and_allows_only_the_allowed(leaky, tmp_path):
    _, outs = leaky
    out = tmp_path / "hf"
    shutil.copytree(outs["hf"], out)
    report = json.loads((out / "export.json").read_text())
    report["statuses"]["edited"] = 99  # allowed: a review status
    report["moved_images"] = 1  # not allowed: a key outside the allowed fields
    (out / "export.json").write_text(json.dumps(report))
    findings = scan(out)
    assert [(f.file, f.path) for f in findings] == [("export.json", ("moved_images",))]
