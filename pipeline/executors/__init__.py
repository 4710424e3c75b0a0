"""How a run's items are executed, apart from what they are (`pipeline.run`).

- `base`: `Executor`, the part every executor shares: open the run, keep `cfg.concurrency` items in
  flight, handle SIGINT/SIGTERM, flush and close. A subclass says where one item runs.
- `local`: `LocalExecutor`, this machine: this process's event loop, or a pool of worker processes.
- `worker_process`: what runs inside one of those worker processes.
"""
