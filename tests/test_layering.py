"""The layout's rules (DESIGN.md, STYLE.md, issue 9), checked on the source: each test fails when a rule breaks.

- models/ and diffusion/ never import each other; sampling/ never imports training/;
- Hydra and OmegaConf appear below the entry points only at the config -> object boundary;
- no script imports another script or patches sys.path;
- a name defined once: one InputError, one load_model.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "diffusion", "data", "training", "sampling", "evaluation", "studio")
# The functions that turn config into objects (issue 9: "nothing outside the functions that turn config into
# objects"): the shared CLI boundary, sample.py's settings table and the data-config builder of the evaluators;
# training/run_dir.py writes a training run's Hydra records once its lock is held; evaluation/eval_config.py turns
# configs/eval.yaml into an evaluation for scripts/evaluate.py and scripts/nfe_sweep.py.
CONFIG_BOUNDARY = {"sampling/cli.py", "sampling/settings.py", "evaluation/data_config.py", "training/run_dir.py",
                   "evaluation/eval_config.py"}


def _imports(path: Path) -> set[str]:
    """Top-level module names (and dotted names) that ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports_package(path: Path, package: str) -> bool:
    return any(n == package or n.startswith(package + ".") for n in _imports(path))


def test_models_and_diffusion_never_import_each_other():
    bad = [str(p.relative_to(ROOT)) for p in _files("models") if _imports_package(p, "diffusion")]
    bad += [str(p.relative_to(ROOT)) for p in _files("diffusion") if _imports_package(p, "models")]
    assert bad == []


def test_sampling_never_imports_training_or_entry_points():
    # the studio is a front end over sampling's library: the same rule (issue 16: "never a copy")
    bad = [str(p.relative_to(ROOT)) for package in ("sampling", "studio") for p in _files(package)
           if any(_imports_package(p, m) for m in ("training", "sample", "train", "scripts"))]
    assert bad == []


def test_hydra_and_omegaconf_only_at_the_config_boundary():
    bad = []
    for package in PACKAGES:
        for p in _files(package):
            rel = str(p.relative_to(ROOT))
            if rel in CONFIG_BOUNDARY:
                continue
            if any(_imports_package(p, m) for m in ("hydra", "omegaconf")) or "DictConfig" in p.read_text():
                bad.append(rel)
    assert bad == []


def test_scripts_import_no_script_and_patch_no_sys_path():
    bad = []
    for p in sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "docs").glob("*.py")):
        if any(_imports_package(p, m) for m in ("scripts", "sample", "train")):
            bad.append(f"{p.name} imports a script")
        if "sys.path" in p.read_text():
            bad.append(f"{p.name} patches sys.path")
    assert bad == []


def test_names_defined_once():
    for name in ("InputError", "load_model", "CheckpointError"):
        where = [str(p.relative_to(ROOT)) for package in (*PACKAGES, "scripts") for p in _files(package)
                 if any(isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name
                        for n in ast.parse(p.read_text()).body)]
        assert len(where) == 1, (name, where)
