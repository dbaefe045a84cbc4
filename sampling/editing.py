"""Editing tasks of sample.py: SDEdit, DDIM inversion, DDIB, DiffEdit, inpainting, outpainting, zoom.

Each composes the primitives in diffusion/editing (start points, denoiser wrappers) with any sampler and
either backbone; labels stand in for the text prompts of the papers until text conditioning lands.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from diffusion.editing.inpaint import inpaint_denoiser, sample_repaint
from diffusion.editing.inversion import invert_ddim
from diffusion.editing.sdedit import sdedit_start
from diffusion.forward_process import add_noise
from diffusion.samplers import make_timesteps, sample_ddim
from sampling.checkpoint import LoadedModel, load_model
from sampling.generate import sample_generators
from sampling.io import InputError, labelled_strip, load_input_image, load_mask, parse_label, to_pil
from sampling.tasks import Run, make_denoiser


def _batch(x: torch.Tensor, n: int, device) -> torch.Tensor:
    return x[None].expand(n, *x.shape).contiguous().to(device)


def _edit_from(run: Run, x0: torch.Tensor, strength: float, label, keep: torch.Tensor | None, seed: int, n: int):
    """SDEdit n samples of x0 at ``strength`` (keep = 1 where the input must stay exact)."""
    device = run.cfg.device
    gens = sample_generators(seed, 0, n)
    x = _batch(x0, n, device)
    x_t0, ts = sdedit_start(x, run.model.schedule, strength, run.steps, generator=gens)
    denoiser = make_denoiser(run, label, n)
    if keep is not None:
        denoiser = inpaint_denoiser(denoiser, run.model.schedule, x, keep.to(device))
    out = run.sampler(denoiser, x_t0, run.model.schedule, ts, generator=gens).clamp(-1, 1).cpu()
    return out if keep is None else keep * x0 + (1 - keep) * out  # exact outside the mask, whatever rounding


def sdedit(run: Run) -> dict:
    """SDEdit (Meng et al. 2022): noise the input to t0 = strength T, denoise with the chosen sampler;
    ``n`` seeds; with ``mask`` only the white region changes; ``strength_sweep`` adds a strip over strengths."""
    cfg, model = run.cfg, run.model
    strength = float(cfg.strength)
    x0, msg, size = load_input_image(cfg.image, model)
    run.notes.append(msg)
    keep = None if cfg.mask is None else 1 - load_mask(cfg.mask, model, size)
    label = None if cfg.label is None else parse_label(cfg.label, model)
    edits = _edit_from(run, x0, strength, label, keep, cfg.seed, cfg.n)
    outputs: dict = {"sdedit.png": labelled_strip([x0, *edits], ["input", *[f"seed {i}" for i in range(cfg.n)]])}
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(edits)})
    if cfg.strength_sweep:
        sweep = [float(s) for s in cfg.strength_sweep]
        row = [_edit_from(run, x0, s, label, keep, cfg.seed, 1)[0] for s in sweep]
        outputs["strength_sweep.png"] = labelled_strip([x0, *row], ["input", *[f"s={s:g}" for s in sweep]])
    return outputs


def _invert(run: Run, x0: torch.Tensor, label, model: LoadedModel | None = None) -> torch.Tensor:
    """x_T of a batch x0 (B, C, H, W) by DDIM inversion over the run's timesteps (deterministic: eta = 0)."""
    model = model or run.model
    ts = make_timesteps(model.schedule.num_timesteps, run.steps, run.spacing)
    return invert_ddim(make_denoiser(run, label, x0.shape[0], model), x0.to(run.cfg.device), model.schedule, ts,
                       fixed_point_iters=run.cfg.fixed_point_iters)


def _decode(run: Run, x_T: torch.Tensor, label, model: LoadedModel | None = None) -> torch.Tensor:
    """DDIM (eta = 0) from a batch x_T (B, C, H, W) over the run's timesteps; on the CPU."""
    model = model or run.model
    ts = make_timesteps(model.schedule.num_timesteps, run.steps, run.spacing)
    return sample_ddim(make_denoiser(run, label, x_T.shape[0], model), x_T, model.schedule, ts).cpu()


