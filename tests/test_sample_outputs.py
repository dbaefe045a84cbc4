"""sample.py's output folder: complete or absent, never mixed with another run's, never half-written."""

import errno
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sample
import sampling.io
from sampling.generate import save_grid
from sampling.io import to_pil
from tests.runner import ROOT

FAST = ["n=3", "batch_size=3", "sampler.steps=2"]
FILES = {"grid.png", "config.yaml", "sample_0000.png", "sample_0001.png", "sample_0002.png"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _leftovers(parent: Path) -> list[str]:
    """Temp folders (staging or moved-aside) that a run left beside its output."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def _one_error_line(capsys) -> str:
    """The one error line; a failure at the final write may follow the sampling progress bar."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


def test_second_run_into_the_same_out_is_refused_and_the_first_is_intact(tmp_path, tiny_ckpts, capsys):
    out = tmp_path / "out"
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, "seed=0", f"out={out}"]) == 0
    first = _snapshot(out)
    assert set(first) == FILES
    capsys.readouterr()
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, "seed=1", f"out={out}"]) == 2
    line = _one_error_line(capsys)
    assert "not empty" in line and str(out) in line
    assert _snapshot(out) == first
    # the same refusal when the other run gets there after this one started (the check at the final rename)
    outputs = {"config.yaml": "x: 1\n", "late.txt": "from a second run\n"}
    with pytest.raises(sampling.io.OutputError, match="not empty"):
        sampling.io.write_outputs(outputs, out)
    assert _snapshot(out) == first and _leftovers(tmp_path) == []


def test_overwrite_replaces_a_finished_output_folder(tmp_path, tiny_ckpts, capsys):
    out = tmp_path / "out"
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, "seed=0", f"out={out}"]) == 0
    first = _snapshot(out)
    (out / "stale.txt").write_text("from the old run")
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, "seed=1", f"out={out}", "overwrite=true"]) == 0
    second = _snapshot(out)
    assert set(second) == FILES  # the old folder is gone, stale file and all
    assert second["sample_0000.png"] != first["sample_0000.png"]
    assert _leftovers(tmp_path) == []
    # a folder that is not an earlier output is never replaced, whatever overwrite says
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, f"out={other}", "overwrite=true"]) == 2
    assert "config.yaml" in _one_error_line(capsys)
    assert (other / "notes.txt").read_text() == "keep me"


def test_overwrite_keeps_the_old_folder_when_the_new_write_fails(tmp_path, tiny_ckpts, monkeypatch):
    out = tmp_path / "out"
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, "seed=0", f"out={out}"]) == 0
    first = _snapshot(out)
    real, count = sampling.io._write_one, [0]

    def fail_on_third(name, obj, path):
        count[0] += 1
        if count[0] == 3:
            raise RuntimeError("injected failure while writing")
        real(name, obj, path)

    monkeypatch.setattr(sampling.io, "_write_one", fail_on_third)
    with pytest.raises(RuntimeError, match="injected"):
        sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, "seed=1", f"out={out}", "overwrite=true"])
    assert _snapshot(out) == first and _leftovers(tmp_path) == []


def test_default_names_are_unique_within_one_second(tmp_path, tiny_ckpts, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = Path("runs/sample/2024-01-01/12-00-00")
    monkeypatch.setattr(sample, "default_out_dir", lambda: base)  # both runs start in the same second
    for seed in (0, 1, 2):
        assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, f"seed={seed}"]) == 0
    folders = sorted(p.name for p in base.parent.iterdir())
    assert folders == ["12-00-00", "12-00-00_1", "12-00-00_2"]
    pictures = [(base.parent / f / "sample_0000.png").read_bytes() for f in folders]
    assert all(set(_snapshot(base.parent / f)) == FILES for f in folders)
    assert len(set(pictures)) == 3  # each run's own images, none mixed


