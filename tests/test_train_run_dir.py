"""Default run folders are unique even for runs started in the same second (created atomically with mkdir)."""

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import training.run_dir as run_dir_module
from training.run_dir import claim_unique_dir

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_claim_unique_dir_adds_a_suffix_when_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir_module, "_claimed", {})
    base = str(tmp_path / "runs" / "12-00-00")
    assert claim_unique_dir(base) == base
    assert claim_unique_dir(base) == base  # the same process asking again (Hydra resolves twice) gets the same
    monkeypatch.setattr(run_dir_module, "_claimed", {})  # as another process would
    assert claim_unique_dir(base) == base + "_1"


def test_concurrent_claims_get_distinct_folders(tmp_path):
    base = str(tmp_path / "same-second")
    read, write = os.pipe()
    pids = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:  # a fresh process: its own empty memo
            try:
                run_dir_module._claimed.clear()
                os.write(write, (claim_unique_dir(base) + "\n").encode())
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(write)
    names = os.read(read, 1 << 16).decode().split()
    assert len(names) == 8 and len(set(names)) == 8


def test_default_run_dir_goes_through_the_resolver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_dir_module, "_claimed", {})
    OmegaConf.register_new_resolver("unique_dir", claim_unique_dir, replace=True)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        first = compose("train", return_hydra_config=True).hydra.run.dir
        run_dir_module._claimed.clear()  # a second process, the same second
        second = compose("train", return_hydra_config=True).hydra.run.dir
    assert first.startswith("runs/") and Path(first).is_dir() and Path(second).is_dir()
    assert first != second
