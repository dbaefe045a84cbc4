"""Run the real entry points (train.py, scripts) in a subprocess, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A model and data small enough for a few steps per second on 2 CPU cores.
TINY = [
    "model=unet_tiny",
    "model.cond=label",  # the tests of label models; text models add model.cond=text after this
    "data.batch_size=8",
    "data.train.size=64",
    "data.val.size=16",
    "data.image_size=16",
    "trainer.limit_val_batches=1",
    "trainer.val_check_interval=4",
    "trainer.log_every_n_steps=1",
    "callbacks.preview.every_n_steps=0",
    "callbacks.preview.n=4",
    "callbacks.preview.steps=2",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


def run(args: list[str], script: str = "train.py", timeout: int = 600, env: dict | None = None):
    """Run ``python <script> <args>`` from the repo root; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def train(run_dir: Path, *overrides: str, check: bool = True, env: dict | None = None):
    """train.py with the TINY settings and ``overrides`` into ``run_dir``."""
    proc = run([*TINY, f"hydra.run.dir={run_dir}", *overrides], env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def start_train(run_dir: Path, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    """train.py with the TINY settings in the background (to signal or kill it); read its output with communicate()."""
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *TINY, f"hydra.run.dir={run_dir}", *overrides],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll until ``path`` exists; AssertionError if ``proc`` ends first or the timeout passes."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"train.py ended ({proc.returncode}) before {path} appeared:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)
