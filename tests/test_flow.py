"""Flow matching (diffusion=flow): the schedule, the objective's exact conversions, the flow samplers against the
closed-form Gaussian velocity field, logit-normal time sampling, and a flow checkpoint through every task."""


import json
import math

import pytest
import torch

import sample
from diffusion.flow import sample_flow_euler, sample_flow_heun, sample_flow_sde
from diffusion.parametrization import FlowPrediction, flow_from_vp, flow_time, make_parametrization
from diffusion.samplers import make_timesteps, sample_ddim
from diffusion.schedules import flow_schedule
from tests.gaussian import exact_ode_solution, gaussian_denoiser
from tests.runner import train

MU, S = 0.3, 0.5


def test_flow_schedule_times_and_shift():
    T = 1000
    sched = flow_schedule(T)
    ab = sched.alphas_cumprod
    assert ab[-1] == 0 and bool((ab[1:] < ab[:-1]).all())
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    assert torch.allclose(flow_time(ab), u, atol=1e-12)  # t_i = (i + 1)/T
    shifted = flow_time(flow_schedule(T, shift=3.0).alphas_cumprod)
    assert torch.allclose(shifted, 3 * u / (1 + 2 * u), atol=1e-12)  # SD3 eq. 23
    assert bool((shifted >= u).all())  # a shift > 1 puts every time at higher noise
    with pytest.raises(ValueError, match="shift"):
        flow_schedule(10, shift=0)


def test_flow_objective_target_and_conversions_are_exact():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, 4, 4, generator=g,
                                                                                       dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)[:, None, None, None]
    ab = (1 - t) ** 2 / ((1 - t) ** 2 + t**2)
    x_vp = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    param = FlowPrediction()
    x_flow = param.network_input(x_vp, ab)
    assert torch.allclose(x_flow, (1 - t) * x0 + t * eps, atol=1e-12)  # the network sees the flow's own x
    v = param.target(x0, eps, ab)
    assert torch.equal(v, eps - x0)
    pred = param.convert(v, x_vp, ab)
    assert torch.allclose(pred.eps, eps, atol=1e-12) and torch.allclose(pred.x0, x0, atol=1e-12)
    assert torch.allclose(flow_from_vp(x_vp, ab), x_flow)
    # min-SNR weight: x0-space min(snr, gamma), written for the velocity (x0 error = t * velocity error)
    snr = torch.tensor([0.0, 0.25, 1.0, 100.0], dtype=torch.float64)
    tt = 1 / (1 + snr.sqrt())
    assert torch.allclose(FlowPrediction("min_snr").loss_weight(snr), snr.clamp(max=5.0) * tt**2)


def _flow_run(sampler, steps: int, n: int = 64, **kw) -> float:
    """Max error of ``sampler`` from pure noise (flow time 1) to the image, against the exact ODE solution."""
    T = 10_000
    sched = flow_schedule(T)
    den = gaussian_denoiser(sched, MU, S)
    x_T = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sampler(den, x_T, sched, make_timesteps(T, steps, "trailing"), **kw)
    return (out - exact_ode_solution(x_T, 0.0, MU, S)).abs().max().item()


def test_euler_error_halves_as_steps_double():
    errors = [_flow_run(sample_flow_euler, n) for n in (20, 40, 80, 160)]
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(1.7 < r < 2.3 for r in ratios), (errors, ratios)  # first order


def test_heun_is_second_order():
    errors = [_flow_run(sample_flow_heun, n) for n in (20, 40, 80)]
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(3.0 < r < 5.0 for r in ratios), (errors, ratios)


