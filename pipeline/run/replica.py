"""The remote copy of one run shard (`mifg generate --out URL`): restored on start, updated as the run goes.

The run works in a local working dir (`cfg.out`) exactly as a local run does; `Replica` keeps the
remote store (`cfg.remote`, see `pipeline.remote_store`) the truth:
- `restore`, on start: the local run.json and this tag's manifests, shards and item record are made
  equal to the remote ones (a shard already here with the listed sha256 is not downloaded again),
  so a run killed on one machine resumes on another, or here from a deleted working dir;
- `shard_written`, after each shard: the shard, then its manifest, so a reader of the remote store
  never sees a manifest that names a shard not uploaded yet;
- `snapshot`, after each flush that changed the record and at the end: a consistent copy of the
  item record (SQLite's backup API; the WAL-mode original cannot live on an object store).
A run killed between two uploads leaves what a local run killed between two renames leaves, and the
next start reconciles it the same way (`pipeline.run.reconcile`). Items that failed after the last
snapshot run again when the run resumes elsewhere (same seed, same outcome).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing

from pipeline.item_store import ItemStore
from pipeline.remote_store import open_remote, pull_store
from pipeline.run_config import REJECTED, RUN_JSON, STATE, RunConfig
from pipeline.shard_store import MANIFESTS, SHARDS, ShardInfo, ShardWriter, atomic_write_bytes
from schemas.errors import ConfigError


class Replica:
    """Keeps the remote store of `cfg.remote` up to date with the local run shard in `cfg.out`."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.remote = open_remote(cfg.remote)
        self.others_finished = False  # other tags (other machines) have shards or records there
        self._changes = -1  # the record's total_changes at the last snapshot

    def restore(self) -> None:
        """Make the local copy of this run shard equal to the remote one (the remote may be empty: a new run)."""
        cfg, remote = self.cfg, self.remote
        remote.check()
        files = remote.list("")
        if files and not any(f == RUN_JSON or f.startswith((f"{MANIFESTS}/", f"{STATE}/")) for f in files):
            raise ConfigError(f"{remote.url} holds other files and is not a mifg run; choose a new --out")
        own = {f"{STATE}/{cfg.tag}.sqlite", f"{MANIFESTS}/{cfg.tag}.json", f"{REJECTED}/{MANIFESTS}/{cfg.tag}.json"}
        self.others_finished = any(
            f not in own and f.startswith((f"{STATE}/", f"{MANIFESTS}/", f"{REJECTED}/{MANIFESTS}/")) for f in files
        )
        cfg.out.mkdir(parents=True, exist_ok=True)
        self._restore_file(RUN_JSON, RUN_JSON in files)
        for sub in ("", REJECTED):
            pull_store(remote, cfg.out, sub, tags={cfg.tag}, exact=True)
        db = cfg.state_path
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)  # a stale WAL must never meet the restored record
        self._restore_file(f"{STATE}/{db.name}", f"{STATE}/{db.name}" in files)

    def _restore_file(self, rel: str, present: bool) -> None:
        data = self.remote.read_bytes(rel) if present else None
        if data is None:
            (self.cfg.out / rel).unlink(missing_ok=True)
        else:
            atomic_write_bytes(self.cfg.out / rel, data)

    def push_run_json(self) -> None:
        """Upload run.json (written or updated by `check_or_write_run_json`)."""
        self.remote.write_bytes(RUN_JSON, (self.cfg.out / RUN_JSON).read_bytes())

    def _prefix(self, writer: ShardWriter) -> str:
        rel = writer.root.relative_to(self.cfg.out).as_posix()
        return "" if rel == "." else f"{rel}/"

    def push_manifest(self, writer: ShardWriter) -> None:
        """Upload the writer's manifest (e.g. rewritten on open after a damaged shard was dropped)."""
        if writer.manifest_path.exists():
            rel = f"{self._prefix(writer)}{MANIFESTS}/{writer.manifest_path.name}"
            self.remote.write_bytes(rel, writer.manifest_path.read_bytes())

    def shard_written(self, writer: ShardWriter, info: ShardInfo) -> None:
        """Upload a new shard, then the manifest that lists it."""
        name = info.file.removeprefix(f"{SHARDS}/")
        self.remote.write_bytes(f"{self._prefix(writer)}{info.file}", (writer.root / SHARDS / name).read_bytes())
        self.push_manifest(writer)

    def snapshot(self, store: ItemStore) -> None:
        """Upload a consistent copy of the item record, when it changed since the last one."""
        if store.db.total_changes == self._changes:
            return
        db = self.cfg.state_path
        tmp = db.with_name(f".{db.name}.snapshot-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        try:
            with closing(sqlite3.connect(tmp)) as copy:
                store.db.backup(copy)
            self.remote.write_bytes(f"{STATE}/{db.name}", tmp.read_bytes())
        finally:
            tmp.unlink(missing_ok=True)
        self._changes = store.db.total_changes
