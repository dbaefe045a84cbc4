"""Imagic against SDEdit and DiffEdit on one-factor text edits of procedural test images (evaluation/text_edits.py).

    .venv/bin/python scripts/text_edit_eval.py ckpt=runs/shapes/checkpoints/last.ckpt
    .venv/bin/python scripts/text_edit_eval.py ckpt=<file> edits=2 methods=[sdedit,diffedit] out=e.json

Settings: configs/text_edit_eval.yaml. Prints a markdown table (per method and setting: success, kept, both, MSE
where nothing should change, seconds per edit) and writes the JSON report. Bad input: one error line, exit 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from data import DatasetError
from data.transforms import uint8_to_tensor
from evaluation.factors import cached_factor_classifier
from evaluation.text_edits import pick_edits, run_methods, summarise
from sampling.atomic import OutputError, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError, check_number
from sampling.cli import build_job, compose_config, run_tool, to_dict
from sampling.editing import diffedit, sdedit
from sampling.imagic import edit as imagic_edit
from sampling.imagic import fit, starts
from sampling.io import labelled_strip, to_pil

METHODS = ("imagic", "sdedit", "diffedit")


def to_tensor(pil) -> torch.Tensor:
    """An 8-bit PIL image -> (3, H, W) in [-1, 1] (every method's output goes through 8 bits alike)."""
    return uint8_to_tensor(np.asarray(pil.convert("RGB"), dtype=np.uint8))


def run(cfg: DictConfig) -> None:
    opts = to_dict(cfg)
    check_number("edits", opts["edits"], 1, integer=True)
    check_number("steps", opts["steps"], 1, integer=True)
    for e in opts["etas"]:
        check_number("etas", e, 0, 2)
    for s in opts["strengths"]:
        check_number("strengths", s, 0, 1)
    bad = [m for m in opts["methods"] if m not in METHODS]
    if bad or not opts["methods"]:
        raise InputError(f"methods must be among {', '.join(METHODS)}, got {opts['methods']}")
    model = load_model(opts["ckpt"], opts["weights"])
    if model.encoder is None:
        raise InputError(f"ckpt={opts['ckpt']}: text edits need a text model")
    channels, size, _ = model.image_shape
    classifier, _ = cached_factor_classifier(image_size=size, channels=channels)
    job, _ = build_job(compose_config("sample", [f"ckpt={opts['ckpt']}", f"weights={opts['weights']}",
                                                 f"guidance={opts['guidance']}", f"sampler.steps={opts['steps']}"]),
                       model)
    edits = pick_edits(opts["edits"], opts["seed"], size)
    spec = lambda e: f"procedural:{e['index']}:{e['data_seed']}"  # noqa: E731
    picture_rows: dict[int, list] = {}
    stage_times: list[dict[str, float]] = []

    def run_imagic(e):
        start = time.perf_counter()
        fitted = fit(job, e["image"], e["target_caption"], **opts["imagic"])
        x_T = starts(job, fitted, e["image"], 1, "noise")
        fit_s = time.perf_counter() - start
        out = []
        for eta in opts["etas"]:
            t0 = time.perf_counter()
            image = to_tensor(to_pil(imagic_edit(job, fitted, float(eta), x_T)[0]))
            out.append((f"eta={eta:g}", image, fit_s + time.perf_counter() - t0))
            stage_c = time.perf_counter() - t0
        stage_times.append({**fitted.times, "stage_c_s": stage_c})  # C: one eta, one sample
        return out

    def run_sdedit(e):
        out = []
        for s in opts["strengths"]:
            t0 = time.perf_counter()
            result = sdedit(job, image=spec(e), strength=float(s), n=1, prompt=e["target_caption"])
            out.append((f"strength={s:g}", to_tensor(result["sample_0000.png"]), time.perf_counter() - t0))
        return out

    def run_diffedit(e):
        t0 = time.perf_counter()
        try:
            result = diffedit(job, image=spec(e), query=e["target_caption"], reference=e["source_caption"],
                              encode_ratio=opts["diffedit_encode_ratio"])
            image = to_tensor(result["edited.png"])
        except InputError:  # an empty mask: DiffEdit leaves the image as it is
            image = e["image"]
        return [(f"encode_ratio={opts['diffedit_encode_ratio']:g}", image, time.perf_counter() - t0)]

    table = {"imagic": run_imagic, "sdedit": run_sdedit, "diffedit": run_diffedit}
    methods = {}
    for name in opts["methods"]:
        def method(e, f=table[name], name=name):
            results = f(e)
            to = e["target"]["kind" if e["factor"] == "shape" else e["factor"]]
            picture_rows.setdefault(id(e), [(e["image"], f"-> {to}")]).extend(
                (image, f"{name} {setting.split('=')[-1]}" if name != "diffedit" else name)
                for setting, image, _ in results)
            return results
        methods[name] = method
    rows = run_methods(edits, methods, classifier)
    summary = summarise(rows)
    lines = ["| method | setting | edits | success | kept | both | outside MSE | s / edit |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary:
        if r["factor"] == "all":
            lines.append(f"| {r['method']} | {r['setting']} | {r['edits']} | {r['success']:.2f} | {r['kept']:.2f} | "
                         f"{r['both']:.2f} | {r['outside_mse']:.4f} | {r['seconds']:.1f} |")
    print("\n".join(lines))
    if stage_times:
        mean = {k: float(np.mean([t[k] for t in stage_times])) for k in stage_times[0]}
        print("imagic wall time per image (s): " + ", ".join(f"{k} {v:.1f}" for k, v in mean.items()))
    out = Path(opts["out"]) if opts["out"] else Path(opts["ckpt"]).with_name(f"{Path(opts['ckpt']).stem}"
                                                                           ".text_edits.json")
    report = {"settings": opts, "edits": [{k: v for k, v in e.items() if k not in ("image", "keep")} for e in edits],
              "rows": rows, "summary": summary, "imagic_stage_times": stage_times}
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"report: {out}")
    if opts["picture"]:
        from PIL import Image

        strips = []
        for e in edits[:: opts["edits"]]:  # the first edit of each kind
            cells = picture_rows[id(e)]
            strips.append(labelled_strip([c for c, _ in cells], [label for _, label in cells]))
        sheet = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
        for k, strip in enumerate(strips):
            sheet.paste(strip, (0, sum(s.height for s in strips[:k])))
        Path(opts["picture"]).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(opts["picture"])
        print(f"picture: {opts['picture']}")


def main(argv: list[str] | None = None) -> int:
    return run_tool(run, "text_edit_eval", argv, errors=(CheckpointError, DatasetError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
