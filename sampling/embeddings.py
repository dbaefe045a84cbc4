"""Learned pseudo-token embeddings (textual inversion): the tiny .safetensors file and loading several at once.

A file holds one tensor per pseudo-token, named by the token (e.g. ``<my-star>``: (D_in,) float32, an input
embedding of the text encoder), and string metadata: the format, the encoder's name, version and input width,
and each token's initial word. It is data only. ``sample.py embeddings=<file>[,<file>...]`` gives a text model an
encoder that reads every token of the files (``models.text.WithTokens``); the prompts then use them like words.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from models.text import EncoderError, WithTokens
from sampling.atomic import atomic_write
from sampling.checkpoint import CheckpointError, LoadedModel
from sampling.checks import InputError

FORMAT = "difflab-textual-inversion/1"
MAX_FILE_BYTES = 16 << 20  # a few vectors; anything bigger is not an embedding file


def embedding_metadata(encoder, init_words: dict[str, str]) -> dict[str, str]:
    """The metadata an embedding file made for ``encoder`` carries (safetensors metadata is str -> str)."""
    return {"format": FORMAT, "encoder": encoder.name, "encoder_version": encoder.version,
            "init_words": json.dumps(init_words)}


def save_embeddings(path: str | Path, vectors: dict[str, torch.Tensor], encoder, init_words: dict[str, str]) -> Path:
    """Write ``{token: vector}`` atomically as a .safetensors file with the encoder's record."""
    from safetensors.torch import save_file

    tensors = {token: v.detach().float().cpu().contiguous() for token, v in vectors.items()}
    meta = embedding_metadata(encoder, init_words)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def read_embeddings(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """({token: vector}, metadata) of one embedding file; InputError naming the file when it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"embeddings={path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"embeddings={path}: {path.stat().st_size} bytes is not a textual-inversion embedding file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            vectors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own errors for truncated or foreign files
        raise InputError(f"embeddings={path}: not a readable safetensors file ({type(e).__name__})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"embeddings={path}: not a difflab textual-inversion file (format {meta.get('format')!r})")
    if not vectors or any(v.dim() != 1 or not v.is_floating_point() for v in vectors.values()):
        raise InputError(f"embeddings={path}: each token must hold one float vector")
    if any(not bool(torch.isfinite(v).all()) for v in vectors.values()):
        raise InputError(f"embeddings={path}: holds NaN or inf")
    return {k: v.float() for k, v in vectors.items()}, meta


def load_embeddings(paths: list[str | Path], encoder) -> dict[str, torch.Tensor]:
    """The tokens of every file in ``paths``, checked against ``encoder``: made for it (name, version, input
    width), no token twice, and no token that is already a word of its vocabulary."""
    width = encoder.word_embeddings().embedding_dim
    found: dict[str, torch.Tensor] = {}
    for path in paths:
        vectors, meta = read_embeddings(path)
        made_for = (meta.get("encoder"), meta.get("encoder_version"))
        if made_for != (encoder.name, encoder.version):
            raise InputError(f"embeddings={path}: made for text encoder {made_for[0]} {made_for[1]}, but this model "
                             f"uses {encoder.name} {encoder.version}")
        for token, v in vectors.items():
            if v.numel() != width:
                raise InputError(f"embeddings={path}: token {token} has {v.numel()} dims, {encoder.name} takes {width}")
            if token in found:
                raise InputError(f"embeddings={path}: token {token} is given by another embedding file too")
            if encoder.existing_token(token) is not None:
                raise InputError(f"embeddings={path}: token {token} is already a word of {encoder.name}")
            found[token] = v
    return found


def with_embeddings(model: LoadedModel, paths: list[str | Path]) -> LoadedModel:
    """``model`` whose encoder also reads the pseudo-tokens of ``paths`` (a text model; InputError otherwise)."""
    if not paths:
        return model
    if model.encoder is None:
        raise InputError("embeddings=: this checkpoint is not text-conditioned; learned tokens need a text model")
    base = model.encoder.base if isinstance(model.encoder, WithTokens) else model.encoder
    try:
        vectors = load_embeddings(paths, base)
    except EncoderError as e:
        raise CheckpointError(str(e)) from None
    return dataclasses.replace(model, encoder=WithTokens(base, vectors))
