"""The command-line boundary shared by sample.py and the scripts: ``key=value`` overrides -> a Hydra config.

Every user-facing tool takes Hydra overrides (``python <tool> key=value group=option``), composed here
from ``configs/<name>.yaml``. Errors become one ``InputError`` line; ``hydra.*`` overrides are refused
because compose() ignores Hydra's run settings (an ``hydra.run.dir`` would be accepted and silently
unused): tools take ``out=`` instead. This and the entry points' ``main`` are the only places below the
configs that touch Hydra or OmegaConf.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from sampling.checks import InputError

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
        raise InputError(str(e).strip().splitlines()[0]) from e
    return cfg


def to_dict(cfg: DictConfig) -> dict:
    """A resolved config as plain Python containers (what library code receives)."""
    return OmegaConf.to_container(cfg, resolve=True)


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
