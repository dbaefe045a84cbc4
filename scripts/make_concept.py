"""Write a concept folder for textual inversion: a star or a letter in the procedural set's colours, backgrounds and
positions, with captions naming the concept <S*> (data/concept.py).

    .venv/bin/python scripts/make_concept.py out=concepts/star5 kind=star n=5
    .venv/bin/python scripts/make_concept.py out=concepts/letter_a kind=letter:A n=10

Settings: configs/make_concept.yaml. Bad input gets one error line and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from data import DatasetError
from data.concept import write_concept
from data.folder import find_images
from sampling.checks import InputError, check_number
from sampling.cli import run_tool, to_dict


def run(cfg: DictConfig) -> None:
    opts = to_dict(cfg)
    check_number("n", opts["n"], 1, 20, integer=True)
    check_number("image_size", opts["image_size"], 16, 256, integer=True)
    check_number("seed", opts["seed"], 0, 2**32 - 1, integer=True)
    out = Path(opts["out"])
    if out.is_dir() and find_images(out):
        raise InputError(f"out={out} already holds images; choose a new folder")
    folder = write_concept(out, str(opts["kind"]), opts["n"], opts["image_size"], opts["seed"])
    print(f"wrote {opts['n']} images of {opts['kind']} and their captions to {folder}")


def main(argv: list[str] | None = None) -> int:
    return run_tool(run, "make_concept", argv, errors=(DatasetError,))


if __name__ == "__main__":
    sys.exit(main())
