"""Train the small CNN classifier used for FD-classifier and sample class accuracy, and cache it.

    .venv/bin/python scripts/train_classifier.py data=procedural
    .venv/bin/python scripts/train_classifier.py data=fashion_mnist steps=1500 batch_size=128 [data.image_size=16]

The checkpoint goes to ${DIFFLAB_CACHE:-~/.cache/difflab}/classifiers/<data>_<channels>x<size>.pt (state_dict and
meta); scripts/evaluate.py trains it on first use anyway and reuses it afterwards. Settings:
configs/train_classifier.yaml. Bad input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import sys
import time

from data import DatasetError
from evaluation.classifier import classifier_path
from evaluation.data_config import data_choice, load_or_train_classifier
from sampling.checks import InputError, check_number
from sampling.cli import compose_config, to_dict


def main(argv: list[str] | None = None) -> int:
    """Train (or find cached) the classifier of the data config; 0, or 2 with one error line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = to_dict(compose_config("train_classifier", argv))
        name, data_cfg = data_choice(argv), cfg.pop("data")
        for key in ("steps", "batch_size", "width"):
            check_number(key, cfg[key], 1, integer=True)
        check_number("lr", cfg["lr"], 0, lo_open=True)
        start = time.perf_counter()
        _, meta = load_or_train_classifier(name, data_cfg, **cfg)
    except (InputError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"val accuracy {meta['val_accuracy']:.4f} ({meta['data']}, {meta['in_channels']}x{meta['image_size']}, "
          f"{meta['steps']} steps) in {time.perf_counter() - start:.0f} s: {classifier_path(name, data_cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
