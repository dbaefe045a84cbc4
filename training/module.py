"""The LightningModule: orchestrates one diffusion training step; the maths lives in diffusion/."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from diffusion.cascade import downsample, sr_condition
from diffusion.losses import denoising_loss
from diffusion.parametrization import make_parametrization
from diffusion.schedules import Schedule
from models.text import CaptionCache, TextCond
from sampling.checkpoint import non_finite_entry
from training.ema import ema_decay_at, make_ema, update_ema


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf."""


class NonFiniteWeightsError(RuntimeError):
    """A weight (raw or EMA) became NaN or Inf; raised before it could be saved over a good checkpoint."""


def _warmup_factor(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


class ResumableModule(L.LightningModule):
    """What every training run here shares: its randomness (t, noise, dropout, augmentation) comes from one
    seeded generator whose state is checkpointed with the global RNG's, so a resumed run draws exactly what a
    straight run draws; and a save refuses non-finite weights. Subclasses set ``seed`` and ``run_config``."""

    seed: int = 0
    run_config: dict | None = None
    generator: torch.Generator | None = None
    _pending_rng: dict[str, torch.Tensor] | None = None

    def _rng(self) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device="cpu").manual_seed(self.seed * 1000 + self.global_rank)
        return self.generator

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._pending_rng is not None:  # restore after everything Lightning did between load and now
            self._rng().set_state(self._pending_rng["generator"])
            torch.set_rng_state(self._pending_rng["torch"])
            self._pending_rng = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # every save passes here on every rank, before any file is opened: a diverged step (huge lr) must never
        # overwrite the last good checkpoint, and the loss check only sees it one step later
        bad = non_finite_entry(checkpoint["state_dict"])
        if bad is not None:
            value = checkpoint["state_dict"][bad]
            kind = "nan" if bool(torch.isnan(value).any()) else "inf"
            raise NonFiniteWeightsError(f"weight {bad} became {kind} at step {self.global_step}")
        checkpoint["difflab"] = {
            "rng": {"generator": self._rng().get_state(), "torch": torch.get_rng_state()},
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._pending_rng = checkpoint.get("difflab", {}).get("rng")

    def check_finite(self, loss: torch.Tensor) -> None:
        """NonFiniteLossError (on every rank) when the loss of this step is NaN or Inf."""
        bad = not bool(torch.isfinite(loss))
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise NonFiniteLossError(f"training loss became {loss.item()} at step {self.global_step}")


class DiffusionModule(ResumableModule):
    """Trains ``net`` to predict ``prediction`` under ``schedule`` (Ho et al. 2020, alg. 1), with EMA,
    label dropout for classifier-free guidance (Ho & Salimans 2022) and LR warm-up."""

    def __init__(
        self,
        net: nn.Module,
        schedule: Schedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        prediction: str = "eps",
        loss_weighting: str = "uniform",
        snr_gamma: float = 5.0,
        time_sampling: str = "uniform",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        t_interval: tuple[int, int] | None = None,
        num_classes: int | None = None,
        label_dropout: float = 0.1,
        ema_decay: float = 0.9999,
        ema_warmup_power: float = 0.75,
        lr_warmup_steps: int = 0,
        compile: bool = False,
        seed: int = 0,
        run_config: dict | None = None,
        captions: CaptionCache | None = None,
    ):
        super().__init__()
        self.net = net
        self.ema = make_ema(net)
        self.schedule = schedule
        self.optimizer_factory = optimizer
        # the one object that owns the target, the output conversion, the variance split and the loss weighting;
        # preview samples use it too
        self.parametrization = make_parametrization(prediction, loss_weighting, snr_gamma, time_sampling,
                                                    logit_mean, logit_std)
        # an eDiff-I expert trains only on lo <= t < hi (None: every timestep)
        self.t_interval = tuple(t_interval) if t_interval is not None else None
        self.num_classes, self.label_dropout = (None if captions is not None else num_classes), label_dropout
        # a text model: the encodings of the dataset's whole caption set, looked up per batch (row 0 is the empty
        # caption, the null condition); buffers so they follow the module's device, never saved in checkpoints
        self.caption_index = captions.index if captions is not None else None
        if captions is not None:
            self.register_buffer("caption_tokens", captions.cond.tokens, persistent=False)
            self.register_buffer("caption_mask", captions.cond.mask, persistent=False)
            self.register_buffer("caption_pooled", captions.cond.pooled, persistent=False)
        self.ema_decay, self.ema_warmup_power = ema_decay, ema_warmup_power
        self.lr_warmup_steps = lr_warmup_steps
        self.seed = seed
        self.run_config = run_config  # stored in every checkpoint so sample.py can rebuild the network
        # a bound method, not a second registered module, so the state dict holds each weight once
        self.net_forward = torch.compile(net.forward) if compile else net.forward
        # t, noise and label dropout come from this generator, never the global RNG, and its state is
        # checkpointed: that is what makes a resumed run draw exactly what a straight run draws.
        self.generator: torch.Generator | None = None
        self._pending_rng: dict[str, torch.Tensor] | None = None

    # -- training -------------------------------------------------------------------------------------
    def text_cond(self, ids: torch.Tensor) -> TextCond:
        """The cached encodings of caption rows ``ids`` (B,) (row 0: the empty caption)."""
        ids = ids.to(self.caption_tokens.device)
        return TextCond(self.caption_tokens[ids], self.caption_mask[ids], self.caption_pooled[ids])

    def caption_ids(self, captions: list[str]) -> torch.Tensor:
        try:
            return torch.tensor([self.caption_index[c] for c in captions], dtype=torch.long)
        except KeyError as e:
            raise KeyError(f"caption {e.args[0]!r} is not in the cached caption set of this run") from None

    def _loss(self, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator, dropout: float,
              captions: list[str] | None = None) -> torch.Tensor:
        b = x0.shape[0]
        t = self.parametrization.sample_timesteps(b, self.schedule.num_timesteps, g, self.t_interval)
        t = t.to(self.device)
        eps = torch.randn(x0.shape, generator=g).to(x0)
        cond = None
        if self.caption_index is not None:  # caption dropout: the empty caption (row 0) in place of the caption
            drop = torch.rand(b, generator=g) < dropout
            cond = self.text_cond(torch.where(drop, 0, self.caption_ids(captions)))
        elif self.num_classes is not None:
            drop = torch.rand(b, generator=g).to(self.device) < dropout
            cond = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        if getattr(self.net, "low_res", None):  # a super-resolution stage: condition on x0's low-resolution view
            aug_t = torch.randint(0, self.net.aug_max + 1, (b,), generator=g)
            low = downsample(x0, self.net.low_res)
            noise = torch.randn(low.shape, generator=g).to(x0)
            cond = sr_condition(low, x0.shape[-1], aug_t.to(self.device), self.schedule, noise, cond)
        return denoising_loss(self.net_forward, self.parametrization, self.schedule, x0, t, eps, cond)

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x0, labels, *captions = batch  # (image, label) or, for a text model, (image, label, caption)
        loss = self._loss(x0, labels, self._rng(), self.label_dropout, *captions)
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, sync_dist=False)
        return loss

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        x0, labels, *captions = batch
        # a fixed generator per batch: the same t and noise at every validation, comparable across steps
        g = torch.Generator().manual_seed(10_000 + batch_idx)
        with torch.no_grad():
            loss = self._loss(x0, labels, g, 0.0, *captions)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=x0.shape[0])

    def preview_condition(self, n: int) -> tuple[Any, Any]:
        """(cond, null) batched over n for preview grids: labels cycling over the classes, or for a text model a
        few captions of the caption set (each repeated over a run of samples); (None, None) if unconditional."""
        if self.caption_index is not None:
            k = min(8, len(self.caption_index) - 1)
            rows = torch.linspace(1, len(self.caption_index) - 1, k).round().long()  # spread over the sorted set
            ids = rows[torch.arange(n) * k // max(n, 1)]
            return self.text_cond(ids).to("cpu"), self.text_cond(torch.zeros(n, dtype=torch.long)).to("cpu")
        if self.num_classes is None:
            return None, None
        return torch.arange(n) % self.num_classes, torch.full((n,), self.num_classes)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # after the weights changed, before any callback can checkpoint them
        update_ema(self.ema, self.net, ema_decay_at(self.global_step, self.ema_decay, self.ema_warmup_power))

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.net.parameters())
        sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(_warmup_factor, warmup_steps=self.lr_warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
