"""Train a diffusion model from the Hydra configs in configs/ (see README "Training").

    python train.py                                   # U-Net on the procedural shapes, CPU
    python train.py model=dit_cpu data=fashion_mnist trainer.max_steps=2000
    python train.py -m model=unet_small,dit_cpu diffusion.prediction=eps,v   # sweep
    python train.py ckpt_path=runs/<date>/<time>/checkpoints/last.ckpt         # resume exactly, into a new folder
    python train.py hydra.run.dir=runs/<date>/<time> ckpt_path=last            # resume in place, from its newest
    python train.py experiment=textual_inversion ckpt=<text model> concept=<folder> 'token="<my-star>"' init_word=star

Exit status: 0 done; 1 training diverged or an output could not be written; 2 bad settings, data or checkpoint
(one ``error:`` line, nothing written); 130 / 143 stopped by SIGINT / SIGTERM after saving the current step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from data import DatasetError
from diffusion.parametrization import PREDICTIONS, TIME_SAMPLINGS, WEIGHTINGS
from models.text import CaptionCache, EncoderError, encoder_record, make_encoder
from sampling.atomic import OutputError, atomic_write_text
from sampling.checkpoint import load_model
from sampling.checks import InputError, check_choice, check_number
from training.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointError,
    check_fits,
    latest_checkpoint,
    read_training_checkpoint,
)
from training.module import DiffusionModule, NonFiniteLossError, NonFiniteWeightsError
from training.run_dir import (
    claim_unique_dir,
    is_launch_rank_zero,
    lock_run_dir,
    remove_orphan_temps,
    write_hydra_records,
)
from training.signals import SaveOnSignal, TrainingInterrupted
from training.textual_inversion import ConceptData, TextualInversion, concept_images

# the default hydra.run.dir is ${unique_dir:runs/<date>/<time>}: a second run in the same second gets <time>_1
OmegaConf.register_new_resolver("unique_dir", claim_unique_dir, replace=True)

# (key, lo, hi, integer, lo_open): checked only where the composed config has the key, so own configs stay free
SETTINGS = [
    ("data.batch_size", 1, None, True, False),
    ("data.num_workers", 0, None, True, False),
    ("data.image_size", 1, None, True, False),
    ("data.channels", 1, None, True, False),
    ("optim.optimizer.lr", 0, None, False, True),  # finite: divergence is shown with a huge finite lr (1e39)
    ("optim.lr_warmup_steps", 0, None, True, False),
    ("diffusion.label_dropout", 0, 1, False, False),
    ("ema.decay", 0, 1, False, False),
    ("ema.warmup_power", 0, None, False, False),
    ("diffusion.logit_std", 0, None, False, True),
    ("diffusion.schedule.shift", 0, None, False, True),
]
# (key, choices): the same, for settings that name one of a few options
CHOICES = [
    ("diffusion.prediction", PREDICTIONS),
    ("diffusion.loss_weighting", WEIGHTINGS),
    ("diffusion.time_sampling", TIME_SAMPLINGS),
]
_ABSENT = object()


def check_settings(cfg: DictConfig) -> None:
    """InputError (one line naming the setting and its range) for a value that would crash or mislead later."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:  # a ??? in the YAML, e.g. data=folder's data.train.root
        raise InputError(f"{e.full_key} must be set (it has no default): add {e.full_key}=... to the command") from None
    for key, lo, hi, integer, lo_open in SETTINGS:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            check_number(key, value, lo, hi, integer=integer, lo_open=lo_open)
    for key, choices in CHOICES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            check_choice(key, value, choices)
    interval = OmegaConf.select(cfg, "diffusion.t_interval", default=None)
    if interval is not None:
        steps = OmegaConf.select(cfg, "diffusion.schedule.timesteps", default=None)
        ok = (OmegaConf.is_list(interval) and len(interval) == 2 and isinstance(steps, int)
              and all(isinstance(v, int) and not isinstance(v, bool) for v in interval)
              and 0 <= interval[0] < interval[1] <= steps)
        if not ok:
            raise InputError(f"diffusion.t_interval={interval} must be [lo, hi] with 0 <= lo < hi <= "
                             f"diffusion.schedule.timesteps={steps} (integer timesteps; hi exclusive)")
    low_res = OmegaConf.select(cfg, "model.low_res", default=None)
    if low_res is not None:  # a super-resolution stage (model=unet_sr)
        check_number("model.aug_max", cfg.model.get("aug_max", 0), 0, None, integer=True)
        size = cfg.data.image_size
        if not (isinstance(low_res, int) and 1 <= low_res < size and size % low_res == 0):
            raise InputError(f"model.low_res={low_res} must divide data.image_size={size} and be smaller: a "
                             f"super-resolution stage upscales from it (e.g. data.image_size=64 model.low_res=32)")


