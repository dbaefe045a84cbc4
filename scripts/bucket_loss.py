"""Denoising loss per bucket of timesteps for one or more checkpoints, on the same held-out images and noise.

    .venv/bin/python scripts/bucket_loss.py ckpts=[runs/base/checkpoints/last.ckpt,runs/ensemble.ckpt] \
        names=[base,experts] [n=256 buckets=10 draws=2 seed=0 out=bucket_loss.json plot=bucket_loss.png]

The images are the validation split of the first checkpoint's data (evenly spaced), each model conditioned on their
labels (or captions) when it takes them. Per bucket: each model's own objective (unweighted MSE on its target) and
the MSE of its x0 estimate (comparable across objectives and schedules). Prints a markdown table; writes JSON and, with
plot=, a PNG of the objective per bucket and its change against the first model. Exit 2 with one line for bad
input (super-resolution stages are refused).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data import DatasetError
from evaluation.bucket_loss import bucket_losses
from evaluation.data_config import held_out
from sampling.atomic import OutputError, atomic_write, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError, check_number
from sampling.cli import dotlist_options

DEFAULTS = {"ckpts": None, "names": None, "n": 256, "buckets": 10, "draws": 2, "seed": 0, "out": None, "plot": None}


def options(argv: list[str]) -> dict:
    opts = dotlist_options(argv, DEFAULTS)
    ckpts = opts["ckpts"]
    if not isinstance(ckpts, list) or not ckpts:
        raise InputError("ckpts=[a.ckpt,...] is required")
    names = opts["names"] or [Path(c).parent.parent.name or Path(c).stem for c in ckpts]
    if not isinstance(names, list) or len(names) != len(ckpts):
        raise InputError(f"names= needs one name per checkpoint ({len(ckpts)})")
    opts["names"] = [str(n) for n in names]
    check_number("n", opts["n"], 1, integer=True)
    check_number("buckets", opts["buckets"], 1, integer=True)
    check_number("draws", opts["draws"], 1, integer=True)
    return opts


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    first = next(iter(report["models"].values()))
    for name, rows in report["models"].items():
        mid = [(r["t_lo"] + r["t_hi"] - 1) / 2 for r in rows]
        axes[0].plot(mid, [r["loss"] for r in rows], marker="o", label=name)
        axes[1].plot(mid, [100 * (r["loss"] / f["loss"] - 1) for r, f in zip(rows, first)], marker="o", label=name)
    first_name = next(iter(report["models"]))
    axes[0].set(xlabel="timestep t", ylabel="loss on the model's target", title="objective per bucket")
    axes[1].set(xlabel="timestep t", ylabel=f"% change against {first_name}", title="relative to the first model")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[0].legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = options(argv)
        models = [load_model(c) for c in opts["ckpts"]]
        for path, m in zip(opts["ckpts"], models):
            if m.low_res is not None:
                raise InputError(f"{path}: bucket_loss scores base models, not super-resolution stages")
            if m.image_shape != models[0].image_shape:
                raise InputError(f"{path}: makes {m.image_shape} images, {opts['ckpts'][0]} {models[0].image_shape}")
        images, values = held_out(models[0], opts["n"])
        report = {"n": len(images), "buckets": opts["buckets"], "draws": opts["draws"], "seed": opts["seed"],
                  "ckpts": dict(zip(opts["names"], opts["ckpts"])), "models": {}}
        for name, m in zip(opts["names"], models):
            own = values if m.cond_kind is not None and m.cond_kind == models[0].cond_kind else None
            report["models"][name] = bucket_losses(m, images, own, opts["buckets"], opts["draws"], opts["seed"])
    except (InputError, CheckpointError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = opts["names"]
    print("| t | " + " | ".join(f"{n} loss | {n} x0 MSE" for n in names) + " |")
    print("|---|" + "---:|---:|" * len(names))
    for i, row in enumerate(report["models"][names[0]]):
        cells = [f"{report['models'][n][i]['loss']:.4f} | {report['models'][n][i]['x0_mse']:.4f}" for n in names]
        print(f"| [{row['t_lo']}, {row['t_hi']}) | " + " | ".join(cells) + " |")
    out = opts["out"] or str(Path(opts["ckpts"][0]).with_name("bucket_loss.json"))
    try:
        atomic_write_text(out, json.dumps(report, indent=1))
        if opts["plot"]:
            plot(report, opts["plot"])
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}" + (f" and {opts['plot']}" if opts["plot"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
