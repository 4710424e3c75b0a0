"""The files of a training run, written so that a crash, a kill or a full disk never leaves a half file.

    RUN/config.json           the run's TrainConfig
    RUN/metrics.jsonl         one JSON record per line (appended; a crash may tear the last line)
    RUN/ckpt/state.pt         the latest checkpoint: weights, optimizer, scheduler, data position, RNG
    RUN/ckpt/state.pt.prev    the checkpoint before it, the fallback when the latest is damaged
    RUN/ckpt/config.json      the latest checkpoint's step and config, for people and scripts

Every file is written to `.NAME.PID.tmp` in the same folder, fsynced and renamed over NAME, so a
reader sees the old file or the new one; the temp file is removed when the write fails, which is one
line (`DiskFullError` when the disk is full) naming the file and what was kept. (The JSON files go
through `pipeline.shard_store.atomic_write_bytes`; state.pt is streamed by torch.save.) Reading a
checkpoint that is empty, truncated or not ours falls back to `state.pt.prev` with one warning line,
or raises one `InputError` line when there is nothing to fall back to; never an EOFError traceback.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from pipeline.shard_store import atomic_write_bytes, atomic_write_json
from schemas.errors import DiskFullError, InputError, MifgError

STATE = "state.pt"
PREV = "state.pt.prev"
CHECKPOINT_KEYS = ("step", "policy", "config")  # what `Trainer.save` always writes


def warn(command: str, message: str) -> None:
    """One warning line on stderr: `mifg COMMAND: warning: MESSAGE`."""
    print(f"mifg {command}: warning: {message}", file=sys.stderr, flush=True)


# ---- metrics.jsonl ------------------------------------------------------------------------------


def read_records(path: Path, command: str = "train") -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; lines that do not parse (a line torn by a crash) are skipped, one warning."""
    records, bad = [], 0
    for line in path.read_text("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
        else:
            bad += 1
    if bad:
        warn(command, f"{path}: skipped {bad} unreadable line{'s' * (bad > 1)} (torn by an interrupted write)")
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace a JSONL file with `records`, atomically."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))


# ---- checkpoints --------------------------------------------------------------------------------


def has_checkpoint(ckpt_dir: Path) -> bool:
    """True when RUN/ckpt holds a checkpoint (the latest or, after a crash mid-save, only the previous one)."""
    return (ckpt_dir / STATE).exists() or (ckpt_dir / PREV).exists()


def save_checkpoint(ckpt_dir: Path, state: dict[str, Any], config: dict[str, Any]) -> None:
    """Write ckpt/state.pt atomically, keeping the checkpoint it replaces as state.pt.prev; then config.json."""
    import torch

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    latest, prev = ckpt_dir / STATE, ckpt_dir / PREV
    tmp = ckpt_dir / f".{STATE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if _looks_complete(latest):  # a damaged latest never replaces a good previous one
            os.replace(latest, prev)
        os.replace(tmp, latest)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(latest, e, has_checkpoint(ckpt_dir)) from e
        raise
    # config.json's atomic write fsyncs the ckpt folder, which makes the renames above durable too
    atomic_write_json(ckpt_dir / "config.json", {"step": state.get("step"), **config})


def _write_error(path: Path, e: OSError, kept_one: bool) -> MifgError:
    """One-line error of a failed checkpoint write: DiskFullError when the disk is full, else InputError."""
    kept = "the previous checkpoint" if kept_one else "no checkpoint"
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full writing {path} ({reason}); kept: {kept}")
    return InputError(f"cannot write {path} ({reason}); kept: {kept}")


def _looks_complete(path: Path) -> bool:
    """Cheap check of a torch.save file: present and its zip directory readable (no full load)."""
    try:
        return path.stat().st_size > 0 and zipfile.is_zipfile(path)
    except OSError:
        return False


def _read_state(path: Path) -> dict[str, Any]:
    """torch.load of one checkpoint file; any damage becomes an InputError naming the file."""
    import torch

    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read checkpoint ({e.strerror or e})") from e
    if size == 0:
        raise InputError(f"{path}: damaged checkpoint (zero bytes)")
    if not _looks_complete(path):
        raise InputError(f"{path}: damaged checkpoint (truncated: {size} bytes and no zip directory)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are tuples
    except Exception as e:  # EOFError, zip/pickle errors, RuntimeError: all mean damaged
        raise InputError(f"{path}: damaged checkpoint ({type(e).__name__}: {_first_line(e)})") from e
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise InputError(f"{path}: not a mifg training checkpoint")
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].split(". ")[0][:160] if text else "unreadable"


def load_checkpoint(path: Path, command: str = "train") -> tuple[dict[str, Any], Path]:
    """(state, file) of a checkpoint (a ckpt folder or a state.pt); a damaged latest falls back to state.pt.prev."""
    path = Path(path)
    latest = path / STATE if path.is_dir() else path
    prev = latest.with_name(latest.name + ".prev") if latest.name != PREV else None
    candidates = [p for p in (latest, prev) if p is not None and p.exists()]
    if not candidates:
        raise InputError(f"{latest}: no checkpoint")
    errors = [] if latest.exists() else [f"{latest}: missing (a save was interrupted)"]
    for p in candidates:
        try:
            state = _read_state(p)
        except InputError as e:
            errors.append(str(e))
            continue
        if errors:
            warn(command, f"{errors[0]}; using the previous checkpoint {p} (step {state['step']})")
        return state, p
    if len(errors) > 1:
        raise InputError(f"{'; '.join(errors)}: no good checkpoint left")
    raise InputError(f"{errors[0]}; no previous checkpoint to fall back to")