def caption_cache(cfg: DictConfig, datamodule) -> tuple[CaptionCache, dict]:
    """A text model's caption encodings (cached on disk by encoder and caption set) and its encoder's record."""
    text = cfg.get("text") or {}
    try:
        encoder = make_encoder(text.get("encoder", "all-MiniLM-L6-v2"), text.get("max_length", 32))
    except EncoderError as e:
        raise InputError(str(e)) from None
    if cfg.model.get("text_dim") != encoder.dim:
        raise InputError(f"model.text_dim={cfg.model.get('text_dim')} but the text encoder {encoder.name} gives "
                         f"{encoder.dim}-d states")
    captions = set()
    for split in (datamodule.train_set, datamodule.val_set):
        if split is not None and not hasattr(split, "captions"):
            raise InputError(f"model.cond=text needs captions, and {type(split).__name__} has none")
        captions |= set(split.captions()) if split is not None else set()
    counts = encoder.token_counts(sorted(captions))
    longest = max(counts, default=0)
    if longest > encoder.max_length:
        print(f"warning: {sum(n > encoder.max_length for n in counts)} caption(s) have more than text.max_length="
              f"{encoder.max_length} tokens (up to {longest}) and are truncated", file=sys.stderr)
    return CaptionCache.build(encoder, sorted(captions)), encoder_record(encoder)


def build_textual_inversion(cfg: DictConfig) -> tuple[TextualInversion, L.LightningDataModule]:
    """experiment=textual_inversion: the frozen model of ``ckpt``, the images of ``concept`` and the new token."""
    ti = cfg.textual_inversion
    check_number("textual_inversion.batch_size", ti.batch_size, 1, None, integer=True)
    check_number("textual_inversion.lr", ti.lr, 0, None, lo_open=True)
    check_number("textual_inversion.crop", ti.crop, 0, None, integer=True)
    templates = list(ti.templates)
    if not templates or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
        raise InputError("textual_inversion.templates must be a non-empty list of prompts, each with one {} "
                         "(the token)")
    model = load_model(cfg.ckpt, ti.weights)
    if model.encoder is None:  # before reading the images
        raise InputError(f"ckpt={cfg.ckpt}: textual inversion needs a text-conditioned checkpoint (model.cond=text); "
                         "this one is label-conditioned or unconditional")
    images, captions = concept_images(str(cfg.concept), model)
    try:
        module = TextualInversion(model, images, str(cfg.token), str(cfg.init_word), captions,
                                  tuple(templates),
                                  ti.batch_size, ti.lr, ti.hflip, ti.crop, cfg.seed,
                                  OmegaConf.to_container(cfg, resolve=True))
    except EncoderError as e:
        raise InputError(f"init_word={cfg.init_word}: {e}") from None
    return module, ConceptData(images)


def build(cfg: DictConfig) -> tuple[DiffusionModule | TextualInversion, L.LightningDataModule]:
    """The LightningModule and DataModule described by ``cfg`` (settings checked, datasets opened and checked here)."""
    check_settings(cfg)
    if cfg.get("concept") is not None:
        return build_textual_inversion(cfg)
    text = cfg.model.get("cond", "label") == "text"
    datamodule = instantiate(cfg.data, captions=text)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    captions = None
    if text:
        captions, run_config["text"] = caption_cache(cfg, datamodule)  # the checkpoint records its encoder
    net = instantiate(cfg.model)
    module = DiffusionModule(
        net=net,
        schedule=instantiate(cfg.diffusion.schedule),
        optimizer=instantiate(cfg.optim.optimizer),
        prediction=cfg.diffusion.prediction,
        loss_weighting=cfg.diffusion.loss_weighting,
        snr_gamma=cfg.diffusion.snr_gamma,
        time_sampling=cfg.diffusion.get("time_sampling", "uniform"),
        logit_mean=cfg.diffusion.get("logit_mean", 0.0),
        logit_std=cfg.diffusion.get("logit_std", 1.0),
        t_interval=cfg.diffusion.get("t_interval"),
        num_classes=cfg.model.get("num_classes"),
        label_dropout=cfg.diffusion.label_dropout,
        ema_decay=cfg.ema.decay,
        ema_warmup_power=cfg.ema.warmup_power,
        lr_warmup_steps=cfg.optim.lr_warmup_steps,
        compile=cfg.compile,
        seed=cfg.seed,
        run_config=run_config,
        captions=captions,
    )
    if cfg.get("init_from"):
        init_weights(module, cfg.init_from)
    return module, datamodule


