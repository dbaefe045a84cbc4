"""FLOPs of one training step per image for a training configuration (evaluation/flops.py), and of a whole run.

    .venv/bin/python scripts/train_flops.py model=unet_sr data=emoji data.image_size=64 [trainer.max_steps=600]

Takes the same overrides as train.py; prints GFLOPs per image per step (forward + backward, matmuls and
convolutions) and the run's total (x batch size x max_steps). Exit 2 on a bad override.
"""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from evaluation.flops import training_step_flops
from sampling.cli import CONFIGS


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    try:  # not resolved as a whole: the logger and callbacks name the run folder, which only train.py has
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    except Exception as e:  # Hydra's errors are multi-line; keep the first line
        print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    net = instantiate(cfg.model)
    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    per_image = training_step_flops(net, shape, instantiate(cfg.diffusion.schedule))
    batch, steps = cfg.data.batch_size, cfg.trainer.max_steps
    params = sum(p.numel() for p in net.parameters())
    print(f"{cfg.model._target_.rsplit('.', 1)[-1]} {shape}: {params / 1e6:.2f}M params, "
          f"{per_image / 1e9:.3f} GFLOPs per image per step; "
          f"x {batch} x {steps} steps = {per_image * batch * steps / 1e15:.3f} PFLOPs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
