"""The LightningDataModule: a resumable, seeded stream of (image, label) batches."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class StreamSampler(Sampler):
    """An endless stream of (index, flip) pairs, a function of (seed, position) only.

    Position p of rank r reads global item g = p * world_size + r; epoch e = g // N is a fresh
    permutation drawn from Generator(seed + e). Starting at any position therefore reproduces exactly
    what an uninterrupted run would have read there: this is what makes resuming bit-identical.
    """

    def __init__(self, num_items: int, seed: int, hflip: bool, start: int = 0, rank: int = 0, world_size: int = 1):
        if num_items < 1:
            raise ValueError("the training set is empty")
        self.num_items, self.seed, self.hflip = num_items, seed, hflip
        self.start, self.rank, self.world_size = start, rank, world_size

    def _epoch(self, epoch: int) -> tuple[list[int], list[bool]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_items, generator=g).tolist()
        flips = torch.randint(0, 2, (self.num_items,), generator=g).bool().tolist() if self.hflip else None
        return order, flips or [False] * self.num_items

    def __iter__(self):
        p, cached_epoch, order, flips = self.start, -1, [], []
        while True:
            g = p * self.world_size + self.rank
            epoch, k = divmod(g, self.num_items)
            if epoch != cached_epoch:
                (order, flips), cached_epoch = self._epoch(epoch), epoch
            yield order[k], flips[k]
            p += 1


class _Flipped(Dataset):
    """Reads (index, flip) from the sampler and mirrors the image horizontally when asked; with ``captions``
    the item is (image, label, caption)."""

    def __init__(self, dataset: Dataset, captions: bool = False):
        self.dataset, self.captions = dataset, captions

    def __getitem__(self, item: tuple[int, bool]):
        index, flip = item
        image, label = self.dataset[index]
        image = image.flip(-1) if flip else image
        return (image, label, self.dataset.caption(index)) if self.captions else (image, label)


class _Captioned(Dataset):
    """(image, label, caption) items of a captioned dataset, for validation."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return (*self.dataset[index], self.dataset.caption(index))


class DiffusionDataModule(L.LightningDataModule):
    """Train and validation datasets from config, batched for diffusion training.

    ``image_size``, ``channels``, ``num_classes`` and ``cond`` (the condition a model of this data uses by
    default: label or text) describe the data for the model configs; they are kept here only so the YAML node
    instantiates as it is. ``captions``: items are (image, label, caption), for text models (train.py sets it).
    """

    def __init__(
        self,
        train: Dataset,
        val: Dataset | None = None,
        batch_size: int = 32,
        hflip: bool = False,
        num_workers: int = 0,
        seed: int = 0,
        image_size: int = 32,
        channels: int = 3,
        num_classes: int | None = None,
        cond: str = "label",
        captions: bool = False,
    ):
        super().__init__()
        self.cond, self.captions = cond, captions
        self.train_set, self.val_set = train, val
        self.batch_size, self.hflip, self.num_workers, self.seed = batch_size, hflip, num_workers, seed
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        # After a restore, global_step optimizer steps have consumed this many batches per rank.
        batches_done = trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else 0
        sampler = StreamSampler(len(self.train_set), self.seed, self.hflip, batches_done * self.batch_size, rank, world)
        return DataLoader(
            _Flipped(self.train_set, self.captions),
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # its own generator: creating the iterator must not draw from the global RNG
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        val_set = _Captioned(self.val_set) if self.captions else self.val_set
        return DataLoader(
            val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),  # keeps the global RNG untouched
        )
