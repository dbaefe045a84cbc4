"""Sample from a trained checkpoint (see README "Sampling").

    python sample.py ckpt=<file> sampler=ddim sampler.steps=50 n=64 seed=0 [label=3] [guidance=3.0]
    python sample.py ckpt=<file> task=forward image=cat.png
    python sample.py ckpt=<file> task=denoise_compare image=cat.png task.t=400

Bad input (unknown key, missing or unreadable file, label out of range, ...) gets a one-line error and exit
status 2; outputs are written only once everything has been computed.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw, UnidentifiedImageError
from torchvision.utils import make_grid

from data.transforms import to_tensor_image
from diffusion.denoiser import net_denoiser
from diffusion.forward_process import add_noise
from diffusion.samplers import make_timesteps
from training.checkpoint import CheckpointError, LoadedModel, load_model
from training.generate import generate_images, sample_generators, save_grid

CONFIGS = Path(__file__).resolve().parent / "configs"


class InputError(Exception):
    """Bad user input; the message is one line."""


def compose_config(overrides: list[str], config_name: str = "sample") -> DictConfig:
    """The composed config, or InputError naming the bad override."""
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:  # Hydra/OmegaConf errors are multi-line; keep the first line
        raise InputError(str(e).strip().splitlines()[0]) from e
    return cfg


def to_pil(x: torch.Tensor) -> Image.Image:
    """(C, H, W) in [-1, 1] -> PIL image."""
    return TF.to_pil_image(((x.float().clamp(-1, 1) + 1) / 2).cpu())


def load_input_image(path: str | None, model: LoadedModel) -> tuple[torch.Tensor, str]:
    """The image at ``path`` as (C, H, W) in [-1, 1] at the model's channels and size, and what was done."""
    if path is None:
        raise InputError("this task needs an input image: add image=<file>")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such image file")
    try:
        with Image.open(p) as img:
            img.load()
            before = f"{img.width}x{img.height} {img.mode}"
            c, h, _ = model.image_shape
            x = to_tensor_image(img, h, c)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{p}: not a readable image ({type(e).__name__})") from e
    after = f"{h}x{h} {'grey' if c == 1 else 'RGB'}"
    return x, f"input {p.name}: {before} -> {after} (shorter side resized, centre-cropped, scaled to [-1, 1])"


def sample_labels(cfg: DictConfig, model: LoadedModel) -> torch.Tensor | None:
    """Labels for n samples: ``label`` for all, else 0, 1, 2, ... cycling; None for unconditional models."""
    k = model.num_classes
    if k is None:
        if cfg.label is not None or cfg.guidance != 1.0:
            raise InputError("this checkpoint is unconditional: label and guidance need a class-conditional model")
        return None
    if cfg.label is not None:
        if not (isinstance(cfg.label, int) and 0 <= cfg.label < k):
            raise InputError(f"label must be an integer in [0, {k - 1}] for this checkpoint, got {cfg.label!r}")
        return torch.full((cfg.n,), cfg.label, dtype=torch.long)
    return torch.arange(cfg.n) % k


