"""Sample and edit with a trained checkpoint (see README "Sampling" and "Editing").

    python sample.py ckpt=<file> sampler=ddim sampler.steps=50 n=64 seed=0 [label=3] [guidance=3.0]
    python sample.py ckpt=<file> task=sdedit image=painting.png strength=0.5
    python sample.py ckpt=<file> task=inpaint image=photo.png mask=mask.png

Bad input (unknown key, missing or unreadable file, a setting out of its range, a non-empty out=, ...) gets a
one-line error and exit status 2. Outputs are written only once everything has been computed, into a temp folder
that is renamed into place: the output folder appears complete or not at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sampling import cli, editing, tasks
from sampling.checkpoint import CheckpointError, LoadedModel, load_model
from sampling.io import OutputError, check_out, default_out_dir, write_outputs
from sampling.settings import check_settings

TASKS = {
    "generate": tasks.generate,
    "forward": tasks.forward,
    "denoise_compare": tasks.denoise_compare,
    "sdedit": editing.sdedit,
    "invert": editing.invert,
    "ddib": editing.ddib,
    "diffedit": editing.diffedit,
    "inpaint": editing.inpaint,
    "outpaint": editing.outpaint,
    "zoom": editing.zoom,
}


def compose_config(overrides: list[str]) -> DictConfig:
    """configs/sample.yaml with ``overrides`` (also for the scripts that drive sample.py's tasks)."""
    return cli.compose_config("sample", overrides)


def make_run(cfg: DictConfig, model: LoadedModel | None = None) -> tasks.Run:
    """What a task receives: ``cfg``, its model (loaded from cfg.ckpt unless given) and the sampler; every
    setting is checked against its range here (sampling/settings.py), so the tasks take them as given."""
    model = model or load_model(cfg.ckpt, cfg.weights)
    check_settings(cfg, model.schedule.num_timesteps)
    model.net.to(cfg.device)
    sampler_cfg = OmegaConf.to_container(cfg.sampler, resolve=True)
    steps, spacing = sampler_cfg.pop("steps"), sampler_cfg.pop("spacing")
    return tasks.Run(cfg, model, instantiate(sampler_cfg), steps, spacing, notes=[])


def run(cfg: DictConfig) -> Path:
    """Run the task described by ``cfg``; returns the output directory."""
    if cfg.out:  # refused before any work; write_outputs refuses again if another run got there meanwhile
        check_out(Path(cfg.out), cfg.overwrite)
    job = make_run(cfg)
    outputs = TASKS[cfg.task.name](job)
    outputs["config.yaml"] = OmegaConf.to_yaml(cfg, resolve=True)
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
