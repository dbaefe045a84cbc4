"""Bad settings and unusable resume checkpoints: one ``error:`` line naming the setting or file, exit 2, and
nothing written in the run directory (no checkpoints, no config.yaml, no .hydra records, no lock)."""

import fcntl
import os

import pytest

from tests.runner import TINY, run, train

WRITES = ("checkpoints", "config.yaml", ".hydra", ".lock", "metrics.csv")


def _refused(run_dir, *overrides, tiny=TINY):
    proc = run([*tiny, f"hydra.run.dir={run_dir}", *overrides])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(err) == 1 and err[0].startswith("error:"), proc.stderr[-3000:]
    for name in WRITES:
        assert not (run_dir / name).exists(), f"{name} was written"
    return err[0]


@pytest.mark.parametrize("override, says", [
    ("data.batch_size=0", "data.batch_size must be an integer in [1, inf), got 0"),
    ("data.num_workers=-1", "data.num_workers must be an integer in [0, inf), got -1"),
    ("optim.optimizer.lr=-1", "optim.optimizer.lr must be a finite number in (0, inf), got -1"),
    ("optim.optimizer.lr=nan", "optim.optimizer.lr must be a finite number in (0, inf), got nan"),
    ("data.image_size=0", "data.image_size must be an integer in [1, inf), got 0"),
])
def test_bad_number_is_refused(tmp_path, override, says):
    assert says in _refused(tmp_path / "run", override)


def test_folder_without_root_is_refused(tmp_path):
    tiny = [o for o in TINY if not o.startswith(("data.train.size", "data.val.size"))]
    assert "data.train.root must be set" in _refused(tmp_path / "run", "data=folder", tiny=tiny)


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    train(root, "trainer.max_steps=1")
    return root / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("case, says", [
    ("missing", "no such checkpoint file"),
    ("truncated", "not a complete checkpoint"),
    ("random", "not a complete checkpoint"),
    ("text", "not a complete checkpoint"),
    ("empty", "empty file"),
    ("mismatched", "does not fit this model config"),
])
def test_bad_resume_checkpoint_is_refused(tmp_path, good_ckpt, case, says):
    path = tmp_path / f"{case}.ckpt"
    if case == "truncated":
        path.write_bytes(good_ckpt.read_bytes()[: good_ckpt.stat().st_size // 2])
    elif case == "random":
        path.write_bytes(os.urandom(100_000))
    elif case == "text":
        path.write_text("model: unet_tiny\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "mismatched":
        path = good_ckpt  # trained with base_channels=16
    overrides = ["model.base_channels=32"] if case == "mismatched" else []
    line = _refused(tmp_path / "run", f"ckpt_path={path}", *overrides)
    assert str(path) in line and says in line, line
    if case == "mismatched":
        assert "model.base_channels=16 there, 32 here" in line


def test_last_without_checkpoints_is_refused(tmp_path):
    line = _refused(tmp_path / "run", "ckpt_path=last")
    assert "found no complete checkpoint" in line and str(tmp_path / "run" / "checkpoints") in line


def test_second_run_in_a_locked_run_dir_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / ".lock", "a+") as held:  # as a running train.py holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run([*TINY, f"hydra.run.dir={run_dir}", "trainer.max_steps=2"])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith(f"error: {run_dir}: another training run is using this run directory")
    assert sorted(p.name for p in run_dir.iterdir() if p.name != "train.log") == [".lock"]  # nothing written