def test_euler_is_ddim_on_the_same_timesteps():
    sched = flow_schedule(1000)
    den = gaussian_denoiser(sched, MU, S)
    x_T = torch.randn(16, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ts = make_timesteps(1000, 12, "trailing")
    assert torch.allclose(sample_flow_euler(den, x_T, sched, ts), sample_ddim(den, x_T, sched, ts), atol=1e-12)
    # and eta = 0 makes the SDE the ODE
    assert torch.allclose(sample_flow_sde(den, x_T, sched, ts, eta=0.0), sample_ddim(den, x_T, sched, ts))


def test_sde_keeps_the_data_distribution():
    sched = flow_schedule(1000)
    den = gaussian_denoiser(sched, MU, S)
    g = torch.Generator().manual_seed(2)
    x_T = torch.randn(20_000, 1, 1, 1, generator=g, dtype=torch.float64)
    out = sample_flow_sde(den, x_T, sched, make_timesteps(1000, 200, "trailing"), eta=1.0, generator=g)
    assert abs(out.mean().item() - MU) < 0.02 and abs(out.std().item() - S) < 0.02
    # the noise is real: a different generator gives different samples from the same x_T
    again = sample_flow_sde(den, x_T[:8], sched, make_timesteps(1000, 20, "trailing"),
                            generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(again, out[:8])


def test_logit_normal_time_sampling():
    param = make_parametrization("flow", time_sampling="logit_normal")
    t = param.sample_timesteps(50_000, 1000, torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 999
    u = (t.double() + 1) / 1000
    logit = torch.log(u / (1 - u.clamp(max=1 - 1e-9)))
    assert abs(logit.mean().item()) < 0.02 and abs(logit.std().item() - 1.0) < 0.02  # N(0, 1) in logit space
    # uniform draws exactly what torch.randint draws from the same generator (old runs resume unchanged)
    uniform = make_parametrization("v").sample_timesteps(7, 1000, torch.Generator().manual_seed(5))
    assert torch.equal(uniform, torch.randint(0, 1000, (7,), generator=torch.Generator().manual_seed(5)))


# -- a flow checkpoint through sample.py ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def flow_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    train(root / "flow", "diffusion=flow", "trainer.max_steps=3")
    return root / "flow" / "checkpoints" / "last.ckpt"


TASKS = [
    ["sampler=flow_euler", "label=1", "guidance=2", "n=2"],
    ["sampler=flow_heun", "n=1"],
    ["sampler=flow_sde", "n=1"],
    ["sampler=dpmpp_2m", "sampler.spacing=trailing", "n=1"],
    ["sampler=unipc", "sampler.spacing=trailing", "n=1"],
    ["task=sdedit", "image=procedural:3", "label=2", "sampler=flow_euler"],
    ["task=inpaint", "image=procedural:3", "mask=procedural:3", "label=1", "sampler=flow_heun"],
    ["task=outpaint", "image=procedural:3", "task.pad=[4,0,4,0]"],
    ["task=zoom", "task.frames=2", "label=1"],
    ["task=invert", "image=procedural:3"],
    ["task=ddib", "image=procedural:3", "task.source=0", "task.target=1"],
    ["task=diffedit", "image=procedural:3", "task.source=0", "task.target=1", "task.mask_draws=2"],
    ["task=denoise_compare", "image=procedural:3"],
    ["task=anagram", "task.views=[identity,rot180]", "task.labels=[1,2]", "task.n=1"],
    ["task=hybrid", "task.labels=[1,2]", "task.n=1"],
]


@pytest.mark.parametrize("args", TASKS, ids=lambda a: a[0].split("=")[1])
def test_a_flow_checkpoint_runs_every_task(flow_ckpt, tmp_path, args):
    out = tmp_path / "out"
    assert sample.main([f"ckpt={flow_ckpt}", f"out={out}", "sampler.steps=3", *args]) == 0
    assert any(out.iterdir())


@pytest.mark.parametrize("args, needle", [
    (["sampler=flow_euler"], "runs flow models"),
    (["sampler=heun", "flow"], "infinite"),
    (["sampler=ddim", "sampler.spacing=logsnr", "flow"], "spacing=trailing"),
    (["sampler=dpmpp_2m", "sampler.order=3", "sampler.steps=2"], "fewer than sampler.order=3"),
])
def test_samplers_that_do_not_apply_are_refused(flow_ckpt, tiny_ckpts, tmp_path, capsys, args, needle):
    ckpt = flow_ckpt if "flow" in args else tiny_ckpts["cond"]
    args = [a for a in args if a != "flow"]
    out = tmp_path / "out"
    assert sample.main([f"ckpt={ckpt}", f"out={out}", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_train_refuses_unknown_objective_settings(tmp_path):
    proc = train(tmp_path / "bad", "diffusion.time_sampling=beta", check=False)
    assert proc.returncode == 2 and "diffusion.time_sampling must be one of uniform, logit_normal" in proc.stderr


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "unipc", "flow_euler", "flow_heun"])
def test_deterministic_samplers_solve_the_flow_ode(name):
    """On a flow schedule (zero SNR at t = 1) every ODE sampler that applies lands near the exact solution."""
    from diffusion.solvers import SAMPLERS

    assert _flow_run(SAMPLERS[name], 50) < 0.06  # first order: ~0.045 at 50 steps; the others far less


@pytest.mark.parametrize("name", ["ddpm", "flow_sde"])
def test_stochastic_samplers_reach_the_data_distribution_on_a_flow_schedule(name):
    from diffusion.solvers import SAMPLERS

    sched = flow_schedule(1000)
    g = torch.Generator().manual_seed(4)
    x_T = torch.randn(20_000, 1, 1, 1, generator=g, dtype=torch.float64)
    out = SAMPLERS[name](gaussian_denoiser(sched, MU, S), x_T, sched, make_timesteps(1000, 100, "trailing"),
                         generator=g)
    assert abs(out.mean().item() - MU) < 0.02 and abs(out.std().item() - S) < 0.02


def test_nfe_sweep_and_its_plot(flow_ckpt, tmp_path, monkeypatch, capsys):
    from scripts.nfe_sweep import main as nfe_main

    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "flow.nfe.json"
    assert nfe_main([f"ckpt={flow_ckpt}", "samplers=[flow_euler,flow_heun]", "nfe=[3,5]", "reference=false", "n=6",
                     "batch_size=6", "device=cpu", "classifier.steps=5", f"out={out}"]) == 0
    points = json.loads(out.read_text())["points"]
    assert [(p["sampler"], p["steps"], p["nfe"]) for p in points] == [
        ("flow_euler", 3, 3), ("flow_euler", 5, 5), ("flow_heun", 2, 3), ("flow_heun", 3, 5)]
    assert all(math.isfinite(p["fd_classifier"]) and p["prediction"] == "flow" for p in points)
    assert "| flow_heun | trailing | 3 | 5 |" in capsys.readouterr().out
    png = tmp_path / "nfe.png"
    assert nfe_main([f"plot=[{out}]", f"out={png}"]) == 0 and png.stat().st_size > 1000
    assert nfe_main([f"ckpt={flow_ckpt}", "samplers=[heun]", "nfe=[3]", "reference=false", "n=6",
                     f"out={out}"]) == 2  # a sigma sampler on a zero-terminal-SNR flow model
    assert "infinite" in capsys.readouterr().err


def test_plot_losses_reads_lightning_csv_logs(tmp_path, capsys):
    from scripts.plot_losses import main as plot_main
    from scripts.plot_losses import read_log

    log = tmp_path / "run" / "metrics.csv"
    log.parent.mkdir()
    log.write_text("epoch,step,train/img_per_s,train/loss,val/loss\n0,9,5.0,0.9,\n0,19,5.0,0.5,\n0,19,,,0.4\n")
    assert read_log(log) == ([(9, 0.9), (19, 0.5)], [(19, 0.4)])
    png = tmp_path / "loss.png"
    assert plot_main([f"runs=[{log.parent}]", "labels=[flow]", f"out={png}"]) == 0 and png.stat().st_size > 1000
    assert plot_main([f"runs=[{tmp_path / 'none'}]", f"out={png}"]) == 2
    assert "no CSV log" in capsys.readouterr().err


def test_fd_floor_refuses_bad_input(capsys):
    from scripts.fd_floor import main as floor_main

    assert floor_main(["data=fashion_mnist", "n=1"]) == 2
    assert floor_main(["n=10"]) == 2 and "data=<dataset config> is required" in capsys.readouterr().err
