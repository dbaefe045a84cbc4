"""The studio's runs: a checked form becomes sample.py's config and job (sampling/cli.py, the same code as
``python sample.py``), queued, and run one at a time by the compute loop with the job's step observer driving the
progress bar, the live preview of x0_hat and the cancel button. Each run has its own id and folder, so two browser
tabs never see each other's results: the second waits in the queue, and says so.

``difflab-studio`` runs the compute loop on the main thread and the web server on another, and no tensor is
computed anywhere else (the sample pictures are made at start, the preview is made by the step observer). On the
CPU that matters: once a second long-lived thread had run a PyTorch op, the 32x32 U-Net ran 2x slower per step
here (conv2d 2.6x, group_norm 7x; OpenMP with more threads than cores; scripts/benchmark_studio.py).
"""

from __future__ import annotations

import io
import queue
import shlex
import shutil
import threading
import time
import traceback
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sampling import cli
from sampling.checkpoint import CheckpointError, LoadedModel
from sampling.checks import InputError
from sampling.editing import diffedit_conditions, diffedit_mask
from sampling.io import OutputError, load_input_image, to_pil, write_outputs
from studio.forms import IMAGE_FILE, MASK_FILE, MASK_TAB, Form

SHOWN = {  # the outputs a tab shows first, in order (every file is listed for download)
    "generate": ("grid.png",), "sdedit": ("sdedit.png",), "inpaint": ("inpaint.png",),
    "outpaint": ("outpaint.png",), "diffedit": ("diffedit.png", "edited.png"), "zoom": ("zoom.gif", "zoom.png"),
    "anagram": ("views.png", "anagram.gif"), "hybrid": ("hybrid.png",), MASK_TAB: ("mask.png", "mask_soft.png"),
}
SAMPLES = 32  # sample pictures offered by the page (procedural:0 .. procedural:31)
# one composition at a time: Hydra's compose() keeps global state
_COMPOSE = threading.Lock()


