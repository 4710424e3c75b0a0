"""What a generation run does, apart from how its items are executed (`pipeline.executors`).

- `run`: the `Run` one invocation drives: plan, per-item outcome, caps, stop conditions, summary.
- `record`: its durable side: the item record (SQLite), the shards, and the order they are written in.
- `reconcile`: on start, make the record agree with the shards that really exist.
- `samples`: a finished graph state -> `Sample` and item record (and a record back from a sample).
- `item`: run one work item's graph in this process.
- `photos`: the run's photo pool, built from its image source.
- `summary` / `progress`: what an invocation did, and the progress bar while it runs.
"""
