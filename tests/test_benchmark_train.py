"""scripts/benchmark_train.py: the diffusers twins have our parameter counts, and a tiny run reports figures."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_train.py"
spec = importlib.util.spec_from_file_location("benchmark_train", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


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
    argv = ["--unet-preset", "tiny", "--dit-preset", "tiny", "--batch-size", "4", "--rounds", "1", "--steps", "1"]
    argv += ["--warmup", "1", "--threads", "1", "--json", str(out)]
    assert bench.main(argv) == 0
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
    assert bench.main(["--only", "unet", "--unet-preset", "tiny", "--threads", "1", "--json", str(out)]) == 1
    entry = json.loads(out.read_text())["pairs"]["unet"]
    assert abs(entry["param_ratio"] - 1) > bench.PARAM_TOLERANCE
    assert "img_per_s_ours" not in entry  # a mismatched pair is not timed
