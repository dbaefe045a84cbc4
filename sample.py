"""Sample and edit with a trained checkpoint (see README "Sampling" and "Editing").

    python sample.py ckpt=<file> sampler=ddim sampler.steps=50 n=64 seed=0 [label=3] [guidance=3.0]
    python sample.py ckpt=<file> task=sdedit image=painting.png task.strength=0.5
    python sample.py ckpt=<file> task=inpaint image=photo.png mask=mask.png

Bad input (unknown key, missing or unreadable file, a setting out of its range, a non-empty out=, ...) gets a
one-line error and exit status 2. Outputs are written only once everything has been computed, into a temp folder
that is renamed into place: the output folder appears complete or not at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from sampling import cli
from sampling.checkpoint import CheckpointError
from sampling.io import OutputError, check_out, default_out_dir, write_outputs


def run(cfg: DictConfig) -> Path:
    """Run the task described by ``cfg``; returns the output directory."""
    if cfg.out:  # refused before any work; write_outputs refuses again if another run got there meanwhile
        check_out(Path(cfg.out), cfg.overwrite)
    job, task = cli.build_job(cfg)
    outputs = task(job)
    outputs["config.yaml"] = cli.config_yaml(cfg)
    if cfg.out:
        out = write_outputs(outputs, Path(cfg.out), overwrite=cfg.overwrite)
    else:
        out = write_outputs(outputs, default_out_dir(), unique=True)
    for line in job.notes:
        print(line)
    print(f"wrote {len(outputs)} file(s) to {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python sample.py key=value ...``: exit status 0, or 2 with one ``error:`` line on stderr."""
    return cli.run_tool(run, "sample", argv, errors=(CheckpointError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
