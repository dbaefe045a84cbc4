"""MNIST and CIFAR-10 through torchvision, for machines that can download them; offline they fail clearly."""

import contextlib
import http.client
import io
import os
import socket
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from data import ClassCaptions, DatasetError
from data.transforms import check_channels, check_split, pad_or_resize_grey, to_tensor_image

# Seconds per blocked socket operation while downloading, so an unreachable mirror fails fast
# instead of hanging; name resolution itself is not covered by it.
DOWNLOAD_TIMEOUT_S = 10.0


def load_torchvision(cls: type, name: str, root: str, split: str, layout: str) -> Any:
    """Build torchvision dataset `cls` under root, downloading if absent; DatasetError when that fails."""
    root = os.path.expanduser(root)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # torchvision prints one "Downloading ..." / "Failed to download" line per mirror to stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            return cls(root, train=split == "train", download=True)
    except (OSError, RuntimeError, http.client.HTTPException) as e:
        reason = next((line for line in reversed(str(e).splitlines()) if line.strip()), type(e).__name__)
        raise DatasetError(
            f"{name} is not available offline and could not be downloaded into {root} ({reason.strip()}); "
            f"put the files under {os.path.join(root, layout)} or use data=fashion_mnist"
        ) from e
    finally:
        socket.setdefaulttimeout(previous)


class MNIST(ClassCaptions, Dataset):
    """MNIST digits 28x28 grey via torchvision: 'train' 60,000, 'val' (the test set) 10,000; padded to 32."""

    classes = tuple(str(d) for d in range(10))
    num_classes = 10
    caption_names = tuple(f"digit {d}" for d in range(10))  # 'a photo of a digit 3'

    def __init__(
        self,
        root: str = "~/.cache/difflab/mnist",
        split: str = "train",
        image_size: int = 32,
        channels: int = 1,
    ) -> None:
        check_channels(channels, "mnist")
        check_split(split, "mnist")
        self.image_size, self.channels = image_size, channels
        raw = load_torchvision(
            torchvision.datasets.MNIST, "MNIST", root, split, "MNIST/raw/ (uncompressed IDX)"
        )
        self.images = raw.data.numpy()  # (N, 28, 28) uint8
        self.labels = raw.targets.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return pad_or_resize_grey(self.images[i], self.image_size, self.channels), int(self.labels[i])


class CIFAR10(ClassCaptions, Dataset):
    """CIFAR-10 32x32 RGB via torchvision: 'train' 50,000, 'val' (the test set) 10,000."""

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    num_classes = 10

    def __init__(
        self,
        root: str = "~/.cache/difflab/cifar10",
        split: str = "train",
        image_size: int = 32,
        channels: int = 3,
    ) -> None:
        check_channels(channels, "cifar10")
        check_split(split, "cifar10")
        self.image_size, self.channels = image_size, channels
        raw = load_torchvision(torchvision.datasets.CIFAR10, "CIFAR-10", root, split, "cifar-10-batches-py/")
        self.images = raw.data  # (N, 32, 32, 3) uint8
        self.labels = np.asarray(raw.targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = to_tensor_image(Image.fromarray(self.images[i]), self.image_size, self.channels)
        return image, int(self.labels[i])
