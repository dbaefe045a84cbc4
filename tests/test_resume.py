"""Resuming is exact: k steps, stop, resume, k more == 2k steps straight (CPU, bit-identical)."""

import pytest
import torch

from tests.runner import train


def _state(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["state_dict"], ckpt


@pytest.mark.parametrize("model", ["unet_tiny", "dit_tiny"])
def test_resume_is_bit_identical(tmp_path, model):
    k = 5
    # dropout, label dropout, flips and gradient accumulation all draw randomness that must resume exactly
    common = [f"model={model}", "data.hflip=true", "diffusion.label_dropout=0.3", "trainer.accumulate_grad_batches=2",
              "callbacks.checkpoint.every_n_train_steps=100"]
    if model == "unet_tiny":
        common.append("model.dropout=0.2")
    train(tmp_path / "straight", *common, f"trainer.max_steps={2 * k}")
    train(tmp_path / "first", *common, f"trainer.max_steps={k}")
    train(tmp_path / "resumed", *common, f"trainer.max_steps={2 * k}",
          f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}")

    straight, ck_s = _state(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed, ck_r = _state(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    first, _ = _state(tmp_path / "first" / "checkpoints" / "last.ckpt")
    assert ck_s["global_step"] == ck_r["global_step"] == 2 * k
    assert straight.keys() == resumed.keys()
    assert any(key.startswith("ema.") for key in straight) and any(key.startswith("net.") for key in straight)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), f"{key} differs after resume"
    # and the run really moved on after the resume point (not a trivially equal pair)
    assert not all(torch.equal(first[key], straight[key]) for key in straight if key.startswith("net."))
    # optimizer moments resume exactly too
    for a, b in zip(ck_s["optimizer_states"][0]["state"].values(), ck_r["optimizer_states"][0]["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
