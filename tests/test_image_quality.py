"""PSNR and SSIM (evaluation/image_quality.py) against closed forms and torchmetrics."""

import math

import pytest
import torch
import torch.nn.functional as F

from evaluation.image_quality import gaussian_window, psnr, ssim


def test_psnr_closed_form():
    x = torch.zeros(2, 3, 16, 16)
    y = x + torch.tensor([0.2, 0.02])[:, None, None, None]  # errors 0.1 and 0.01 on the [0, 1] scale
    assert torch.allclose(psnr(x, y), torch.tensor([20.0, 40.0], dtype=torch.float64))


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_ssim_of_flat_images_is_the_luminance_term():
    a, b = 0.3, 0.7  # [0, 1] levels of two flat images: no variance, so only the luminance term is left
    x, y = torch.full((1, 1, 16, 16), 2 * a - 1), torch.full((1, 1, 16, 16), 2 * b - 1)
    c1 = 0.01**2  # the inputs are float32: relative tolerance 1e-6
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_matches_torchmetrics_on_the_same_windows():
    # torchmetrics reflect-pads by 5 and averages every window; ours averages the windows inside the image
    tm = pytest.importorskip("torchmetrics.functional.image")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    pad = lambda z: F.pad(z, (5, 5, 5, 5), mode="reflect")  # noqa: E731
    ours = ssim(pad(x), pad(y))
    theirs = [tm.structural_similarity_index_measure((x[i:i + 1] + 1) / 2, (y[i:i + 1] + 1) / 2, data_range=1.0)
              for i in range(3)]
    assert torch.allclose(ours.float(), torch.stack(theirs), atol=1e-5)


def test_ssim_falls_with_noise_and_is_symmetric():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    noise = torch.randn(x.shape, generator=g)
    values = [ssim(x, x + s * noise).item() for s in (0.05, 0.2, 0.5)]
    assert values[0] > values[1] > values[2]
    y = x + 0.2 * noise
    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item(), rel=1e-12)


def test_gaussian_window_and_small_images():
    w = gaussian_window()
    assert w.shape == (11, 11) and math.isclose(w.sum().item(), 1.0) and w[5, 5] == w.max()
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
