"""The denoising loss of a trained model per bucket of timesteps: where in t one model beats another (eDiff-I's
experts against their base, a shifted schedule against the plain one).

Each bucket covers T/K consecutive timesteps. Every image is noised at ``draws`` timesteps drawn uniformly inside
each bucket, with noise and timesteps from a fixed seed, so two models of the same schedule see identical inputs.
Two numbers per bucket: the model's own objective (the unweighted MSE on its target: eps, x0, v or the velocity),
and the MSE of its x0 estimate, which compares models of different objectives or schedules.
"""

from __future__ import annotations

import torch

from diffusion.forward_process import add_noise


@torch.no_grad()
def bucket_losses(model, images: torch.Tensor, values: list | None, buckets: int = 10, draws: int = 4,
                  seed: int = 0, batch_size: int = 64) -> list[dict]:
    """One row per bucket: {"t_lo", "t_hi" (exclusive), "loss", "x0_mse", "loss_sem"} of ``model`` (a
    sampling.checkpoint.LoadedModel of a base model) on ``images`` (N, C, H, W) in [-1, 1], conditioned on each
    image's ``values`` (labels, or captions for a text model; None: unconditional)."""
    T = model.schedule.num_timesteps
    if not 1 <= buckets <= T:
        raise ValueError(f"buckets must be in [1, {T}], got {buckets}")
    edges = [round(i * T / buckets) for i in range(buckets + 1)]
    g = torch.Generator().manual_seed(seed)
    param, net = model.parametrization, model.net
    device = next(net.parameters()).device
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        losses, x0_errors = [], []
        for _ in range(draws):
            for start in range(0, len(images), batch_size):
                x0 = images[start:start + batch_size].double()
                b = len(x0)
                t = torch.randint(lo, hi, (b,), generator=g)
                eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
                alpha_bar = model.schedule.alphas_cumprod[t].view(b, 1, 1, 1)  # float64
                x_t = add_noise(x0, eps, alpha_bar)
                cond = condition(model, values[start:start + b] if values is not None else None, device)
                x_in = param.network_input(x_t, alpha_bar).float().to(device)
                out = net(x_in, t.to(device), cond).double().cpu()
                mean = param.split(out, x0.shape[1])[0]
                losses.append(((mean - param.target(x0, eps, alpha_bar)) ** 2).mean(dim=(1, 2, 3)))
                x0_errors.append(((param.predict(out, x_t, alpha_bar).x0 - x0) ** 2).mean(dim=(1, 2, 3)))
        loss, x0_mse = torch.cat(losses), torch.cat(x0_errors)
        rows.append({"t_lo": lo, "t_hi": hi, "loss": float(loss.mean()),
                     "loss_sem": float(loss.std() / len(loss) ** 0.5) if len(loss) > 1 else 0.0,
                     "x0_mse": float(x0_mse.mean())})
    return rows


def condition(model, values: list | None, device):
    """The network's condition for a slice of labels or captions (None: unconditional)."""
    if values is None:
        return None
    if model.encoder is not None:
        return model.encoder.encode(list(values)).to(device)
    return torch.tensor(values, device=device)
