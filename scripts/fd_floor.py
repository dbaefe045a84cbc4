"""The real-vs-real floor of FD-classifier at n images: what evaluate.py's FD gives when the "samples" are real.

    .venv/bin/python scripts/fd_floor.py data=fashion_mnist n=200

FD between evaluate.py's reference set (n train images, the fixed subset of seed 0) and n images of the val split,
both in the project classifier's features. Small n biases FD upwards; a model's FD-n is read against this floor.
Exit 2 with one line for a bad setting.
"""

from __future__ import annotations

import sys

import torch
from omegaconf import OmegaConf

from data import DatasetError
from evaluation.data_config import build_dataset, data_choice, load_or_train_classifier
from evaluation.features import ClassifierFeatures
from evaluation.metrics import feature_statistics, frechet_distance
from evaluation.report import real_images, reference_features, state_fingerprint
from sampling.checks import InputError, check_number
from sampling.cli import compose_config


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        name = data_choice(argv)
        n = int(next((a[2:] for a in argv if a.startswith("n=")), 200))
        check_number("n", n, 2, integer=True)
        data = [a for a in argv if not a.startswith("n=")]
        node = OmegaConf.to_container(compose_config("eval", ["ckpt=none", *data]).data, resolve=True)
        net, meta = load_or_train_classifier(name, node)
        extractor = ClassifierFeatures(net)
        _, mu_r, sigma_r = reference_features(extractor, state_fingerprint(net), name, node, n, 64, print)
        val = build_dataset(node["val"])
        feats = torch.cat([extractor.features_and_logits(x)[0] for x in real_images(val, n, 64)]).numpy()
        fd = frechet_distance(*feature_statistics(feats), mu_r, sigma_r)
    except (InputError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"FD-classifier-{n} of {len(feats)} real val images against the {n} reference train images ({name}, "
          f"classifier val accuracy {meta['val_accuracy']:.3f}): {fd:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
