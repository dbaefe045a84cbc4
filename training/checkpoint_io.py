"""Training checkpoints on disk: written atomically, and read back for resuming only when complete and finite."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sampling.atomic import atomic_write

# the one "bad checkpoint, one line" error and the finiteness check, shared with the loader
from sampling.checkpoint import CheckpointError, non_finite_entry

# what Lightning needs to resume a run exactly (an exported or weights-only file lacks the last three)
RESUME_KEYS = ("state_dict", "global_step", "optimizer_states", "loops", "lr_schedulers")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save, through a temp file in the checkpoint's own folder, fsynced, then renamed over it.

    Lightning's own save goes through fsspec, which writes in $TMPDIR and then moves the file: across filesystems
    (/tmp is often a tmpfs) the move is a copy in place, and a kill during it leaves a truncated ``last.ckpt``.
    Every save goes through here: ModelCheckpoint (step, best and last), train.py's final and on-signal saves.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def _open(path: Path) -> dict:
    """The checkpoint's dict (tensors memory-mapped, read lazily), or CheckpointError saying what is wrong."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes; a save was interrupted)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated zip, random bytes, text, pickles of code: torch's messages say little here
        raise CheckpointError(f"{path}: not a complete checkpoint (truncated, or not a file torch.save wrote)") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a resumable training checkpoint (no {', '.join(missing)}; "
                              "an exported or weights-only file cannot resume training)")
    return ckpt


def read_training_checkpoint(path: str | Path) -> dict:
    """The checkpoint at ``path`` if it is complete, resumable and has finite weights; else CheckpointError."""
    path = Path(path)
    ckpt = _open(path)
    bad = non_finite_entry(ckpt["state_dict"])
    if bad is not None:
        raise CheckpointError(f"{path}: weight {bad} is not finite (NaN or Inf)")
    return ckpt


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def latest_checkpoint(
    checkpoint_dir: str | Path, warn: Callable[[str], None] | None = _warn
) -> tuple[Path, dict] | None:
    """The complete checkpoint with the most steps in ``checkpoint_dir`` (``last.ckpt`` wins a tie), or None.

    Files that cannot be resumed from (truncated, empty, non-finite) are skipped, each with a warning naming it.
    """
    found = []
    for path in sorted(Path(checkpoint_dir).glob("*.ckpt")):
        try:
            ckpt = _open(path)
        except CheckpointError as e:
            if warn:
                warn(f"skipping {e}")
            continue
        found.append((int(ckpt["global_step"]), path.name == "last.ckpt", path.stat().st_mtime, path, ckpt))
    # finiteness reads every weight: check from the newest down and stop at the first good one
    for *_, path, ckpt in sorted(found, key=lambda row: row[:3], reverse=True):
        bad = non_finite_entry(ckpt["state_dict"])
        if bad is None:
            return path, ckpt
        if warn:
            warn(f"skipping {path}: weight {bad} is not finite (NaN or Inf)")
    return None


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, sub in node.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def check_fits(ckpt: dict, model_state: dict[str, torch.Tensor], run_config: dict | None, path: str | Path) -> None:
    """CheckpointError unless ``ckpt`` holds exactly the weights of ``model_state`` (same names, same shapes),
    naming the model settings that differ when the checkpoint recorded them."""
    saved = ckpt["state_dict"]
    problem = None
    missing = [k for k in model_state if k not in saved]
    extra = [k for k in saved if k not in model_state]
    if missing or extra:
        problem = f"{len(missing)} weights missing, {len(extra)} unexpected (e.g. {(missing or extra)[0]})"
    else:
        for key, value in model_state.items():
            if tuple(saved[key].shape) != tuple(value.shape):
                problem = f"{key} is {list(saved[key].shape)} there, {list(value.shape)} here"
                break
    if problem is None:
        return
    theirs = _flat(((ckpt.get("difflab") or {}).get("config") or {}).get("model") or {}, "model.")
    ours = _flat((run_config or {}).get("model") or {}, "model.")
    diffs = [f"{k}={theirs.get(k)} there, {ours.get(k)} here" for k in sorted(theirs.keys() | ours.keys())
             if theirs.get(k) != ours.get(k)][:3]
    hint = f"; it was trained with other model settings: {', '.join(diffs)}" if diffs else ""
    raise CheckpointError(f"{path}: does not fit this model config ({problem}){hint}")
