"""evaluation/sampling_speed.py and scripts/benchmark_sample.py: a tiny end-to-end run, ours vs diffusers agreeing,
and the summary arithmetic."""

import json

import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from evaluation import sampling_speed as bench  # noqa: E402
from scripts.benchmark_sample import main as benchmark_main  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: on a shared 2-core machine two threads can be many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny(one_thread):
    net, _ = bench.build_net("unet_tiny", torch.device("cpu"))
    x_T, cond, null = bench.make_inputs(2, 3, 32, 10, torch.device("cpu"))
    return net, x_T, cond, null


def test_main_tiny_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["preset=unet_tiny", "rounds=1", "steps=5", "batch=2", "threads=1"]
    assert benchmark_main([*argv, f"json={out}"]) == 0
    text = capsys.readouterr().out
    labels = ("net-only", "ours", "diffusers", "ours+CFG 2B", "ours+CFG 2x", "CFG / unguided", "max |ours - diffusers|")
    for label in labels:
        assert label in text
    report = json.loads(out.read_text())
    assert report["check"]["timesteps_equal"] and report["check"]["max_abs_diff"] < 1e-4
    assert set(report["times"]) == set(bench.VARIANTS) and all(len(v) == 1 for v in report["times"].values())
    assert report["summary"]["cfg_ratio"] > 0 and report["device"]
    from diffusion.solvers import SAMPLERS

    every = report["every_sampler"]  # each sampler's own cost per network call, with its number of calls
    assert set(every) == set(SAMPLERS) and every["ddim"]["calls"] == 5 and every["heun"]["calls"] == 9
    assert every["flow_heun"]["calls"] == 9 and all(abs(c["us_per_call"]) < 1e5 for c in every.values())
    assert "every sampler's own cost per network call" in text


def test_ours_matches_diffusers(tiny):
    net, x_T, cond, _ = tiny
    check = bench.compare_with_diffusers(net, x_T, cond, steps=10)
    assert check["timesteps_ours"] == check["timesteps_diffusers"] == list(range(900, -1, -100))
    assert check["timesteps_equal"] and check["finite"]
    assert check["max_abs_diff"] < 1e-4
    assert check["max_abs_x0"] > 1.0  # the network is not the all-zero one of a fresh initialisation


def test_network_is_not_zero(tiny):
    net, x_T, cond, _ = tiny
    with torch.inference_mode():
        out = net(x_T, torch.full((2,), 500), cond)
    assert out.abs().mean() > 1e-3


def test_timestep_lists_differ_when_steps_do_not_divide_1000():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    check = bench.compare_with_diffusers(bench.null_net, x, None, steps=7)
    assert not check["timesteps_equal"]  # leading: 142 k for diffusers, int(1000 k / 7) for ours


def test_summarise_medians_and_paired_ratios():
    times = {
        "net_only": [1.0, 2.0, 1.0],
        "ours": [1.02, 2.1, 1.03],
        "diffusers": [1.1, 2.0, 1.2],
        "net_only_2b": [2.0, 4.0, 2.2],
        "ours_cfg_2b": [2.0, 4.4, 2.1],
        "net_only_2x": [1.8, 3.8, 2.0],
        "ours_cfg_2x": [1.9, 3.9, 2.0],
    }
    s = bench.summarise(times, batch=4, steps=10)
    assert s["seconds"]["ours"] == pytest.approx(1.03)
    assert s["img_per_s"]["net_only"] == pytest.approx(4.0)
    assert s["overhead"]["ours"] == pytest.approx(0.03)  # median of 0.02, 0.05, 0.03
    assert s["overhead"]["diffusers"] == pytest.approx(0.1)  # median of 0.1, 0.0, 0.2
    assert s["overhead"]["ours_cfg_2b"] == pytest.approx(0.0)  # against net-only 2B: median of 0.0, 0.1, -0.045
    assert s["overhead"]["ours_cfg_2x"] == pytest.approx(3.9 / 3.8 - 1)  # median of 0.056, 0.026, 0.0
    assert s["cfg_ratio_2b"] == pytest.approx(2.1 / 1.03)  # median of 1.96, 2.10, 2.04
    assert s["cfg_ratio_2x"] == pytest.approx(1.9 / 1.02)  # median of 1.863, 1.857, 1.942
    assert s["cfg_default"] == "ours_cfg_2x" and s["cfg_ratio"] == s["cfg_ratio_2x"]
    assert bench.summarise(times, batch=4, steps=10, cfg_default="ours_cfg_2b")["cfg_ratio"] == s["cfg_ratio_2b"]
    assert s["net_ratio_2b"] == pytest.approx(2.0)  # median of 2.0, 2.0, 2.2
    assert s["net_ratio_2x"] == pytest.approx(1.9)  # median of 1.8, 1.9, 2.0
    assert s["net_ms_per_step"] == pytest.approx(100.0)


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="unknown model"):
        bench.preset_net("no_such_model")


@pytest.mark.parametrize("bad", ["preset=no_such_model", "steps=0", "steps=1001", "batch=0", "tol=-1"])
def test_bad_setting_one_line_exit_2(bad, capsys):
    assert benchmark_main([bad, "threads=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err


def test_failures_name_each_problem():
    report = {"tol": 1e-5, "goals": {"overhead": False, "cfg_ratio": True}, "check": {
        "timesteps_equal": True, "finite": True, "max_abs_diff": 1e-3, "scaled_diff": 1e-3}}
    assert bench.failures(report, strict=False) == ["max |ours - diffusers| 1.00e-03 / max(1, max |x_0|) = "
                                                    "1.00e-03 > tol 1e-05"]
    assert len(bench.failures(report, strict=True)) == 2
    report["check"]["scaled_diff"] = 1e-6
    assert bench.failures(report, strict=False) == []
