"""Task settings reach the task (issue 9): each of these was silently ignored before the redesign.

- ``guidance_batched`` was ignored by ``generate`` (it built its own CFG denoiser);
- ``fixed_point_iters`` was ignored by ``diffedit``;
- RePaint (``task.resamples`` > 1) ignored ``sampler.*``: its steps were always DDPM's, unclipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sample
from sampling.cli import build_job, compose_config


class CountingNet:
    """Wraps a network and records the batch size of every forward."""

    def __init__(self, net):
        self.net, self.batches = net, []

    def __call__(self, x, t, cond=None):
        self.batches.append(x.shape[0])
        return self.net(x, t, cond)


def _job(ckpt, *overrides):
    job, task = build_job(compose_config("sample", [f"ckpt={ckpt}", "sampler.steps=2", *overrides]))
    job.model.net = CountingNet(job.model.net)
    return job, task


@pytest.mark.parametrize("batched, forwards", [("true", [6, 6]), ("false", [3, 3, 3, 3])])
def test_generate_follows_guidance_batched(tiny_ckpts, batched, forwards):
    job, task = _job(tiny_ckpts["cond"], "guidance=3.0", f"guidance_batched={batched}", "n=3")
    task(job)
    assert job.model.net.batches == forwards  # 2 steps: one forward of 2B each, or two of B each


def test_diffedit_follows_fixed_point_iters(tiny_ckpts):
    calls = []
    for iters in (0, 2):
        job, task = _job(tiny_ckpts["cond"], "task=diffedit", "image=procedural:3", "task.source=2", "task.target=0",
                         "task.mask_draws=1", "task.mask_threshold=0.3", "task.encode_ratio=1.0",
                         f"task.fixed_point_iters={iters}")
        task(job)
        calls.append(len(job.model.net.batches))
    # encoding 2 steps with k refinements costs 2 (1 + k) forwards; the rest (mask, decoding) is the same
    assert calls[1] - calls[0] == 2 * 2


def test_repaint_takes_the_ddpm_samplers_settings(tiny_ckpts, tmp_path):
    base = [f"ckpt={tiny_ckpts['cond']}", "task=inpaint", "image=procedural:3", "mask=procedural:3", "n=1",
            "task.resamples=2", "task.jump_length=1", "sampler=ddpm", "sampler.steps=3"]
    outs = {}
    for clip in ("true", "false"):
        out = tmp_path / clip
        assert sample.main([*base, f"sampler.clip_x0={clip}", f"out={out}"]) == 0
        outs[clip] = np.asarray(Image.open(out / "sample_0000.png"))
    assert not np.array_equal(outs["true"], outs["false"])  # sampler.clip_x0 reaches RePaint's steps
