"""Sampling speed of our DDIM loop against diffusers' DDIMScheduler on one network (scripts/benchmark_sample.py).

On one network (a configs/model preset, randomly initialised) and one x_T, with torch.inference_mode():

    net-only   ``steps`` forward calls of the network alone: the floor of any sampler
    net-only 2B  the same at batch 2B, conditional and null halves: the floor of batched CFG
    net-only 2x  two forward calls of batch B per step (conditional, then null): the floor of two-pass CFG
    ours       diffusion.samplers.sample_ddim over make_timesteps(1000, steps, "uniform") with net_denoiser
               (eps prediction, linear schedule, eta = 0, no clipping)
    diffusers  DDIMScheduler (linear betas, leading spacing, set_alpha_to_one) with the standard loop
               ``for t in scheduler.timesteps: eps = net(x, t, cond); x = scheduler.step(eps, t, x).prev_sample``
    ours+CFG 2B  sample_ddim with cfg_denoiser(batched=True) (scale 3: one forward of 2B per step)
    ours+CFG 2x  sample_ddim with cfg_denoiser(batched=False) (two forwards of B per step)

cfg_denoiser's default (batched=None) is 2B on an accelerator and two passes on the CPU; the CFG goal is checked
on that default for the device, and both ratios are printed.

First both samplers run once untimed (the warm-up): their timestep lists must be equal and their x_0 agree,
so the timings compare the same computation. The untrained network (its zero-initialised layers filled with
small random weights, else it outputs 0) lets x_0 grow to the hundreds, so the check is relative to that scale:
max |ours - diffusers| / max(1, max |x_0|) <= tol (1e-5; fp32 rounding gives ~1e-6, diffusers' alpha_bar
being float32 and ours float64). Then R rounds each run every variant once (a full sampling; the order
rotates each round so drift hits all alike). Reported: median seconds, images/s, the sampler's overhead beyond
the network (loop - net-only) / net-only (median of the per-round ratios; goal for ours < 5%), and CFG /
unguided (goal <= 2.05). Since that overhead is a difference of two noisy timings, the loops are also timed
around a no-op network, which isolates each sampler's own cost per step (Python, timestep tensors, schedule
look-ups, elementwise maths) to within microseconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from diffusion.denoiser import net_denoiser
from diffusion.guidance import cfg_denoiser
from diffusion.parametrization import make_parametrization
from diffusion.samplers import make_timesteps, sample_ddim
from diffusion.schedules import Schedule, linear_schedule
from evaluation.peers import model_config
from evaluation.timing import device_name, paired_ratio, time_rounds, timed
from sampling.checkpoint import MODELS

if TYPE_CHECKING:
    from diffusers import DDIMScheduler

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
CFG_SCALE = 3.0
OVERHEAD_GOAL = 0.05  # ours: (loop - net-only) / net-only
CFG_RATIO_GOAL = 2.05  # ours with CFG / ours unguided
VARIANTS = ("net_only", "ours", "diffusers", "net_only_2b", "ours_cfg_2b", "net_only_2x", "ours_cfg_2x")
LABELS = {
    "net_only": "net-only",
    "ours": "ours",
    "diffusers": "diffusers",
    "net_only_2b": "net-only 2B",
    "ours_cfg_2b": "ours+CFG 2B",
    "net_only_2x": "net-only 2x",
    "ours_cfg_2x": "ours+CFG 2x",
}
# each sampler's network alone
FLOOR = {"ours": "net_only", "diffusers": "net_only", "ours_cfg_2b": "net_only_2b", "ours_cfg_2x": "net_only_2x"}

Net = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def preset_net(name: str, channels: int = 3, image_size: int = 32, num_classes: int = 10) -> tuple[nn.Module, dict]:
    """The network of configs/model/<name>.yaml with data.{channels, image_size, num_classes} filled in, and its
    config; ValueError for an unknown name."""
    cfg = model_config(name, {"channels": channels, "image_size": image_size, "num_classes": num_classes})
    return MODELS[cfg["_target_"]](**{k: v for k, v in cfg.items() if k != "_target_"}), cfg


def randomise_zero_init(net: nn.Module, std: float = 0.02, seed: int = 0) -> int:
    """Fill the all-zero parameters (zero-initialised output convs, adaLN modulations) with N(0, std^2).

    At initialisation both presets output exactly 0, which would make eps = 0 and the ours-vs-diffusers check
    blind to the network; random weights make every step's output depend on x_t and t. Returns their count.
    """
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
                n += 1
    return n


def build_net(name: str, device: torch.device, seed: int = 0) -> tuple[nn.Module, dict]:
    """preset_net(name) from a fixed seed, its zero-initialised layers randomised, in eval mode on ``device``."""
    torch.manual_seed(seed)
    net, cfg = preset_net(name)
    randomise_zero_init(net, seed=seed)
    return net.to(device).eval(), cfg


def make_inputs(
    batch: int, channels: int, image_size: int, num_classes: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_T ~ N(0, I), labels 0, 1, 2, ... and the null labels (num_classes), from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(batch, channels, image_size, image_size, generator=g).to(device)
    cond = (torch.arange(batch) % num_classes).to(device)
    null = torch.full((batch,), num_classes, dtype=torch.long, device=device)
    return x_T, cond, null


def null_net(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """A network that costs nothing: the loops around it time the samplers' own work."""
    return x