def preview_grid(x: torch.Tensor, nrow: int = 8) -> np.ndarray:
    """A batch (B, C, H, W) in [-1, 1] as one 8-bit grid (rows of ``nrow``, 1-pixel white gaps), (H', W', C)."""
    b, c, h, w = x.shape
    cols, rows = min(b, nrow), -(-b // nrow)
    levels = ((x.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().to(torch.uint8).cpu().numpy()
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
    for k in range(b):
        r, q = divmod(k, nrow)
        grid[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = levels[k].transpose(1, 2, 0)
    return grid


class Cancelled(Exception):
    """Raised by the step observer once the run's cancel button was pressed."""


@dataclass
class Run:
    """One press of a tab's run button: its state, progress over the steps, preview and outputs."""

    id: str
    tab: str
    folder: Path
    command: str  # the sample.py command line that reproduces it (in its folder)
    passes: int  # sampling passes expected (the progress bar's length)
    state: str = "queued"  # queued | running | done | error | cancelled
    message: str | None = None  # the error, for state error
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    passes_done: int = 0
    step: int = 0  # of the current pass
    steps: int = 0
    version: int = 0  # bumped at every change; the page's long poll waits for a newer one
    seconds: float | None = None  # the run's own time, from start to outputs written
    preview: np.ndarray | None = None  # x0_hat of the last step, as an 8-bit grid (H, W, C)
    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def update(self, **values) -> None:
        with self.changed:
            for k, v in values.items():
                setattr(self, k, v)
            self.version += 1
            self.changed.notify_all()

    def observe(self, i: int, n: int, x_t: torch.Tensor, x0_hat: torch.Tensor) -> None:
        """The job's observer: step i of n of a pass; stops the run (between steps) once cancelled."""
        if self.cancel.is_set():
            raise Cancelled
        done = self.passes_done + (1 if i + 1 >= n else 0)
        self.update(step=i + 1, steps=n, passes_done=done, preview=preview_grid(x0_hat[:16]))

    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        if self.passes <= 0 or self.steps == 0:
            return 0.0
        current = 0 if self.step >= self.steps else self.step / self.steps
        return min(1.0, (self.passes_done + current) / self.passes)

    def status(self) -> dict:
        with self.changed:
            return {"id": self.id, "tab": self.tab, "state": self.state, "message": self.message,
                    "progress": round(self.progress(), 4), "step": self.step, "steps": self.steps,
                    "pass": min(self.passes_done + 1, max(self.passes, 1)), "passes": self.passes,
                    "version": self.version, "notes": self.notes, "files": self.files, "shown": self.shown,
                    "preview": self.preview is not None, "command": self.command, "seconds": self.seconds}

    def ended(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    def wait(self, predicate, timeout: float) -> None:
        """Block until ``predicate()`` holds after a change of the run, or ``timeout`` seconds."""
        with self.changed:
            self.changed.wait_for(predicate, timeout=timeout)

    def preview_png(self) -> bytes | None:
        grid = self.preview
        if grid is None:
            return None
        img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
        buf = io.BytesIO()
        img.resize((img.width * 4, img.height * 4), Image.NEAREST).save(buf, format="PNG")
        return buf.getvalue()

    def bundle(self) -> bytes:
        """Every file of the run in one zip: unpacked, its config.yaml's command reproduces the run."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name in self.files:
                z.write(self.folder / name, f"{self.id}/{name}")
        return buf.getvalue()


class Studio:
    """The model, loaded once, and the runs made with it. ``root``: where each run gets a folder."""

    def __init__(self, model: LoadedModel, ckpt: str, root: Path, device: str = "cpu", weights: str = "ema",
                 keep: int = 200, compute_thread: bool = True):
        """``compute_thread``: run the compute loop on a thread of its own (in-process use, tests); False: the
        caller runs ``compute()`` itself, on the main thread (difflab-studio)."""
        self.model, self.ckpt, self.root = model, str(Path(ckpt).resolve()), Path(root)
        self.base = [f"ckpt={self.ckpt}", f"weights={weights}", f"device={device}"]
        self.queue: queue.Queue = queue.Queue()
        self.runs: dict[str, Run] = {}
        self.keep = keep
        self.lock = threading.Lock()
        self.samples = self._sample_images(SAMPLES)  # here, on the thread that made the studio
        if compute_thread:
            threading.Thread(target=self.compute, name="studio-compute", daemon=True).start()

    def compute(self, running=lambda: True) -> None:
        """Run the queued runs one at a time, while ``running()``."""
        while running():
            try:
                work = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._work(*work)

    def compose(self, overrides: list[str], inputs: Path | None = None):
        """sample.py's config for ``overrides`` (the studio's base first; upload names -> files in ``inputs``),
        checked and built into (cfg, job, task) by sampling/cli.py as for the command line."""
        def located(o: str) -> str:
            key, _, value = o.partition("=")
            return f"{key}={inputs / value}" if inputs is not None and value in (IMAGE_FILE, MASK_FILE) else o

        with _COMPOSE:
            cfg = cli.compose_config("sample", [*self.base, *(located(o) for o in overrides)])
            job, task = cli.build_job(cfg, self.model)
        return cfg, job, task

    def submit(self, form: Form) -> Run:
        """Check ``form`` as sample.py would (InputError at once) and queue its run."""
        run_id = uuid.uuid4().hex[:12]
        folder = self.root / run_id
        inputs = self.root / f".{run_id}.inputs"
        inputs.mkdir(parents=True)
        try:
            for name, img in form.uploads.items():
                img.save(inputs / name)
            cfg, job, task = self.compose(form.overrides, inputs)
        except BaseException:
            shutil.rmtree(inputs, ignore_errors=True)
            raise
        command = shlex.join(["python", "sample.py", *self.base, *form.overrides])
        run = Run(run_id, form.tab, folder, command, form.passes)
        with self.lock:
            self.runs[run_id] = run
            for old in list(self.runs)[: max(0, len(self.runs) - self.keep)]:
                self.runs.pop(old)
        self.queue.put((run, form, cfg, job, task, inputs))
        return run

    def _work(self, run: Run, form: Form, cfg, job, task, inputs: Path) -> None:
        start = time.perf_counter()
        run.update(state="running")
        job.observer = run.observe
        try:
            if run.cancel.is_set():  # cancelled while it waited in the queue
                raise Cancelled
            if form.tab == MASK_TAB:
                outputs = self._mask_only(job, cfg)
            else:
                outputs = task(job)
            header = (f"made by difflab-studio (run {run.id}, tab {form.tab}); to reproduce it, in the folder that "
                      f"holds this file and its inputs:\n  {run.command} out=rerun")
            names = {"image": IMAGE_FILE, "mask": MASK_FILE}
            outputs["config.yaml"] = cli.config_yaml(
                cfg, header, {k: v for k, v in names.items() if v in form.uploads})
            for name, img in form.uploads.items():
                outputs[name] = img
            write_outputs(outputs, run.folder)
            files = sorted(p.name for p in run.folder.iterdir())
            shown = [f for f in SHOWN.get(form.tab, ()) if f in files]
            run.update(state="done", files=files, shown=shown, notes=list(job.notes),
                       seconds=time.perf_counter() - start)
        except Cancelled:
            run.update(state="cancelled", message="cancelled between steps")
        except (InputError, CheckpointError, OutputError) as e:
            run.update(state="error", message=str(e))
        except Exception as e:  # a bug: the page shows it, the server goes on
            traceback.print_exc()
            run.update(state="error", message=f"internal error: {type(e).__name__}: {e}")
        finally:
            shutil.rmtree(inputs, ignore_errors=True)

    @staticmethod
    def _mask_only(job, cfg) -> dict:
        """The DiffEdit tab's first step: the mask sampling.editing.diffedit computes, for the user to correct."""
        p = cli.to_dict(cfg.task)
        x0, msg, _ = load_input_image(cfg.image, job.model)
        job.notes.append(msg)
        source, target = diffedit_conditions(job, p["source"], p["target"], p["query"], p["reference"])
        soft, mask = diffedit_mask(job, x0, source, target, mask_draws=p["mask_draws"],
                                   mask_strength=p["mask_strength"], mask_clamp_ratio=p["mask_clamp_ratio"],
                                   mask_threshold=p["mask_threshold"])
        job.notes.append(f"mask: {mask.mean().item():.1%} of the image")
        return {"mask.png": to_pil(mask * 2 - 1), "mask_soft.png": to_pil(soft * 2 - 1)}

    def get(self, run_id: str) -> Run | None:
        with self.lock:
            return self.runs.get(run_id)

    def _sample_images(self, count: int) -> list[bytes]:
        """The page's sample pictures (procedural shapes at the model's size and channels), as PNG."""
        out = []
        for index in range(count):
            x, _, _ = load_input_image(f"procedural:{index}", self.model)
            buf = io.BytesIO()
            to_pil(x).save(buf, format="PNG")
            out.append(buf.getvalue())
        return out
