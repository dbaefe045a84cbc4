"""The command-line boundary shared by sample.py and the scripts: ``key=value`` overrides -> a Hydra config ->
plain objects (``build_job`` for sample.py's tasks).

Every user-facing tool takes Hydra overrides (``python <tool> key=value group=option``), composed here
from ``configs/<name>.yaml``. Errors become one ``InputError`` line; ``hydra.*`` overrides are refused
because compose() ignores Hydra's run settings (an ``hydra.run.dir`` would be accepted and silently
unused): tools take ``out=`` instead. This module, sampling/settings.py and the entry points' ``main`` are
the only places below the configs that touch Hydra or OmegaConf: everything they call takes plain objects.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Callable

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from diffusion.guidance import Guidance
from sampling.cascade import check_stage2
from sampling.checkpoint import LoadedModel, load_model
from sampling.checks import InputError, check_number
from sampling.embeddings import with_embeddings
from sampling.job import Job
from sampling.settings import check_device, check_sampler, check_settings

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """configs/<name>.yaml with ``overrides``, fully resolved, or InputError naming the bad override."""
    for o in overrides:
        if o.lstrip("+~").startswith(("hydra.", "hydra/", "hydra=")):
            raise InputError(f"{o}: this tool takes no hydra.* settings; use out=<folder> for the output folder")
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(name, overrides=overrides)
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:  # Hydra/OmegaConf errors are multi-line; keep the first line
        first = str(e).strip().splitlines()[0]
        unknown = re.match(r"Could not override '([^']+)'", first)
        if unknown:  # Hydra's own line does not say why; a key that no config node or task parameter takes
            key = unknown.group(1)
            hint = f" (a task's own parameters are task.{key}=...)" if name == "sample" and "." not in key else ""
            first = f"unknown key {key!r} for configs/{name}.yaml{hint}"
        elif first.startswith("LexerNoViableAltException"):  # Hydra's grammar takes no < > ( ) [ ] unquoted
            value = first.split(":", 1)[-1].strip()
            key, _, rest = value.partition("=")
            first = (f"{value[:80]!r}: Hydra reads < > ( ) {{ }} only inside quotes; write '{key}=\"{rest[:60]}\"' "
                     "(the outer single quotes are for the shell)")
        raise InputError(first) from e
    return cfg


def dotlist_options(argv: list[str], defaults: dict) -> dict:
    """``key=value`` arguments over ``defaults``, for the small tools without a config file: InputError for a
    malformed argument or a key ``defaults`` does not have."""
    try:
        args = OmegaConf.to_container(OmegaConf.from_dotlist(list(argv)))
    except Exception as e:  # a malformed key=value
        raise InputError(str(e).splitlines()[0]) from None
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        raise InputError(f"unknown setting {unknown[0]!r} (settings: {', '.join(defaults)})")
    return {**defaults, **args}


def to_dict(cfg: DictConfig) -> dict:
    """A resolved config as plain Python containers (what library code receives)."""
    return OmegaConf.to_container(cfg, resolve=True)


def config_yaml(cfg: DictConfig, header: str = "", replace: dict | None = None) -> str:
    """The run's config.yaml text: ``cfg`` resolved, with top-level keys of ``replace`` set to new values (the
    studio's upload paths, as the names they have beside the config), under ``header`` as # comment lines."""
    cfg = cfg.copy()
    for key, value in (replace or {}).items():
        cfg[key] = value
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + OmegaConf.to_yaml(cfg, resolve=True)


def run_tool(main: Callable[[DictConfig], object], name: str, argv: list[str] | None,
             errors: tuple[type[Exception], ...] = ()) -> int:
    """Compose configs/<name>.yaml from ``argv`` (default sys.argv[1:]) and call ``main(cfg)``; an InputError or
    one of ``errors`` becomes one ``error:`` line on stderr and exit status 2."""
    try:
        main(compose_config(name, list(sys.argv[1:] if argv is None else argv)))
    except (InputError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


# The tasks a stage2= upscaler can follow: their outputs are images of the base model's size.
STAGE2_TASKS = ("generate", "anagram", "hybrid")

# Top-level sample.yaml keys that are short for the task parameter of the same name.
TASK_INPUTS = ("n", "batch_size", "label", "prompt", "prompts", "save_trajectory", "image", "mask")


def embedding_paths(value) -> list[str]:
    """``embeddings=`` as a list of paths: null, one path, or a list of paths."""
    if value is None:
        return []
    paths = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(p, str) and p for p in paths):
        raise InputError(f"embeddings= takes a file or a list of files, got {value!r}")
    return paths


def build_job(cfg: DictConfig, model: LoadedModel | None = None) -> tuple[Job, Callable[[Job], dict]]:
    """sample.py's config -> (Job, task): the boundary where settings are checked (sampling/settings.py) and
    turned into objects. The task is configs/task/<name>.yaml instantiated as a partial of its function; the
    top-level inputs (``TASK_INPUTS``) fill its parameters of the same name, and one the task does not take is
    an error rather than a silently ignored setting. ``model``: an already loaded checkpoint (else ``cfg.ckpt``)."""
    cfg = cfg.copy()
    task_name = str(cfg.task.get("_target_", "?")).rsplit(".", 1)[-1]
    for key in TASK_INPUTS:
        value = cfg.get(key)
        if value is None:
            continue
        if key not in cfg.task:
            takes = ", ".join(k for k in cfg.task if not k.startswith("_"))
            raise InputError(f"{key}={value}: task={task_name} takes no {key} (it takes: {takes})")
        cfg.task[key] = value
    model = with_embeddings(model or load_model(cfg.ckpt, cfg.weights), embedding_paths(cfg.get("embeddings")))
    check_settings(cfg, model.schedule.num_timesteps)
    device = check_device(cfg.device)
    if model.low_res is not None and task_name != "upscale":
        raise InputError(f"{cfg.ckpt}: an upscaler (model=unet_sr) runs task=upscale image=<file>, or follows a base "
                         f"model as stage2=; not task={task_name}")
    stage2 = None
    if cfg.get("stage2") is not None:
        if task_name not in STAGE2_TASKS:
            raise InputError(f"stage2=: task={task_name} has no second stage (it follows {', '.join(STAGE2_TASKS)})")
        stage2 = load_model(cfg.stage2, cfg.weights)
        check_stage2(model, stage2, cfg.stage2)
        check_number("stage2_aug", cfg.stage2_aug, 0, stage2.schedule.num_timesteps - 1, integer=True)
        stage2.net.to(device)
    model.net.to(device)
    sampler_cfg = to_dict(cfg.sampler)
    steps, spacing = sampler_cfg.pop("steps"), sampler_cfg.pop("spacing")
    sigma_max = check_number("sampler.sigma_max", sampler_cfg.pop("sigma_max", None), 0, lo_open=True,
                             allow_none=True)
    check_sampler(sampler_cfg, steps, spacing, model.parametrization.name, model.schedule)
    if stage2 is not None:
        check_sampler(sampler_cfg, steps, spacing, stage2.parametrization.name, stage2.schedule)
    guidance = Guidance(cfg.guidance, cfg.guidance_rescale, cfg.guidance_batched)
    job = Job(model, instantiate(sampler_cfg), steps, spacing, guidance, cfg.seed, device, cfg.weights,
              negative_prompt=cfg.negative_prompt, stage2=stage2, stage2_aug=int(cfg.get("stage2_aug", 250)),
              sigma_max=sigma_max)
    return job, instantiate(cfg.task)
