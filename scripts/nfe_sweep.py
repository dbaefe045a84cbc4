"""Sample quality against network evaluations (NFE) for one checkpoint and several samplers (issue 13).

    .venv/bin/python scripts/nfe_sweep.py ckpt=<run>/checkpoints/last.ckpt data=fashion_mnist n=200
    .venv/bin/python scripts/nfe_sweep.py ckpt=<flow run>/checkpoints/last.ckpt samplers=[flow_euler,flow_heun]
    .venv/bin/python scripts/nfe_sweep.py plot=[a.nfe.json,b.nfe.json] out=docs/pictures/nfe.png [floor=16.7]

Each point is one scripts/evaluate.py run (the same n, seeds, labels and reference features) with the sampler's
own config (configs/sampler/<name>.yaml: its spacing and options) at steps = NFE, or (NFE + 1)/2 for Heun (its
last step is Euler). ``reference``: ancestral DDPM over all T timesteps (flow_sde for a flow model). Prints a
markdown table and writes the points as JSON; ``plot=`` draws FD against NFE from such JSON files instead.
Settings: configs/nfe_sweep.yaml; data=, data.* and classifier.* overrides go to evaluate.py. Bad input: one line,
exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data import DatasetError
from evaluation.data_config import split_data_overrides
from evaluation.eval_config import score
from evaluation.features import FeatureError
from sampling.atomic import OutputError, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError, check_number
from sampling.cli import compose_config, to_dict

HEUN = ("heun", "flow_heun")  # 2 * steps - 1 network calls


def steps_for(sampler: str, nfe: int) -> int:
    return (nfe + 1) // 2 if sampler in HEUN else nfe


def sweep(opts: dict, data_args: list[str]) -> list[dict]:
    """One evaluate.py report per (sampler, NFE) point (and the reference), as table rows. ``data_args``: the
    command line's data=, data.* and classifier.* overrides, passed to evaluate.py."""
    data_name, data_overrides, _ = split_data_overrides([a for a in data_args if not a.startswith("classifier.")])
    model = load_model(opts["ckpt"])
    flow = model.parametrization.name == "flow"
    points = [(s, steps_for(s, k), k) for s in opts["samplers"] for k in opts["nfe"]]
    if opts["reference"]:
        T = model.schedule.num_timesteps
        points.append(("flow_sde" if flow else "ddpm", T, T))
    rows = []
    for sampler, steps, nfe in points:
        check_number(f"nfe for {sampler}", steps, 1, model.schedule.num_timesteps, integer=True)
        args = [f"ckpt={opts['ckpt']}", f"sampler={sampler}", f"sampler.steps={steps}", f"n={opts['n']}",
                f"metrics=[{opts['metrics']}]", f"guidance={opts['guidance']}", f"seed={opts['seed']}",
                f"batch_size={opts['batch_size']}", f"device={opts['device'] or 'null'}"]
        passed = [a for a in data_args if a.startswith("classifier.") or data_name is not None]
        cfg = compose_config("eval", args + passed)
        print(f"== {sampler}, {steps} steps ({nfe} NFE)", flush=True)
        report = score(cfg, data_name, data_overrides)
        rows.append({"sampler": sampler, "steps": steps, "nfe": nfe, "spacing": report["spacing"],
                     **{k: report[k] for k in ("fd_classifier", "fid", "kid_mean") if k in report},
                     "sample_seconds": report["sample_seconds"], "n": report["n"],
                     "checkpoint": report["checkpoint"], "prediction": model.parametrization.name})
    return rows


def print_table(rows: list[dict]) -> None:
    metric = next(k for k in ("fd_classifier", "fid", "kid_mean") if k in rows[0])
    print(f"| sampler | spacing | steps | NFE | {metric} | sampling s |\n|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sampler']} | {r['spacing']} | {r['steps']} | {r['nfe']} | {r[metric]:.2f} | "
              f"{r['sample_seconds']:.0f} |")


def plot(paths: list[str], out: Path, floor: float | None = None) -> None:
    """FD against NFE (log x), one line per (checkpoint, sampler); the reference as a dashed level, and
    ``floor`` (scripts/fd_floor.py's real-vs-real FD at the same n) as a dotted one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for path in paths:
        rows = json.loads(Path(path).read_text())["points"]
        metric = next(k for k in ("fd_classifier", "fid", "kid_mean") if k in rows[0])
        kind = rows[0]["prediction"]
        for sampler in dict.fromkeys(r["sampler"] for r in rows):
            pts = [r for r in rows if r["sampler"] == sampler]
            if len(pts) == 1 and pts[0]["steps"] == pts[0]["nfe"] and pts[0]["nfe"] >= 1000:
                ax.axhline(pts[0][metric], ls="--", lw=1, color="grey" if kind != "flow" else "black",
                           label=f"{kind}: {sampler} {pts[0]['nfe']} NFE")
                continue
            ax.plot([r["nfe"] for r in pts], [r[metric] for r in pts], marker="o" if kind == "flow" else "s",
                    ls="-" if kind != "flow" else ":", label=f"{kind}: {sampler}")
    if floor is not None:
        ax.axhline(floor, ls=":", lw=1.5, color="green", label=f"real vs real at the same n ({floor:g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel(metric.replace("_", "-"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"plot: {out}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        plots = [a for a in argv if a.startswith("plot=")]
        if plots:
            paths = plots[0][len("plot="):].strip("[]").split(",")
            out = next((a[4:] for a in argv if a.startswith("out=")), None)
            if out is None:
                raise InputError("plot= needs out=<file>.png")
            missing = [p for p in paths if not Path(p).is_file()]
            if missing:
                raise InputError(f"plot=: no such report {missing[0]}")
            floor = next((float(a[6:]) for a in argv if a.startswith("floor=")), None)
            plot(paths, Path(out), floor)
            return 0
        data_args = [a for a in argv if a.lstrip("+").startswith(("data=", "data.", "classifier."))]
        opts = to_dict(compose_config("nfe_sweep", [a for a in argv if a not in data_args]))
        opts["samplers"] = [opts["samplers"]] if isinstance(opts["samplers"], str) else list(opts["samplers"])
        opts["nfe"] = [opts["nfe"]] if isinstance(opts["nfe"], int) else list(opts["nfe"])
        if isinstance(opts["metrics"], list):
            opts["metrics"] = ",".join(opts["metrics"])
        rows = sweep(opts, data_args)
        print_table(rows)
        ckpt = Path(opts["ckpt"])
        out = Path(opts["out"]) if opts["out"] else ckpt.with_name(ckpt.stem + ".nfe.json")
        atomic_write_text(out, json.dumps({"settings": opts, "points": rows}, indent=2) + "\n")
        print(f"report: {out}")
    except (InputError, CheckpointError, DatasetError, FeatureError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
