"""scripts/ddib_transfer.py on a tiny checkpoint: the report, the picture, batch = one by one, bad input."""

import json

import pytest
import torch

from evaluation.transfer import transfer_scores
from sampling.cli import build_job, compose_config
from sampling.editing import ddib_round_trip
from scripts import ddib_transfer as transfer
from scripts.train_classifier import main as train_classifier_main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache holding a (barely trained) 16x16 procedural classifier, so nothing trains for long."""
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    assert train_classifier_main(["data=procedural", "steps=3", "data.image_size=16"]) == 0


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
    job, _ = build_job(compose_config("sample", [f"ckpt={tiny_ckpts['cond']}", "task=ddib", "task.source=0",
                                                 "task.target=1", "sampler.steps=4"]))
    x0 = torch.rand(3, *job.model.image_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sides = (job.model, 0), (job.model, 1)
    with torch.inference_mode():
        moved, back = ddib_round_trip(job, x0, *sides)
        for i in range(3):
            one_moved, one_back = ddib_round_trip(job, x0[i : i + 1], *sides)
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


def test_transfer_scores():
    x0 = torch.zeros(2, 1, 2, 2)
    moved, back = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    back[1] = 0.0

    def classifier(x):  # class 1 where the mean is above 0.75, else class 0
        return torch.stack([torch.zeros(len(x)), (x.mean(dim=(1, 2, 3)) > 0.75).float()], dim=1)

    scores = transfer_scores(x0, moved, back, classifier, source=0, target=1)
    assert scores["cycle_mse"] == [0.25, 0.0] and scores["cycle_mse_mean"] == pytest.approx(0.125)
    assert scores["translation_mse_mean"] == 1.0
    assert (scores["input_in_source"], scores["translated_in_target"], scores["cycle_in_source"]) == (1.0, 1.0, 1.0)
