"""scripts/ddib_transfer.py on a tiny checkpoint: the report, the picture, batch = one by one, bad input."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sample import compose_config, make_run
from sampling.editing import ddib_round_trip

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


transfer = _load("ddib_transfer")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache holding a (barely trained) 16x16 procedural classifier, so nothing trains for long."""
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    assert _load("train_classifier").main(["data=procedural", "steps=3", "data.image_size=16"]) == 0


def test_report_and_picture(tmp_path, tiny_ckpts, cache, capsys):
    out = tmp_path / "out"
    args = [f"ckpt={tiny_ckpts['cond']}", "data=procedural", "source=0", "target=1", "k=3", "sampler.steps=3",
            f"out={out}"]
    assert transfer.main(args) == 0
    report = json.loads((out / "ddib_transfer.json").read_text())
    assert report["k"] == 3 and len(report["cycle_mse"]) == 3 and report["cycle_mse_mean"] > 0
    for key in ("input_in_source", "translated_in_target", "cycle_in_source"):
        assert 0.0 <= report[key] <= 1.0
    assert "cycle_mse_mean" in capsys.readouterr().out
    assert (out / "ddib_transfer.png").stat().st_size > 0


def test_batched_round_trip_equals_one_by_one(tiny_ckpts):
    run = make_run(compose_config([f"ckpt={tiny_ckpts['cond']}", "task=ddib", "source=0", "target=1",
                                   "sampler.steps=4"]))
    x0 = torch.rand(3, *run.model.image_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sides = (run.model, 0), (run.model, 1)
    with torch.inference_mode():
        moved, back = ddib_round_trip(run, x0, *sides)
        for i in range(3):
            one_moved, one_back = ddib_round_trip(run, x0[i : i + 1], *sides)
            torch.testing.assert_close(one_moved[0], moved[i], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(one_back[0], back[i], rtol=1e-4, atol=1e-4)
    assert (moved - x0).abs().max() > 1e-3  # the translation did something


@pytest.mark.parametrize("bad", [
    ["data=procedural", "source=0", "target=1", "k=0"],  # k not positive
    ["data=procedural", "source=0", "target=9"],  # a label outside the model's 4 classes
    ["source=0", "target=1"],  # no data=
    ["data=no_such_data", "source=0", "target=1"],  # an unknown dataset config
])
def test_bad_input_one_line_exit_2(tmp_path, tiny_ckpts, capsys, bad):
    out = tmp_path / "o"
    assert transfer.main([f"ckpt={tiny_ckpts['cond']}", "sampler.steps=2", f"out={out}", *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert not out.exists()