def invert(run: Run) -> dict:
    """DDIM inversion (Song et al. 2021, sec. 4.3): x0 -> x_T -> x0'; saves latent.pt and the reconstruction."""
    cfg, model = run.cfg, run.model
    x0, msg, _ = load_input_image(cfg.image, model)
    run.notes.append(msg)
    label = None if cfg.label is None else parse_label(cfg.label, model)
    x_T = _invert(run, x0[None], label)
    rec = _decode(run, x_T, label)[0]
    mse = (rec - x0).pow(2).mean().item()
    run.notes.append(f"reconstruction MSE per pixel: {mse:.3e} ({run.steps} DDIM steps, guidance {cfg.guidance})")
    latent_view = (x_T[0].cpu() / x_T.std().item()).clamp(-3, 3) / 3
    return {
        "invert.png": labelled_strip([x0, latent_view, rec.clamp(-1, 1)], ["input", "x_T", f"recon {mse:.1e}"]),
        "reconstruction.png": to_pil(rec),
        "latent.pt": x_T.cpu(),
        "inversion.json": {"mse": mse, "steps": run.steps, "guidance": cfg.guidance, "label": label,
                           "fixed_point_iters": cfg.fixed_point_iters},
    }


def _side(run: Run, value, name: str) -> tuple[LoadedModel, int | None]:
    """A DDIB side: an integer label of this checkpoint, or another checkpoint file (its null label)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return run.model, parse_label(value, run.model, name)
    if isinstance(value, str) and Path(value).suffix in (".ckpt", ".safetensors"):
        other = load_model(value, run.cfg.weights)
        if other.image_shape != run.model.image_shape:
            raise InputError(f"{name} checkpoint makes {other.image_shape} images, this one {run.model.image_shape}")
        other.net.to(run.cfg.device)
        return other, None
    raise InputError(f"{name} must be a class label or a checkpoint file, got {value!r}")


def ddib_round_trip(run: Run, x0: torch.Tensor, source, target) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIB on a batch x0 (B, C, H, W): invert under ``source``, decode under ``target`` (the translation), then
    back the same way (the cycle a -> b -> a). source, target: (model, label or None). Returns both, on the CPU."""
    (m_src, y_src), (m_tgt, y_tgt) = source, target
    moved = _decode(run, _invert(run, x0, y_src, m_src), y_tgt, m_tgt)
    back = _decode(run, _invert(run, moved, y_tgt, m_tgt), y_src, m_src)
    return moved, back


def ddib(run: Run) -> dict:
    """DDIB (Su et al. 2023): invert under the source, regenerate from that latent under the target;
    the cycle a -> b -> a measures how much the round trip keeps."""
    cfg = run.cfg
    x0, msg, _ = load_input_image(cfg.image, run.model)
    run.notes.append(msg)
    source, target = _side(run, cfg.source, "source"), _side(run, cfg.target, "target")
    moved, back = (x[0] for x in ddib_round_trip(run, x0[None], source, target))
    cycle = (back - x0).pow(2).mean().item()
    run.notes.append(f"DDIB {cfg.source} -> {cfg.target}; cycle a->b->a MSE per pixel: {cycle:.3e}")
    return {
        "ddib.png": labelled_strip([x0, moved.clamp(-1, 1), back.clamp(-1, 1)], ["source", "target", "cycle"]),
        "translated.png": to_pil(moved),
        "ddib.json": {"source": str(cfg.source), "target": str(cfg.target), "cycle_mse": cycle, "steps": run.steps},
    }


