"""scripts/evaluate.py's report: written atomically; a full disk is one error line and the old report stays."""

import errno
import json
import os
from pathlib import Path

import scripts.evaluate as evaluate_script


def test_report_written_atomically_and_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"")  # never opened: the evaluation itself is replaced below
    report = tmp_path / "last.eval.json"
    monkeypatch.setattr(evaluate_script, "score", lambda *a: {"fd_classifier": 1.5, "n": 4})
    assert evaluate_script.main([f"ckpt={ckpt}", "n=4", "metrics=fd"]) == 0
    assert json.loads(report.read_text()) == {"fd_classifier": 1.5, "n": 4}
    capsys.readouterr()

    real_write_text = Path.write_text

    def half_then_full(self, text, *args, **kwargs):  # the disk fills up half way through the report
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(evaluate_script, "score", lambda *a: {"fd_classifier": 2.5, "n": 4})
    monkeypatch.setattr(Path, "write_text", half_then_full)
    assert evaluate_script.main([f"ckpt={ckpt}", "n=4", "metrics=fd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {report}: no space left") and "MiB free" in err[0], err
    monkeypatch.undo()
    assert json.loads(report.read_text()) == {"fd_classifier": 1.5, "n": 4}  # the old report, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.eval.json"]  # no temp file left
