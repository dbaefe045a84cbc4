"""Ctrl-C and SIGTERM (SLURM preemption) stop training at the next optimizer step, with a checkpoint of that step."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``path`` at ``step``; exit with 128 + ``signum`` (130, 143)."""

    def __init__(self, signum: int, step: int, path: Path):
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; saved {path}")
        self.signum, self.step, self.path = signum, step, path


class SaveOnSignal(L.Callback):
    """On SIGINT or SIGTERM, finish the current optimizer step, save it to ``path`` and raise TrainingInterrupted.

    The handler only records the signal: the save happens in ``on_train_batch_end`` of a batch that completed an
    optimizer step, the same point at which ModelCheckpoint saves, so resuming from it is exact. Replaces Lightning's
    SIGTERM handler (which would exit 0 without saving). A second signal stops at once, without saving.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.signum: int | None = None
        self._step_at_batch_start = -1

    def install(self) -> None:
        """Route SIGINT and SIGTERM to this callback (main thread only, as Python requires)."""
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # asked twice: stop now, the default way
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        # os.write, not print: a handler may interrupt a print in progress
        os.write(2, f"received {signal.Signals(signum).name}: saving a checkpoint after the current step "
                    "(send it again to stop without saving)\n".encode())

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.received_sigterm:  # caught by Lightning's handler before ours took over
            self.signum = self.signum or signal.SIGTERM
        self.install()  # again: Lightning registered its own SIGTERM handler when fit started

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step_at_batch_start:
            return  # mid gradient accumulation: no optimizer step yet, so not a point to resume from
        signum = self.signum or 0
        if trainer.world_size > 1:  # every rank must stop at the same step, whichever received the signal
            signum = int(trainer.strategy.reduce(torch.tensor(signum, device=pl_module.device), reduce_op="max"))
        if signum:
            trainer.save_checkpoint(self.path)
            raise TrainingInterrupted(signum, trainer.global_step, self.path)
