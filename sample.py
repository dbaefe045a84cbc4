"""Sample and edit with a trained checkpoint (see README "Sampling" and "Editing").

    python sample.py ckpt=<file> sampler=ddim sampler.steps=50 n=64 seed=0 [label=3] [guidance=3.0]
    python sample.py ckpt=<file> task=sdedit image=painting.png strength=0.5
    python sample.py ckpt=<file> task=inpaint image=photo.png mask=mask.png

Bad input (unknown key, missing or unreadable file, label out of range, ...) gets a one-line error and exit
status 2; outputs are written only once everything has been computed.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sampling import editing, tasks
from sampling.checkpoint import CheckpointError, LoadedModel, load_model
from sampling.io import InputError, write_outputs
from sampling.settings import check_settings

CONFIGS = Path(__file__).resolve().parent / "configs"
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
    """configs/sample.yaml with ``overrides``, or InputError naming the bad override."""
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("sample", overrides=overrides)
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:  # Hydra/OmegaConf errors are multi-line; keep the first line
        raise InputError(str(e).strip().splitlines()[0]) from e
    return cfg


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
    job = make_run(cfg)
    outputs = TASKS[cfg.task.name](job)
    out = Path(cfg.out) if cfg.out else Path("runs/sample") / datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    outputs["config.yaml"] = OmegaConf.to_yaml(cfg, resolve=True)
    write_outputs(outputs, out)
    for line in job.notes:
        print(line)
    print(f"wrote {len(outputs)} file(s) to {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        run(compose_config(list(sys.argv[1:] if argv is None else argv)))
    except (InputError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
