"""A diverging run never saves non-finite weights: the error names a checkpoint that really is good.

lr=1e15 without clipping (train.py refuses a non-finite lr) makes the weights NaN in step 2 while the loss of
step 2 is still finite: the loss check alone would let that step's weights be saved as "the last good checkpoint".
"""

import torch

from tests.runner import train
from training.checkpoint_io import read_training_checkpoint


def test_diverged_weights_are_never_saved(tmp_path):
    proc = train(tmp_path, "trainer.max_steps=30", "optim.optimizer.lr=1e15", "optim.lr_warmup_steps=0",
                 "trainer.gradient_clip_val=null", "callbacks.checkpoint.every_n_train_steps=1", check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = [x for x in proc.stderr.splitlines() if x.startswith("error:")][-1]
    assert "became nan at step" in line or "became inf at step" in line, line
    named = line.split("last good checkpoint: ")[1]
    good = read_training_checkpoint(named)  # raises if incomplete or non-finite
    assert good["global_step"] < int(line.split("at step ")[1].split(";")[0])
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):  # no file at all holds a non-finite weight
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path
