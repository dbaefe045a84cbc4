"""Datasets: each item is an image tensor (C, H, W) float32 in [-1, 1] and an integer label."""


class DatasetError(Exception):
    """A dataset that cannot be built (missing or unreadable files, bad argument); says what to do."""
