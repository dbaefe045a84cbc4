"""Tiny end-to-end runs of train.py through the real Hydra configs."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from tests.runner import ROOT, TINY, run, train


def _train_losses(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_overfit_a_few_images_and_outputs(tmp_path):
    """8 images, 200 steps: the loss falls several-fold, and the run directory holds what DESIGN.md promises."""
    proc = train(tmp_path, "data.train.size=8", "trainer.max_steps=200", "optim.optimizer.lr=3e-3",
          "optim.lr_warmup_steps=10", "diffusion.label_dropout=0.0", "trainer.gradient_clip_val=null",
          "callbacks.preview.every_n_steps=100", "callbacks.checkpoint.every_n_train_steps=100")
    losses = _train_losses(tmp_path)
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert last < first / 3, f"loss fell only from {first:.3f} to {last:.3f}"
    assert (tmp_path / "config.yaml").exists()
    ckpts = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert {"last.ckpt", "best.ckpt", "step_0000100.ckpt", "step_0000200.ckpt"} <= ckpts
    assert {p.name for p in (tmp_path / "samples").iterdir()} >= {"step_0000100.png", "step_0000200.png"}
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 200
    assert ckpt["difflab"]["config"]["model"]["_target_"] == "models.unet.UNet"
    assert ckpt["difflab"]["config"]["data"]["image_size"] == 16
    # the final save says what it saves; Lightning logged "`weights_only` was not set, defaulting to `False`"
    assert "weights_only" not in proc.stdout + proc.stderr


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    proc = train(tmp_path, "trainer.max_steps=50", "optim.optimizer.lr=1e30", "optim.lr_warmup_steps=0",
                 "trainer.gradient_clip_val=null", "callbacks.checkpoint.every_n_train_steps=1", check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = [x for x in proc.stderr.splitlines() if x.startswith("error:")][-1]
    assert "at step" in line and ("nan" in line or "inf" in line) and "last.ckpt" in line
    step = int(line.split("at step ")[1].split(";")[0])
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == step  # the checkpoint written just before the bad step
    assert all(torch.isfinite(v).all() for k, v in ckpt["state_dict"].items() if v.is_floating_point())


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable"])
def test_bad_folder_stops_before_training_with_exit_2(tmp_path, case):
    root = tmp_path / "images"
    if case != "missing":
        root.mkdir()
    if case == "unreadable":
        for i in range(20):
            Image.new("RGB", (20, 20), (10 * i, 0, 0)).save(root / f"ok{i}.png")
        (root / "broken.png").write_bytes(b"not an image")
    run_dir = tmp_path / "run"
    tiny = [o for o in TINY if not o.startswith(("data.train.size", "data.val.size"))]
    proc = run([*tiny, f"hydra.run.dir={run_dir}", "data=folder", f"data.train.root={root}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert str(root / "broken.png" if case == "unreadable" else root) in err[0]
    assert not (run_dir / "checkpoints").exists()


def test_sweep_runs_each_combination_and_reports(tmp_path):
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("model=")]
    proc = run(["-m", *tiny, "model=unet_tiny,dit_tiny", "diffusion.prediction=eps,v", "trainer.max_steps=6",
                f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert runs == ["0", "1", "2", "3"]
    for r in runs:
        assert (sweep / r / "checkpoints" / "last.ckpt").exists()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep_report.py"), f"sweep_dir={sweep}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with open(sweep / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["diffusion.prediction"]) for r in rows] == [
        ("unet_tiny", "eps"), ("unet_tiny", "v"), ("dit_tiny", "eps"), ("dit_tiny", "v")]
    assert all(float(r["final_train_loss"]) > 0 and r["steps"] for r in rows)
    assert (sweep / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_tensorboard_and_wandb_offline_loggers(tmp_path):
    train(tmp_path / "tb", "logger=tensorboard", "trainer.max_steps=3")
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    train(tmp_path / "wb", "logger=wandb", "trainer.max_steps=3", env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    assert (tmp_path / "wb" / "metrics.csv").exists()


def test_ddp_two_cpu_processes_agree_and_resume(tmp_path):
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    proc = train(tmp_path / "a", *ddp, "trainer.max_steps=4")
    assert "EMA checksum agreement across 2 rank(s): max difference 0.000e+00" in proc.stdout
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    proc = train(tmp_path / "b", *ddp, "trainer.max_steps=8", f"ckpt_path={last}")
    assert "across 2 rank(s): max difference 0.000e+00" in proc.stdout
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 8
    json.dumps(ckpt["difflab"]["config"])  # the stored config is plain data
