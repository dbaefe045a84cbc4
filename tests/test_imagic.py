"""Imagic (issue 12): stage B fine-tunes a copy (the loaded network and the file are unchanged), eta = 0 on the
fine-tuned copy reconstructs the input, eta interpolates the embeddings, and bad input gets one line and exit 2."""

import hashlib

import pytest
import torch

import sample
from models.text import TextCond
from sampling import cli
from sampling.imagic import edit, fit, interpolate, starts
from sampling.io import load_input_image


def _job(ckpt, *extra):
    return cli.build_job(cli.compose_config("sample", [f"ckpt={ckpt}", "task=imagic", "sampler.steps=10", *extra]))


def test_interpolation_is_linear_in_both_parts():
    a = TextCond(torch.ones(1, 3, 4), torch.tensor([[True, True, False]]), torch.ones(1, 4))
    b = TextCond(torch.zeros(1, 3, 4), torch.tensor([[True, False, False]]), torch.zeros(1, 4))
    mid = interpolate(a, b, 0.25)
    assert torch.allclose(mid.tokens, torch.full((1, 3, 4), 0.25))
    assert torch.allclose(mid.pooled, torch.full((1, 4), 0.25))
    assert torch.equal(mid.mask, a.mask)  # the target prompt's padding
    assert torch.equal(interpolate(a, b, 0.0).tokens, b.tokens) and torch.equal(interpolate(a, b, 1.0).pooled, a.pooled)


def test_finetune_runs_on_a_copy_and_eta_0_reconstructs(text_ckpt):
    """Threshold measured on the 4-step tiny model (16 px, procedural:3, 20 + 120 steps at 2e-3): the eta = 0
    sample from noise has MSE ~0.04 against the input after stage B and ~0.94 without it."""
    before = hashlib.sha256(text_ckpt.read_bytes()).hexdigest()
    job, _ = _job(text_ckpt)
    weights = {k: v.clone() for k, v in job.model.net.state_dict().items()}
    x0, _, _ = load_input_image("procedural:3", job.model)
    fitted = fit(job, x0, "a blue circle", embed_steps=20, embed_lr=1e-3, finetune_steps=120, finetune_lr=2e-3,
                 batch_size=4)
    assert fitted.net is not job.model.net
    assert all(torch.equal(v, weights[k]) for k, v in job.model.net.state_dict().items())
    assert any(not torch.equal(v, weights[k]) for k, v in fitted.net.state_dict().items())
    assert not torch.equal(fitted.e_opt.tokens, fitted.e_tgt.tokens)  # stage A moved the embedding
    x_T = starts(job, fitted, x0, 1, "noise")
    tuned = (edit(job, fitted, 0.0, x_T)[0] - x0).pow(2).mean().item()
    untuned = fit(job, x0, "a blue circle", 20, 1e-3, 0, 2e-3, 4)
    plain = (edit(job, untuned, 0.0, x_T)[0] - x0).pow(2).mean().item()
    assert tuned < 0.12 and tuned < 0.25 * plain, (tuned, plain)
    assert hashlib.sha256(text_ckpt.read_bytes()).hexdigest() == before


def test_imagic_task_writes_the_strip(text_ckpt, tmp_path):
    out = tmp_path / "out"
    assert sample.main([f"ckpt={text_ckpt}", "task=imagic", "image=procedural:3", "prompt=a blue circle",
                        "task.embed_steps=2", "task.finetune_steps=2", "task.etas=[0,1]", "task.start=inversion",
                        "sampler.steps=3", f"out={out}"]) == 0
    assert {p.name for p in out.iterdir()} >= {"imagic.png", "edited.png", "imagic.json", "sample_0000.png"}
    import json

    from PIL import Image

    info = json.loads((out / "imagic.json").read_text())
    assert info["etas"] == [0.0, 1.0] and info["start"] == "inversion" and info["prompt"] == "a blue circle"
    assert all(info[k] > 0 for k in ("stage_a_s", "stage_b_s", "stage_c_s"))
    assert 0 <= info["reconstruction_mse"] < 4  # images in [-1, 1]
    strip = Image.open(out / "imagic.png")
    assert strip.width == 3 * (16 * 4 + 4) + 4  # the input and one tile per eta, 4x upscaled with 4-px gaps
    assert Image.open(out / "edited.png").size == (16, 16)


@pytest.mark.parametrize("args, says", [
    (["task.eta=2.5"], "task.eta"),
    (["task.eta=-0.1"], "task.eta"),
    (["task.etas=[0,3]"], "task.etas"),
    (["task.start=middle"], "task.start"),
    ([], "prompt"),
])
def test_bad_imagic_inputs_get_one_line_and_exit_2(text_ckpt, tmp_path, capsys, args, says):
    out = tmp_path / "out"
    prompt = [] if not args else ["prompt=a blue circle"]
    code = sample.main([f"ckpt={text_ckpt}", "task=imagic", "image=procedural:3", *prompt, *args, f"out={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0], err
    assert not out.exists()


def test_imagic_refuses_a_label_model(tiny_ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    code = sample.main([f"ckpt={tiny_ckpts['cond']}", "task=imagic", "image=procedural:3", "label=1", f"out={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not out.exists(), err


def test_finetune_restricted_to_chosen_layers(text_ckpt):
    from sampling.checks import InputError
    from sampling.imagic import finetune

    job, _ = _job(text_ckpt)
    x0, _, _ = load_input_image("procedural:3", job.model)
    e = job.encode("a blue circle")
    net, losses = finetune(job, x0[None], e, steps=2, lr=1e-2, batch_size=2, layers=["out"])
    before = job.model.net.state_dict()
    changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"out"} and len(losses) == 2
    with pytest.raises(InputError, match="names no parameter"):
        finetune(job, x0[None], e, steps=1, lr=1e-2, batch_size=2, layers=["decoder"])
