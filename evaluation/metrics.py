"""Distances between two sets of image features (N, D): Fréchet distance, KID, precision/recall.

Pure functions over numpy arrays or torch tensors; everything is computed in float64 except the pairwise
distances of precision/recall, which are float32 in row chunks so that 10k x 10k stays within memory.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

Array = np.ndarray | torch.Tensor


def _as_f64(x: Array) -> np.ndarray:
    """A float64 numpy copy of an array or tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(feats: Array) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64 (Heusel et al. 2017, sec. 3)."""
    f = _as_f64(feats)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: Array, sigma1: Array, mu2: Array, sigma2: Array, eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians (Heusel et al. 2017, eq. 6; Dowson & Landau 1982):
    ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), handling round-off as pytorch-fid's
    ``calculate_frechet_distance`` does."""
    mu1, mu2 = np.atleast_1d(_as_f64(mu1)), np.atleast_1d(_as_f64(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_f64(sigma1)), np.atleast_2d(_as_f64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape}, {mu2.shape}; sigma {sigma1.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # A singular product (fewer samples than dimensions) has no finite root: regularise both covariances.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off gives small imaginary parts; a large one means the statistics are broken, not noisy.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm(sigma1 sigma2) has imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def polynomial_mmd(f1: np.ndarray, f2: np.ndarray, degree: int = 3, gamma: float | None = None, coef: float = 1.0
                   ) -> float:
    """Unbiased MMD^2 with k(x, y) = (gamma x.y + coef)^degree, gamma = 1/D (Binkowski et al. 2018, eq. 4)."""
    m = f1.shape[0]
    gamma = 1.0 / f1.shape[1] if gamma is None else gamma
    k11 = (f1 @ f1.T * gamma + coef) ** degree
    k22 = (f2 @ f2.T * gamma + coef) ** degree
    k12 = (f1 @ f2.T * gamma + coef) ** degree
    within = (k11.sum() - np.trace(k11) + k22.sum() - np.trace(k22)) / (m * (m - 1))
    return float(within - 2 * k12.sum() / m**2)


def kernel_inception_distance(
    f1: Array, f2: Array, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
    gamma: float | None = None, coef: float = 1.0, seed: int = 0,
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018, sec. 3): mean and std of ``polynomial_mmd`` over ``subsets`` random subsets of
    ``subset_size`` from each set (capped at the smaller set), drawn from ``seed``; std with ddof=0 as torchmetrics."""
    a, b = _as_f64(f1), _as_f64(f2)
    size = min(subset_size, a.shape[0], b.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    scores = [
        polynomial_mmd(a[rng.choice(a.shape[0], size, replace=False)], b[rng.choice(b.shape[0], size, replace=False)],
                       degree, gamma, coef)
        for _ in range(subsets)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def _squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, m) squared Euclidean distances via |x|^2 + |y|^2 - 2 x.y, clamped at 0 against round-off."""
    return ((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T).clamp_(min=0)


def knn_radii(feats: torch.Tensor, k: int = 3, chunk: int = 1024) -> torch.Tensor:
    """Squared distance from each row to its k-th nearest other row (Kynkaanniemi et al. 2019, sec. 3), (N,)."""
    if feats.shape[0] <= k:
        raise ValueError(f"k={k} nearest neighbours need more than {k} features, got {feats.shape[0]}")
    # k + 1: each row's nearest neighbour in its own set is itself, at distance 0.
    return torch.cat([_squared_distances(feats[i : i + chunk], feats).kthvalue(k + 1, dim=1).values
                      for i in range(0, feats.shape[0], chunk)])


def _inside_manifold(queries: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """(Q,) bool: is each query within the k-NN ball of at least one reference point."""
    return torch.cat([(_squared_distances(queries[i : i + chunk], ref) <= radii[None, :]).any(dim=1)
                      for i in range(0, queries.shape[0], chunk)])


def precision_recall(real: Array, fake: Array, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, eq. 1-2): precision = share of fakes inside the
    union of real k-NN balls, recall = share of reals inside the union of fake k-NN balls. float32, ``chunk``
    rows at a time (10k x 10k needs chunk x 10k x 4 bytes, 40 MB at the default)."""
    r = torch.as_tensor(_as_f64(real))
    f = torch.as_tensor(_as_f64(fake))
    # Centring on the joint mean before going to float32 keeps |x|^2 small, so the expansion loses less.
    centre = torch.cat([r, f]).mean(0)
    r, f = (r - centre).float(), (f - centre).float()
    precision = _inside_manifold(f, r, knn_radii(r, k, chunk), chunk).double().mean()
    recall = _inside_manifold(r, f, knn_radii(f, k, chunk), chunk).double().mean()
    return float(precision), float(recall)