KILL_DURING_WRITE = """
import os, signal, sys
sys.path.insert(0, {root!r})
import sample, sampling.io
real, count = sampling.io._write_one, [0]
def write_then_die(name, obj, path):
    real(name, obj, path)
    count[0] += 1
    if count[0] == {after}:
        os.kill(os.getpid(), signal.SIGKILL)
sampling.io._write_one = write_then_die
sample.main({args!r})
"""


@pytest.mark.parametrize("after", [1, 4])
def test_a_kill_while_writing_leaves_no_output_folder(tmp_path, tiny_ckpts, after):
    out = tmp_path / "out"
    args = [f"ckpt={tiny_ckpts['cond']}", *FAST, f"out={out}"]
    code = KILL_DURING_WRITE.format(root=str(ROOT), after=after, args=args)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists()  # before the fix: `after` files in out, and exit... none (killed)
    # the folder is free for the next run (the orphaned temp folder is hidden beside it)
    assert sample.main(args) == 0 and set(_snapshot(out)) == FILES


def test_out_that_is_a_file_and_hydra_overrides_get_one_line(tmp_path, tiny_ckpts, capsys):
    target = tmp_path / "report.txt"
    target.write_text("precious")
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, f"out={target}"]) == 2
    assert "is a file" in _one_error_line(capsys) and target.read_text() == "precious"
    for override in (f"hydra.run.dir={tmp_path / 'h'}", "+hydra.job.chdir=true"):
        assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, override]) == 2
        assert "use out=" in _one_error_line(capsys)
    assert not (tmp_path / "h").exists()


def test_full_disk_is_one_line_with_the_free_space_and_leaves_nothing(tmp_path, tiny_ckpts, capsys, monkeypatch):
    out = tmp_path / "out"
    real, count = sampling.io._write_one, [0]

    def full_after_two(name, obj, path):
        count[0] += 1
        if count[0] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(name, obj, path)

    monkeypatch.setattr(sampling.io, "_write_one", full_after_two)
    assert sample.main([f"ckpt={tiny_ckpts['cond']}", *FAST, f"out={out}"]) == 2
    line = _one_error_line(capsys)
    assert str(out) in line and "no space left" in line and "MiB free" in line
    assert not out.exists() and _leftovers(tmp_path) == []


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


@pytest.mark.parametrize("options, needle", [("size=200k", "no space left on the device (0.0 MiB free)"),
                                             ("ro,size=64k", "Read-only")])
def test_real_full_or_read_only_disk(tmp_path, tiny_ckpts, capsys, options, needle):
    mnt = tmp_path / f"mnt_{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(mnt, options):
        pytest.skip(f"cannot mount a tmpfs here (needs root): the monkeypatched test covers {needle}")
    try:
        out = mnt / "out"
        # 64 samples: each PNG takes one 4 KiB page of the tmpfs, more than 200 KiB in all
        args = [f"ckpt={tiny_ckpts['cond']}", "n=64", "batch_size=64", "sampler.steps=1", f"out={out}"]
        assert sample.main(args) == 2
        line = _one_error_line(capsys)
        assert str(out) in line and needle in line, line
        assert not out.exists() and list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_pngs_round_to_the_nearest_level_like_the_grid(tmp_path):
    x = torch.full((3, 2, 2), 10.6 / 127.5 - 1)  # (x + 1) * 127.5 = 10.6: rounds to 11, truncation gave 10
    assert np.asarray(to_pil(x)).max() == 11 and np.asarray(to_pil(x)).min() == 11
    assert np.asarray(to_pil(torch.full((1, 2, 2), 1.0))).tolist() == [[255, 255], [255, 255]]
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    save_grid(images, tmp_path / "grid.png", nrow=1)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))  # a grid of one image has no padding
    assert np.array_equal(np.asarray(to_pil(images[0])), grid)


def test_atomic_outputs_get_the_modes_of_plain_writes(tmp_path):
    from sampling.atomic import atomic_write_text, publish_dir, staging_dir

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        staging = staging_dir(tmp_path / "folder")
        (staging / "f.txt").write_text("y")
        out = publish_dir(staging, tmp_path / "folder")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644 and out.stat().st_mode & 0o777 == 0o755
