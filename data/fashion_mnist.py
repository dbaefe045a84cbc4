"""Fashion-MNIST (Xiao et al. 2017) from the original IDX .gz files that Debian's package ships."""

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data import ClassCaptions, DatasetError
from data.transforms import check_channels, check_split, pad_or_resize_grey

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HINT = "run `apt-get install -y dataset-fashion-mnist` (or `make data`)"


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read a gzipped IDX file of uint8 (magic 0x0800 | ndim, big-endian int32 dims) into an array."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"Fashion-MNIST file {path} not found; {INSTALL_HINT}") from None
    except (OSError, EOFError) as e:
        raise DatasetError(
            f"Fashion-MNIST file {path} is unreadable ({e}); reinstall it: {INSTALL_HINT}"
        ) from e
    offset = 4 + 4 * ndim  # labels: 8, images: 16
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim) if len(raw) >= offset else None
    if header is None or header[0] != 0x0800 | ndim or len(raw) != offset + int(np.prod(header[1:])):
        raise DatasetError(f"Fashion-MNIST file {path} is not a valid IDX file; reinstall it: {INSTALL_HINT}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(header[1:])


class FashionMNIST(ClassCaptions, Dataset):
    """Fashion-MNIST 28x28 grey: 'train' 60,000 and 'val' (the t10k set) 10,000; 10 balanced classes."""

    classes = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    num_classes = 10

    def __init__(
        self,
        root: str = "/usr/share/datasets/fashion-mnist",
        split: str = "train",
        image_size: int = 32,
        channels: int = 1,
    ) -> None:
        check_channels(channels, "fashion_mnist")
        check_split(split, "fashion_mnist")
        self.image_size, self.channels = image_size, channels
        images_file, labels_file = FILES[split]
        # Kept as uint8 (47 MB for train) and converted per item.
        self.images = read_idx(Path(root) / images_file, ndim=3)
        self.labels = read_idx(Path(root) / labels_file, ndim=1)
        if len(self.images) != len(self.labels):
            raise DatasetError(
                f"Fashion-MNIST in {root}: {len(self.images)} images but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return pad_or_resize_grey(self.images[i], self.image_size, self.channels), int(self.labels[i])
