"""Issue 17, section 1: a checkpoint's stored config can never run code or write files.

Each payload names a callable in the stored config (in ``model`` or in ``diffusion.schedule``), in a
Lightning ``.ckpt`` and in an exported ``.safetensors`` + ``.yaml``; each tool that loads checkpoints
(sample.py, scripts/evaluate.py, scripts/export.py) must exit 2 with one line, and the marker file the
payload would create must never appear. Before the fix, ``load_model`` passed the config to Hydra's
``instantiate``, and every payload here ran.
"""

from __future__ import annotations

import copy
import os
import pickle

import pytest
import torch
import yaml

import sample
from sampling.checkpoint import CheckpointError, load_model
from scripts import evaluate as evaluate_script
from scripts import export as export_script


class Payload:
    """A pickle that touches ``marker`` when unpickled with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _poisoned_configs(config: dict, where: str, tmp_path, marker) -> dict[str, dict]:
    """Copies of ``config`` whose ``where`` node would, if instantiated, create or write ``marker`` (or run a
    pickle that does)."""
    evil_pkl = tmp_path / "evil.pkl"
    with open(evil_pkl, "wb") as f:
        pickle.dump(Payload(marker), f)
    source = tmp_path / "source.txt"
    source.write_text("x")
    opener = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    replacements = {
        "open": opener,
        "copyfile": {"_target_": "shutil.copyfile", "src": str(source), "dst": str(marker)},
        "torch.save": {"_target_": "torch.save", "obj": 1, "f": str(marker)},
        "torch.load pickle": {"_target_": "torch.load", "f": str(evil_pkl), "weights_only": False},
    }
    out = {}
    for name, node in replacements.items():
        poisoned = copy.deepcopy(config)
        if where == "model":
            poisoned["model"] = node
        else:
            poisoned["diffusion"]["schedule"] = node
        out[name] = poisoned
    # an allowed constructor whose argument hides a callable (Hydra instantiates recursively), and one with
    # Hydra's positional ``_args_``
    for name, key, value in (("nested", "first_arg", opener), ("_args_", "_args_", [opener])):
        poisoned = copy.deepcopy(config)
        node = poisoned["model"] if where == "model" else poisoned["diffusion"]["schedule"]
        key = key if key == "_args_" else ("in_channels" if where == "model" else "timesteps")
        node[key] = value
        out[name] = poisoned
    return out


def _write(fmt: str, ckpt: dict, config: dict, dest):
    if fmt == "ckpt":
        ckpt = dict(ckpt, difflab=dict(ckpt["difflab"], config=config))
        torch.save(ckpt, dest.with_suffix(".ckpt"))
        return dest.with_suffix(".ckpt")
    from safetensors.torch import save_file

    ema = {k[len("ema."):]: v.contiguous() for k, v in ckpt["state_dict"].items() if k.startswith("ema.")}
    save_file(ema, str(dest.with_suffix(".safetensors")))
    dest.with_suffix(".yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest.with_suffix(".safetensors")


TOOLS = {
    "sample.py": lambda ck, out: sample.main([f"ckpt={ck}", "n=1", "sampler.steps=2", f"out={out}"]),
    "evaluate.py": lambda ck, out: evaluate_script.main([f"ckpt={ck}", "n=2", "metrics=fd", f"out={out / 'e.json'}"]),
    "export.py": lambda ck, out: export_script.main([f"ckpt={ck}", f"out={out / 'exported'}"]),
}


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@pytest.mark.parametrize("where", ["model", "diffusion.schedule"])
def test_stored_config_payloads_never_run(tmp_path, tiny_ckpts, capsys, fmt, where):
    marker = tmp_path / "marker"
    ckpt = torch.load(tiny_ckpts["cond"], map_location="cpu", weights_only=True)
    for k, (name, config) in enumerate(_poisoned_configs(ckpt["difflab"]["config"], where, tmp_path, marker).items()):
        path = _write(fmt, ckpt, config, tmp_path / f"evil_{k}")
        with pytest.raises(CheckpointError, match="refused"):
            load_model(path)
        assert not marker.exists(), (name, "load_model")
        for tool, call in TOOLS.items():
            out = tmp_path / f"out_{tool}_{k}"
            code = call(path, out)
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 2, (name, tool)
            assert len(err) == 1 and err[0].startswith("error:") and "refused" in err[0], (name, tool, err)
            assert not marker.exists(), (name, tool)
            assert not out.exists() or not any(out.iterdir()), (name, tool, "wrote output")


def test_allowed_constructor_with_unknown_key_is_refused(tmp_path, tiny_ckpts):
    ckpt = torch.load(tiny_ckpts["cond"], map_location="cpu", weights_only=True)
    config = copy.deepcopy(ckpt["difflab"]["config"])
    config["model"]["not_a_parameter"] = 3
    path = _write("ckpt", ckpt, config, tmp_path / "extra")
    with pytest.raises(CheckpointError, match="not_a_parameter"):
        load_model(path)


def test_huge_model_config_fails_on_the_shape_check_without_allocating(tmp_path, tiny_ckpts):
    # 2**20 base channels would need terabytes; the meta-device build compares shapes first
    ckpt = torch.load(tiny_ckpts["cond"], map_location="cpu", weights_only=True)
    config = copy.deepcopy(ckpt["difflab"]["config"])
    config["model"]["base_channels"] = 2**20
    path = _write("ckpt", ckpt, config, tmp_path / "huge")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_non_finite_weights_are_refused_by_every_loader(tmp_path, tiny_ckpts, capsys, fmt):
    ckpt = torch.load(tiny_ckpts["cond"], map_location="cpu", weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.startswith("ema."))
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    path = _write(fmt, ckpt, ckpt["difflab"]["config"], tmp_path / "nan")
    for tool, call in TOOLS.items():
        out = tmp_path / f"out_{tool}"
        assert call(path, out) == 2, tool
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "NaN or inf" in err[0], (tool, err)
        assert not out.exists() or not any(out.iterdir()), tool


def test_real_checkpoints_still_load(tiny_ckpts):
    for ck in tiny_ckpts.values():
        model = load_model(ck)
        assert model.image_shape == (3, 16, 16) and model.parametrization.name in ("eps", "x0", "v")


@pytest.mark.parametrize("content", [b"hello, I am a text file\n", b"", os.urandom(4096)])
def test_text_empty_and_random_files_get_one_line(tmp_path, capsys, content):
    path = tmp_path / "notes.ckpt"
    path.write_bytes(content)
    for tool, call in TOOLS.items():
        assert call(path, tmp_path / f"out_{tool}") == 2, tool
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "notes.ckpt" in err[0], (tool, err)
        assert "weights_only" not in err[0]  # torch's hint to retry unsafely is not passed on


def test_export_refuses_unknown_arguments(tmp_path, tiny_ckpts, capsys):
    for args in (["bogus=1"], ["ckpt"], [f"ckpt={tiny_ckpts['cond']}", "outt=x"], []):
        assert export_script.main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), (args, err)
    assert list(tmp_path.iterdir()) == []
