"""Checkpoints are written atomically: a SIGKILL at any moment leaves the previous complete file or the new one,
even with $TMPDIR on another filesystem (tmpfs) than the run directory; ``ckpt_path=last`` resumes from the
newest complete checkpoint and skips broken ones with a warning."""

import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.runner import start_train, train, wait_for
from training.checkpoint_io import AtomicCheckpointIO, latest_checkpoint, read_training_checkpoint

SHM = Path("/dev/shm")


def _other_fs_tmpdir(tmp_path: Path) -> Path:
    """A $TMPDIR on a different filesystem from ``tmp_path``, or skip saying why."""
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        pytest.skip("/dev/shm (a tmpfs) is not available to put $TMPDIR on another filesystem")
    if os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm and tmp_path are on one filesystem: the cross-filesystem case cannot be shown here")
    d = SHM / f"difflab-test-{os.getpid()}-{tmp_path.name}"
    d.mkdir()
    return d


@pytest.fixture
def tmpdir_elsewhere(tmp_path):
    d = _other_fs_tmpdir(tmp_path)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _fake_checkpoint(step: int, weights: torch.Tensor) -> dict:
    return {"state_dict": {"w": weights, "step": torch.tensor(float(step))}, "global_step": step,
            "optimizer_states": [], "loops": {}, "lr_schedulers": []}


def _kill_during_saves(io, target: Path, trials: int, rng: random.Random, numel: int = 5_000_000) -> None:
    """Fork a child that saves ``target`` with ``io`` in a loop; SIGKILL it at a random moment, or at once when the
    target is seen partly written (an in-place copy shows a short file), then check what the kill left."""
    weights = torch.zeros(numel)  # made here: a forked child must not start torch's thread pool (it would hang)
    for trial in range(trials):
        pid = os.fork()
        if pid == 0:  # child: save step after step until killed
            try:
                for step in range(trial * 1000, trial * 1000 + 1000):
                    io.save_checkpoint(_fake_checkpoint(step, weights), target)
            finally:
                os._exit(0)
        give_up = time.monotonic() + 60
        while not target.exists() and time.monotonic() < give_up:  # the first save of the first trial
            time.sleep(0.001)
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        while time.monotonic() < deadline:
            try:
                if os.stat(target).st_size < numel * 4:
                    break  # caught mid-write under its final name: the worst moment to die
            except FileNotFoundError:
                pass
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        ckpt = read_training_checkpoint(target)  # complete, or this raises
        assert ckpt["state_dict"]["step"].item() == ckpt["global_step"]


def test_atomic_checkpoint_io_survives_sigkill_across_filesystems(tmp_path, tmpdir_elsewhere, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmpdir_elsewhere))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR (as a fresh process would)
    target = tmp_path / "checkpoints" / "last.ckpt"
    _kill_during_saves(AtomicCheckpointIO(), target, trials=12, rng=random.Random(0))
    assert target.exists()
    assert list(tmpdir_elsewhere.glob("tmp*")) == []  # nothing left in $TMPDIR: temp files live beside the target


def _save(path: Path, ckpt: dict) -> Path:
    torch.save(ckpt, path)
    return path


def test_latest_checkpoint_skips_broken_files_with_a_warning(tmp_path):
    good = _save(tmp_path / "step_0000003.ckpt", _fake_checkpoint(3, torch.zeros(10)))
    _save(tmp_path / "step_0000004.ckpt", _fake_checkpoint(4, torch.tensor([0.0, float("nan")])))
    full = _save(tmp_path / "last.ckpt", _fake_checkpoint(5, torch.zeros(10))).read_bytes()
    (tmp_path / "last.ckpt").write_bytes(full[: len(full) // 2])  # truncated, as a kill during a copy leaves it
    (tmp_path / "step_0000006.ckpt").write_bytes(b"")
    (tmp_path / "step_0000007.ckpt").write_text("not a checkpoint\n")
    warnings = []
    path, ckpt = latest_checkpoint(tmp_path, warn=warnings.append)
    assert path == good and ckpt["global_step"] == 3
    for name in ("last.ckpt", "step_0000004.ckpt", "step_0000006.ckpt", "step_0000007.ckpt"):
        assert any(str(tmp_path / name) in w for w in warnings), (name, warnings)


def _newest_complete(ckpt_dir: Path) -> tuple[Path, int]:
    """Every .ckpt in ``ckpt_dir`` loads completely; the newest one and its step."""
    files = sorted(ckpt_dir.glob("*.ckpt"))
    assert files, f"no checkpoint in {ckpt_dir}"
    steps = {p: read_training_checkpoint(p)["global_step"] for p in files}
    found = latest_checkpoint(ckpt_dir, warn=None)
    assert found is not None and found[1]["global_step"] == max(steps.values())
    return found[0], max(steps.values())


def _kill_and_resume(tmp_path: Path, tmpdir: Path, kills: int, seed: int) -> None:
    run_dir = tmp_path / "run"
    ckpts = run_dir / "checkpoints"
    env = {"TMPDIR": str(tmpdir)}
    every_step = ["callbacks.checkpoint.every_n_train_steps=1", "trainer.max_steps=100000"]
    rng = random.Random(seed)
    step = 0
    for k in range(kills):
        resume = ["ckpt_path=last"] if k else []
        proc = start_train(run_dir, *every_step, *resume, env=env)
        wait_for(ckpts / f"step_{step + 1:07d}.ckpt", proc)  # training is running and saving every step
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        _, step = _newest_complete(ckpts)
        assert list(tmpdir.glob("tmp*")) == [], "temp files left in $TMPDIR"  # (torch puts a cache folder there)
    # a partial file from an older version of the writer: skipped, with a warning naming it
    broken = ckpts / "step_9999999.ckpt"
    broken.write_bytes((ckpts / "last.ckpt").read_bytes()[:1000])
    proc = train(run_dir, "ckpt_path=last", f"trainer.max_steps={step + 2}", env=env)
    assert f"warning: skipping {broken}" in proc.stderr
    broken.unlink()
    assert not list(ckpts.glob(".*.tmp")), "orphan temp files not cleaned up on resume"
    final = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == step + 2


@pytest.mark.slow
def test_sigkill_during_checkpointing_then_resume_last(tmp_path, tmpdir_elsewhere):
    """One kill of train.py while it checkpoints every step; ckpt_path=last resumes from the newest complete one."""
    _kill_and_resume(tmp_path, tmpdir_elsewhere, kills=1, seed=1)


@pytest.mark.slow
def test_sigkill_during_checkpointing_many_times(tmp_path, tmpdir_elsewhere):
    """12 kills at random moments, each run resuming (ckpt_path=last) from what the previous kill left."""
    _kill_and_resume(tmp_path, tmpdir_elsewhere, kills=12, seed=2)
