"""scripts/benchmark_edit.py: a tiny end-to-end run on a real checkpoint; evaluation/edit_cost.py: the ratio
arithmetic."""

import json

import pytest

from evaluation import edit_cost as bench
from evaluation.timing import time_rounds
from scripts.benchmark_edit import main as benchmark_main


@pytest.mark.parametrize("kind", ["cond", "uncond"])
def test_tiny_run_reports_every_task(tmp_path, tiny_ckpts, capsys, kind):
    out = tmp_path / "edit.json"
    argv = [f"ckpt={tiny_ckpts[kind]}", "n=2", "steps=4", "rounds=1", "threads=1"]
    assert benchmark_main([*argv, "strengths=[0.5,1.0]", f"json={out}"]) == 0
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
    assert benchmark_main([f"ckpt={bad}", "rounds=1"]) == 2
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


@pytest.mark.parametrize("bad", [[], ["ckpt=x.ckpt", "n=0"], ["ckpt=x.ckpt", "labels=[0]"]])
def test_bad_setting_one_line_exit_2(bad, capsys):
    assert benchmark_main(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err


def test_time_rounds_rotates_and_reports_each_round(capsys):
    calls, seen = [], []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = time_rounds(runners, 4, progress=lambda r, t: seen.append((r, {k: len(v) for k, v in t.items()})))
    assert calls == list("abc" "bca" "cab" "abc")  # the order rotates by one each round
    assert seen == [(r, {"a": r + 1, "b": r + 1, "c": r + 1}) for r in range(4)]
    assert all(len(v) == 4 and min(v) >= 0 for v in times.values())
    time_rounds(runners, 1, labels={"a": "A"}, decimals=2)
    assert capsys.readouterr().out.startswith("  round 1/1: A 0.00 s, b 0.00 s, c 0.00 s")
