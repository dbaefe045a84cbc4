"""evaluation/sweep.py and scripts/sweep_report.py on a fake Hydra multirun directory: exact table values, the
plot, and exit codes."""

import csv
import json
from pathlib import Path

import pytest

from evaluation import sweep as sweep_report
from scripts.sweep_report import main as report_main

# Run 0 (eps): sparse Lightning-style rows, img/s logged twice.
RUN0_CSV = """epoch,step,train/img_per_s,train/loss,val/loss
0,9,,1.0,
0,14,,,0.9
0,19,,0.75,
0,29,16.0,0.5,
0,34,,,0.4
0,39,,0.25,
0,49,,0.125,
0,59,18.0,0.0625,
0,59,,,0.45
"""
RUN0_TRAIN = [1.0, 0.75, 0.5, 0.25, 0.125, 0.0625]
# Run 1 (v): a different column set (no img/s), more train values than the smoothing window.
RUN1_CSV = """epoch,step,train/loss,val/loss
0,9,2.0,
0,19,1.5,
0,24,,1.5
0,29,1.0,
0,39,0.5,
0,44,,0.3
0,49,0.25,
0,59,0.25,
0,69,0.125,
0,69,,0.375
"""
RUN1_TRAIN = [2.0, 1.5, 1.0, 0.5, 0.25, 0.25, 0.125]

EXPECTED_COLUMNS = [
    "run",
    "diffusion.prediction",
    "status",
    "final_train_loss",
    "final_val_loss",
    "best_val_loss",
    "steps",
    "mean_img_per_s",
    "fd_classifier",
    "n",
    "sampler",
]


def _make_run(sweep: Path, num: int, prediction: str, metrics: str | None) -> Path:
    run = sweep / str(num)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        f"- diffusion.prediction={prediction}\n- trainer.max_steps=10\n"
    )
    (run / "config.yaml").write_text(f"diffusion:\n  prediction: {prediction}\ntrainer:\n  max_steps: 10\n")
    if metrics is not None:
        (run / "metrics.csv").write_text(metrics)
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "2024-01-01_00-00-00"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    (sweep / "not_a_run").mkdir()  # ignored: not a numbered run directory
    _make_run(sweep, 0, "eps", RUN0_CSV)
    run1 = _make_run(sweep, 1, "v", RUN1_CSV)
    _make_run(sweep, 2, "x0", None)  # failed before logging anything
    (run1 / "checkpoints").mkdir()
    (run1 / "checkpoints" / "best.eval.json").write_text(json.dumps({"fd_classifier": 99.0, "n": 10}))
    (run1 / "checkpoints" / "last.eval.json").write_text(
        json.dumps({"fd_classifier": 12.5, "sampler": "ddim", "per_class": [1, 2], "extra": {"a": 1}})
    )
    return sweep


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_report_values(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([f"sweep_dir={sweep}"]) == 0
    columns, rows = _read_csv(sweep / "report.csv")
    assert columns == EXPECTED_COLUMNS
    assert [r["run"] for r in rows] == ["0", "1", "2"]
    assert [r["diffusion.prediction"] for r in rows] == ["eps", "v", "x0"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed/no metrics"]

    r0, r1, r2 = rows
    assert float(r0["final_train_loss"]) == sum(RUN0_TRAIN[-5:]) / 5 == 0.3375
    assert float(r1["final_train_loss"]) == sum(RUN1_TRAIN[-5:]) / 5 == 0.425
    assert (float(r0["final_val_loss"]), float(r0["best_val_loss"])) == (0.45, 0.4)
    assert (float(r1["final_val_loss"]), float(r1["best_val_loss"])) == (0.375, 0.3)
    assert (r0["steps"], r1["steps"]) == ("59", "69")
    assert float(r0["mean_img_per_s"]) == 17.0
    assert r1["mean_img_per_s"] == ""
    assert all(r2[c] == "" for c in EXPECTED_COLUMNS[3:])

    # eval JSONs: later sorted file wins per key, earlier-only keys kept, non-scalars dropped
    assert (r1["fd_classifier"], r1["n"], r1["sampler"]) == ("12.5", "10", "ddim")
    assert all(r[c] == "" for r in (r0, r2) for c in ("fd_classifier", "n", "sampler"))

    md = (sweep / "report.md").read_text()
    assert "common overrides: trainer.max_steps=10" in md
    assert "trainer.max_steps" not in md.split("\n", 1)[1]  # only in the line above the table
    assert "| run | diffusion.prediction | status |" in md
    assert "| 0 | eps | ok | 0.3375 | 0.45 | 0.4 | 59 | 17 |  |  |  |" in md
    assert "| 2 | x0 | failed/no metrics |" in md
    assert "mean of the last 5 logged train/loss values" in md

    png = sweep / "loss_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = capsys.readouterr().out
    assert "| 1 | v | ok | 0.425 | 0.375 | 0.3 | 69 |  | 12.5 | 10 | ddim |" in out
    for name in ("report.md", "report.csv", "loss_curves.png"):
        assert f"wrote {sweep / name}" in out


def test_out_dir(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    assert report_main([f"sweep_dir={sweep}", f"out={out}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["loss_curves.png", "report.csv", "report.md"]
    assert not (sweep / "report.csv").exists()


def test_collect_runs(sweep: Path) -> None:
    runs = sweep_report.collect_runs(sweep)
    assert [r["run"] for r in runs] == [0, 1, 2]
    assert runs[0]["overrides"] == {"diffusion.prediction": "eps", "trainer.max_steps": "10"}
    assert runs[0]["val"] == [(14, 0.9), (34, 0.4), (59, 0.45)]
    assert runs[2]["train"] == [] and runs[2]["steps"] is None


def test_running_mean() -> None:
    assert sweep_report._running_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert sweep_report._running_mean([1.0, 3.0], 1) == [1.0, 3.0]


def test_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert report_main([f"sweep_dir={missing}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [f"sweep_report: error: no such sweep directory: {missing}"]


def test_no_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "multirun.yaml").write_text("{}\n")
    assert report_main([f"sweep_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no run sub-directories" in err
    assert not (tmp_path / "report.md").exists()


def test_no_sweep_dir_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "sweep_dir" in err and err.count("\n") == 1, err
