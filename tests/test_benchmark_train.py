"""evaluation/peers.py and scripts/benchmark_train.py: the diffusers twins have our parameter counts, and a tiny
run reports figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from evaluation import peers as bench  # noqa: E402
from scripts.benchmark_train import main as benchmark_main  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_train.py"


@pytest.mark.parametrize("preset", sorted(bench.UNET_PRESETS))
def test_unet_pair_param_counts_agree(preset):
    cfg = bench.unet_preset(preset)
    ours, theirs = bench.build_unet_pair(cfg, device="meta")
    n_ours, n_theirs = bench.count_params(ours), bench.count_params(theirs)
    assert n_ours > 0
    assert abs(n_ours / n_theirs - 1) <= bench.PARAM_TOLERANCE
    # Same widths, groups and heads: the only differences left are layouts (1x1 conv vs Linear), not sizes.
    assert bench.unet_mapping_notes(ours, theirs) == []


def test_ddpm_cifar_preset_is_ddpm_size():
    # Ho et al. 2020, App. B: the CIFAR-10 model has 35.7M parameters.
    ours, _ = bench.build_unet_pair(bench.unet_preset("ddpm_cifar"), device="meta")
    assert round(bench.count_params(ours) / 1e6, 1) == 35.7


@pytest.mark.parametrize("preset", sorted(bench.DIT_PRESETS))
def test_dit_pair_param_counts_agree(preset):
    cfg = bench.dit_preset(preset)
    ours, theirs, tied = bench.build_dit_pair(cfg, device="meta")
    n_ours, n_theirs = bench.count_params(ours), bench.count_params(theirs)
    assert abs(n_ours / n_theirs - 1) <= bench.PARAM_TOLERANCE
    # Tying removes exactly depth - 1 copies of diffusers' timestep MLP (256 -> D -> D) and label table.
    D, K = cfg["hidden_size"], cfg["num_classes"]
    assert tied == (cfg["depth"] - 1) * (256 * D + D + D * D + D + (K + 1) * D)


def test_tiny_run_reports_positive_throughput(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["unet_preset=tiny", "dit_preset=tiny", "batch_size=4", "rounds=1", "steps=1", "warmup=1", "threads=1"]
    assert benchmark_main([*argv, f"json={out}"]) == 0
    report = json.loads(out.read_text())
    assert set(report["pairs"]) == {"unet", "dit"}
    for pair in report["pairs"].values():
        assert pair["params_ours"] == pair["params_theirs"]
        assert pair["img_per_s_ours"] > 0 and pair["img_per_s_theirs"] > 0
        assert pair["ratio"] == pytest.approx(pair["img_per_s_ours"] / pair["img_per_s_theirs"])


def test_param_mismatch_exits_nonzero(monkeypatch, tmp_path):
    mapping = bench.diffusers_unet_kwargs

    def one_block_more(cfg):
        return mapping(cfg) | {"layers_per_block": cfg["num_res_blocks"] + 1}

    monkeypatch.setattr(bench, "diffusers_unet_kwargs", one_block_more)
    out = tmp_path / "bench.json"
    assert benchmark_main(["only=unet", "unet_preset=tiny", "threads=1", f"json={out}"]) == 1
    entry = json.loads(out.read_text())["pairs"]["unet"]
    assert abs(entry["param_ratio"] - 1) > bench.PARAM_TOLERANCE
    assert "img_per_s_ours" not in entry  # a mismatched pair is not timed


@pytest.mark.parametrize("bad", ["rounds=0", "warmup=-1", "dtype=fp16", "only=vae", "unet_preset=no_such_model"])
def test_bad_setting_one_line_exit_2(bad, capsys):
    assert benchmark_main([bad, "threads=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err


def test_script_runs_from_anywhere(tmp_path):
    """No sys.path set-up: the script runs from another directory and prints the table."""
    args = ["only=dit", "dit_preset=tiny", "batch_size=2", "rounds=1", "steps=1", "warmup=0", "threads=1"]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "DiT / DiTTransformer2DModel" in proc.stdout
