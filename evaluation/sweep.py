"""A Hydra multirun sweep (runs/multirun/<date_time>/) as a table, report.md, report.csv and loss_curves.png."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
IMG_PER_S = "train/img_per_s"
FINAL_TRAIN_WINDOW = 5  # final train loss = mean of this many last logged values
STATUS_OK = "ok"
STATUS_FAILED = "failed/no metrics"
METRIC_COLUMNS = ["status", "final_train_loss", "final_val_loss", "best_val_loss", "steps", "mean_img_per_s"]


class SweepError(Exception):
    """A sweep directory that cannot be reported on."""


def _number(text: str | None) -> float | None:
    """The float in a CSV cell, or None when the cell is empty or missing."""
    if text is None or text.strip() == "":
        return None
    return float(text)


def _read_overrides(run_dir: Path) -> dict[str, str]:
    """The run's command-line overrides from .hydra/overrides.yaml, as key -> value (in the order given)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    overrides = {}
    for item in items:
        key, _, value = str(item).partition("=")
        overrides[key] = value
    return overrides


def _read_metrics(path: Path) -> dict[str, Any]:
    """train/loss and val/loss as (step, value) lists, the logged images/s values and the largest step."""
    train: list[tuple[int, float]] = []
    val: list[tuple[int, float]] = []
    img_per_s: list[float] = []
    steps: int | None = None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step_value = _number(row.get("step"))
            if step_value is None:
                continue
            step = int(step_value)
            steps = step if steps is None else max(steps, step)
            for column, series in ((TRAIN_LOSS, train), (VAL_LOSS, val)):
                value = _number(row.get(column))
                if value is not None:
                    series.append((step, value))
            speed = _number(row.get(IMG_PER_S))
            if speed is not None:
                img_per_s.append(speed)
    return {"train": train, "val": val, "img_per_s": img_per_s, "steps": steps}


def _read_eval(run_dir: Path) -> dict[str, Any]:
    """Top-level scalar entries of checkpoints/*.json and eval.json, merged in sorted path order (later wins)."""
    paths = [p for p in [*run_dir.glob("checkpoints/*.json"), run_dir / "eval.json"] if p.is_file()]
    merged: dict[str, Any] = {}
    for path in sorted(paths, key=lambda p: p.relative_to(run_dir).as_posix()):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            merged.update({k: v for k, v in data.items() if isinstance(v, int | float | str)})
    return merged


def collect_runs(sweep_dir: str | Path) -> list[dict]:
    """One dict per numbered run directory of a sweep (run, dir, overrides, status, metric series, eval)."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise SweepError(f"no such sweep directory: {sweep}")
    run_dirs = sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not run_dirs:
        raise SweepError(f"no run sub-directories (0, 1, ...) in {sweep}")
    runs = []
    for run_dir in run_dirs:
        metrics_path = run_dir / "metrics.csv"
        metrics = _read_metrics(metrics_path) if metrics_path.is_file() else {}
        has_metrics = metrics.get("steps") is not None
        runs.append(
            {
                "run": int(run_dir.name),
                "dir": run_dir,
                "overrides": _read_overrides(run_dir),
                "status": STATUS_OK if has_metrics else STATUS_FAILED,
                "train": metrics.get("train", []),
                "val": metrics.get("val", []),
                "img_per_s": metrics.get("img_per_s", []),
                "steps": metrics.get("steps"),
                "eval": _read_eval(run_dir),
            }
        )
    return runs


def split_overrides(runs: list[dict]) -> tuple[list[str], dict[str, str]]:
    """The override keys that vary across runs (first-seen order) and the key -> value pairs shared by all."""
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run["overrides"] if k not in keys)
    varying, common = [], {}
    for key in keys:
        values = {run["overrides"].get(key) for run in runs}
        if len(values) == 1 and None not in values:
            common[key] = values.pop()
        else:
            varying.append(key)
    return varying, common


def _mean(values: list[float]) -> float | None:
    """The arithmetic mean, or None for no values."""
    return sum(values) / len(values) if values else None


def build_table(runs: list[dict]) -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    """The report's columns, one row per run (None for missing cells) and the common overrides."""
    varying, common = split_overrides(runs)
    reserved = {"run", *varying, *METRIC_COLUMNS}
    eval_columns: dict[str, str] = {}  # eval key -> column name (prefixed "eval:" only on a name clash)
    for run in runs:
        for key in run["eval"]:
            eval_columns.setdefault(key, f"eval:{key}" if key in reserved else key)
    rows = []
    for run in runs:
        train = [value for _, value in run["train"]]
        val = [value for _, value in run["val"]]
        row: dict[str, Any] = {"run": run["run"]}
        row.update({key: run["overrides"].get(key) for key in varying})
        row.update(
            {
                "status": run["status"],
                "final_train_loss": _mean(train[-FINAL_TRAIN_WINDOW:]),
                "final_val_loss": val[-1] if val else None,
                "best_val_loss": min(val) if val else None,
                "steps": run["steps"],
                "mean_img_per_s": _mean(run["img_per_s"]),
            }
        )
        row.update({eval_columns[key]: value for key, value in run["eval"].items()})
        rows.append(row)
    columns = ["run", *varying, *METRIC_COLUMNS, *eval_columns.values()]
    return columns, rows, common


