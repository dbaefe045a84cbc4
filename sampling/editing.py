"""Editing tasks of sample.py: SDEdit, DDIM inversion, DDIB, DiffEdit, inpainting, outpainting, zoom.

Each is ``task(job, **its own parameters)`` (configs/task/<name>.yaml) and composes the primitives in
diffusion/editing (start points, denoiser wrappers) with the job's sampler and guidance, on either backbone.
Every task takes the condition of its model: ``prompt`` for a text model, ``label`` for a label model.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from diffusion.editing.inpaint import inpaint_denoiser, repaint_moves, sample_repaint
from diffusion.editing.inversion import invert_ddim
from diffusion.editing.sdedit import sdedit_start
from diffusion.forward_process import add_noise
from diffusion.samplers import make_timesteps, sample_ddim, sample_ddpm
from sampling.checkpoint import LoadedModel, load_model
from sampling.io import InputError, labelled_strip, load_input_image, load_mask, parse_label, to_pil
from sampling.job import Job, check_condition, check_prompt


def _batch(x: torch.Tensor, n: int, device) -> torch.Tensor:
    return x[None].expand(n, *x.shape).contiguous().to(device)


def _edit_from(job: Job, x0: torch.Tensor, strength: float, label, keep: torch.Tensor | None, n: int):
    """SDEdit n samples of x0 at ``strength`` (keep = 1 where the input must stay exact)."""
    gens = job.generators(0, n)
    x = _batch(x0, n, job.device)
    x_t0, ts = sdedit_start(x, job.model.schedule, strength, job.steps, generator=gens)
    denoiser = job.denoiser(label, n)
    if keep is not None:
        denoiser = inpaint_denoiser(denoiser, job.model.schedule, x, keep.to(job.device))
    out = job.sampler(denoiser, x_t0, job.model.schedule, ts, generator=gens, callback=job.callback(len(ts)))
    out = out.clamp(-1, 1).cpu()
    return out if keep is None else keep * x0 + (1 - keep) * out  # exact outside the mask, whatever rounding


def sdedit(job: Job, image: str | None = None, strength: float = 0.5, mask: str | None = None,
           strength_sweep: list[float] | None = None, n: int = 4, label: int | None = None,
           prompt: str | None = None) -> dict:
    """SDEdit (Meng et al. 2022): noise the input to t0 = strength T, denoise with the job's sampler under
    ``prompt`` (image-to-image) or ``label``; ``n`` seeds; with ``mask`` only its white region changes;
    ``strength_sweep`` adds a strip over strengths."""
    label = check_condition(job, label, prompt)
    x0, msg, size = load_input_image(image, job.model)
    job.notes.append(msg)
    keep = None if mask is None else 1 - load_mask(mask, job.model, size)
    edits = _edit_from(job, x0, float(strength), label, keep, n)
    outputs: dict = {"sdedit.png": labelled_strip([x0, *edits], ["input", *[f"seed {i}" for i in range(n)]])}
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(edits)})
    if strength_sweep:
        sweep = [float(s) for s in strength_sweep]
        row = [_edit_from(job, x0, s, label, keep, 1)[0] for s in sweep]
        outputs["strength_sweep.png"] = labelled_strip([x0, *row], ["input", *[f"s={s:g}" for s in sweep]])
    return outputs


def _invert(job: Job, x0: torch.Tensor, label, fixed_point_iters: int, model: LoadedModel | None = None
            ) -> torch.Tensor:
    """x_T of a batch x0 (B, C, H, W) by DDIM inversion over the job's timesteps (deterministic: eta = 0)."""
    model = model or job.model
    ts = job.timesteps(model)
    return invert_ddim(job.denoiser(label, x0.shape[0], model), x0.to(job.device), model.schedule, ts,
                       fixed_point_iters=fixed_point_iters, callback=job.callback(len(ts)))


def _decode(job: Job, x_T: torch.Tensor, label, model: LoadedModel | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0, the inverse of ``_invert``) from a batch x_T over the job's timesteps; on the
    CPU. Not the job's sampler: the round trip needs the update that inversion runs backwards."""
    model = model or job.model
    ts = job.timesteps(model)
    return sample_ddim(job.denoiser(label, x_T.shape[0], model), x_T, model.schedule, ts,
                       callback=job.callback(len(ts))).cpu()


