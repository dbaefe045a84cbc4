"""Generation tasks of sample.py: generate, forward, denoise_compare. Each is ``task(job, **its own parameters)``."""

from __future__ import annotations

import math

import torch
import torchvision.transforms.functional as TF
from torchvision.utils import make_grid

from diffusion.forward_process import add_noise
from diffusion.samplers import make_timesteps
from models.text import cat_text
from sampling.cascade import cascade_outputs, stage2_conditions, upscale_conditioned
from sampling.generate import generate_images
from sampling.io import InputError, captioned_rows, labelled_strip, load_input_image, psnr, read_prompts, to_pil
from sampling.job import Job, check_condition, check_prompt


def generation_conditions(job: Job, n: int, label: int | None, prompt: str | None, prompts: list[str] | None):
    """(cond, null) batched over the samples: a text model's prompt for all n (or each of ``prompts`` n times;
    none: the empty caption), or a label model's ``label`` for all (None: labels cycling 0, 1, 2, ...)."""
    model = job.model
    total = n * len(prompts) if prompts else n
    if model.encoder is not None:
        per_sample = [p for p in prompts for _ in range(n)] if prompts else [prompt or ""] * n
        encoded = {p: job.encode(p) for p in dict.fromkeys(per_sample)}
        return cat_text([encoded[p] for p in per_sample]), job.cond(None, total)
    if model.num_classes is None:
        return None, None
    labels = torch.full((n,), label, dtype=torch.long) if label is not None else torch.arange(n) % model.num_classes
    return labels, torch.full((n,), model.num_classes)


def generate(job: Job, n: int = 64, batch_size: int = 16, label: int | None = None, prompt: str | None = None,
             prompts: str | None = None, save_trajectory: bool = False) -> dict:
    """n samples: grid.png, sample_XXXX.png and, with ``save_trajectory``, trajectory.gif. A text model draws
    ``prompt`` (or n of each line of the file ``prompts``, one captioned grid row per prompt); a label model
    ``label`` for all, or (None) labels cycling 0, 1, 2, ...; ``batch_size`` does not change the images."""
    model = job.model
    value = check_condition(job, label, prompt)
    prompt_list = None
    if prompts is not None:
        if value is not None:
            raise InputError("give either prompts=<file> or prompt=/label=, not both")
        check_prompt(job, str(prompts), "prompts")
        prompt_list = read_prompts(prompts)
    cond, null = generation_conditions(job, n, value if prompt is None else None, prompt, prompt_list)
    total = n * len(prompt_list) if prompt_list else n
    frames: list[torch.Tensor] = []
    keep = min(total, 8)

    def record(i, t, x_t, x0_hat):  # first batch only: the trajectory of the first `keep` samples
        if len(frames) < job.steps:
            frames.append(torch.cat([x_t[:keep].clamp(-1, 1), x0_hat[:keep].clamp(-1, 1)]).cpu())

    images = generate_images(
        model.net, model.schedule, model.parametrization, model.image_shape, cond, null=null, n=total,
        sampler=job.sampler, timesteps=job.timesteps(), guidance=job.guidance, seed=job.seed,
        batch_size=batch_size, device=job.device, progress=True,
        callback=job.callback(len(job.timesteps()), record if save_trajectory else None),
    )
    if job.stage2 is not None:  # the cascade: the base samples upscaled under the same conditions
        values = ([p for p in prompt_list for _ in range(n)] if prompt_list else [prompt] * n if model.encoder
                  else cond.tolist() if cond is not None else [None] * total)
        low = images
        images = upscale_conditioned(job, low, *stage2_conditions(job, values), batch_size=batch_size)
    outputs: dict = {"grid.png": images}
    if job.stage2 is not None:
        outputs.update(cascade_outputs(low, images))
    if prompt_list:  # one row per prompt, captioned
        outputs["grid.png"] = captioned_rows(list(images.split(n)), prompt_list)
        outputs["prompts.json"] = {"prompts": prompt_list, "n_per_prompt": n, "negative_prompt": job.negative_prompt}
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(images)})
    if save_trajectory:
        # each frame: top row x_t, bottom row x0_hat; the last frame holds the final samples
        frames.append(torch.cat([images[:keep], images[:keep]]))
        outputs["trajectory.gif"] = [to_pil(make_grid(f, nrow=keep, padding=2, pad_value=1.0)) for f in frames]
    return outputs


def forward(job: Job, image: str | None = None, timesteps: list[int] = (0, 500, 999)) -> dict:
    """forward.png: the input and x_t at each of ``timesteps`` (one noise draw)."""
    x0, msg, _ = load_input_image(image, job.model)
    job.notes.append(msg)
    eps = torch.randn(x0.shape, generator=job.generators(0, 1)[0])
    noised = [add_noise(x0, eps, float(job.model.schedule.alphas_cumprod[t])) for t in timesteps]
    return {"forward.png": labelled_strip([x0, *noised], ["x0", *[f"t={t}" for t in timesteps]])}


def denoise_compare(job: Job, image: str | None = None, t: int = 400, blur_sigma: float = 1.0,
                    label: int | None = None, prompt: str | None = None) -> dict:
    """One image noised to ``t``, denoised by Gaussian blur (``blur_sigma`` pixels), one-step x0_hat and the
    job's sampler from t; PSNR of each against the clean image."""
    model = job.model
    label = check_condition(job, label, prompt)
    x0, msg, _ = load_input_image(image, model)
    job.notes.append(msg)
    T = model.schedule.num_timesteps
    ab = float(model.schedule.alphas_cumprod[t])
    eps = torch.randn(x0.shape, generator=job.generators(0, 1)[0])
    x_t = add_noise(x0, eps, ab)[None].to(job.device)  # (1, C, H, W)
    denoiser = job.denoiser(label, 1)
    with torch.no_grad():
        one_step = denoiser(x_t, torch.tensor([t], device=x_t.device)).x0.clamp(-1, 1).cpu()
    iterative = job.sampler(denoiser, x_t, model.schedule, make_timesteps(T, job.steps, start=t),
                            generator=job.generators(1, 1)).clamp(-1, 1).cpu()
    k = max(3, 2 * math.ceil(3 * blur_sigma) + 1)
    noisy = x_t.cpu() / math.sqrt(ab)  # undo the signal scaling so blur and PSNR compare like with like
    blurred = TF.gaussian_blur(noisy, [k, k], [blur_sigma, blur_sigma])
    results = {"noisy": noisy[0], "blur": blurred[0], "one-step": one_step[0], "iterative": iterative[0]}
    scores = {name: psnr(x, x0) for name, x in results.items()}
    job.notes.append("PSNR vs clean (dB): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    captions = ["clean", *[f"{k} {v:.1f}dB" for k, v in scores.items()]]
    return {"denoise_compare.png": labelled_strip([x0, *results.values()], captions),
            "psnr.json": {"t": t, "steps": job.steps, "blur_sigma": blur_sigma, **scores}}
