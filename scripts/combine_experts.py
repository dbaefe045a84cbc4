"""Join eDiff-I experts into one checkpoint that every sampler and task runs (Balaji et al. 2022, Sec. 4).

    python train.py experiment=fashion_unet hydra.run.dir=runs/base                        # the base model
    python train.py experiment=fashion_unet init_from=runs/base/checkpoints/last.ckpt \
        diffusion.t_interval=[0,500] hydra.run.dir=runs/expert_lo                           # one per interval
    python train.py ... diffusion.t_interval=[500,1000] hydra.run.dir=runs/expert_hi
    python scripts/combine_experts.py out=runs/ensemble.ckpt \
        experts=[runs/expert_lo/checkpoints/last.ckpt,runs/expert_hi/checkpoints/last.ckpt]
    python sample.py ckpt=runs/ensemble.ckpt

The experts' intervals (their diffusion.t_interval) must tile [0, T); expert k answers for the timesteps of its
interval. Exit 2 with one line and nothing written for experts that do not form an ensemble; 1 if ``out`` cannot
be written.
"""

from __future__ import annotations

import sys

from sampling.atomic import OutputError
from sampling.checks import InputError
from sampling.cli import dotlist_options
from training.checkpoint_io import CheckpointError
from training.experts import combine_experts, save_ensemble


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = dotlist_options(argv, {"experts": None, "out": None})
    except InputError as e:
        print(f"error: {e}; usage: combine_experts.py experts=[a.ckpt,b.ckpt,...] out=<file>", file=sys.stderr)
        return 2
    experts, out = args["experts"], args["out"]
    if not isinstance(experts, list) or not out:
        print("error: usage: combine_experts.py experts=[a.ckpt,b.ckpt,...] out=<file>", file=sys.stderr)
        return 2
    try:
        ckpt = combine_experts(experts)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        save_ensemble(ckpt, out)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    intervals = ckpt["difflab"]["config"]["experts"]["intervals"]
    print(f"wrote {out}: {len(intervals)} experts over t in {', '.join(f'[{a}, {b})' for a, b in intervals)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