def invert(job: Job, image: str | None = None, fixed_point_iters: int = 0, label: int | None = None,
           prompt: str | None = None) -> dict:
    """DDIM inversion (Song et al. 2021, sec. 4.3) under ``prompt`` or ``label``: x0 -> x_T -> x0'; saves latent.pt
    and the reconstruction."""
    label = check_condition(job, label, prompt)
    x0, msg, _ = load_input_image(image, job.model)
    job.notes.append(msg)
    x_T = _invert(job, x0[None], label, fixed_point_iters)
    rec = _decode(job, x_T, label)[0]
    mse = (rec - x0).pow(2).mean().item()
    scale = job.guidance.scale
    job.notes.append(f"reconstruction MSE per pixel: {mse:.3e} ({job.steps} DDIM steps, guidance {scale})")
    latent_view = (x_T[0].cpu() / x_T.std().item()).clamp(-3, 3) / 3
    return {
        "invert.png": labelled_strip([x0, latent_view, rec.clamp(-1, 1)], ["input", "x_T", f"recon {mse:.1e}"]),
        "reconstruction.png": to_pil(rec),
        "latent.pt": x_T.cpu(),
        "inversion.json": {"mse": mse, "steps": job.steps, "guidance": scale, "condition": label,
                           "fixed_point_iters": fixed_point_iters},
    }


def ddib_side(job: Job, value, name: str) -> tuple[LoadedModel, int | str | None]:
    """A DDIB side: a prompt (text model) or an integer label of the job's checkpoint, or another checkpoint file
    (its null condition)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return job.model, parse_label(value, job.model, name)
    is_file = isinstance(value, str) and Path(value).suffix in (".ckpt", ".safetensors")
    if isinstance(value, str) and not is_file and job.model.encoder is not None:
        return job.model, check_prompt(job, value, name)
    if is_file:
        other = load_model(value, job.weights)
        if other.image_shape != job.model.image_shape:
            raise InputError(f"{name} checkpoint makes {other.image_shape} images, this one {job.model.image_shape}")
        other.net.to(job.device)
        return other, None
    what = "a prompt" if job.model.encoder is not None else "a class label"
    raise InputError(f"{name} must be {what} or a checkpoint file, got {value!r}")


def ddib_round_trip(job: Job, x0: torch.Tensor, source, target, fixed_point_iters: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIB on a batch x0 (B, C, H, W): invert under ``source``, decode under ``target`` (the translation), then
    back the same way (the cycle a -> b -> a). source, target: (model, prompt, label or None). Returns both, on the
    CPU."""
    (m_src, y_src), (m_tgt, y_tgt) = source, target
    moved = _decode(job, _invert(job, x0, y_src, fixed_point_iters, m_src), y_tgt, m_tgt)
    back = _decode(job, _invert(job, moved, y_tgt, fixed_point_iters, m_tgt), y_src, m_src)
    return moved, back


def ddib(job: Job, image: str | None = None, source: int | str | None = None, target: int | str | None = None,
         fixed_point_iters: int = 0) -> dict:
    """DDIB (Su et al. 2023): invert under ``source``, regenerate from that latent under ``target`` (each a
    prompt, a label or a checkpoint file); the cycle a -> b -> a measures how much the round trip keeps."""
    x0, msg, _ = load_input_image(image, job.model)
    job.notes.append(msg)
    sides = ddib_side(job, source, "source"), ddib_side(job, target, "target")
    moved, back = (x[0] for x in ddib_round_trip(job, x0[None], *sides, fixed_point_iters))
    cycle = (back - x0).pow(2).mean().item()
    job.notes.append(f"DDIB {source} -> {target}; cycle a->b->a MSE per pixel: {cycle:.3e}")
    return {
        "ddib.png": labelled_strip([x0, moved.clamp(-1, 1), back.clamp(-1, 1)], ["source", "target", "cycle"]),
        "translated.png": to_pil(moved),
        "ddib.json": {"source": str(source), "target": str(target), "cycle_mse": cycle, "steps": job.steps},
    }