def labelled_strip(images: list[torch.Tensor], captions: list[str], scale: int = 4) -> Image.Image:
    """Images side by side, upscaled ``scale`` x with a caption above each."""
    tiles = [to_pil(x).convert("RGB").resize((x.shape[-1] * scale, x.shape[-2] * scale), Image.NEAREST) for x in images]
    w, h, pad, top = tiles[0].width, tiles[0].height, 4, 14
    strip = Image.new("RGB", (len(tiles) * (w + pad) + pad, h + top + pad), "white")
    draw = ImageDraw.Draw(strip)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        x0 = pad + i * (w + pad)
        strip.paste(tile, (x0, top))
        draw.text((x0, 1), caption[: max(4, w // 6)], fill="black")
    return strip


def task_generate(cfg: DictConfig, model: LoadedModel, sampler, steps: int, spacing: str) -> dict:
    labels = sample_labels(cfg, model)
    frames: list[torch.Tensor] = []
    keep = min(cfg.n, 8)

    def record(i, t, x_t, x0_hat):  # first batch only: the trajectory of the first `keep` samples
        if len(frames) < steps:
            frames.append(torch.cat([x_t[:keep].clamp(-1, 1), x0_hat[:keep].clamp(-1, 1)]).cpu())

    images = generate_images(
        model.net, model.schedule, model.prediction, model.image_shape, labels, n=cfg.n, sampler=sampler,
        steps=steps, spacing=spacing, guidance=cfg.guidance, guidance_rescale=cfg.guidance_rescale,
        num_classes=model.num_classes, seed=cfg.seed, batch_size=cfg.batch_size, device=cfg.device,
        callback=record if cfg.save_trajectory else None, progress=True,
    )
    outputs: dict = {"grid.png": images}
    for i, x in enumerate(images):
        outputs[f"sample_{i:04d}.png"] = to_pil(x)
    if cfg.save_trajectory:
        # each frame: top row x_t, bottom row x0_hat; the last frame holds the final samples
        frames.append(torch.cat([images[:keep], images[:keep]]))
        outputs["trajectory.gif"] = [to_pil(make_grid(f, nrow=keep, padding=2, pad_value=1.0)) for f in frames]
    return outputs


def task_forward(cfg: DictConfig, model: LoadedModel, note: list[str]) -> dict:
    x0, msg = load_input_image(cfg.image, model)
    note.append(msg)
    T = model.schedule.num_timesteps
    ts = list(cfg.task.timesteps)
    if any(not (isinstance(t, int) and 0 <= t < T) for t in ts):
        raise InputError(f"task.timesteps must be integers in [0, {T - 1}], got {ts}")
    eps = torch.randn(x0.shape, generator=sample_generators(cfg.seed, 0, 1)[0])
    noised = [add_noise(x0, eps, float(model.schedule.alphas_cumprod[t])) for t in ts]
    return {"forward.png": labelled_strip([x0, *noised], ["x0", *[f"t={t}" for t in ts]])}


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1] (peak-to-peak range 2)."""
    mse = (x.clamp(-1, 1) - ref).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def task_denoise_compare(cfg: DictConfig, model: LoadedModel, sampler, steps: int, note: list[str]) -> dict:
    x0, msg = load_input_image(cfg.image, model)
    note.append(msg)
    T, t = model.schedule.num_timesteps, cfg.task.t
    if not (isinstance(t, int) and 0 <= t < T):
        raise InputError(f"task.t must be an integer in [0, {T - 1}], got {t!r}")
    if model.num_classes is not None and cfg.label is not None:
        sample_labels(cfg, model)  # validates the label
    ab = float(model.schedule.alphas_cumprod[t])
    eps = torch.randn(x0.shape, generator=sample_generators(cfg.seed, 0, 1)[0])
    x_t = add_noise(x0, eps, ab)[None]  # (1, C, H, W)
    cond = None
    if model.num_classes is not None:
        cond = torch.tensor([cfg.label if cfg.label is not None else model.num_classes])
    denoiser = net_denoiser(model.net, model.schedule, model.prediction, cond)
    with torch.no_grad():
        one_step = denoiser(x_t, torch.tensor([t])).x0.clamp(-1, 1)
    iterative = sampler(denoiser, x_t, model.schedule, make_timesteps(T, steps, start=t),
                        generator=sample_generators(cfg.seed, 1, 1))
    k = max(3, 2 * math.ceil(3 * cfg.task.blur_sigma) + 1)
    blurred = TF.gaussian_blur(x_t / math.sqrt(ab), [k, k], [cfg.task.blur_sigma] * 2)
    results = {"noisy": x_t[0] / math.sqrt(ab), "blur": blurred[0], "one-step": one_step[0], "ddim": iterative[0]}
    scores = {name: psnr(x, x0) for name, x in results.items()}
    note.append("PSNR vs clean (dB): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    captions = ["clean", *[f"{k} {v:.1f}dB" for k, v in scores.items()]]
    return {"denoise_compare.png": labelled_strip([x0, *results.values()], captions),
            "psnr.json": {"t": t, "steps": steps, "blur_sigma": cfg.task.blur_sigma, **scores}}


def write_outputs(outputs: dict, out: Path) -> None:
    """Write everything at once, at the end (so a failure leaves nothing half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in outputs.items():
        if name.endswith(".json"):
            (out / name).write_text(json.dumps(obj, indent=2))
        elif isinstance(obj, list):  # GIF frames
            obj[0].save(out / name, save_all=True, append_images=obj[1:], duration=120, loop=0)
        elif isinstance(obj, torch.Tensor):
            save_grid(obj, out / name, nrow=max(1, int(math.sqrt(len(obj)))))
        else:
            obj.save(out / name)


def run(cfg: DictConfig) -> Path:
    """Run the task described by ``cfg``; returns the output directory."""
    if cfg.n < 1 or cfg.batch_size < 1:
        raise InputError(f"n and batch_size must be positive, got n={cfg.n} batch_size={cfg.batch_size}")
    model = load_model(cfg.ckpt, cfg.weights)
    model.net.to(cfg.device)
    sampler_cfg = OmegaConf.to_container(cfg.sampler, resolve=True)
    steps, spacing = sampler_cfg.pop("steps"), sampler_cfg.pop("spacing")
    if not 1 <= steps <= model.schedule.num_timesteps:
        raise InputError(f"sampler.steps must be in [1, {model.schedule.num_timesteps}], got {steps}")
    sampler = instantiate(sampler_cfg)
    note: list[str] = []
    if cfg.task.name == "generate":
        outputs = task_generate(cfg, model, sampler, steps, spacing)
    elif cfg.task.name == "forward":
        outputs = task_forward(cfg, model, note)
    elif cfg.task.name == "denoise_compare":
        outputs = task_denoise_compare(cfg, model, sampler, steps, note)
    else:
        raise InputError(f"unknown task {cfg.task.name!r}")
    out = Path(cfg.out) if cfg.out else Path("runs/sample") / datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    write_outputs(outputs, out)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    for line in note:
        print(line)
    print(f"wrote {len(outputs)} file(s) to {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        run(compose_config(list(sys.argv[1:] if argv is None else argv)))
    except (InputError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