def ours_schedule() -> Schedule:
    """The linear schedule both samplers use (DDPM's betas, 1000 steps)."""
    return linear_schedule(NUM_TRAIN_TIMESTEPS, BETA_START, BETA_END)


def ours_timesteps(steps: int) -> list[int]:
    """Our uniform (leading) DDIM timesteps, descending."""
    return make_timesteps(NUM_TRAIN_TIMESTEPS, steps, "uniform")


def diffusers_scheduler(steps: int, device: torch.device) -> DDIMScheduler:
    """diffusers' DDIMScheduler set to the same schedule and timesteps as ours."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="linear",
        beta_start=BETA_START,
        beta_end=BETA_END,
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="leading",
        steps_offset=0,
    )
    scheduler.set_timesteps(steps, device=device)
    return scheduler


def run_net_only(
    net: Net, x: torch.Tensor, t_batches: Sequence[torch.Tensor], *conds: torch.Tensor | None
) -> torch.Tensor:
    """One forward per step and label tensor on fixed inputs (timestep tensors made beforehand): no sampler work."""
    out = x
    for t in t_batches:
        for cond in conds:
            out = net(x, t, cond)
    return out


def run_ours(net: Net, schedule: Schedule, x_T: torch.Tensor, timesteps: Sequence[int], cond: torch.Tensor):
    """Our DDIM (eta 0, no clipping) with the network as an eps-predicting denoiser."""
    denoiser = net_denoiser(net, schedule, make_parametrization("eps"), cond)
    return sample_ddim(denoiser, x_T, schedule, timesteps, eta=0.0, clip_x0=False)


def run_ours_cfg(
    net: Net,
    schedule: Schedule,
    x_T: torch.Tensor,
    timesteps: Sequence[int],
    cond: torch.Tensor,
    null: torch.Tensor,
    batched: bool,
) -> torch.Tensor:
    """Our DDIM under classifier-free guidance at CFG_SCALE, the two passes batched (2B) or not (2x)."""
    denoiser = cfg_denoiser(net, schedule, make_parametrization("eps"), cond, null, CFG_SCALE, batched=batched)
    return sample_ddim(denoiser, x_T, schedule, timesteps, eta=0.0, clip_x0=False)


def run_diffusers(net: Net, scheduler: DDIMScheduler, x_T: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The standard diffusers loop (as DDIMPipeline), the timestep broadcast to the batch for our networks."""
    x = x_T
    for t in scheduler.timesteps:
        eps = net(x, t.expand(x.shape[0]), cond)
        x = scheduler.step(eps, t, x).prev_sample
    return x


