"""Measure textual-inversion runs: concept rate, feature distance and colour accuracy of the learned token's samples
per optimisation step, against its initial word and the existing word nearest to the learned vector.

    .venv/bin/python scripts/textual_inversion_eval.py ckpt=<text model> runs=[runs/ti/n3,runs/ti/n5,runs/ti/n10]

Settings: configs/textual_inversion_eval.yaml; evaluation/personalisation.py does the scoring. Prints a markdown
table and writes the JSON report to out=. Bad input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from omegaconf import DictConfig

from data import DatasetError
from data.concept import render_concept
from data.folder import find_images
from data.procedural import parse_caption
from evaluation.factors import cached_factor_classifier
from evaluation.features import InceptionFeatures
from evaluation.personalisation import colour_accuracy, concept_scores, nearest_word, reference_pool, score_word
from models.text import WithTokens
from sampling.atomic import OutputError, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError, check_number
from sampling.cli import build_job, compose_config, run_tool, to_dict
from sampling.generate import generate_images
from sampling.io import captioned_rows
from training.checkpoint_io import read_training_checkpoint


def run_steps(run: Path) -> tuple[dict, list[tuple[int, torch.Tensor]]]:
    """A run's config and (step, learned vector) of each of its step checkpoints, in step order."""
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise InputError(f"runs: {run} has no config.yaml (not a train.py run folder)")
    config = yaml.safe_load(config_path.read_text())
    if not config.get("concept") or not config.get("token"):
        raise InputError(f"runs: {run} is not a textual-inversion run (experiment=textual_inversion)")
    steps = []
    for path in sorted((run / "checkpoints").glob("step_*.ckpt")):
        ckpt = read_training_checkpoint(path)
        steps.append((int(ckpt["global_step"]), ckpt["state_dict"]["vector"].float()))
    if not steps:
        raise InputError(f"runs: {run} has no checkpoints/step_*.ckpt")
    return config, steps


def run(cfg: DictConfig) -> None:
    opts = to_dict(cfg)
    for key in ("pool", "prompts", "n_per_prompt", "steps"):
        check_number(key, opts[key], 1, integer=True)
    check_number("guidance", opts["guidance"], 0, 50)
    runs = [Path(r) for r in (opts["runs"] if isinstance(opts["runs"], list) else [opts["runs"]])]
    loaded = [(r, *run_steps(r)) for r in runs]
    model = load_model(opts["ckpt"])
    if model.encoder is None:
        raise InputError(f"ckpt={opts['ckpt']} is not a text model")
    base = model.encoder
    channels, size, _ = model.image_shape
    emoji = str(opts["kind"]).startswith("emoji:")
    classifier = None if emoji else cached_factor_classifier(image_size=size, channels=channels)[0]
    features = InceptionFeatures() if emoji else classifier.features
    pool, is_concept = reference_pool(opts["kind"], size, opts["pool"])
    job, _ = build_job(compose_config("sample", [f"ckpt={opts['ckpt']}", f"guidance={opts['guidance']}",
                                                 f"sampler.steps={opts['steps']}"]), model)

    def sampler(vectors: dict[str, torch.Tensor]):
        encoder = WithTokens(base, vectors)

        def sample(prompts: list[str], n: int, seed: int) -> torch.Tensor:
            texts = [p for p in prompts for _ in range(n)]
            cond, null = encoder.encode(texts), encoder.encode([""] * len(texts))
            return generate_images(model.net, model.schedule, model.parametrization, model.image_shape, cond,
                                   null=null, n=len(texts), guidance=job.guidance, sampler=job.sampler,
                                   timesteps=job.timesteps(), seed=seed, batch_size=64).cpu()
        return sample

    common = dict(features=features, classifier=classifier, pool=pool, is_concept=is_concept,
                  prompts=opts["prompts"], n_per_prompt=opts["n_per_prompt"], seed=opts["seed"], emoji=emoji)
    rows, pictures = [], []
    plain = sampler({})
    done_words: dict[str, dict] = {}
    for path, config, steps in loaded:
        token, init = config["token"], config["init_word"]
        n_images = len(find_images(Path(config["concept"])))
        start = base.word_vector(init)
        for step, vector in steps:
            row, images = score_word(sampler({token: vector}), word=token, **common)
            moved = {"cosine_to_initial": F.cosine_similarity(vector, start, dim=0).item(),
                     "norm": vector.norm().item(), "initial_norm": start.norm().item()}
            rows.append({"run": str(path), "images": n_images, "step": step, "kind": "token"} | row | moved)
            print(json.dumps(rows[-1]))
        final = steps[-1][1]
        pictures.append((f"{token} ({n_images} images, step {steps[-1][0]})", images[:: opts["n_per_prompt"]]))
        for kind, word in (("initial word", init), ("nearest word", nearest_word(base, final, (token,)))):
            if word not in done_words:
                done_words[word], images = score_word(plain, word=word, **common)
                pictures.append((f"{word} ({kind})", images[:: opts["n_per_prompt"]]))
            rows.append({"run": str(path), "images": n_images, "step": None, "kind": kind} | done_words[word])
            print(json.dumps(rows[-1]))
    for word in opts["controls"] or []:  # words the model knows: how often the measure calls them the concept
        if word not in done_words:
            done_words[word], images = score_word(plain, word=word, **common)
            pictures.append((f"{word} (control)", images[:: opts["n_per_prompt"]]))
        rows.append({"run": None, "images": None, "step": None, "kind": "control"} | done_words[word])
        print(json.dumps(rows[-1]))
    renders, captions = render_concept(opts["kind"], 64, size, seed=5000)  # ceilings: real concept images
    real = {"renders": len(renders), **concept_scores(features, renders, pool, is_concept)}
    if classifier is not None:
        real["colour_accuracy"] = colour_accuracy(classifier, renders, [parse_caption(c)["colour"] for c in captions])
    lines = ["| concept images | step | word | concept rate | feature distance | colour accuracy |",
             "|---:|---:|---|---:|---:|---:|"]
    colour = lambda r: f"{r['colour_accuracy']:.3f}" if "colour_accuracy" in r else "-"  # noqa: E731
    for r in rows:
        step = r["step"] if r["step"] is not None else r["kind"]
        lines.append(f"| {r['images'] or '-'} | {step} | {r['word']} | {r['concept_rate']:.3f} | "
                     f"{r['concept_distance']:.3f} | {colour(r)} |")
    lines.append(f"| renders | - | ({len(renders)} fresh concept renders) | {real['concept_rate']:.3f} | "
                 f"{real['concept_distance']:.3f} | {colour(real)} |")
    print("\n".join(lines))
    out = Path(opts["out"]) if opts["out"] else runs[0] / "textual_inversion_eval.json"
    atomic_write_text(out, json.dumps({"settings": opts, "rows": rows, "renders": real}, indent=2) + "\n")
    print(f"report: {out}")
    if opts["picture"]:
        image = captioned_rows([im for _, im in pictures], [c for c, _ in pictures])  # each word once
        Path(opts["picture"]).parent.mkdir(parents=True, exist_ok=True)
        image.save(opts["picture"])
        print(f"picture: {opts['picture']}")


def main(argv: list[str] | None = None) -> int:
    return run_tool(run, "textual_inversion_eval", argv, errors=(CheckpointError, DatasetError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
