"""Every out-of-range setting of sample.py: one `error:` line naming the setting and its range, exit 2, no output."""

import struct
import zlib

import pytest
import torch

import sample

INPAINT = ["task=inpaint", "image=procedural:3", "mask=procedural:3"]
DIFFEDIT = ["task=diffedit", "image=procedural:3", "task.source=2", "task.target=0"]

# name: (overrides, what the error line must contain: the setting and its allowed range)
CASES = {
    "guidance nan": (["guidance=nan"], "guidance must be a finite number in [0, 50], got nan"),
    "guidance inf": (["guidance=inf"], "guidance must be a finite number in [0, 50], got inf"),
    "guidance negative": (["guidance=-2"], "guidance must be a finite number in [0, 50]"),
    "guidance_rescale nan": (["guidance_rescale=nan"], "guidance_rescale must be a finite number in [0, 1]"),
    "guidance_rescale above 1": (["guidance_rescale=1.5"], "guidance_rescale must be a finite number in [0, 1]"),
    "eta nan": (["sampler.eta=nan"], "sampler.eta must be a finite number in [0, 1], got nan"),
    "eta above 1": (["sampler.eta=3"], "sampler.eta must be a finite number in [0, 1]"),
    "sigma_max 0": (["sampler=heun", "sampler.sigma_max=0"], "sampler.sigma_max must be a finite number in (0, "),
    "jump_length 0 (never ended)": ([*INPAINT, "task.resamples=3", "task.jump_length=0"],
                                    "jump_length must be an integer in [1, 1000], got 0"),
    "jump_length negative": ([*INPAINT, "task.jump_length=-1"], "jump_length must be an integer in [1, 1000], got -1"),
    "resamples 0": ([*INPAINT, "task.resamples=0"], "resamples must be an integer in [1, 100]"),
    "mask_draws 0": ([*DIFFEDIT, "task.mask_draws=0"], "mask_draws must be an integer in [1, 1000], got 0"),
    "mask_threshold nan": ([*DIFFEDIT, "task.mask_threshold=nan"], "mask_threshold must be a finite number in [0, 1]"),
    "encode_ratio above 1": ([*DIFFEDIT, "task.encode_ratio=1.5"], "encode_ratio must be a finite number in [0, 1]"),
    "fixed_point_iters negative": (["task=invert", "image=procedural:3", "task.fixed_point_iters=-1"],
                                   "fixed_point_iters must be an integer in [0, 50], got -1"),
    "procedural index negative": (["task=forward", "image=procedural:-3"],
                                  "the index of procedural:-3 must be an integer in [0, "),
    "seed not an integer": (["seed=1.5"], "seed must be an integer in [0, "),
    "n 0": (["n=0"], "n must be an integer in [1, 100000], got 0"),
    "batch_size 0": (["batch_size=0"], "batch_size must be an integer in [1, 4096], got 0"),
    "steps above T": (["sampler.steps=5000"], "sampler.steps must be an integer in [1, 1000], got 5000"),
    "device foo": (["device=foo"], "device must be cpu, cuda or cuda:<index>, got 'foo'"),
    "spacing bogus": (["sampler.spacing=bogus"],
                      "sampler.spacing must be one of uniform, quadratic, trailing, logsnr, karras"),
    "variance bogus": (["sampler=ddpm", "sampler.variance=bogus"], "sampler.variance must be one of beta_tilde, beta"),
    "clip_x0 2": (["sampler.clip_x0=2"], "sampler.clip_x0 must be true, false or a percentile in (0, 1), got 2"),
    "clip_x0 1.0": (["sampler.clip_x0=1.0"], "sampler.clip_x0 must be true, false or a percentile in (0, 1)"),
    "forward timestep out of range": (["task=forward", "image=procedural:1", "task.timesteps=[0,1000]"],
                                      "task.timesteps must be an integer in [0, 999], got 1000"),
    "denoise t negative": (["task=denoise_compare", "image=procedural:1", "task.t=-1"],
                           "task.t must be an integer in [0, 999]"),
    "blur_sigma 0": (["task=denoise_compare", "image=procedural:1", "task.blur_sigma=0"],
                     "task.blur_sigma must be a finite number in (0, 16]"),
    "strength_sweep value": (["task=sdedit", "image=procedural:1", "task.strength_sweep=[0.5,2]"],
                             "strength_sweep must be a finite number in [0, 1], got 2"),
    "strength_sweep not a list": (["task=sdedit", "image=procedural:1", "task.strength_sweep=0.5"],
                                  "strength_sweep must be a list"),
    "zoom frames 1": (["task=zoom", "task.frames=1"], "frames must be an integer in [2, 1000], got 1"),
    "zoom scale 1": (["task=zoom", "task.scale=1.0"], "scale must be a finite number in [0.2, 1), got 1.0"),
    "overwrite not a bool": (["overwrite=maybe"], "overwrite must be one of True, False"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_value_one_line_exit_2_nothing_written(name, tmp_path, tiny_ckpts, capsys):
    overrides, needle = CASES[name]
    out = tmp_path / "out"
    code = sample.main([f"ckpt={tiny_ckpts['cond']}", "sampler.steps=2", *overrides, f"out={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (name, err)
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], (name, err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cuda_without_a_gpu_is_one_line(tmp_path, tiny_ckpts, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on CI; on a GPU machine too
    out = tmp_path / "out"
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", "n=2", "device=cuda", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device=cuda: no CUDA GPU is available" in err[0] and not out.exists()


def _png_header(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height RGB pixels, with a few bytes of (truncated) data: opening it
    reads only the header; decoding it would fail, so an error that names the size came before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(20000, 20000), (5000, 5000)])
def test_huge_image_refused_by_size_before_decoding(width, height, tmp_path, tiny_ckpts, capsys):
    image = tmp_path / "huge.png"
    _png_header(image, width, height)  # 20000^2 trips PIL's DecompressionBombError; 5000^2 only our limit
    for task in (["task=forward", f"image={image}"], ["task=inpaint", "image=procedural:1", f"mask={image}"]):
        out = tmp_path / "out"
        assert sample.main([f"ckpt={tiny_ckpts['cond']}", *task, f"out={out}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "larger than the limit of 4096x4096 pixels" in err[0], err
        assert "before decoding" in err[0] and not out.exists()
