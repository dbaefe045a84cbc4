"""SIGINT and SIGTERM save the current step into checkpoints/last.ckpt and exit 130 / 143; resuming from that
checkpoint (SLURM preemption sends SIGTERM) gives bit-identical weights to a run that was never stopped."""

import re
import signal

import pytest
import torch

from tests.runner import start_train, train, wait_for
from training.checkpoint_io import read_training_checkpoint

# dropout, flips, label dropout and gradient accumulation: every source of randomness must resume exactly
COMMON = ["model.dropout=0.2", "data.hflip=true", "diffusion.label_dropout=0.3", "trainer.accumulate_grad_batches=2",
          "callbacks.checkpoint.every_n_train_steps=2"]


def _interrupt(run_dir, signum: int, max_steps: int) -> int:
    """Start train.py, send ``signum`` once it has saved step 2, check the exit and the saved state; its step."""
    proc = start_train(run_dir, *COMMON, f"trainer.max_steps={max_steps}")
    wait_for(run_dir / "checkpoints" / "step_0000002.ckpt", proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    m = re.search(rf"interrupted by {name} at step (\d+); saved (\S+)", err)
    assert m and m.group(2) == str(last), err[-3000:]
    step = int(m.group(1))
    assert 2 <= step < max_steps, f"the signal should land mid-run (step {step} of {max_steps})"
    assert read_training_checkpoint(last)["global_step"] == step
    return step


def test_sigint_saves_the_current_step_and_exits_130(tmp_path):
    _interrupt(tmp_path / "run", signal.SIGINT, max_steps=1000)


@pytest.mark.slow
def test_sigterm_then_resume_is_bit_identical_to_a_straight_run(tmp_path):
    total = 40
    straight = start_train(tmp_path / "straight", *COMMON, f"trainer.max_steps={total}")  # alongside, to save time
    step = _interrupt(tmp_path / "run", signal.SIGTERM, max_steps=total)
    train(tmp_path / "run", *COMMON, f"trainer.max_steps={total}", "ckpt_path=last")  # resume in place
    _, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err[-3000:]

    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == total > step
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("ema.") for k in a["state_dict"]) and any(k.startswith("net.") for k in a["state_dict"])
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), f"{key} differs after signal + resume"
