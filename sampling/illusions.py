"""Illusion tasks of sample.py: anagram (visual anagrams) and hybrid (factorized diffusion). Each is
``task(job, **its own parameters)``; the maths is in diffusion/illusions.py."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.utils import make_grid

from diffusion.illusions import IllusionError, View, anagram_denoiser, factorized_denoiser, make_components, make_view
from sampling.cascade import cascade_outputs, sr_denoiser, upscale_batches
from sampling.generate import sample_batches
from sampling.io import InputError, captioned_rows, labelled_strip, to_pil
from sampling.job import Job, check_condition


def illusion_conditions(job: Job, labels, prompts, count: int, what: str) -> list:
    """One condition per view or component: ``prompts`` for a text model, ``labels`` for a label model, each
    checked against the job's model; InputError unless exactly ``count`` are given."""
    if (labels is None) == (prompts is None):
        kind = "task.prompts=[...]" if job.model.encoder is not None else "task.labels=[...]"
        raise InputError(f"give one condition per {what} as {kind} (not both labels and prompts)")
    values = list(labels if labels is not None else prompts)
    name = "labels" if labels is not None else "prompts"
    if len(values) != count:
        raise InputError(f"task.{name}: {len(values)} given for {count} {what}(s); give one per {what}")
    if prompts is not None:
        return [check_condition(job, None, str(p)) for p in values]
    return [check_condition(job, v, None) for v in values]


def _illusion_error(fn, *args, **kwargs):
    """fn(...), with an IllusionError turned into the command line's InputError."""
    try:
        return fn(*args, **kwargs)
    except IllusionError as e:
        raise InputError(str(e)) from None


def _sample(job: Job, combine, values: list, n: int, batch_size: int) -> torch.Tensor:
    """n samples (n, C, H, W) in [-1, 1] of the denoiser ``combine(denoisers)`` built from one guided denoiser
    per condition value."""
    model = job.model
    return sample_batches(
        lambda start, b: combine([job.denoiser(v, b) for v in values]), model.image_shape, n=n,
        schedule=model.schedule, sampler=job.sampler, timesteps=job.timesteps(), seed=job.seed,
        batch_size=batch_size, device=job.device, progress=True, callback=job.callback(len(job.timesteps())),
    )


def _upscale(job: Job, low: torch.Tensor, combine, values: list, low_views: list | None, batch_size: int
             ) -> torch.Tensor:
    """The cascade's stage 2 of an illusion: ``low`` upscaled by the job's upscaler with the same wrapper
    (``combine``, built for the high resolution) over one denoiser per condition value; denoiser k sees the
    low-resolution condition under ``low_views[k]`` (anagrams: the view it denoises), or as it is."""
    sr = job.stage2

    def make(low_cond, start, b):
        dens = []
        for k, v in enumerate(values):
            lc = low_cond if low_views is None else low_cond._replace(low=low_views[k].apply(low_cond.low))
            cond = job.cond(v, b, sr) if v is not None and sr.cond_kind is not None else None
            dens.append(sr_denoiser(job, sr, lc, cond, job.cond(None, b, sr)))
        return combine(dens)

    return upscale_batches(job, low, make, batch_size)


