"""Textual inversion (Gal et al., ICLR 2023): learn one pseudo-token's input embedding from a few images.

``python train.py experiment=textual_inversion ckpt=<text model> concept=<folder> token="<my-star>" init_word=star``
is an ordinary Lightning run (loggers, checkpoints, exact resume). Its only trainable weight is the new token's
input embedding ``vector`` (D_in,), initialised from ``init_word``'s. The network and the text encoder are frozen
and never in the checkpoint: a checkpoint holds the vector, the optimizer and the random streams. Each step draws
a batch of the concept images (with flips and small crops), a prompt per image naming the token (a template such
as "a photo of <my-star>", or the folder's own captions where it has them, with ``<S*>`` standing for the token),
and minimises the model's own diffusion loss through the frozen encoder. Every checkpoint also writes the vector
as the tiny ``learned_embeds.safetensors`` that ``sample.py embeddings=`` reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from data.concept import PLACEHOLDER  # how a concept folder's captions name the concept
from data.folder import ImageFolder
from diffusion.losses import denoising_loss
from models.text import TextCond
from sampling.checkpoint import LoadedModel
from sampling.checks import InputError
from sampling.embeddings import save_embeddings
from training.module import ResumableModule

TEMPLATES = (
    "a photo of {}", "a {}", "a picture of a {}", "a rendering of a {}", "an image of a {}", "a close-up of a {}",
)
EMBEDDINGS_FILE = "learned_embeds.safetensors"


def mirror_caption(text: str) -> str:
    """The caption of the mirrored image: "left" and "right" swapped ("at the top left" -> "at the top right")."""
    return re.sub(r"\b(left|right)\b", lambda m: "right" if m.group(1) == "left" else "left", text)


def concept_images(root: str, model: LoadedModel) -> tuple[torch.Tensor, list[str] | None]:
    """The concept folder's images at the model's size and channels (N, C, H, W) in [-1, 1], and its captions
    (each must name the concept as ``<S*>``) or None; DatasetError for a missing, empty or unreadable folder."""
    channels, size, _ = model.image_shape
    folder = ImageFolder(root, image_size=size, channels=channels)
    images = torch.stack([folder[i][0] for i in range(len(folder))])
    captions = [folder.caption(i) for i in range(len(folder))] if folder.captioned else None
    if captions is not None:
        lacking = [c for c in captions if PLACEHOLDER not in c]
        if lacking:
            raise InputError(f"concept={root}: caption {lacking[0]!r} does not name the concept; write {PLACEHOLDER} "
                             "where it appears (it stands for the token)")
    return images, captions


class Steps(Dataset):
    """One item per training step, the whole concept set: the module draws each batch from it with its own
    generator (checkpointed), so a resumed run draws what a straight run draws."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (self.images,)


