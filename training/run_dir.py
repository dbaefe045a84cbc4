"""The training run directory: a unique default name, one run at a time (a lock), Hydra's records written after it."""

from __future__ import annotations

import fcntl
import itertools
import os
from pathlib import Path
from typing import IO

from omegaconf import DictConfig, OmegaConf

from sampling.atomic import atomic_write_text, describe_os_error
from sampling.checks import InputError

LOCK_NAME = ".lock"

_claimed: dict[str, str] = {}  # base -> the folder this process created for it (Hydra may resolve a name twice)


class RunDirBusy(InputError):
    """Another training process holds the run directory."""


def claim_unique_dir(base: str) -> str:
    """Create and return ``base``, or ``base_1``, ``base_2``, ... when taken: mkdir is atomic, so two runs started in
    the same second get two folders. Registered as the ``unique_dir`` resolver for the default ``hydra.run.dir``."""
    if base in _claimed:
        return _claimed[base]
    Path(base).parent.mkdir(parents=True, exist_ok=True)
    for i in itertools.count():
        path = base if i == 0 else f"{base}_{i}"
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        _claimed[base] = path
        return path
    raise AssertionError("unreachable")


def is_launch_rank_zero() -> bool:
    """True in the one process that owns the run directory: not a DDP child (Lightning, torchrun or SLURM set these)."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def lock_run_dir(run_dir: Path) -> IO:
    """Hold an exclusive flock on ``<run_dir>/.lock`` for the life of the process (the kernel drops it when the
    process dies, even by SIGKILL); RunDirBusy when another run holds it. Keep the returned file open."""
    path = run_dir / LOCK_NAME
    try:
        f = open(path, "a+")  # "a+": never truncates what the holder wrote
    except OSError as e:
        raise InputError(describe_os_error(e, path)) from e
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        who = f" (pid {holder})" if holder else ""
        raise RunDirBusy(f"{run_dir}: another training run is using this run directory{who}; "
                         "choose another hydra.run.dir or wait for it to finish") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def remove_orphan_temps(checkpoint_dir: Path) -> list[Path]:
    """Delete ``.<name>.ckpt.*.tmp`` files that a killed save left behind (safe only while holding the lock)."""
    removed = []
    for p in checkpoint_dir.glob(".*.ckpt.*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def write_hydra_records(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """Hydra's ``.hydra/{config,hydra,overrides}.yaml``, written by us once the lock is held (train.yaml sets
    ``hydra.output_subdir: null``): Hydra writes them before main runs, which would clobber a running run's records."""
    out = run_dir / ".hydra"
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write_text(out / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    atomic_write_text(out / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))
