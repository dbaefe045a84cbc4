"""Classifier accuracy of visual anagrams and hybrid images made with a checkpoint (issue 11).

    .venv/bin/python scripts/illusion_accuracy.py ckpt=runs/<fashion run>/checkpoints/last.ckpt
    .venv/bin/python scripts/illusion_accuracy.py ckpt=<text model> \
        anagrams='[["a red triangle","a blue circle",rot180]]'

Settings: configs/illusion_accuracy.yaml; evaluation/illusions.py does the work. Prints a markdown table, writes the
report as JSON (and views.png, the first 8 images of each pair under each view) to out=. Bad input gets a one-line
error and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig

from data import DatasetError
from diffusion.illusions import IllusionError, make_view
from evaluation.data_config import data_node, load_or_train_classifier
from evaluation.factors import cached_factor_classifier
from evaluation.illusions import anagram_accuracy, factor_scorer, hybrid_accuracy, label_scorer
from sampling.atomic import OutputError, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError
from sampling.cli import build_job, compose_config, run_tool, to_dict
from sampling.io import captioned_rows


def scorer(model):
    """The classifier that scores this model's illusions."""
    if model.cond_kind == "text":
        classifier, _ = cached_factor_classifier(image_size=model.image_shape[1], channels=model.image_shape[0])
        return factor_scorer(classifier)
    if model.cond_kind != "label":
        raise InputError("illusions are measured on a label or text model; this checkpoint is unconditional")
    name, data_cfg = data_node(None, None, [], model.config["data"], model.image_shape)
    classifier, meta = load_or_train_classifier(name, data_cfg)
    print(f"classifier: {name}, val accuracy {meta['val_accuracy']:.3f}")
    return label_scorer(classifier)


def run(cfg: DictConfig) -> None:
    opts = to_dict(cfg)
    ckpt = Path(opts["ckpt"])
    out = Path(opts["out"]) if opts["out"] else ckpt.with_name(ckpt.stem + ".illusions.json")
    model = load_model(opts["ckpt"], opts["weights"])
    job, _ = build_job(compose_config("sample", [
        f"ckpt={opts['ckpt']}", f"weights={opts['weights']}", f"sampler={opts['sampler']}",
        f"sampler.steps={opts['steps']}", f"guidance={opts['guidance']}", f"seed={opts['seed']}",
        f"device={opts['device']}"]), model)
    score = scorer(model)
    report, rows, captions = {"settings": opts, "anagrams": [], "hybrids": []}, [], []
    pairs = []
    for a, b, view in opts["anagrams"]:
        pairs.append((a, b, view))
        if opts["swap"]:
            pairs.append((b, a, view))
    try:
        for a, b, view in pairs:
            r = anagram_accuracy(job, score, ["identity", view], [a, b], opts["n"], opts["batch_size"])
            images = r.pop("images")
            report["anagrams"].append(r)
            print(f"anagram {a} | {view}: {b}: accuracy {r['accuracy'][0]:.3f} / {r['accuracy'][1]:.3f}, "
                  f"both {r['all']:.3f}", flush=True)
            rows += [images[:8], _view(view, model)(images[:8])]
            captions += [f"identity: {a}", f"{view}: {b}"]
        for a, b in opts["hybrids"]:
            r = hybrid_accuracy(job, score, [a, b], opts["n"], opts["sigma"], opts["batch_size"])
            images = r.pop("images")
            report["hybrids"].append(r)
            print(f"hybrid low {a} / high {b}: low band vs {a} {r['low_vs_1']:.3f}, high band vs {b} "
                  f"{r['high_vs_2']:.3f} (whole image vs {a} {r['full_vs_1']:.3f}, vs {b} {r['full_vs_2']:.3f})",
                  flush=True)
            rows.append(images[:8])
            captions.append(f"hybrid: low {a}, high {b}")
    except IllusionError as e:
        raise InputError(str(e)) from None
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    if rows:
        captioned_rows(rows, captions).save(out.with_suffix(".png"))
    print(f"report: {out}")


def _view(name: str, model):
    return make_view(name, model.image_shape).apply


def main(argv: list[str] | None = None) -> int:
    return run_tool(run, "illusion_accuracy", argv, errors=(CheckpointError, DatasetError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