def _markdown_cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None as empty, pipes escaped."""
    if value is None:
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def render_markdown(columns: list[str], rows: list[dict[str, Any]], common: dict[str, str]) -> str:
    """The report.md text: common overrides, the table, and a note on how the columns are computed."""
    common_text = ", ".join(f"{k}={v}" for k, v in common.items()) or "(none)"
    lines = [f"common overrides: {common_text}", ""]
    lines.append("| " + " | ".join(_markdown_cell(c) for c in columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(_markdown_cell(row.get(c)) for c in columns) + " |")
    lines += [
        "",
        f"Note: final_train_loss is the mean of the last {FINAL_TRAIN_WINDOW} logged train/loss values "
        "(to smooth step-to-step noise); final_val_loss is the last logged val/loss, best_val_loss the "
        "lowest; steps is the largest logged step; mean_img_per_s averages the logged train/img_per_s.",
    ]
    return "\n".join(lines) + "\n"


def _running_mean(values: list[float], window: int) -> list[float]:
    """Trailing running mean over up to `window` values, same length as the input."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss_curves(runs: list[dict], path: Path) -> None:
    """Write train/loss (running mean) as lines and val/loss as markers per run, log-scale y, to a PNG."""
    varying, _ = split_overrides(runs)
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plotted: list[float] = []  # every loss value drawn, to pick the y scale
    for colour_index, run in enumerate(r for r in runs if r["train"] or r["val"]):
        label = ", ".join(f"{k}={run['overrides'].get(k, '')}" for k in varying)
        label = f"run {run['run']}" + (f": {label}" if label else "")
        colour = f"C{colour_index % 10}"
        if run["train"]:
            steps, values = zip(*run["train"])
            smooth = _running_mean(list(values), max(1, len(values) // 20))
            ax.plot(steps, smooth, color=colour, label=label)
            label = None  # the markers share the line's legend entry
        if run["val"]:
            steps, values = zip(*run["val"])
            ax.plot(steps, values, "o", color=colour, markersize=4, label=label)
        plotted.extend(v for _, v in run["train"] + run["val"])
    if any(v > 0 for v in plotted):
        ax.set_yscale("log")
    if plotted:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no metrics logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("train/loss (lines, running mean) and val/loss (markers)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(runs: list[dict], out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.csv and loss_curves.png into out_dir; return their paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns, rows, common = build_table(runs)
    paths = {"markdown": out / "report.md", "csv": out / "report.csv", "plot": out / "loss_curves.png"}
    paths["markdown"].write_text(render_markdown(columns, rows, common))
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: "" if row.get(c) is None else row[c] for c in columns} for row in rows)
    plot_loss_curves(runs, paths["plot"])
    return paths