@torch.no_grad()
def diffedit_mask(job: Job, x0: torch.Tensor, source, target, *, mask_draws: int = 10,
                  mask_strength: float = 0.5, mask_clamp_ratio: float = 3.0, mask_threshold: float = 0.5
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffEdit's mask (Couairon et al. 2023, sec. 3.1): |eps(x_t, target) - eps(x_t, source)| (the query and the
    reference caption of a text model; labels of a label model; None: the null condition) averaged over
    ``mask_draws`` noise draws at t = mask_strength T and over channels, clipped at ``mask_clamp_ratio`` x its
    mean, scaled to [0, 1], binarised at ``mask_threshold``. Returns (soft map, binary mask), each (1, H, W)."""
    model, n = job.model, mask_draws
    T = model.schedule.num_timesteps
    t = min(T - 1, max(0, round(mask_strength * T) - 1))
    x = _batch(x0, n, job.device)
    eps = torch.stack([torch.randn(x0.shape, generator=g) for g in job.generators(0, n)]).to(x)
    x_t = add_noise(x, eps, float(model.schedule.alphas_cumprod[t]))
    tt = torch.full((n,), t, device=x.device)
    diff = job.denoiser(target, n)(x_t, tt).eps - job.denoiser(source, n)(x_t, tt).eps
    soft = diff.abs().mean(dim=(0, 1), keepdim=False)[None].cpu()  # (1, H, W)
    # clip the outliers at clamp_ratio x the mean before scaling to [0, 1] (diffusers' DiffEdit
    # mask_thresholding_ratio): differences concentrate on edges, and a few peaks would leave the rest near 0
    soft = soft.clamp(max=mask_clamp_ratio * soft.mean().item())
    soft = soft / soft.max().clamp(min=1e-12)
    return soft, (soft > mask_threshold).float()


def diffedit_conditions(job: Job, source: int | None = None, target: int | None = None, query: str | None = None,
                        reference: str | None = None) -> tuple:
    """DiffEdit's (source, target) conditions: a text model's ``reference`` caption (empty or absent: the empty
    caption) and ``query``; a label model's ``source`` and ``target`` labels."""
    model = job.model
    if model.encoder is not None:
        if source is not None or target is not None:
            raise InputError("this checkpoint is text-conditioned: DiffEdit takes task.query=\"...\" (the edit) and "
                             "task.reference=\"...\" (the image's caption), not source/target labels")
        if query is None:
            raise InputError("DiffEdit on a text model needs task.query=\"...\" (the edit's prompt)")
        target = check_prompt(job, query, "query")
        source = check_prompt(job, reference or "", "reference")
    else:
        if query is not None or reference is not None:
            check_prompt(job, query if query is not None else reference, "query")  # the one-line refusal
        if source is None or target is None:
            raise InputError("DiffEdit on a label model needs task.source=<label> and task.target=<label>")
        source, target = parse_label(source, model, "source"), parse_label(target, model, "target")
    return source, target


def diffedit(job: Job, image: str | None = None, source: int | None = None, target: int | None = None,
             query: str | None = None, reference: str | None = None, mask: str | None = None,
             mask_draws: int = 10, mask_strength: float = 0.5, mask_clamp_ratio: float = 3.0,
             mask_threshold: float = 0.5, encode_ratio: float = 0.5, fixed_point_iters: int = 0) -> dict:
    """DiffEdit (Couairon et al. 2023): mask from the two conditions, DDIM-encode to ``encode_ratio`` under the
    source, decode under the target with the unmasked region pinned to the input (inpainting wrapper).

    A text model takes the paper's real setting: ``query`` (the edit) and ``reference`` (the image's caption;
    empty or absent: the empty caption); the image is encoded under the reference and decoded under the query.
    A label model takes ``source`` and ``target`` labels. ``mask`` (a file, white = edit): a mask to use in place
    of the computed one (the computed one, corrected by hand: the studio's DiffEdit tab)."""
    model = job.model
    x0, msg, size = load_input_image(image, model)
    job.notes.append(msg)
    source, target = diffedit_conditions(job, source, target, query, reference)
    if mask is not None:
        mask = load_mask(mask, model, size)
        soft = mask
    else:
        soft, mask = diffedit_mask(job, x0, source, target, mask_draws=mask_draws, mask_strength=mask_strength,
                                   mask_clamp_ratio=mask_clamp_ratio, mask_threshold=mask_threshold)
    if mask.sum() == 0:
        raise InputError("the DiffEdit mask is empty at this threshold: lower task.mask_threshold")
    T = model.schedule.num_timesteps
    t_enc = min(T - 1, max(0, round(encode_ratio * T) - 1))
    ts = make_timesteps(T, max(1, round(encode_ratio * job.steps)), start=t_enc)
    x = x0[None].to(job.device)
    x_enc = invert_ddim(job.denoiser(source, 1), x, model.schedule, ts, fixed_point_iters=fixed_point_iters,
                        callback=job.callback(len(ts)))
    keep = (1 - mask).to(job.device)
    denoiser = inpaint_denoiser(job.denoiser(target, 1), model.schedule, x, keep)
    out = sample_ddim(denoiser, x_enc, model.schedule, ts, callback=job.callback(len(ts))).clamp(-1, 1).cpu()[0]
    out = keep.cpu() * x0 + (1 - keep.cpu()) * out
    outputs: dict = {
        "diffedit.png": labelled_strip([x0, soft * 2 - 1, mask * 2 - 1, out], ["input", "map", "mask", "edited"]),
        "edited.png": to_pil(out),
        "mask.png": to_pil(mask * 2 - 1),
        "mask_soft.png": to_pil(soft * 2 - 1),
    }
    info = {"source": source, "target": target, "mask_fraction": mask.mean().item(), "encode_ratio": encode_ratio}
    if str(image).startswith("procedural:"):  # the true mask is known: report the IoU
        true = load_mask(image, model, None)
        inter, union = (true * mask).sum().item(), ((true + mask) > 0).sum().item()
        info["iou_with_true_mask"] = inter / union
        job.notes.append(f"DiffEdit mask IoU with the true shape mask: {inter / union:.3f}")
    outputs["diffedit.json"] = info
    return outputs