def compare_with_diffusers(
    net: Net, x_T: torch.Tensor, cond: torch.Tensor, steps: int, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Run both DDIM samplers once from x_T: their timestep lists and how far apart their x_0 are."""
    device = torch.device(device)
    timesteps = ours_timesteps(steps)
    scheduler = diffusers_scheduler(steps, device)
    theirs_ts = [int(t) for t in scheduler.timesteps]
    with torch.inference_mode():
        ours = run_ours(net, ours_schedule(), x_T, timesteps, cond)
        theirs = run_diffusers(net, scheduler, x_T, cond)
    diff = (ours.double() - theirs.double()).abs()
    return {
        "timesteps_ours": timesteps,
        "timesteps_diffusers": theirs_ts,
        "timesteps_equal": timesteps == theirs_ts,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_abs_x0": float(theirs.abs().max()),
        "scaled_diff": float(diff.max()) / max(1.0, float(theirs.abs().max())),
        "finite": bool(torch.isfinite(ours).all() and torch.isfinite(theirs).all()),
    }


def make_runners(
    net: Net, x_T: torch.Tensor, cond: torch.Tensor, null: torch.Tensor, steps: int, device: torch.device
) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per variant, all over the same network, x_T and labels."""
    schedule, timesteps = ours_schedule(), ours_timesteps(steps)
    scheduler = diffusers_scheduler(steps, device)
    t_batches = [torch.full((x_T.shape[0],), t, dtype=torch.long, device=device) for t in timesteps]
    x_2b, cond_2b, t_2b = torch.cat([x_T, x_T]), torch.cat([cond, null]), [torch.cat([t, t]) for t in t_batches]
    return {
        "net_only": lambda: run_net_only(net, x_T, t_batches, cond),
        "ours": lambda: run_ours(net, schedule, x_T, timesteps, cond),
        "diffusers": lambda: run_diffusers(net, scheduler, x_T, cond),
        "net_only_2b": lambda: run_net_only(net, x_2b, t_2b, cond_2b),
        "ours_cfg_2b": lambda: run_ours_cfg(net, schedule, x_T, timesteps, cond, null, batched=True),
        "net_only_2x": lambda: run_net_only(net, x_T, t_batches, cond, null),
        "ours_cfg_2x": lambda: run_ours_cfg(net, schedule, x_T, timesteps, cond, null, batched=False),
    }


def sampler_cost_per_step(
    x_T: torch.Tensor, cond: torch.Tensor, null: torch.Tensor, steps: int, device: torch.device, repeats: int = 7
) -> dict[str, float]:
    """Microseconds per step of each sampler around a no-op network (median of ``repeats``), minus its floor's."""
    runners = make_runners(null_net, x_T, cond, null, steps, device)
    with torch.inference_mode():
        for fn in runners.values():  # warm-up
            fn()
        us = {name: statistics.median(timed(fn, device) for _ in range(repeats)) for name, fn in runners.items()}
    us = {name: seconds / steps * 1e6 for name, seconds in us.items()}
    return {name: us[name] - us[floor] for name, floor in FLOOR.items()}


def every_sampler_cost(x_T: torch.Tensor, cond: torch.Tensor, steps: int, device: torch.device,
                       repeats: int = 7) -> dict[str, dict[str, float]]:
    """For every sampler of the registry (``diffusion.solvers.SAMPLERS``, each with its config's defaults): its
    own cost per network call, timed around the no-op network (median of ``repeats`` runs of ``steps`` timesteps,
    the no-op network's own calls subtracted). Flow samplers run a flow model (flow schedule, velocity output),
    the others an eps model on the linear schedule. {name: {"calls": NFE, "us_per_call": ...}}."""
    from diffusion.schedules import flow_schedule
    from diffusion.solvers import SAMPLERS

    out = {}
    t_batch = torch.zeros(x_T.shape[0], dtype=torch.long, device=device)
    timesteps = make_timesteps(NUM_TRAIN_TIMESTEPS, steps, "trailing")
    with torch.inference_mode():
        base = statistics.median(timed(lambda: [null_net(x_T, t_batch, cond) for _ in range(steps)], device)
                                 for _ in range(repeats)) / steps
        for name, fn in SAMPLERS.items():
            flow = name.startswith("flow_")
            schedule = flow_schedule(NUM_TRAIN_TIMESTEPS) if flow else ours_schedule()
            denoiser = net_denoiser(null_net, schedule, make_parametrization("flow" if flow else "eps"), cond)
            calls = [0]

            def counted(x, t, _d=denoiser, _c=calls):
                _c[0] += 1
                return _d(x, t)

            g = torch.Generator(device=device).manual_seed(0)

            def run(_fn=fn, _d=counted, _s=schedule, _g=g):
                return _fn(_d, x_T, _s, timesteps, generator=_g)

            run()  # warm-up, and the call count
            nfe = calls[0]
            seconds = statistics.median(timed(run, device) for _ in range(repeats))
            out[name] = {"calls": nfe, "us_per_call": (seconds / nfe - base) * 1e6}
    return out


def summarise(
    times: dict[str, list[float]], batch: int, steps: int, cfg_default: str = "ours_cfg_2x"
) -> dict[str, Any]:
    """Medians of the seconds, images/s, and of the per-round (paired) ratios.

    overhead: (sampler - its floor) / floor, the floor being net-only (net-only 2B or 2x for CFG); cfg_ratio_2b and
    cfg_ratio_2x: ours+CFG / ours for each way of running the two passes, cfg_ratio: that of ``cfg_default``
    (cfg_denoiser's choice on the device); net_ratio_2b / net_ratio_2x: what the network alone makes of them.
    """
    paired = lambda a, b: paired_ratio(times[a], times[b])  # noqa: E731
    out: dict[str, Any] = {"seconds": {}, "img_per_s": {}, "overhead": {}}
    for name, ts in times.items():
        out["seconds"][name] = statistics.median(ts)
        out["img_per_s"][name] = batch / statistics.median(ts)  # images sampled: B, also for the 2B variants
    for name, floor in FLOOR.items():
        out["overhead"][name] = paired(name, floor) - 1
    out["ms_per_step"] = {name: seconds / steps * 1e3 for name, seconds in out["seconds"].items()}
    out["net_ms_per_step"] = out["ms_per_step"]["net_only"]
    out["cfg_ratio_2b"] = paired("ours_cfg_2b", "ours")
    out["cfg_ratio_2x"] = paired("ours_cfg_2x", "ours")
    out["cfg_default"] = cfg_default
    out["cfg_ratio"] = paired(cfg_default, "ours")
    out["net_ratio_2b"] = paired("net_only_2b", "net_only")
    out["net_ratio_2x"] = paired("net_only_2x", "net_only")
    return out


def print_table(report: dict[str, Any]) -> None:
    """Every variant's seconds, ms/step, images/s and overhead; the goals and the ours-vs-diffusers check."""
    s, check, cost = report["summary"], report["check"], report["sampler_us_per_step"]
    print(
        f"\n{report['model']} ({report['params']:,} params), batch {report['batch']}, {report['image_size']}x"
        f"{report['image_size']}, fp32, {report['steps']} steps, {report['rounds']} rounds; {report['device']} "
        f"({report['device_type']}, {report['threads']} threads)"
    )
    header = f"{'variant':12} {'median s':>9} {'ms/step':>8} {'img/s':>8} {'overhead':>9}"
    header += f" {'no-op net us/step':>18} {'as % of floor':>14}"
    print(header)
    print("-" * len(header))
    for name in VARIANTS:
        line = (
            f"{LABELS[name]:12} {s['seconds'][name]:>9.3f} {s['ms_per_step'][name]:>8.2f} {s['img_per_s'][name]:>8.1f}"
        )
        if name in FLOOR:
            floor_us = s["ms_per_step"][FLOOR[name]] * 1e3
            line += f" {s['overhead'][name]:>8.1%} {cost[name]:>18.1f} {cost[name] / floor_us:>14.2%}"
        else:
            line += f" {'(floor)':>9}"
        print(line)
    ok = lambda b: "ok" if b else "MISSED"  # noqa: E731
    print(
        f"overhead ours: {s['overhead']['ours']:.2%} (goal < {OVERHEAD_GOAL:.0%}: {ok(report['goals']['overhead'])}), "
        f"diffusers: {s['overhead']['diffusers']:.2%}"
    )
    print(
        f"CFG / unguided: {s['cfg_ratio']:.3f}x with cfg_denoiser's default here ({LABELS[s['cfg_default']]}; goal "
        f"<= {CFG_RATIO_GOAL}: {ok(report['goals']['cfg_ratio'])}); 2B: {s['cfg_ratio_2b']:.3f}x, 2x: "
        f"{s['cfg_ratio_2x']:.3f}x; the network alone: 2B / B {s['net_ratio_2b']:.3f}x, 2x / B {s['net_ratio_2x']:.3f}x"
    )
    print(
        f"max |ours - diffusers|: {check['max_abs_diff']:.2e} (mean {check['mean_abs_diff']:.1e}; max |x_0| "
        f"{check['max_abs_x0']:.1f}, scaled diff {check['scaled_diff']:.1e}, tol {report['tol']:.0e}); "
        f"timestep lists equal: {check['timesteps_equal']}"
    )
    net_us = s["ms_per_step"]["net_only"] * 1e3
    print(f"every sampler's own cost per network call (no-op network), as a share of this network's forward "
          f"({net_us / 1e3:.2f} ms):")
    for name, c in report["every_sampler"].items():
        print(f"  {name:11} {c['calls']:>4} calls  {c['us_per_call']:>8.1f} us/call  {c['us_per_call'] / net_us:>7.2%}")
    print(
        "img/s: images sampled (B) per second; overhead: median over rounds of (sampler - floor) / floor, the floor "
        "being net-only (net-only 2B or 2x for CFG);\nno-op net: each sampler's own cost per step around a network "
        "that returns x_t (its floor's loop subtracted), and that as a share of the floor's real step"
    )


def benchmark(*, preset: str, batch: int, rounds: int, steps: int, device: str, tol: float) -> dict[str, Any]:
    """The check against diffusers, the timed rounds, their summary, the no-op-network costs and the goals."""
    import diffusers

    dev = torch.device(device)
    net, cfg = build_net(preset, dev)
    channels, image_size, num_classes = 3, 32, 10
    x_T, cond, null = make_inputs(batch, channels, image_size, num_classes, dev)
    report: dict[str, Any] = {
        "model": preset, "config": cfg, "params": sum(p.numel() for p in net.parameters()),
        "device": device_name(dev), "device_type": dev.type, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "batch": batch, "image_size": image_size,
        "steps": steps, "rounds": rounds, "tol": tol, "cfg_scale": CFG_SCALE,
    }
    print(
        f"device: {report['device']} ({dev.type}, {report['threads']} threads); torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}; {preset} ({report['params']:,} params), batch {batch}, "
        f"{image_size}x{image_size}, fp32, {steps} steps, {rounds} rounds",
        flush=True,
    )
    check = compare_with_diffusers(net, x_T, cond, steps, dev)  # doubles as the warm-up
    report["check"] = check
    print(f"check: timestep lists equal {check['timesteps_equal']}, max |ours - diffusers| {check['max_abs_diff']:.2e}")
    runners = make_runners(net, x_T, cond, null, steps, dev)
    with torch.inference_mode():  # ours and diffusers ran in the check
        for name in ("net_only", "net_only_2b", "ours_cfg_2b", "net_only_2x", "ours_cfg_2x"):
            runners[name]()
        report["times"] = time_rounds(runners, rounds, dev, labels=LABELS)
    cfg_default = "ours_cfg_2x" if dev.type == "cpu" else "ours_cfg_2b"  # as cfg_denoiser(batched=None)
    report["summary"] = summarise(report["times"], batch, steps, cfg_default)
    report["sampler_us_per_step"] = sampler_cost_per_step(x_T, cond, null, steps, dev)
    report["every_sampler"] = every_sampler_cost(x_T, cond, steps, dev)
    report["goals"] = {
        "overhead": report["summary"]["overhead"]["ours"] < OVERHEAD_GOAL,
        "cfg_ratio": report["summary"]["cfg_ratio"] <= CFG_RATIO_GOAL,
    }
    return report


def failures(report: dict[str, Any], strict: bool) -> list[str]:
    """Why the run failed, one line each: timestep lists or results that disagree, or (``strict``) a missed goal."""
    check, tol, out = report["check"], report["tol"], []
    if not check["timesteps_equal"]:
        out.append(
            f"timestep lists differ (ours {check['timesteps_ours'][:4]}..., diffusers "
            f"{check['timesteps_diffusers'][:4]}...): leading spacing agrees with ours only when steps divides "
            f"{NUM_TRAIN_TIMESTEPS}"
        )
    elif not (check["finite"] and check["scaled_diff"] <= tol):
        out.append(
            f"max |ours - diffusers| {check['max_abs_diff']:.2e} / max(1, max |x_0|) = "
            f"{check['scaled_diff']:.2e} > tol {tol:.0e}"
        )
    if strict and not all(report["goals"].values()):
        out.append(f"speed goal missed: {report['goals']}")
    return out