def init_weights(module: DiffusionModule, path: str) -> None:
    """Start ``module`` from another run's weights, raw and EMA (read safely and checked to fit); the optimizer,
    the step count and the random streams start afresh. eDiff-I's experts branch from a base model this way."""
    ckpt = read_training_checkpoint(path)
    check_fits(ckpt, module.state_dict(), module.run_config, path)
    module.load_state_dict(ckpt["state_dict"])


def resume_path(ckpt_path: str | None, run_dir: Path, module: DiffusionModule) -> str | None:
    """The checkpoint to resume from, checked to be complete and to fit ``module``; ``last`` means the newest
    complete checkpoint of this run directory (broken ones are skipped with a warning)."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        found = latest_checkpoint(run_dir / "checkpoints")
        if found is None:
            raise CheckpointError(f"{run_dir / 'checkpoints'}: ckpt_path=last found no complete checkpoint there")
        path, ckpt = found
    else:
        path, ckpt = Path(ckpt_path), read_training_checkpoint(ckpt_path)
    check_fits(ckpt, module.state_dict(), module.run_config, path)
    return str(path)


def last_good(run_dir: Path, resumed_from: str | None) -> str:
    """The tail of the divergence error line: a checkpoint that really loads with finite weights, or none."""
    found = latest_checkpoint(run_dir / "checkpoints", warn=None)
    if found is not None:
        return f"last good checkpoint: {found[0]}"
    if resumed_from is not None:
        return f"no checkpoint was written in this run (it resumed from {resumed_from})"
    return "no checkpoint was written before it"


def _our_error(e: BaseException) -> BaseException | None:
    """Ours in the chain of causes (Hydra wraps constructor errors), or None for a real bug."""
    while e is not None and not isinstance(e, (DatasetError, InputError, CheckpointError, OutputError)):
        e = e.__cause__
    return e


# an absolute path, so the difflab-train entry point finds the configs from any folder
@hydra.main(config_path=str(Path(__file__).resolve().parent / "configs"), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    owner = is_launch_rank_zero()  # DDP children share the folder: only the launching process writes records
    stopper = SaveOnSignal(run_dir / "checkpoints" / "last.ckpt")
    stopper.install()  # from here a signal is remembered and honoured at the first step boundary
    # seeds network initialisation; training draws t, noise and dropout from their own generator
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        module, datamodule = build(cfg)
        ckpt_path = resume_path(cfg.ckpt_path, run_dir, module)
        lock = lock_run_dir(run_dir) if owner else None  # noqa: F841 (held until the process exits)
        if owner:
            remove_orphan_temps(run_dir / "checkpoints")
            write_hydra_records(run_dir, cfg, HydraConfig.get())
            atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    except Exception as e:
        cause = _our_error(e)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    callbacks = [*(instantiate(c) for c in cfg.callbacks.values()), stopper]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir),
                                     plugins=[AtomicCheckpointIO()])
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        # the final state, whatever the policy, in full (optimizer and loops: resume needs them). Saying so
        # explicitly: Lightning's save_checkpoint otherwise logs "`weights_only` was not set, defaulting to
        # `False`" (its dump_checkpoint), which read like an unsafe load. Every load here is weights_only=True.
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        if stopper.signum is not None:  # arrived after the last step boundary: the run is complete and saved
            raise TrainingInterrupted(stopper.signum, trainer.global_step, stopper.path)
    except (NonFiniteLossError, NonFiniteWeightsError) as e:
        print(f"error: {e}; {last_good(run_dir, ckpt_path)}", file=sys.stderr)
        sys.exit(1)
    except TrainingInterrupted as e:
        if trainer.is_global_zero:
            print(f"{e} (resume: python train.py hydra.run.dir={run_dir} ckpt_path=last)", file=sys.stderr)
        sys.exit(128 + e.signum)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if trainer.is_global_zero:
        print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main()