def fill_sampler(job: Job, resamples: int, jump_length: int):
    """The sampler that inpainting runs: the job's, or with ``resamples`` > 1 RePaint's resampling (Lugmayr et
    al. 2022), whose down moves are the job's DDPM steps with its ``variance`` and ``clip_x0``."""
    if resamples <= 1:
        return job.sampler
    if getattr(job.sampler, "func", None) is not sample_ddpm:
        raise InputError("task.resamples > 1 (RePaint) resamples with ancestral DDPM steps: add sampler=ddpm "
                         "(its sampler.variance and sampler.clip_x0 apply)")
    return partial(sample_repaint, jump_length=jump_length, resamples=resamples, **job.sampler.keywords)


def _fill(job: Job, x_known: torch.Tensor, keep: torch.Tensor, label, sampler, seed: int, n: int) -> torch.Tensor:
    """Inpaint the region keep = 0 of x_known with ``sampler`` (``fill_sampler``), n samples from ``seed``."""
    model = job.model
    gens = job.generators(0, n, seed)
    x = _batch(x_known, n, job.device)
    denoiser = inpaint_denoiser(job.denoiser(label, n), model.schedule, x, keep.to(job.device))
    x_T = torch.stack([torch.randn(x_known.shape, generator=g) for g in gens]).to(job.device)
    ts = job.timesteps()
    steps = (len(repaint_moves(ts, sampler.keywords["jump_length"], sampler.keywords["resamples"]))
             if getattr(sampler, "func", None) is sample_repaint else len(ts))  # RePaint's callback counts its moves
    out = sampler(denoiser, x_T, model.schedule, ts, generator=gens, callback=job.callback(steps))
    return keep * x_known + (1 - keep) * out.clamp(-1, 1).cpu()  # the known region, bit-exact


def inpaint(job: Job, image: str | None = None, mask: str | None = None, resamples: int = 1, jump_length: int = 10,
            n: int = 4, label: int | None = None, prompt: str | None = None) -> dict:
    """Inpainting: fill the white region of ``mask`` under ``prompt`` or ``label``; known pixels are kept exactly."""
    label = check_condition(job, label, prompt)
    x0, msg, size = load_input_image(image, job.model)
    job.notes.append(msg)
    mask_t = load_mask(mask, job.model, size)
    filled = _fill(job, x0, 1 - mask_t, label, fill_sampler(job, resamples, jump_length), job.seed, n)
    fill = torch.tensor([1.0, -1.0, -1.0]) if x0.shape[0] == 3 else torch.zeros(x0.shape[0])  # red, or mid grey
    shown = x0 * (1 - mask_t) + mask_t * fill.reshape(-1, 1, 1)
    captions = ["input", "mask", *[f"seed {i}" for i in range(n)]]
    outputs: dict = {"inpaint.png": labelled_strip([x0, shown, *filled], captions), "mask.png": to_pil(mask_t * 2 - 1)}
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


