"""scikit-learn's 8x8 handwritten digits (1,797 images, bundled offline), upsampled to image_size."""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from data import ClassCaptions
from data.transforms import check_channels, check_split, expand_channels

# Every VAL_EVERY-th image (index 0, 10, 20, ...) is held out: 180 val, 1,617 train.
VAL_EVERY = 10


class Digits(ClassCaptions, Dataset):
    """sklearn load_digits: 8x8 grey digits (values 0-16) bilinearly upsampled; labels 0-9."""

    classes = tuple(str(d) for d in range(10))
    num_classes = 10
    caption_names = tuple(f"digit {d}" for d in range(10))  # 'a photo of a digit 3'

    def __init__(self, image_size: int = 32, channels: int = 1, split: str = "train") -> None:
        check_channels(channels, "digits")
        check_split(split, "digits")
        self.channels = channels
        bunch = load_digits()
        held_out = np.arange(len(bunch.target)) % VAL_EVERY == 0
        keep = held_out if split == "val" else ~held_out
        self.indices = np.flatnonzero(keep)  # positions in load_digits(), for tracing items back
        images = torch.from_numpy(bunch.images[keep]).to(torch.float32)[:, None] / 8.0 - 1.0
        # Bilinear weights are convex, so values stay in [-1, 1].
        size = (image_size, image_size)
        self.images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        self.labels = bunch.target[keep].astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return expand_channels(self.images[i], self.channels), int(self.labels[i])
