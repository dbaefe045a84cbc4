"""Quality checks on a model really trained on the procedural shapes (slow: ~15 min on 2 CPU cores).

Set DIFFLAB_SLOW_CKPT to a procedural checkpoint trained with label dropout (e.g. `make train`'s) to skip the
training step. Run with `make test-slow` or `pytest -m slow tests/test_quality_slow.py`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sample
from tests.runner import ROOT, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes_ckpt(tmp_path_factory) -> Path:
    if os.environ.get("DIFFLAB_SLOW_CKPT"):
        return Path(os.environ["DIFFLAB_SLOW_CKPT"])
    run_dir = tmp_path_factory.mktemp("shapes")
    proc = run([f"hydra.run.dir={run_dir}", "+trainer.enable_progress_bar=false", "callbacks.preview.every_n_steps=0"],
               timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"


def _accuracy(ckpt: Path, guidance: float, out: Path) -> float:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"ckpt={ckpt}", "data=procedural", "n=128",
         "metrics=acc", f"guidance={guidance}", "sampler.steps=20", f"out={out}"],
        capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())["class_accuracy"]


def test_class_accuracy_rises_with_guidance(shapes_ckpt, tmp_path):
    acc = {g: _accuracy(shapes_ckpt, g, tmp_path / f"g{g}.json") for g in (1.0, 3.0)}
    assert acc[3.0] > acc[1.0], acc


def test_diffedit_mask_overlaps_the_true_shape(shapes_ckpt, tmp_path):
    from data.procedural import ProceduralShapes

    shapes = ProceduralShapes(size=8)
    ious = []
    for i in range(8):
        src = shapes.sample(i)["label"]
        out = tmp_path / str(i)
        args = [f"ckpt={shapes_ckpt}", "task=diffedit", f"image=procedural:{i}", f"task.source={src}",
                f"task.target={(src + 1) % 4}", "sampler.steps=20", f"out={out}"]
        assert sample.main(args) == 0
        ious.append(json.loads((out / "diffedit.json").read_text())["iou_with_true_mask"])
    assert sum(ious) / len(ious) > 0.3, ious