def outpaint(job: Job, image: str | None = None, pad: int | list[int] = (8, 0, 8, 0), resamples: int = 1,
             jump_length: int = 10, n: int = 4, label: int | None = None, prompt: str | None = None) -> dict:
    """Outpainting: the image is shrunk onto the model's canvas leaving ``pad`` pixels free on the sides given
    (left, top, right, bottom; an integer for all four), and the new area is inpainted under ``prompt`` or
    ``label``."""
    label = check_condition(job, label, prompt)
    x0, msg, _ = load_input_image(image, job.model)
    job.notes.append(msg)
    canvas, keep = _shrink_onto_canvas(x0, _parse_pad(pad, x0.shape[-1]))
    filled = _fill(job, canvas, keep, label, fill_sampler(job, resamples, jump_length), job.seed, n)
    captions = ["input", "canvas", *[f"seed {i}" for i in range(n)]]
    outputs: dict = {"outpaint.png": labelled_strip([x0, canvas, *filled], captions)}
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(filled)})
    return outputs


def _erode(keep: torch.Tensor, pixels: int) -> torch.Tensor:
    """``keep`` (1, H, W) with its outermost ``pixels`` pixels (Chebyshev distance) set to 0."""
    for _ in range(pixels):
        keep = -F.max_pool2d(-keep[None], 3, stride=1, padding=1)[0]  # min over the 3x3 neighbourhood
    return keep


def zoom(job: Job, image: str | None = None, direction: str = "out", frames: int = 8, scale: float = 0.75,
         resamples: int = 1, jump_length: int = 10, overlap: int = 0, label: int | None = None,
         prompt: str | None = None) -> dict:
    """Infinite zoom: ``out`` repeatedly shrinks the frame by ``scale`` into the centre and outpaints the border
    under ``prompt`` or ``label``; ``in`` plays the same chain backwards (each frame grows into the next). Starts
    from ``image`` or a sample.

    ``overlap``: the outpainted region reaches that many pixels into the pasted frame, so the previous frame's own
    edge (its outermost row, which the model draws darker) is regenerated. With RePaint's resampling (``resamples``
    > 1, sampler=ddpm) that removes the seam of the pasted box (evaluation/seam.py, procedural-shapes model: median
    seam ratio 2.8-3.4 without, 1.3-1.8 with resamples=5 and overlap=2); with a single pass the step only moves to
    the new edge of the kept region (3.4-7.3), so it stays 0 by default and a note says so."""
    model = job.model
    label = check_condition(job, label, prompt)
    sampler = fill_sampler(job, resamples, jump_length)
    s = model.image_shape[-1]
    border = max(1, round(s * (1 - scale) / 2))
    if 2 * overlap >= s - 2 * border:
        raise InputError(f"task.overlap={overlap} leaves nothing of the pasted {s - 2 * border}x{s - 2 * border} "
                         f"frame: use less than {(s - 2 * border + 1) // 2}")
    if overlap > 0 and resamples <= 1:
        job.notes.append(f"note: task.overlap={overlap} without resampling moves the seam {overlap} pixel(s) inwards "
                         "rather than removing it: add sampler=ddpm task.resamples=5 task.jump_length=5")
    if image is not None:
        frame, msg, _ = load_input_image(image, model)
        job.notes.append(msg)
    else:  # generate the first frame
        keep0 = torch.zeros(1, *model.image_shape[1:])
        frame = _fill(job, torch.zeros(model.image_shape), keep0, label, sampler, job.seed, 1)[0]
    chain = [frame]
    for i in range(frames - 1):
        canvas, keep = _shrink_onto_canvas(chain[-1], (border,) * 4)
        keep = _erode(keep, overlap)
        chain.append(_fill(job, canvas, keep, label, sampler, job.seed + i + 1, 1)[0])
    if direction == "in":
        chain = chain[::-1]
    big = [to_pil(f).resize((s * 4, s * 4)) for f in chain]
    outputs: dict = {"zoom.gif": big, "zoom.png": labelled_strip(chain, [f"{i}" for i in range(len(chain))])}
    outputs.update({f"frame_{i:04d}.png": to_pil(f) for i, f in enumerate(chain)})
    return outputs