class ConceptData(L.LightningDataModule):
    """The concept images for every training step; validation sees each once."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images, self.count = images, len(images)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Steps(self.images), batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(range(self.count), batch_size=max(1, self.count), shuffle=False)


class TextualInversion(ResumableModule):
    """Optimises ``vector``, the input embedding of ``token``, with the frozen ``model``'s diffusion loss."""

    def __init__(self, model: LoadedModel, images: torch.Tensor, token: str, init_word: str,
                 captions: list[str] | None = None, templates: tuple[str, ...] = TEMPLATES, batch_size: int = 8,
                 lr: float = 5e-3, hflip: bool = True, crop: int = 2, seed: int = 0, run_config: dict | None = None):
        super().__init__()
        if model.encoder is None:
            raise InputError("textual inversion needs a text-conditioned model (model.cond=text)")
        encoder = model.encoder
        existing = encoder.existing_token(token)
        if existing is not None or any(c.isspace() for c in token) or not token:
            raise InputError(f"token={token!r} must be one new word without spaces; {encoder.name} already reads it "
                             f"as {existing!r}" if existing else f"token={token!r} must be one word without spaces")
        self.model, self.encoder = model, encoder  # a dataclass, not a module: neither trained nor checkpointed
        self.token, self.init_word = token, init_word
        self.vector = nn.Parameter(encoder.word_vector(init_word))  # (D_in,): the only trainable weight
        self.count = len(images)
        self.captions = [c.replace(PLACEHOLDER, token) for c in captions] if captions else None
        self.templates = tuple(templates)
        self.batch_size, self.lr, self.hflip, self.crop = batch_size, lr, hflip, crop
        self.seed, self.run_config = seed, run_config

    # what PreviewSamples reads: the frozen network, its schedule and parametrization
    @property
    def net(self) -> nn.Module:
        return self.model.net

    @property
    def ema(self) -> nn.Module:
        return self.model.net

    @property
    def schedule(self):
        return self.model.schedule

    @property
    def parametrization(self):
        return self.model.parametrization

    def setup(self, stage: str) -> None:
        self.model.net.to(self.device)

    def encode(self, prompts: list[str]) -> TextCond:
        """The prompts' encoding with the current vector (differentiable in it)."""
        return self.encoder.encode_with(prompts, {self.token: self.vector}).to(self.device)

    def prompts(self, idx: torch.Tensor, g: torch.Generator | None) -> list[str]:
        """A prompt per image: its caption, or a template (drawn from g; the first one when g is None)."""
        if self.captions is not None:
            return [self.captions[i] for i in idx.tolist()]
        picks = torch.randint(len(self.templates), (len(idx),), generator=g).tolist() if g else [0] * len(idx)
        return [self.templates[k].format(self.token) for k in picks]

    def augment(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random horizontal flips and crops of up to ``crop`` pixels each way (edges replicated); also returns
        which images were flipped (B,) bool."""
        b, _, h, w = x.shape
        flip = torch.zeros(b, dtype=torch.bool)
        if self.hflip:
            flip = torch.rand(b, generator=g) < 0.5
            x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        if self.crop > 0:
            c = self.crop
            padded = F.pad(x, (c, c, c, c), mode="replicate")
            dx, dy = torch.randint(0, 2 * c + 1, (2, b), generator=g).tolist()
            x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
        return x, flip

    def _loss(self, images: torch.Tensor, idx: torch.Tensor, g: torch.Generator, augment: bool) -> torch.Tensor:
        x0, flip = images[idx], torch.zeros(len(idx), dtype=torch.bool)
        if augment:
            x0, flip = self.augment(x0, g)
        b = x0.shape[0]
        t = self.parametrization.sample_timesteps(b, self.schedule.num_timesteps, g).to(self.device)
        eps = torch.randn(x0.shape, generator=g).to(x0)
        prompts = self.prompts(idx, g if augment else None)
        prompts = [mirror_caption(p) if f else p for p, f in zip(prompts, flip.tolist())]  # a flipped image's words
        cond = self.encode(prompts)
        return denoising_loss(self.model.net, self.parametrization, self.schedule, x0, t, eps, cond)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        g = self._rng()
        idx = torch.randint(self.count, (self.batch_size,), generator=g)
        loss = self._loss(batch[0], idx, g, augment=True)
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        # the same t and noise at every validation: comparable across steps
        g = torch.Generator().manual_seed(10_000 + batch_idx)
        idx = torch.as_tensor(batch).long()
        with torch.no_grad():
            loss = self._loss(self.trainer.datamodule.images.to(self.device), idx.repeat(4), g, augment=False)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(idx))

    @torch.no_grad()
    def preview_condition(self, n: int) -> tuple[TextCond, TextCond]:
        """A few prompts naming the token, each over a run of samples, and the empty caption."""
        k = min(8, n)
        prompts = ([self.captions[i] for i in range(len(self.captions))] if self.captions
                   else [t.format(self.token) for t in self.templates])[:k]
        rows = torch.arange(n) * len(prompts) // max(n, 1)
        cond = self.encode([prompts[i] for i in rows.tolist()])
        return cond.to("cpu"), self.encoder.encode([""] * n)

    def configure_optimizers(self):
        return torch.optim.AdamW([self.vector], lr=self.lr, weight_decay=0.0)

    def save_vector(self, path: str | Path) -> Path:
        return save_embeddings(path, {self.token: self.vector}, self.encoder, {self.token: self.init_word})


class SaveEmbedding(L.Callback):
    """Write ``learned_embeds.safetensors`` beside every checkpoint (atomically), and at the end of training."""

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / EMBEDDINGS_FILE

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: TextualInversion, checkpoint: dict) -> None:
        if trainer.is_global_zero:
            pl_module.save_vector(self.path)

    def on_train_end(self, trainer: L.Trainer, pl_module: TextualInversion) -> None:
        if trainer.is_global_zero:
            pl_module.save_vector(self.path)
