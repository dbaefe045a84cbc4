"""The two-stage cascade: the super-resolution U-Net, its conditioning, training, and sample.py's stage 2."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from diffusion.cascade import SRCond, augment, downsample, sr_condition, upsample
from diffusion.denoiser import cond_cat, cond_slice
from diffusion.guidance import Guidance
from diffusion.parametrization import make_parametrization
from diffusion.schedules import cosine_schedule
from models.unet import SuperResUNet
from tests import runner
from tests.test_models import perturb

ROOT = Path(__file__).resolve().parents[1]


def tiny_sr(**kw) -> SuperResUNet:
    args = dict(low_res=8, image_size=16, in_channels=3, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(8,), num_classes=4)
    return SuperResUNet(**{**args, **kw})


def test_resizing_round_trip_and_ranges():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    low = downsample(x, 8)
    assert low.shape == (2, 3, 8, 8) and low.abs().max() <= 1
    # bicubic upsampling of a constant image is that constant: the baseline adds no bias
    c = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(upsample(c, 16), torch.full((1, 3, 16, 16), 0.3), atol=1e-6)


def test_augmentation_is_the_forward_process_at_level_s():
    schedule = cosine_schedule(1000)
    low, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    s = torch.tensor([0, 100, 250, 999])
    out = augment(low, s, schedule, noise)
    for i, si in enumerate(s.tolist()):
        ab = float(schedule.alphas_cumprod[si])
        assert torch.allclose(out[i], ab**0.5 * low[i] + (1 - ab) ** 0.5 * noise[i], atol=1e-5)  # fp32 alpha_bar


def test_sr_network_uses_the_low_resolution_image_and_the_level():
    net = perturb(tiny_sr())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 500])
    low = torch.randn(2, 3, 16, 16)
    base = net(x, t, SRCond(low, torch.tensor([0, 0]), torch.tensor([1, 2])))
    assert base.shape == x.shape and torch.isfinite(base).all()
    assert not torch.allclose(base, net(x, t, SRCond(low + 0.5, torch.tensor([0, 0]), torch.tensor([1, 2]))))
    assert not torch.allclose(base, net(x, t, SRCond(low, torch.tensor([300, 300]), torch.tensor([1, 2]))))
    with pytest.raises(ValueError, match="SRCond"):
        net(x, t, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="upsampled"):
        net(x, t, SRCond(torch.randn(2, 3, 8, 8), torch.tensor([0, 0]), None))


def test_sr_rejects_low_res_not_below_image_size():
    with pytest.raises(ValueError, match="low_res"):
        tiny_sr(low_res=16)


def test_nested_condition_batches_and_slices():
    c = SRCond(torch.randn(3, 3, 4, 4), torch.arange(3), None)
    both = cond_cat(c, c)
    assert both.low.shape[0] == 6 and both.cond is None and torch.equal(both.aug_t, torch.cat([c.aug_t, c.aug_t]))
    part = cond_slice(both, 1, 4)
    assert torch.equal(part.low, torch.cat([c.low[1:], c.low[:1]]))


def test_guidance_keeps_the_low_resolution_image_in_both_passes():
    """CFG of an upscaler: batched (2B) and two-pass forms agree, and the null pass sees the same image."""
    net, schedule = perturb(tiny_sr()), cosine_schedule(1000)
    seen = []
    orig = net.forward

    def spy(x, t, cond):
        seen.append(cond.low.clone())
        return orig(x, t, cond)

    low = torch.randn(2, 3, 16, 16)
    cond = SRCond(low, torch.tensor([250, 250]), torch.tensor([1, 3]))
    null = cond._replace(cond=torch.tensor([4, 4]))
    param = make_parametrization("v")
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([400, 400])
    two = Guidance(3.0, batched=False).denoiser(spy, schedule, param, cond, null)(x, t)
    one = Guidance(3.0, batched=True).denoiser(spy, schedule, param, cond, null)(x, t)
    assert torch.allclose(two.x0, one.x0, atol=1e-5)
    assert all(torch.equal(s[:2], low) for s in seen)


def test_training_step_conditions_on_the_low_resolution_view():
    from training.module import DiffusionModule

    net = tiny_sr(aug_max=300)
    module = DiffusionModule(net, cosine_schedule(1000), lambda p: torch.optim.AdamW(p), prediction="v",
                             num_classes=4)
    seen = {}

    def spy(x, t, cond):
        seen["cond"] = cond
        return net.forward(x, t, cond)

    module.net_forward = spy
    x0 = torch.rand(4, 3, 16, 16) * 2 - 1
    loss = module._loss(x0, torch.tensor([0, 1, 2, 3]), torch.Generator().manual_seed(0), 0.0)
    cond = seen["cond"]
    assert torch.isfinite(loss) and isinstance(cond, SRCond)
    assert cond.low.shape == x0.shape and int(cond.aug_t.max()) <= 300
    assert torch.equal(cond.cond, torch.tensor([0, 1, 2, 3]))
    # the low-resolution input is the augmented low-resolution view of x0 (correlated with it, not noise only)
    clean = sr_condition(downsample(x0, 8), 16, torch.zeros(4, dtype=torch.long), module.schedule,
                         torch.zeros(4, 3, 8, 8))
    corr = torch.corrcoef(torch.stack([cond.low.flatten(), clean.low.flatten()]))[0, 1]
    assert corr > 0.3


# ---- the command line: train an upscaler (16 -> 32) and base models for a few steps, then run the cascade ----

def run(args):
    return runner.run(args[1:], script=args[0], env={"OMP_NUM_THREADS": "1"})


def run_sample(capsys, args):
    """sample.py's main in this process (no interpreter start-up): its exit status and stderr, as run() gives."""
    import sample

    capsys.readouterr()
    code = sample.main(list(args))
    return SimpleNamespace(returncode=code, stderr=capsys.readouterr().err)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    runner.train(root / "b16", "trainer.max_steps=2")
    sr_args = [a for a in runner.TINY if not a.startswith(("model=", "data.image_size="))]
    proc = runner.run([*sr_args, "model=unet_sr", "data.image_size=32", "model.low_res=16", "model.base_channels=16",
                       "model.channel_mult=[1,2]", "trainer.max_steps=2", "callbacks.preview.every_n_steps=1",
                       f"hydra.run.dir={root / 'sr'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    base_args = [a for a in runner.TINY if not a.startswith("data.image_size=")]
    proc = runner.run([*base_args, "data.image_size=32", "trainer.max_steps=1", f"hydra.run.dir={root / 'base'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any((root / "sr" / "samples").iterdir())  # the upscaler's preview grid
    return {k: root / k / "checkpoints" / "last.ckpt" for k in ("base", "sr", "b16")}, root


def test_train_refuses_low_res_that_does_not_fit():
    r = run(["train.py", "model=unet_sr", "data.image_size=32", "model.low_res=32", "trainer.max_steps=1"])
    assert r.returncode == 2 and "model.low_res=32 must divide data.image_size=32" in r.stderr


def test_cascade_on_generate_and_illusions(checkpoints, capsys):
    ckpts, root = checkpoints
    out = root / "gen"
    r = run_sample(capsys, [f"ckpt={ckpts['b16']}", f"stage2={ckpts['sr']}", "n=3", "sampler.steps=2",
             "guidance=2", f"out={out}"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(out / "sample_0000.png").size == (32, 32)
    assert (out / "stage1_grid.png").is_file() and (out / "cascade.png").is_file()
    out = root / "anagram"
    r = run_sample(capsys, [f"ckpt={ckpts['b16']}", f"stage2={ckpts['sr']}", "task=anagram", "task.labels=[1,2]",
             "task.views=[identity,jigsaw]", "task.jigsaw=4", "task.n=1", "sampler.steps=2", f"out={out}"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(out / "sample_0000.png").size == (32, 32) and (out / "cascade.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["stage2={base}"], "not an upscaler"),
    (["stage2={sr}", "ckpt_is_base"], "upscales 3-channel 16x16 images, and the base model makes 3-channel 32x32"),
    (["stage2={sr}", "task=sdedit"], "has no second stage"),
    (["stage2={sr}", "stage2_aug=1000"], "stage2_aug must be an integer in [0, 999]"),
])
def test_bad_stage2_is_one_line_exit_2(checkpoints, args, message, capsys):
    ckpts, root = checkpoints
    base = ckpts["base"] if "ckpt_is_base" in args else ckpts["b16"]
    args = [a.format(base=ckpts["base"], sr=ckpts["sr"]) for a in args if a != "ckpt_is_base"]
    r = run_sample(capsys, [f"ckpt={base}", *args, f"out={root / 'bad'}"])
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_upscale_task_and_its_input_size(checkpoints, tmp_path, capsys):
    ckpts, root = checkpoints
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(good)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(bad)
    out = tmp_path / "up"
    r = run_sample(capsys, [f"ckpt={ckpts['sr']}", "task=upscale", f"image={good}", "task.n=2", "sampler.steps=2",
             "label=1", f"out={out}"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(out / "sample_0001.png").size == (32, 32) and (out / "upscale.png").is_file()
    r = run_sample(capsys, [f"ckpt={ckpts['sr']}", "task=upscale", f"image={bad}", f"out={tmp_path / 'x'}"])
    assert r.returncode == 2 and "is 32x32; this upscaler takes 16x16 images" in r.stderr
    r = run_sample(capsys, [f"ckpt={ckpts['sr']}", f"out={tmp_path / 'y'}"])
    assert r.returncode == 2 and "an upscaler (model=unet_sr) runs task=upscale" in r.stderr
    r = run_sample(capsys, [f"ckpt={ckpts['base']}", "task=upscale", f"image={good}", f"out={tmp_path / 'z'}"])
    assert r.returncode == 2 and "task=upscale needs an upscaler checkpoint" in r.stderr


def test_evaluate_scores_the_cascade_at_the_upscalers_size(checkpoints, tmp_path, monkeypatch):
    from scripts.evaluate import main as evaluate_main

    ckpts, _ = checkpoints
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "e.json"
    assert evaluate_main([f"ckpt={ckpts['b16']}", f"stage2={ckpts['sr']}", "stage2_aug=100", "data=procedural",
                          "n=6", "metrics=fd", "sampler.steps=2", "classifier.steps=5", "batch_size=4",
                          "device=cpu", f"out={out}"]) == 0
    report = json.loads(out.read_text())
    assert report["image_size"] == 32 and report["stage2_aug"] == 100  # scored at 32 px, against 32-px images
    assert report["stage2_checkpoint"] == str(ckpts["sr"].resolve()) and math.isfinite(report["fd_classifier"])
    assert (tmp_path / "cache" / "classifiers" / "procedural_3x32.pt").is_file()
    assert evaluate_main([f"ckpt={ckpts['b16']}", f"stage2={ckpts['base']}", "n=6", f"out={out}"]) == 2


def test_sr_quality_against_bicubic(checkpoints, tmp_path, capsys):
    from scripts.sr_quality import main as sr_quality_main

    ckpts, _ = checkpoints
    out = tmp_path / "q.json"
    assert sr_quality_main([f"ckpt={ckpts['sr']}", "n=4", "aug=[0,250]", "steps=2", f"out={out}"]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["method"] for r in rows] == ["bicubic", "unet_sr, aug 0", "unet_sr, aug 250"]
    assert all(math.isfinite(r["psnr"]) and -1 < r["ssim"] <= 1 for r in rows)
    assert rows[0]["psnr"] > 15 and rows[0]["ssim"] > 0.5  # bicubic of a 16-px view of smooth shapes is close
    assert Image.open(out.with_suffix(".png")).size[0] > 32 and "| bicubic |" in capsys.readouterr().out
    assert sr_quality_main([f"ckpt={ckpts['base']}", f"out={out}"]) == 2
    assert "not an upscaler" in capsys.readouterr().err
    assert sr_quality_main([f"ckpt={ckpts['sr']}", "aug=[1000]", f"out={out}"]) == 2
