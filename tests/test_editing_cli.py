"""Editing tasks of sample.py on a real (tiny) checkpoint: outputs, exactness where promised, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import sample
from data.procedural import ProceduralShapes
from sampling.io import to_pil

FAST = ["sampler.steps=3"]
TASKS = {
    "sdedit": (["image=procedural:3", "task.strength=0.5", "n=2", "task.strength_sweep=[0.3,0.9]"],
               {"sdedit.png", "sample_0000.png", "sample_0001.png", "strength_sweep.png"}),
    "invert": (["image=procedural:3"], {"invert.png", "reconstruction.png", "latent.pt", "inversion.json"}),
    "ddib": (["image=procedural:3", "task.source=2", "task.target=0"], {"ddib.png", "translated.png", "ddib.json"}),
    "diffedit": (["image=procedural:3", "task.source=2", "task.target=0", "task.mask_threshold=0.3"],
                 {"diffedit.png", "edited.png", "mask.png", "mask_soft.png", "diffedit.json"}),
    "inpaint": (["image=procedural:3", "mask=procedural:3", "n=2"], {"inpaint.png", "mask.png", "sample_0001.png"}),
    "outpaint": (["image=procedural:3", "task.pad=[4,0,4,0]", "n=1"], {"outpaint.png", "sample_0000.png"}),
    "zoom": (["task.frames=3", "task.direction=in"], {"zoom.gif", "zoom.png", "frame_0002.png"}),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_writes_its_outputs(tmp_path, tiny_ckpts, task):
    args, files = TASKS[task]
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", f"task={task}", *args, f"out={tmp_path}", *FAST]) == 0
    assert files | {"config.yaml"} <= {p.name for p in tmp_path.iterdir()}
    if task == "invert":
        info = json.loads((tmp_path / "inversion.json").read_text())
        latent = torch.load(tmp_path / "latent.pt", weights_only=True)
        assert latent.shape == (1, 3, 16, 16) and np.isfinite(info["mse"])
    if task == "diffedit":
        assert 0.0 <= json.loads((tmp_path / "diffedit.json").read_text())["iou_with_true_mask"] <= 1.0


def _item(i=3):
    return ProceduralShapes(size=i + 1, image_size=16, channels=3).sample(i)


def test_inpaint_and_masked_sdedit_keep_the_known_region_exactly(tmp_path, tiny_ckpts):
    item = _item()
    keep = ~item["mask"][0].numpy()
    expected = np.asarray(to_pil(item["image"]))
    for task, extra in [("inpaint", ["task.resamples=2", "task.jump_length=2", "sampler=ddpm", "sampler.steps=3"]),
                        ("sdedit", ["task.strength=0.8"])]:
        out = tmp_path / task
        args = [f"ckpt={tiny_ckpts['cond']}", f"task={task}", "image=procedural:3", "mask=procedural:3", "n=1", *extra]
        assert sample.main([*args, f"out={out}", *FAST]) == 0
        got = np.asarray(Image.open(out / "sample_0000.png"))
        assert np.array_equal(got[keep], expected[keep]), task
        assert not np.array_equal(got[~keep], expected[~keep]), task  # and the masked region did change


def test_sdedit_strength_zero_returns_the_input(tmp_path, tiny_ckpts):
    args = [f"ckpt={tiny_ckpts['cond']}", "task=sdedit", "image=procedural:3", "task.strength=0", "n=1"]
    assert sample.main([*args, f"out={tmp_path}", *FAST]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sample_0000.png")), np.asarray(to_pil(_item()["image"])))


def test_editing_bad_input_one_line_exit_2_nothing_written(tmp_path, tiny_ckpts, capsys):
    img = tmp_path / "in.png"
    Image.new("RGB", (40, 40), (0, 90, 200)).save(img)
    small_mask = tmp_path / "small_mask.png"
    Image.new("L", (20, 20), 255).save(small_mask)
    empty_mask = tmp_path / "empty_mask.png"
    Image.new("L", (40, 40), 0).save(empty_mask)
    cond, uncond = tiny_ckpts["cond"], tiny_ckpts["uncond"]
    cases = {
        "strength above 1": ([f"ckpt={cond}", "task=sdedit", f"image={img}", "task.strength=1.5"], "strength"),
        "strength below 0": ([f"ckpt={cond}", "task=sdedit", f"image={img}", "task.strength=-0.1"], "strength"),
        "mask of another size": ([f"ckpt={cond}", "task=inpaint", f"image={img}", f"mask={small_mask}"], "20x20"),
        "empty mask": ([f"ckpt={cond}", "task=inpaint", f"image={img}", f"mask={empty_mask}"], "empty"),
        "missing mask": ([f"ckpt={cond}", "task=inpaint", f"image={img}", f"mask={tmp_path / 'no.png'}"], "no.png"),
        "missing image": ([f"ckpt={cond}", "task=sdedit", f"image={tmp_path / 'gone.png'}"], "gone.png"),
        "label outside classes": ([f"ckpt={cond}", "task=diffedit", f"image={img}", "task.source=0",
                                   "task.target=9"], "target"),
        "conditional task, unconditional ckpt": ([f"ckpt={uncond}", "task=diffedit", f"image={img}", "task.source=0",
                                                   "task.target=1"], "unconditional"),
        "bad pad": ([f"ckpt={cond}", "task=outpaint", f"image={img}", "task.pad=[9,0,9,0]"], "pad"),
        "bad zoom direction": ([f"ckpt={cond}", "task=zoom", "task.direction=sideways"], "direction"),
        "ddib source not a label": ([f"ckpt={cond}", "task=ddib", f"image={img}", "task.source=cat",
                                     "task.target=1"], "source"),
        "unknown key for task": ([f"ckpt={cond}", "task=generate", "task.strength=0.5"], "strength"),
        "unknown top-level key": ([f"ckpt={cond}", "task=sdedit", "strength=0.5"], "strength"),
        "an input the task does not take": ([f"ckpt={cond}", "task=invert", "image=procedural:1", "n=3"],
                                            "takes no n"),
        "RePaint without DDPM steps": ([f"ckpt={cond}", "task=inpaint", "image=procedural:3", "mask=procedural:3",
                                        "task.resamples=2"], "sampler=ddpm"),
    }
    for name, (args, needle) in cases.items():
        out = tmp_path / f"out_{name.replace(' ', '_').replace(',', '')}"
        code = sample.main([*args, f"out={out}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], (name, err)
        assert not out.exists(), name
