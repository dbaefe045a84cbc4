"""The console entry points (pyproject [project.scripts]) run from any folder, as the README's commands do."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("tool", ["difflab-sample", "difflab-eval"])
def test_tools_start_anywhere_and_refuse_a_missing_checkpoint(tool, tmp_path):
    proc = subprocess.run([str(BIN / tool), f"ckpt={tmp_path / 'none.ckpt'}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'none.ckpt'}: no such "
                                                                         "checkpoint file"]


def test_train_entry_point_finds_its_configs_from_another_folder(tmp_path):
    proc = subprocess.run([str(BIN / "difflab-train"), "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "_target_: models.unet.UNet" in proc.stdout, proc.stderr[-500:]
