"""Training and validation loss curves of several runs side by side, from their CSV logs (logger=csv).

    .venv/bin/python scripts/plot_losses.py runs=[runs/a,runs/b] labels=[v-prediction,flow] out=docs/pictures/loss.png

``runs``: run folders (or their metrics.csv files); the train loss is smoothed by a moving average over
``smooth`` logged points. Exit 2 with one line for a missing log or mismatched labels.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from sampling.checks import InputError


def read_log(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """((step, train loss), (step, val loss)) rows of a Lightning CSV log."""
    train, val = [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            for key, out in (("train/loss", train), ("val/loss", val)):
                if row.get(key):
                    out.append((int(row["step"]), float(row[key])))
    return train, val


def smooth(values: list[float], k: int) -> list[float]:
    return [sum(values[max(0, i - k + 1): i + 1]) / len(values[max(0, i - k + 1): i + 1]) for i in range(len(values))]


def main(argv: list[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    try:
        runs = [Path(p) for p in args.get("runs", "").strip("[]").split(",") if p]
        labels = [x for x in args.get("labels", "").strip("[]").split(",") if x] or [p.name for p in runs]
        if not runs or len(labels) != len(runs) or "out" not in args:
            raise InputError("usage: runs=[<run>,...] [labels=[<name>,...], one per run] out=<file>.png [smooth=10]")
        logs = [p / "metrics.csv" if p.is_dir() else p for p in runs]
        missing = [str(p) for p in logs if not p.is_file()]
        if missing:
            raise InputError(f"no CSV log at {missing[0]}")
        k = int(args.get("smooth", 10))
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for log, label in zip(logs, labels):
        train, val = read_log(log)
        if train:
            axes[0].plot([s for s, _ in train], smooth([v for _, v in train], k), label=label)
        if val:
            axes[1].plot([s for s, _ in val], [v for _, v in val], marker="o", label=label)
    for ax, title in zip(axes, (f"train loss (moving average of {k} logs)", "validation loss")):
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
