"""On start, make the item record agree with the shards that really exist.

A record and its sample's shard are written one after the other (`pipeline.run.record`), so a
crash can leave either without the other:
- a record whose sample never reached a shard is deleted: the item runs again;
- a sample in a shard without a record (possible only after a power cut) is adopted: its seed
  names its item, and a record is rebuilt from the sample.
The shards are read through `StoreReader`, so a damaged one is skipped (one line) and its items run
again.
"""

from __future__ import annotations

import sys

from pipeline.item_store import ItemStore
from pipeline.run.samples import record_from_sample
from pipeline.run_config import RunConfig, item_seed
from pipeline.store_reader import StoreReader


def reconcile(cfg: RunConfig, store: ItemStore) -> tuple[set[str], set[str]]:
    """Delete lost records, adopt orphan samples; return the ids in the accepted and rejected shards."""
    readers = {
        "accepted": StoreReader(cfg.out, "mifg generate", tags=[cfg.tag]),
        "rejected": StoreReader(cfg.rejected_dir, "mifg generate", tags=[cfg.tag]),
    }
    acc = _ids_in(readers["accepted"])
    rej = _ids_in(readers["rejected"])
    done = store.done()
    lost = [
        idx
        for idx, (outcome, sid) in done.items()
        if sid and ((outcome == "accepted" and sid not in acc) or (outcome == "rejected" and sid not in rej))
    ]
    if lost:
        store.delete(lost)
        print(f"resume: {len(lost)} recorded samples never reached a shard; they run again", file=sys.stderr)
    recorded = {sid for _, sid in done.values() if sid}
    orphans = [(sid, where, "accepted") for sid, where in acc.items() if sid not in recorded]
    orphans += [(sid, where, "rejected") for sid, where in rej.items() if sid not in recorded]
    if orphans:
        _adopt(cfg, store, readers, orphans, done)
    return set(acc), set(rej)


def _ids_in(reader: StoreReader) -> dict[str, tuple[str, int]]:
    """sample id -> (shard file, seed) of the shards the reader reads (damaged ones skipped, one line each)."""
    out: dict[str, tuple[str, int]] = {}
    for shard, _, row in reader.rows(columns=["id", "provenance"]):
        seed = (row.get("provenance") or {}).get("seed")
        if row.get("id") and isinstance(seed, int):
            out[row["id"]] = (shard.info.file, seed)
    return out


def _adopt(
    cfg: RunConfig,
    store: ItemStore,
    readers: dict[str, StoreReader],
    orphans: list[tuple[str, tuple[str, int], str]],
    done: dict,
) -> None:
    """Record samples that reached a shard without a record (their seed names their item)."""
    # seeds of items past `cfg.n` too: an earlier invocation may have run with a larger -n
    horizon = max([cfg.n, *[i + 1 for i in done]])
    by_seed = {item_seed(cfg.seed, i): i for i in range(cfg.shard_index, horizon, cfg.shard_count)}
    wanted = {sid: outcome for sid, _, outcome in orphans}
    records = []
    for sid, (file, seed), outcome in orphans:
        idx = by_seed.get(seed)
        if idx is None:
            continue
        reader = readers[outcome]
        for shard in (s for s in reader.shards() if s.info.file == file):
            for item in reader.shard_samples(shard):
                if item.sample.id == sid and wanted.get(sid) == outcome:
                    records.append(record_from_sample(idx, item.sample, outcome))
    store.commit(records)
    print(f"resume: adopted {len(records)} samples found in shards without a record", file=sys.stderr)
