"""sample.py and scripts/export.py on real (tiny) checkpoints: outputs, determinism, safe loading, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import sample
from tests.runner import ROOT

FAST = ["sampler.steps=3"]


def _png(path):
    return np.asarray(Image.open(path))


def test_generate_writes_grid_and_samples_and_is_batch_size_invariant(tmp_path, tiny_ckpts):
    ck = tiny_ckpts["cond"]
    assert sample.main([f"ckpt={ck}", "n=5", "batch_size=5", "seed=3", f"out={tmp_path / 'a'}", *FAST]) == 0
    assert sample.main([f"ckpt={ck}", "n=5", "batch_size=2", "seed=3", f"out={tmp_path / 'b'}", *FAST]) == 0
    assert sample.main([f"ckpt={ck}", "n=5", "batch_size=5", "seed=4", f"out={tmp_path / 'c'}", *FAST]) == 0
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"grid.png", "config.yaml"} | {f"sample_{i:04d}.png" for i in range(5)} == names
    for i in range(5):
        name = f"sample_{i:04d}.png"
        assert np.array_equal(_png(tmp_path / "a" / name), _png(tmp_path / "b" / name))
    assert not np.array_equal(_png(tmp_path / "a" / "sample_0000.png"), _png(tmp_path / "c" / "sample_0000.png"))
    assert _png(tmp_path / "a" / "sample_0000.png").shape == (16, 16, 3)


def test_ddpm_sampler_guidance_and_trajectory(tmp_path, tiny_ckpts):
    out = tmp_path / "t"
    args = [f"ckpt={tiny_ckpts['cond']}", "n=3", "sampler=ddpm", "sampler.steps=4", "guidance=3.0", "label=2",
            "save_trajectory=true", f"out={out}"]
    assert sample.main(args) == 0
    gif = Image.open(out / "trajectory.gif")
    total_ms = 0
    for k in range(gif.n_frames):  # PIL merges identical consecutive frames and adds up their durations
        gif.seek(k)
        total_ms += gif.info["duration"]
    assert total_ms == (4 + 1) * 150  # one frame per step and one of the final samples, 150 ms each


def test_forward_and_denoise_compare(tmp_path, tiny_ckpts):
    img = tmp_path / "in.jpg"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(img)
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", "task=forward", f"image={img}", f"out={tmp_path / 'f'}"]) == 0
    strip = Image.open(tmp_path / "f" / "forward.png")
    assert strip.width > 8 * 16 * 4  # x0 plus 8 timesteps, upscaled
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", "task=denoise_compare", f"image={img}", "task.t=100",
                        f"out={tmp_path / 'd'}", *FAST]) == 0
    scores = json.loads((tmp_path / "d" / "psnr.json").read_text())
    assert set(scores) >= {"noisy", "blur", "one-step", "iterative"} and scores["t"] == 100
    assert all(np.isfinite(scores[k]) for k in ("noisy", "blur", "one-step", "iterative"))


def test_export_safetensors_gives_the_same_samples(tmp_path, tiny_ckpts):
    from scripts.export import main as export_main

    assert export_main([f"ckpt={tiny_ckpts['cond']}", f"out={tmp_path / 'm'}"]) == 0
    assert (tmp_path / "m.safetensors").exists() and (tmp_path / "m.yaml").exists()
    for name, ck in [("a", tiny_ckpts["cond"]), ("b", tmp_path / "m.safetensors")]:
        assert sample.main([f"ckpt={ck}", "n=2", f"out={tmp_path / name}", *FAST]) == 0
    assert np.array_equal(_png(tmp_path / "a" / "grid.png"), _png(tmp_path / "b" / "grid.png"))
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", "n=2", "weights=raw", f"out={tmp_path / 'r'}", *FAST]) == 0
    assert not np.array_equal(_png(tmp_path / "a" / "grid.png"), _png(tmp_path / "r" / "grid.png"))


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_inputs(tmp_path, ck_cond, ck_uncond):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Evil(marker), "difflab": {"config": {}}}, evil)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ck_cond.read_bytes()[:5000])
    foreign = tmp_path / "foreign.ckpt"
    Image.new("RGB", (4, 4)).save(foreign, format="PNG")
    garbage_img = tmp_path / "garbage.png"
    garbage_img.write_bytes(b"\x89PNG not really")
    return marker, {
        "malicious pickle": ([f"ckpt={evil}"], "evil.ckpt"),
        "truncated": ([f"ckpt={truncated}"], "truncated.ckpt"),
        "foreign": ([f"ckpt={foreign}"], "foreign.ckpt"),
        "missing ckpt": ([f"ckpt={tmp_path / 'nope.ckpt'}"], "nope.ckpt"),
        "unknown key": ([f"ckpt={ck_cond}", "bogus=1"], "bogus"),
        "label range": ([f"ckpt={ck_cond}", "label=7"], "label"),
        "guidance on unconditional": ([f"ckpt={ck_uncond}", "guidance=2.0"], "unconditional"),
        "missing image": ([f"ckpt={ck_cond}", "task=forward", f"image={tmp_path / 'none.png'}"], "none.png"),
        "unreadable image": ([f"ckpt={ck_cond}", "task=forward", f"image={garbage_img}"], "garbage.png"),
        "no image": ([f"ckpt={ck_cond}", "task=forward"], "image="),
        "steps range": ([f"ckpt={ck_cond}", "sampler.steps=0"], "sampler.steps"),
    }


def test_bad_input_one_line_exit_2_nothing_written(tmp_path, tiny_ckpts, capsys):
    marker, cases = _bad_inputs(tmp_path, tiny_ckpts["cond"], tiny_ckpts["uncond"])
    for name, (args, needle) in cases.items():
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        code = sample.main([*args, f"out={out}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], (name, err)
        assert not out.exists(), name
    assert not marker.exists(), "the malicious pickle ran code"


def test_exit_status_from_the_command_line(tmp_path, tiny_ckpts):
    proc = subprocess.run([sys.executable, str(ROOT / "sample.py"), f"ckpt={tmp_path / 'missing.ckpt'}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("weights_only_ok", [True])
def test_training_checkpoints_load_with_weights_only(tiny_ckpts, weights_only_ok):
    ckpt = torch.load(tiny_ckpts["cond"], map_location="cpu", weights_only=weights_only_ok)
    assert "difflab" in ckpt and ckpt["global_step"] == 4
