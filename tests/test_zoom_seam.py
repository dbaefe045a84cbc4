"""Zoom's seam: the metric (evaluation/seam.py) on synthetic frames, and ``task.overlap`` regenerating exactly the
eroded ring of the pasted frame on a tiny checkpoint."""

import numpy as np
import pytest
import torch

import sample
from evaluation.seam import median_seam_ratio, seam_ratio, zoom_boxes, zoom_seam_ratios
from sampling import cli
from sampling.editing import _erode, _fill, _shrink_onto_canvas, fill_sampler, zoom
from sampling.io import load_input_image, to_pil

S = 32
BOX = (4, 4, 28, 28)  # a 24x24 pasted frame, 4 pixels in on every side (scale 0.75)


def _smooth(size: int = S) -> torch.Tensor:
    """A smooth colour image (3, size, size): low-frequency waves, no edges anywhere."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    return torch.stack([0.6 * torch.sin(x / 5 + c) * torch.cos(y / 7 - c) for c in (0.0, 1.0, 2.0)])


def _boxed(frame: torch.Tensor, box, dim: float) -> torch.Tensor:
    """``frame`` with everything inside ``box`` darkened by ``dim``: the nested dark box of the issue."""
    t, l, b, r = box
    out = frame.clone()
    out[:, t:b, l:r] -= dim
    return out


def test_a_smooth_image_has_no_seam_and_a_pasted_dark_box_has_one():
    smooth = _smooth()
    assert 0.8 < seam_ratio(smooth, BOX) < 1.25
    assert seam_ratio(_boxed(smooth, BOX, 0.3), BOX) > 20
    assert seam_ratio(_boxed(smooth, BOX, 0.05), BOX) > 2  # a step of about 6 levels is still found
    # the same dark box is no seam at a box 3 pixels further in (width 1 sees only the boundary itself) ...
    assert seam_ratio(_boxed(smooth, BOX, 0.3), (7, 7, 25, 25)) < 1.25
    # ... but the mean over a band of width 4 reaches it
    assert seam_ratio(_boxed(smooth, BOX, 0.3), (7, 7, 25, 25), width=4, statistic="mean") > 3


def test_the_median_finds_a_faint_seam_that_a_bright_shape_hides_from_the_mean():
    # zoom's frames: a flat navy background with a little pixel noise and one bright shape
    g = torch.Generator().manual_seed(0)
    frame = torch.tensor([-0.84, -0.76, -0.3])[:, None, None] + 0.01 * torch.randn(3, S, S, generator=g)
    frame[:, 10:20, 12:22] = torch.tensor([0.9, 0.9, -0.9])[:, None, None]  # a yellow square
    assert seam_ratio(frame, BOX) < 1.5
    faint = _boxed(frame, BOX, 0.05)  # the pasted frame 6 levels darker: the nested box of the issue
    assert seam_ratio(faint, BOX) > 5
    assert seam_ratio(faint, BOX, statistic="mean") < 1  # the square's edges swamp the mean


def test_seam_ratio_of_white_noise_is_about_one():
    g = torch.Generator().manual_seed(0)
    ratios = [seam_ratio(torch.randn(3, S, S, generator=g), BOX) for _ in range(20)]
    assert 0.85 < float(np.median(ratios)) < 1.15


def test_seam_ratio_counts_exactly_the_pairs_across_the_boundary():
    # one channel, zero everywhere except a step of height 1 at the box: every boundary pair differs by 1
    frame = torch.zeros(1, 8, 8)
    frame[:, 2:6, 2:6] = 1.0
    # 16 boundary pairs of squared difference 1; the other 2 * 8 * 7 - 16 = 96 pairs are 0
    assert seam_ratio(frame, (2, 2, 6, 6), statistic="mean", eps=1e-3) == pytest.approx((1 + 1e-3) / 1e-3)
    assert seam_ratio(frame, (2, 2, 6, 6), eps=1e-3) == pytest.approx((1 + 1e-3) / 1e-3)
    # a box one pixel further in sees no step on its own boundary, and the step among the rest
    assert seam_ratio(frame, (3, 3, 5, 5), statistic="mean", eps=0.0) == 0.0
    with pytest.raises(ValueError, match="width"):
        seam_ratio(frame, (2, 2, 6, 6), width=0)


def test_zoom_seam_ratios_takes_the_worst_box_down_to_the_kept_region():
    smooth = _smooth()
    moved_in = _boxed(smooth, (6, 6, 26, 26), 0.3)  # a seam 2 pixels inside the pasted box
    assert zoom_boxes(S, 4, 2) == [(4, 4, 28, 28), (5, 5, 27, 27), (6, 6, 26, 26)]
    chain = [smooth, _boxed(smooth, BOX, 0.3), moved_in]
    at_box = zoom_seam_ratios(chain, 4)
    down_to_kept = zoom_seam_ratios(chain, 4, overlap=2)
    assert len(at_box) == 2 and at_box[0] > 20 and at_box[1] < 1.5
    assert down_to_kept[1] > 20  # the seam the overlap moved inwards is still found
    assert median_seam_ratio([chain, chain], 4, overlap=2) > 20


def test_erode_takes_the_outer_ring_off_the_pasted_box():
    keep = _shrink_onto_canvas(torch.zeros(3, 16, 16), (4,) * 4)[1]
    eroded = _erode(keep, 2)
    assert torch.equal(eroded[0, 6:10, 6:10], torch.ones(4, 4)) and eroded.sum() == 16
    assert torch.equal(_erode(keep, 0), keep)


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine a tiny U-Net's convolutions run ~50x slower with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_overlap_regenerates_exactly_the_eroded_ring(tiny_ckpts, one_thread):
    cfg = cli.compose_config("sample", [f"ckpt={tiny_ckpts['cond']}", "task=zoom", "sampler.steps=3"])
    job, _ = cli.build_job(cfg)
    x0, _, _ = load_input_image("procedural:6", job.model)
    border = 4  # 16 px frames at scale 0.5
    canvas, keep = _shrink_onto_canvas(x0, (border,) * 4)
    pasted = np.asarray(to_pil(canvas)).astype(int)
    idx = np.arange(16)
    d = np.minimum(idx - border, 15 - border - idx)
    depth = np.minimum(d[:, None], d[None, :])  # distance in from the pasted box's edge; negative outside it

    def second_frame(**kw) -> np.ndarray:  # frame 1 as saved: 8-bit RGB (H, W, 3)
        out = zoom(job, image="procedural:6", frames=2, scale=0.5, **kw)
        return np.asarray(out["frame_0001.png"].convert("RGB")).astype(int)

    def changed(frame):  # (H, W): any channel differs from the pasted input
        return np.any(frame != pasted, axis=-1)

    base = second_frame(overlap=0)
    assert not changed(base)[depth >= 0].any()  # without overlap the whole pasted frame is kept
    # overlap = 0 is the zoom of before: one _fill of the pasted frame with the job's sampler, seed + 1
    before = _fill(job, canvas, keep, None, fill_sampler(job, 1, 10), job.seed + 1, 1)[0]
    assert np.array_equal(base, np.asarray(to_pil(before)).astype(int))
    for overlap in (1, 2, 3):
        got = second_frame(overlap=overlap)
        ring, deep = (depth >= 0) & (depth < overlap), depth >= overlap
        assert changed(got)[ring].all(), overlap  # every pixel of the ring regenerated
        assert not changed(got)[deep].any(), overlap  # deeper inside: bit-exact
    assert any("moves the seam" in line for line in job.notes)  # overlap without resampling is flagged
    # the same with RePaint's resampling (the harmonisation that removes the seam on real models), unflagged
    cfg = cli.compose_config("sample", [f"ckpt={tiny_ckpts['cond']}", "task=zoom", "sampler=ddpm", "sampler.steps=3"])
    job, _ = cli.build_job(cfg)
    got = second_frame(overlap=2, resamples=2, jump_length=2)
    assert changed(got)[(depth >= 0) & (depth < 2)].all() and not changed(got)[depth >= 2].any()
    assert not any("moves the seam" in line for line in job.notes)


@pytest.mark.parametrize("value, needle", [("-1", "task.overlap must be an integer in [0, 16], got -1"),
                                           ("17", "task.overlap must be an integer in [0, 16], got 17"),
                                           ("1.5", "task.overlap must be an integer in [0, 16], got 1.5"),
                                           ("4", "task.overlap=4 leaves nothing of the pasted 8x8 frame")])
def test_bad_overlap_is_one_line(value, needle, tmp_path, tiny_ckpts, capsys):
    out = tmp_path / "out"
    args = [f"ckpt={tiny_ckpts['cond']}", "task=zoom", "task.scale=0.5", f"task.overlap={value}", "sampler.steps=2"]
    assert sample.main([*args, f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert not out.exists()