def sample_anagrams(job: Job, views: list[View], values: list, n: int, batch_size: int = 16,
                    views_hi: list[View] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(n anagram images (n, C, H, W): condition values[v] (checked, see illusion_conditions) under views[v], and
    with a stage 2 in the job their upscales under the same views ``views_hi`` at its resolution, else None)."""
    low = _sample(job, lambda dens: anagram_denoiser(dens, views), values, n, batch_size)
    if job.stage2 is None:
        return low, None
    return low, _upscale(job, low, lambda dens: anagram_denoiser(dens, views_hi), values, views_hi, batch_size)


def sample_hybrids(job: Job, components: list, values: list, n: int, batch_size: int = 16,
                   components_hi: list | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(n factorized images (n, C, H, W): component i follows condition values[i], and with a stage 2 their
    upscales with the components ``components_hi`` at its resolution, else None)."""
    low = _sample(job, lambda dens: factorized_denoiser(dens, components), values, n, batch_size)
    if job.stage2 is None:
        return low, None
    return low, _upscale(job, low, lambda dens: factorized_denoiser(dens, components_hi), values, None, batch_size)


def _describe(values: list) -> list[str]:
    return [v if isinstance(v, str) else f"label {v}" for v in values]


# ---- animation of a view: frames from the image to view(image), for the GIF ----

def _affine(x: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    """x resampled by the 2x2 ``matrix`` about the image centre (bilinear; normalised coordinates)."""
    theta = torch.tensor([[*matrix[0], 0.0], [*matrix[1], 0.0]], dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _tween(view: View, x: torch.Tensor, s: float) -> torch.Tensor:
    """The image part of the way (s in [0, 1]) from x to view(x): rotations turn, flips fold, a transpose folds
    about the diagonal, jigsaw pieces slide, a negation fades."""
    name, c = view.name, math.cos(math.pi * s)
    if name.startswith("rot"):
        return TF.rotate(x, float(name[3:]) * s if name != "rot270" else -90.0 * s)
    if name == "flip_v":
        return _affine(x, [[1, 0], [0, c]])
    if name == "flip_h":
        return _affine(x, [[c, 0], [0, 1]])
    if name == "transpose":  # fold about the main diagonal: R(45) diag(1, c) R(-45)
        return _affine(x, [[(1 + c) / 2, (1 - c) / 2], [(1 - c) / 2, (1 + c) / 2]])
    if name == "negate":
        return (1 - 2 * s) * x
    if name.startswith("jigsaw"):
        return _slide_pieces(view, x, s)
    return x


def _slide_pieces(view: View, x: torch.Tensor, s: float) -> torch.Tensor:
    """Jigsaw pieces moved a fraction s of the way to their places (found by tracking piece indices)."""
    pieces = int(view.name[len("jigsaw"):])
    size = x.shape[-1]
    p = size // pieces
    index = torch.arange(pieces * pieces, dtype=x.dtype).reshape(1, 1, pieces, pieces)
    where = view.apply(F.interpolate(index, scale_factor=p, mode="nearest"))[0, 0, ::p, ::p]  # piece at each place
    canvas = torch.zeros_like(x)
    for place, k in enumerate(where.flatten().long().tolist()):
        (r0, c0), (r1, c1) = divmod(k, pieces), divmod(place, pieces)
        r = round((r0 + (r1 - r0) * s) * p)
        col = round((c0 + (c1 - c0) * s) * p)
        canvas[..., r:r + p, col:col + p] = x[..., r0 * p:(r0 + 1) * p, c0 * p:(c0 + 1) * p]
    return canvas


def view_animation(views: list[View], images: torch.Tensor, steps: int = 12, hold: int = 6,
                   scale: int = 4) -> list[Image.Image]:
    """GIF frames: the grid of ``images`` turning into each view and back, in turn (the last frame of each
    turn is exactly view(images)), upscaled ``scale`` x."""
    def frame(x):
        grid = make_grid(x, nrow=min(len(x), 4), padding=2, pad_value=1.0)
        pil = to_pil(grid)
        return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)

    frames = []
    for view in views:
        if view.name == "identity":
            continue
        frames += [frame(images)] * hold
        frames += [frame(_tween(view, images, i / steps)) for i in range(1, steps)]
        frames += [frame(view.apply(images))] * hold
        frames += [frame(_tween(view, images, 1 - i / steps)) for i in range(1, steps)]
    return frames or [frame(images)]


def anagram(job: Job, views: list[str] = ("identity", "rot180"), labels: list[int] | None = None,
            prompts: list[str] | None = None, jigsaw: int = 4, n: int = 4, batch_size: int = 16) -> dict:
    """Visual anagrams (Geng et al. 2024): n images that show condition v under view v.

    Writes views.png (a captioned row per view: the n images under that view), anagram_XXXX.png (each image
    under every view, side by side), anagram.gif (the images turning into each view), sample_XXXX.png and
    anagram.json."""
    model = job.model
    view_list = _illusion_error(lambda: [make_view(str(v), model.image_shape, jigsaw) for v in views])
    if len({v.name for v in view_list}) != len(view_list):
        raise InputError(f"task.views: each view once, got {list(views)}")
    values = illusion_conditions(job, labels, prompts, len(view_list), "view")
    views_hi = None
    if job.stage2 is not None:  # the same views at the upscaler's resolution (a jigsaw keeps its permutation)
        views_hi = _illusion_error(lambda: [make_view(str(v), job.stage2.image_shape, jigsaw) for v in views])
    low, high = sample_anagrams(job, view_list, values, n, batch_size, views_hi)
    images, view_list = (low, view_list) if high is None else (high, views_hi)
    names = [f"{v.name}: {c}" for v, c in zip(view_list, _describe(values))]
    outputs: dict = {} if high is None else cascade_outputs(low, high)
    outputs |= {
        "views.png": captioned_rows([v.apply(images) for v in view_list], names),
        "anagram.gif": view_animation(view_list, images),
        "anagram.json": {"views": [v.name for v in view_list], "conditions": values, "n": n},
    }
    for i, x in enumerate(images):
        outputs[f"anagram_{i:04d}.png"] = labelled_strip([v.apply(x[None])[0] for v in view_list], names)
        outputs[f"sample_{i:04d}.png"] = to_pil(x)
    return outputs


def hybrid(job: Job, labels: list[int] | None = None, prompts: list[str] | None = None, kind: str = "low_high",
           sigma: float = 2.0, n: int = 4, batch_size: int = 16) -> dict:
    """Hybrid images by factorized diffusion (Geng et al. 2024): component i of each image follows condition i.

    kind=low_high: condition 1 sets the low frequencies (seen from afar), condition 2 the rest (seen up close);
    kind=grey_colour: condition 1 sets the greyscale image, condition 2 the colour. Writes hybrid.png (a
    captioned row each: the images, component 1, component 2, and for low_high the images seen small),
    sample_XXXX.png and hybrid.json."""
    model = job.model
    size = model.image_shape[-1]
    if kind == "low_high" and math.ceil(3 * sigma) >= size:
        raise InputError(f"task.sigma={sigma}: the blur kernel (radius 3 sigma) must fit the {size}-pixel image")
    components = _illusion_error(make_components, kind, sigma, model.image_shape[0])
    values = illusion_conditions(job, labels, prompts, len(components), "component")
    components_hi = None
    if job.stage2 is not None:  # the same bands at the upscaler's resolution: sigma scales with the image
        scale = job.stage2.image_shape[-1] / size
        components_hi = _illusion_error(make_components, kind, sigma * scale, model.image_shape[0])
    low, high = sample_hybrids(job, components, values, n, batch_size, components_hi)
    images, components = (low, components) if high is None else (high, components_hi)
    described = _describe(values)
    rows = [images] + [c.apply(images) for c in components]
    captions = ["hybrid"] + [f"{c.name}: {d}" for c, d in zip(components, described)]
    if kind == "low_high":  # as seen from afar: downsampled 4x, then shown at the same size
        small = F.interpolate(F.interpolate(images, scale_factor=0.25, mode="area"), size=images.shape[-2:],
                              mode="nearest")
        rows.append(small)
        captions.append("seen from afar (1/4 size)")
    outputs: dict = {} if high is None else cascade_outputs(low, high)
    outputs |= {
        "hybrid.png": captioned_rows(rows, captions),
        "hybrid.json": {"kind": kind, "sigma": sigma, "conditions": values, "components": [c.name for c in components],
                        "n": n},
    }
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(images)})
    return outputs
