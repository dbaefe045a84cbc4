"""Train a diffusion model from the Hydra configs in configs/ (see README "Training").

    python train.py                                   # U-Net on the procedural shapes, CPU
    python train.py model=dit_cpu data=fashion_mnist trainer.max_steps=2000
    python train.py -m model=unet_small,dit_cpu diffusion.prediction=eps,v   # sweep
    python train.py ckpt_path=runs/<date>/<time>/checkpoints/last.ckpt         # resume exactly
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from data import DatasetError
from training.module import DiffusionModule, NonFiniteLossError


def build(cfg: DictConfig) -> tuple[DiffusionModule, L.LightningDataModule]:
    """The LightningModule and DataModule described by ``cfg`` (datasets are opened and checked here)."""
    datamodule = instantiate(cfg.data)
    net = instantiate(cfg.model)
    module = DiffusionModule(
        net=net,
        schedule=instantiate(cfg.diffusion.schedule),
        optimizer=instantiate(cfg.optim.optimizer),
        prediction=cfg.diffusion.prediction,
        loss_weighting=cfg.diffusion.loss_weighting,
        snr_gamma=cfg.diffusion.snr_gamma,
        num_classes=cfg.model.get("num_classes"),
        label_dropout=cfg.diffusion.label_dropout,
        ema_decay=cfg.ema.decay,
        ema_warmup_power=cfg.ema.warmup_power,
        lr_warmup_steps=cfg.optim.lr_warmup_steps,
        compile=cfg.compile,
        seed=cfg.seed,
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    return module, datamodule


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    # seeds network initialisation; training draws t, noise and dropout from their own generator
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        module, datamodule = build(cfg)
    except Exception as e:  # Hydra wraps constructor errors: look for ours in the chain of causes
        cause = e
        while cause is not None and not isinstance(cause, DatasetError):
            cause = cause.__cause__
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    except NonFiniteLossError as e:
        last = run_dir / "checkpoints" / "last.ckpt"
        kept = f"; last good checkpoint: {last}" if last.exists() else "; no checkpoint was written before it"
        print(f"error: {e}{kept}", file=sys.stderr)
        sys.exit(1)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # the final state, whatever the policy
    if trainer.is_global_zero:
        print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main()