@torch.no_grad()
def diffedit_mask(run: Run, x0: torch.Tensor, source: int, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffEdit's mask (Couairon et al. 2023, sec. 3.1): |eps(x_t, target) - eps(x_t, source)| averaged over
    ``mask_draws`` noise draws at t = mask_strength T and over channels, clipped at ``mask_clamp_ratio`` x its
    mean, scaled to [0, 1], binarised at ``mask_threshold``. Returns (soft map, binary mask), each (1, H, W)."""
    cfg, model = run.cfg, run.model
    n, T = cfg.mask_draws, model.schedule.num_timesteps
    t = min(T - 1, max(0, round(cfg.mask_strength * T) - 1))
    x = _batch(x0, n, cfg.device)
    eps = torch.stack([torch.randn(x0.shape, generator=g) for g in sample_generators(cfg.seed, 0, n)]).to(x)
    x_t = add_noise(x, eps, float(model.schedule.alphas_cumprod[t]))
    tt = torch.full((n,), t, device=x.device)
    diff = make_denoiser(run, target, n)(x_t, tt).eps - make_denoiser(run, source, n)(x_t, tt).eps
    soft = diff.abs().mean(dim=(0, 1), keepdim=False)[None].cpu()  # (1, H, W)
    # clip the outliers at clamp_ratio x the mean before scaling to [0, 1] (diffusers' DiffEdit
    # mask_thresholding_ratio): differences concentrate on edges, and a few peaks would leave the rest near 0
    soft = soft.clamp(max=cfg.mask_clamp_ratio * soft.mean().item())
    soft = soft / soft.max().clamp(min=1e-12)
    return soft, (soft > cfg.mask_threshold).float()


def diffedit(run: Run) -> dict:
    """DiffEdit (Couairon et al. 2023): mask from the two conditions, DDIM-encode to ``encode_ratio`` under the
    source, decode under the target with the unmasked region pinned to the input (inpainting wrapper)."""
    cfg, model = run.cfg, run.model
    x0, msg, _ = load_input_image(cfg.image, model)
    run.notes.append(msg)
    source, target = parse_label(cfg.source, model, "source"), parse_label(cfg.target, model, "target")
    soft, mask = diffedit_mask(run, x0, source, target)
    if mask.sum() == 0:
        raise InputError("the DiffEdit mask is empty at this threshold: lower mask_threshold")
    T = model.schedule.num_timesteps
    t_enc = min(T - 1, max(0, round(cfg.encode_ratio * T) - 1))
    ts = make_timesteps(T, max(1, round(cfg.encode_ratio * run.steps)), start=t_enc)
    x = x0[None].to(cfg.device)
    x_enc = invert_ddim(make_denoiser(run, source, 1), x, model.schedule, ts)
    keep = (1 - mask).to(cfg.device)
    denoiser = inpaint_denoiser(make_denoiser(run, target, 1), model.schedule, x, keep)
    out = sample_ddim(denoiser, x_enc, model.schedule, ts).clamp(-1, 1).cpu()[0]
    out = keep.cpu() * x0 + (1 - keep.cpu()) * out
    outputs: dict = {
        "diffedit.png": labelled_strip([x0, soft * 2 - 1, mask * 2 - 1, out], ["input", "map", "mask", "edited"]),
        "edited.png": to_pil(out),
        "mask.png": to_pil(mask * 2 - 1),
        "mask_soft.png": to_pil(soft * 2 - 1),
    }
    info = {"source": source, "target": target, "mask_fraction": mask.mean().item(), "encode_ratio": cfg.encode_ratio}
    if str(cfg.image).startswith("procedural:"):  # the true mask is known: report the IoU
        true = load_mask(cfg.image, model, None)
        inter, union = (true * mask).sum().item(), ((true + mask) > 0).sum().item()
        info["iou_with_true_mask"] = inter / union
        run.notes.append(f"DiffEdit mask IoU with the true shape mask: {inter / union:.3f}")
    outputs["diffedit.json"] = info
    return outputs


def _fill(run: Run, x_known: torch.Tensor, keep: torch.Tensor, label, seed: int, n: int) -> torch.Tensor:
    """Inpaint the region keep = 0 of x_known: replacement (any sampler), or RePaint with resamples > 1."""
    cfg, model = run.cfg, run.model
    device = cfg.device
    gens = sample_generators(seed, 0, n)
    x = _batch(x_known, n, device)
    keep_d = keep.to(device)
    denoiser = inpaint_denoiser(make_denoiser(run, label, n), model.schedule, x, keep_d)
    x_T = torch.stack([torch.randn(x_known.shape, generator=g) for g in gens]).to(device)
    ts = make_timesteps(model.schedule.num_timesteps, run.steps, run.spacing)
    if cfg.resamples > 1:
        out = sample_repaint(denoiser, x_T, model.schedule, ts, jump_length=cfg.jump_length,
                             resamples=cfg.resamples, generator=gens)
    else:
        out = run.sampler(denoiser, x_T, model.schedule, ts, generator=gens)
    return keep * x_known + (1 - keep) * out.clamp(-1, 1).cpu()  # the known region, bit-exact


def inpaint(run: Run) -> dict:
    """Inpainting: fill the white region of ``mask``; known pixels are kept exactly."""
    cfg, model = run.cfg, run.model
    x0, msg, size = load_input_image(cfg.image, model)
    run.notes.append(msg)
    mask = load_mask(cfg.mask, model, size)
    label = None if cfg.label is None else parse_label(cfg.label, model)
    filled = _fill(run, x0, 1 - mask, label, cfg.seed, cfg.n)
    fill = torch.tensor([1.0, -1.0, -1.0]) if x0.shape[0] == 3 else torch.zeros(x0.shape[0])  # red, or mid grey
    shown = x0 * (1 - mask) + mask * fill.reshape(-1, 1, 1)
    outputs: dict = {"inpaint.png": labelled_strip([x0, shown, *filled], ["input", "mask", *[f"seed {i}" for i in
                                                                                               range(cfg.n)]]),
                     "mask.png": to_pil(mask * 2 - 1)}
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(filled)})
    return outputs


def _parse_pad(value, size: int) -> tuple[int, int, int, int]:
    pad = list(value) if not isinstance(value, int) else [value] * 4
    if len(pad) != 4 or any(not isinstance(p, int) or p < 0 for p in pad):
        raise InputError(f"pad must be an integer or [left, top, right, bottom] of non-negative integers, got {value}")
    if pad[0] + pad[2] >= size or pad[1] + pad[3] >= size or sum(pad) == 0:
        raise InputError(f"pad {pad} leaves no room for the image on the {size}x{size} canvas (or is zero)")
    return tuple(pad)


def _shrink_onto_canvas(x: torch.Tensor, pad: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """x (C, S, S) resized into the canvas minus ``pad`` (left, top, right, bottom); returns canvas, keep mask."""
    c, s, _ = x.shape
    left, top, right, bottom = pad
    inner = F.interpolate(x[None], size=(s - top - bottom, s - left - right), mode="bilinear", antialias=True,
                          align_corners=False)[0]
    canvas = torch.zeros_like(x)
    keep = torch.zeros(1, s, s)
    canvas[:, top : s - bottom, left : s - right] = inner
    keep[:, top : s - bottom, left : s - right] = 1
    return canvas, keep


def outpaint(run: Run) -> dict:
    """Outpainting: the image is shrunk onto the model's canvas leaving ``pad`` pixels free on the sides given
    (left, top, right, bottom), and the new area is inpainted."""
    cfg, model = run.cfg, run.model
    x0, msg, _ = load_input_image(cfg.image, model)
    run.notes.append(msg)
    pad = _parse_pad(cfg.pad, x0.shape[-1])
    label = None if cfg.label is None else parse_label(cfg.label, model)
    canvas, keep = _shrink_onto_canvas(x0, pad)
    filled = _fill(run, canvas, keep, label, cfg.seed, cfg.n)
    outputs: dict = {"outpaint.png": labelled_strip([x0, canvas, *filled], ["input", "canvas",
                                                                          *[f"seed {i}" for i in range(cfg.n)]])}
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(filled)})
    return outputs


def zoom(run: Run) -> dict:
    """Infinite zoom: ``out`` repeatedly shrinks the frame by ``scale`` into the centre and outpaints the border;
    ``in`` plays the same chain backwards (each frame grows into the next). Starts from ``image`` or a sample."""
    cfg, model = run.cfg, run.model
    label = None if cfg.label is None else parse_label(cfg.label, model)
    if cfg.image is not None:
        frame, msg, _ = load_input_image(cfg.image, model)
        run.notes.append(msg)
    else:  # generate the first frame
        keep0 = torch.zeros(1, *model.image_shape[1:])
        frame = _fill(run, torch.zeros(model.image_shape), keep0, label, cfg.seed, 1)[0]
    s = frame.shape[-1]
    border = max(1, round(s * (1 - cfg.scale) / 2))
    frames = [frame]
    for i in range(cfg.frames - 1):
        canvas, keep = _shrink_onto_canvas(frames[-1], (border,) * 4)
        frames.append(_fill(run, canvas, keep, label, cfg.seed + i + 1, 1)[0])
    if cfg.direction == "in":
        frames = frames[::-1]
    big = [to_pil(f).resize((s * 4, s * 4)) for f in frames]
    outputs: dict = {"zoom.gif": big, "zoom.png": labelled_strip(frames, [f"{i}" for i in range(len(frames))])}
    outputs.update({f"frame_{i:04d}.png": to_pil(f) for i, f in enumerate(frames)})
    return outputs
