"""What the editing tasks of sample.py cost, against plain sampling with the same checkpoint, sampler and steps.

Each variant is the whole task function (the same code `python sample.py task=...` runs, minus writing files),
on one input image and the checkpoint's own network:

    generate       n samples (the reference for inpaint and sdedit)
    inpaint        n fills of the input's mask (replacement method; RePaint's resamples = 1)
    sdedit s=...   n edits at each strength s: t0 = s T, so about s of the sampling steps
    generate n=1   one sample (the reference for diffedit, which edits one image)
    diffedit       mask passes + DDIM encoding to encode_ratio + decoding under the target
    diffedit mask  the mask passes alone (2 conditions x mask_draws noise draws, batched)

Goals (issue 4): inpaint <= 1.1x generate; diffedit <= 1.1x generate n=1 plus its mask passes; sdedit at
strength s about s x generate. DiffEdit's DDIM encoding and decoding each run encode_ratio x steps, so without
the mask it costs about 2 x encode_ratio of plain sampling: the goal holds for encode_ratio <= 0.55. R rounds
run every variant once in a rotating order; the ratios are medians of the per-round ratios (paired, so drift
of a shared machine hits both sides alike).

    .venv/bin/python scripts/benchmark_edit.py --ckpt runs/fashion_unet/checkpoints/last.ckpt
    .venv/bin/python scripts/benchmark_edit.py --ckpt <file> --n 8 --steps 50 --rounds 5 --json edit.json

Exit status 0; 2 for a bad checkpoint or input (one line, as sample.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sample import TASKS, compose_config, make_run  # noqa: E402
from sampling.checkpoint import CheckpointError, LoadedModel, load_model  # noqa: E402
from sampling.editing import diffedit_mask  # noqa: E402
from sampling.io import InputError, load_input_image  # noqa: E402
from scripts.benchmark_train import available_cores, device_name  # noqa: E402

INPAINT_GOAL = 1.1  # inpaint / generate
DIFFEDIT_GOAL = 1.1  # (diffedit - its mask passes) / generate n=1


def make_variants(
    model: LoadedModel,
    ckpt: str,
    image: str,
    n: int,
    steps: int,
    strengths: Sequence[float],
    labels: tuple[int, int],
    diffedit_overrides: Sequence[str] = (),
) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per variant, each running a task over the same loaded model."""
    common = [f"ckpt={ckpt}", f"sampler.steps={steps}", f"image={image}", "seed=0"]

    def task(*overrides: str) -> Callable[[], Any]:
        run = make_run(compose_config([*common, *overrides]), model)
        return lambda: TASKS[run.cfg.task.name](run)

    variants = {
        "generate": task("task=generate", f"n={n}", f"batch_size={n}"),
        "inpaint": task("task=inpaint", f"mask={image}", f"n={n}"),
        **{f"sdedit s={s:g}": task("task=sdedit", f"strength={s}", f"n={n}") for s in strengths},
    }
    if model.num_classes is not None:
        source, target = labels
        variants["generate n=1"] = task("task=generate", "n=1", f"label={source}")
        overrides = [*common, "task=diffedit", f"source={source}", f"target={target}", *diffedit_overrides]
        diffedit = make_run(compose_config(overrides), model)
        x0, _, _ = load_input_image(image, model)
        variants["diffedit"] = lambda: TASKS["diffedit"](diffedit)
        variants["diffedit mask"] = lambda: diffedit_mask(diffedit, x0, source, target)
    return variants


def time_rounds(variants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each variant in each round; the order rotates by one each round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            with torch.inference_mode():
                variants[name]()
            times[name].append(time.perf_counter() - start)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    return times


def summarise(times: dict[str, list[float]], strengths: Sequence[float]) -> dict[str, Any]:
    """Median seconds and the paired ratios of each task to its reference."""
    paired = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))  # noqa: E731
    out: dict[str, Any] = {"seconds": {k: statistics.median(v) for k, v in times.items()}, "ratio": {}}
    out["ratio"]["inpaint"] = paired("inpaint", "generate")
    for s in strengths:
        out["ratio"][f"sdedit s={s:g}"] = paired(f"sdedit s={s:g}", "generate")
    if "diffedit" in times:
        out["ratio"]["diffedit"] = paired("diffedit", "generate n=1")
        out["ratio"]["diffedit mask"] = paired("diffedit mask", "generate n=1")
        # the DiffEdit goal: what is left after the mask passes, against one plain sample
        rest = [(d - m) / g for d, m, g in zip(times["diffedit"], times["diffedit mask"], times["generate n=1"])]
        out["ratio"]["diffedit without mask"] = statistics.median(rest)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a checkpoint train.py wrote, or an exported .safetensors")
    p.add_argument("--image", default="procedural:3", help="input image and mask (procedural:<i> has both)")
    p.add_argument("--n", type=int, default=8, help="samples per call of generate, inpaint and sdedit")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of every task")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--labels", type=int, nargs=2, default=[0, 1], help="DiffEdit source and target")
    p.add_argument("--encode-ratio", type=float, help="DiffEdit's encode_ratio (default: configs/task/diffedit.yaml)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=available_cores(), help="torch.set_num_threads (default all)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if min(args.n, args.steps, args.rounds, args.threads) < 1:
        p.error("--n, --steps, --rounds and --threads must be >= 1")
    return args


def print_table(report: dict[str, Any]) -> None:
    s = report["summary"]
    print(f"\n{report['ckpt']}: {report['steps']} DDIM steps, n={report['n']}, {report['rounds']} rounds; "
          f"{report['device']} ({report['threads']} threads)")
    print(f"{'task':24} {'median s':>9} {'/ reference':>12}")
    for name, seconds in s["seconds"].items():
        ratio = s["ratio"].get(name)
        print(f"{name:24} {seconds:>9.2f} {'' if ratio is None else f'{ratio:.3f}x':>12}")
    ok = lambda b: "ok" if b else "MISSED"  # noqa: E731
    print(f"inpaint / generate: {s['ratio']['inpaint']:.3f}x (goal <= {INPAINT_GOAL}: "
          f"{ok(s['ratio']['inpaint'] <= INPAINT_GOAL)})")
    if "diffedit" in s["ratio"]:
        rest = s["ratio"]["diffedit without mask"]
        print(f"diffedit / generate n=1: {s['ratio']['diffedit']:.3f}x, of which the mask passes "
              f"{s['ratio']['diffedit mask']:.3f}x; the rest {rest:.3f}x (goal <= {DIFFEDIT_GOAL}: "
              f"{ok(rest <= DIFFEDIT_GOAL)})")
    print("sdedit / generate: " + ", ".join(f"s={s_:g} {s['ratio'][f'sdedit s={s_:g}']:.3f}x"
                                            for s_ in report["strengths"]))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.ckpt, "ema")
        extra = [] if args.encode_ratio is None else [f"encode_ratio={args.encode_ratio}"]
        variants = make_variants(model, args.ckpt, args.image, args.n, args.steps, args.strengths, args.labels, extra)
        with torch.inference_mode():
            for fn in variants.values():  # warm-up, and bad input surfaces here
                fn()
        times = time_rounds(variants, args.rounds)
    except (InputError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(previous_threads)
    report = {
        "ckpt": str(args.ckpt), "image": args.image, "n": args.n, "steps": args.steps, "rounds": args.rounds,
        "strengths": args.strengths, "labels": args.labels, "encode_ratio": args.encode_ratio, "threads": args.threads,
        "device": device_name(torch.device("cpu")), "times": times, "summary": summarise(times, args.strengths),
    }
    print_table(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
