"""scripts/benchmark_edit.py: a tiny end-to-end run on a real checkpoint, and the ratio arithmetic."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_edit.py"
_spec = importlib.util.spec_from_file_location("benchmark_edit", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("kind", ["cond", "uncond"])
def test_tiny_run_reports_every_task(tmp_path, tiny_ckpts, capsys, kind):
    out = tmp_path / "edit.json"
    argv = ["--ckpt", str(tiny_ckpts[kind]), "--n", "2", "--steps", "4", "--rounds", "1", "--threads", "1"]
    assert bench.main([*argv, "--strengths", "0.5", "1.0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    expected = {"generate", "inpaint", "sdedit s=0.5", "sdedit s=1"}
    if kind == "cond":
        expected |= {"generate n=1", "diffedit", "diffedit mask"}
        assert "diffedit / generate n=1" in text
    else:  # DiffEdit needs labels: left out on an unconditional checkpoint
        assert "diffedit" not in text
    assert set(report["times"]) == expected
    assert "inpaint / generate" in text and "sdedit / generate" in text
    ratios = report["summary"]["ratio"]  # "diffedit without mask" is a difference: tiny timings can make it < 0
    assert all(r > 0 for name, r in ratios.items() if name != "diffedit without mask")


def test_bad_checkpoint_exits_2(tmp_path, capsys):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert bench.main(["--ckpt", str(bad), "--rounds", "1"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_summarise_paired_ratios():
    times = {
        "generate": [1.0, 2.0, 1.0],
        "inpaint": [1.05, 2.0, 1.2],
        "sdedit s=0.5": [0.5, 1.1, 0.6],
        "generate n=1": [0.2, 0.2, 0.4],
        "diffedit": [0.3, 0.32, 0.5],
        "diffedit mask": [0.1, 0.1, 0.1],
    }
    s = bench.summarise(times, [0.5])
    assert s["seconds"]["inpaint"] == pytest.approx(1.2)  # median of 1.05, 2.0, 1.2
    assert s["ratio"]["inpaint"] == pytest.approx(1.05)  # median of 1.05, 1.0, 1.2
    assert s["ratio"]["sdedit s=0.5"] == pytest.approx(0.55)  # median of 0.5, 0.55, 0.6
    assert s["ratio"]["diffedit"] == pytest.approx(1.5)  # median of 1.5, 1.6, 1.25
    assert s["ratio"]["diffedit mask"] == pytest.approx(0.5)  # median of 0.5, 0.5, 0.25
    assert s["ratio"]["diffedit without mask"] == pytest.approx(1.0)  # median of 1.0, 1.1, 1.0
