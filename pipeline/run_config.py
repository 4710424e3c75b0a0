"""A generation run's settings, the layout of its RUN_DIR, and the `run.json` resume check.

RUN_DIR/
    run.json                  settings that decide what the samples are (checked on every resume)
    shards/<tag>-<seq>.parquet, manifests/<tag>.json     critic-accepted samples (status candidate)
    rejected/shards/..., rejected/manifests/...          rejected samples (status rejected)
    images/<sha256>.png       content-addressed cache of source photos and variants
    state/<tag>.sqlite        item record: outcome of every finished work item, skipped inputs
<tag> is `main`, or `s{i}of{N}` with `--shard i/N`, so several shards may share one RUN_DIR.
With `--out URL` (`RunConfig.remote`) RUN_DIR is a local working dir, and the same keys under the URL
are the run's store (see `pipeline.run.replica`; images/ stays local: a cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.image_validation import ValidationConfig
from pipeline.shard_store import atomic_write_json
from schemas.errors import ConfigError, InputError

RUN_JSON = "run.json"
REJECTED = "rejected"
IMAGES = "images"
STATE = "state"
RUN_FORMAT = 1


def parse_shard(spec: str | None) -> tuple[int, int]:
    """`"i/N"` -> (i, N); None -> (0, 1)."""
    if spec is None or spec == "":
        return 0, 1
    try:
        i_s, n_s = spec.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected i/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {spec!r}: need 0 <= i < N")
    return i, n


def item_seed(run_seed: int, index: int) -> int:
    """The seed of work item `index`: a stable 63-bit hash of (run seed, index)."""
    digest = hashlib.sha256(f"mifg-item:{run_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class RunConfig:
    """Every setting of a generation run."""

    out: Path
    n: int = 2000
    seed: int = 0
    backend: str = "offline"
    model: str = ""
    base_url: str = ""
    source: str = "skimage"  # "skimage", "dir:<absolute path>" or "hf:<absolute path>"
    image_column: str = "image"
    group_column: str = ""  # --hf-dataset: a column whose equal values mark related photos
    follow_links: bool = False  # --images: also walk folder links that point outside the folder
    concurrency: int = 32
    workers: int = 1  # processes running items (offline backend: CPU-bound agents); 1 = this process only
    shard_index: int = 0
    shard_count: int = 1
    max_revisions: int = 2
    flush_every: int = 64  # samples per shard file
    flush_seconds: float = 30.0  # ... or this often, so a slow model run loses little on kill -9
    retry_failed: bool = False
    max_consecutive_failures: int = 50  # stop early when everything fails (bad key, endpoint down)
    dup_radius: int = 2
    related_radius: int = 10
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    agent_options: dict = field(default_factory=dict)
    remote: str = ""  # --out URL: the remote store (pipeline.run.replica); `out` is then its local working dir

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.n < 0:
            raise ConfigError(f"-n {self.n}: must be >= 0")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency {self.concurrency}: must be >= 1")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be >= 1")
        if self.max_revisions < 0:
            raise ConfigError(f"--max-revisions {self.max_revisions}: must be >= 0")
        if not 0 <= self.shard_index < self.shard_count:
            raise ConfigError(f"--shard {self.shard_index}/{self.shard_count}: need 0 <= i < N")

    @property
    def tag(self) -> str:
        """Shard tag of this run's files."""
        return "main" if self.shard_count == 1 else f"s{self.shard_index}of{self.shard_count}"

    @property
    def rejected_dir(self) -> Path:
        """Store root of rejected samples."""
        return self.out / REJECTED

    @property
    def image_dir(self) -> Path:
        """The content-addressed image cache."""
        return self.out / IMAGES

    @property
    def state_path(self) -> Path:
        """This run's SQLite item record."""
        return self.out / STATE / f"{self.tag}.sqlite"

    def identity(self) -> dict:
        """Settings that decide which samples the plan makes; a resume must match them exactly."""
        ident = {
            "format": RUN_FORMAT,
            "seed": self.seed,
            "backend": self.backend,
            "model": self.model,
            "source": self.source,
            "image_column": self.image_column,
            "shard_count": self.shard_count,
            "max_revisions": self.max_revisions,
            "dup_radius": self.dup_radius,
            "related_radius": self.related_radius,
            "validation": asdict(self.validation),
            "agent_options": self._sample_deciding_options(),
        }
        if self.group_column:  # only when set, so that earlier runs keep their run id
            ident["group_column"] = self.group_column
        if self.follow_links:  # only when set, so that the runs made before the flag keep their run id
            ident["follow_links"] = True
        return ident

    def _sample_deciding_options(self) -> dict:
        """Agent options minus the openai transport knobs (timeouts, rates, concurrency...)."""
        if self.backend != "openai":
            return self.agent_options
        from agents.llm.config import TRANSPORT_OPTIONS

        return {k: v for k, v in self.agent_options.items() if k not in TRANSPORT_OPTIONS}

    @property
    def run_id(self) -> str:
        """Stable id of the run (same across resumes and shards): a hash of its identity."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def check_or_write_run_json(cfg: RunConfig, *, others_finished: bool = False) -> bool:
    """Write RUN_DIR/run.json on a new run; on a resume refuse different settings. True if resuming.

    `others_finished`: shards elsewhere (other tags of a remote store) finished work already, so the
    settings may no longer change even when nothing of this tag is finished.
    """
    path = cfg.out / RUN_JSON
    ident = json.loads(json.dumps(cfg.identity(), default=str))
    if path.exists():
        try:
            saved = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: unreadable run settings ({e})") from e
        old = saved.get("identity", {})
        diffs = [k for k in sorted(set(old) | set(ident)) if old.get(k) != ident.get(k)]
        # e.g. the first start failed on a wrong --image-column: nothing made yet, the settings may change
        if diffs and not others_finished and _nothing_finished(cfg.out):
            atomic_write_json(path, {"identity": ident, "run_id": cfg.run_id, "n": cfg.n, "base_url": cfg.base_url})
            return False
        if diffs:
            k = diffs[0]
            raise ConfigError(
                f"{cfg.out} was generated with {k}={_show(old.get(k))}, this command has {k}={_show(ident.get(k))};"
                " use the same settings to resume or a new --out"
            )
        if saved.get("n") != cfg.n or saved.get("base_url") != cfg.base_url:  # may change between invocations
            atomic_write_json(path, {**saved, "n": cfg.n, "base_url": cfg.base_url})
        return True
    if cfg.out.exists() and any(p.name not in (RUN_JSON,) for p in cfg.out.iterdir()):
        if not (cfg.out / "manifests").exists() and not (cfg.out / STATE).exists():
            raise ConfigError(f"{cfg.out} exists and is not a mifg run directory; choose a new --out")
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"identity": ident, "run_id": cfg.run_id, "n": cfg.n, "base_url": cfg.base_url})
    return False


def _nothing_finished(out: Path) -> bool:
    """True when RUN_DIR has no shard and no recorded item yet (its settings may still change)."""
    if any(out.glob("shards/*.parquet")) or any(out.glob(f"{REJECTED}/shards/*.parquet")):
        return False
    for db in out.glob(f"{STATE}/*.sqlite"):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
                if c.execute("SELECT COUNT(*) FROM items").fetchone()[0]:
                    return False
        except sqlite3.Error:
            return False
    return True


def _show(v: object) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 80 else s[:77] + "..."
