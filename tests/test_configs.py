"""Every YAML in configs/ composes through train.yaml and instantiates (models: tests/test_models.py)."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from data import DatasetError
from diffusion.samplers import SCHEDULE_SPACINGS
from diffusion.schedules import Schedule

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_train(tmp_path, *overrides: str):
    """train.yaml composed with ``overrides``, with ${hydra:runtime.output_dir} pointing at tmp_path."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_groups_have_the_documented_options():
    assert {"procedural", "digits", "fashion_mnist", "mnist", "cifar10", "folder"} <= set(_options("data"))
    assert {"cpu", "gpu", "ddp"} <= set(_options("trainer"))
    assert {"csv", "tensorboard", "wandb"} <= set(_options("logger"))
    assert {"linear", "cosine", "sigmoid"} <= set(_options("diffusion/schedule"))


@pytest.mark.parametrize("name", [n for n in _options("diffusion/schedule") if n not in ("flow", "shifted_cosine")])
@pytest.mark.parametrize("ztsnr", [False, True])
def test_schedule_configs(tmp_path, name, ztsnr):
    cfg = compose_train(tmp_path, f"diffusion/schedule={name}", f"diffusion.schedule.zero_terminal_snr={ztsnr}")
    schedule = instantiate(cfg.diffusion.schedule)
    assert isinstance(schedule, Schedule) and schedule.num_timesteps == 1000
    assert (schedule.alphas_cumprod[-1].item() == 0.0) == ztsnr


def test_flow_config(tmp_path):
    """diffusion=flow: the flow schedule (zero SNR at its last timestep: t = 1) and the velocity objective."""
    cfg = compose_train(tmp_path, "diffusion=flow")
    schedule = instantiate(cfg.diffusion.schedule)
    assert schedule.num_timesteps == 1000 and schedule.alphas_cumprod[-1].item() == 0.0
    assert cfg.diffusion.prediction == "flow" and cfg.diffusion.time_sampling == "logit_normal"


@pytest.mark.parametrize("name", _options("data"))
def test_data_configs(tmp_path, name):
    overrides = [f"data={name}"]
    if name == "folder":
        from PIL import Image

        for cls in ("a", "b"):
            (tmp_path / "img" / cls).mkdir(parents=True)
            for i in range(10):
                Image.new("RGB", (40, 30), (i * 20, 0, 0)).save(tmp_path / "img" / cls / f"{i}.png")
        overrides.append(f"data.train.root={tmp_path / 'img'}")
    if name in ("mnist", "cifar10"):  # no network here: the loader must say so in one line
        overrides += [f"data.train.root={tmp_path / name}", f"data.val.root={tmp_path / name}"]
    cfg = compose_train(tmp_path, *overrides)
    try:
        dm = instantiate(cfg.data)
    except Exception as e:  # Hydra wraps the constructor's error
        cause = e.__cause__ or e
        assert name in ("mnist", "cifar10") and isinstance(cause, DatasetError), repr(e)
        assert "\n" not in str(cause) and name.replace("cifar10", "CIFAR").upper()[:5] in str(cause).upper()
        return
    x, y = dm.train_set[0]
    assert x.shape == (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert dm.num_classes == cfg.data.num_classes or name == "folder"


@pytest.mark.parametrize("name", _options("trainer"))
def test_trainer_configs(tmp_path, name):
    cfg = compose_train(tmp_path, f"trainer={name}", "trainer.accelerator=cpu")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_steps == cfg.trainer.max_steps


@pytest.mark.parametrize("name", _options("logger"))
def test_logger_configs(tmp_path, name, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_train(tmp_path, f"logger={name}")
    loggers = [instantiate(c) for c in cfg.logger.values()]
    assert loggers and all(str(tmp_path) in str(lg.save_dir) for lg in loggers)


@pytest.mark.parametrize("name", _options("callbacks"))
def test_callback_configs(tmp_path, name):
    cfg = compose_train(tmp_path, f"callbacks={name}")
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    assert len(callbacks) == len(cfg.callbacks)


@pytest.mark.parametrize("name", _options("optim"))
def test_optim_configs(tmp_path, name):
    cfg = compose_train(tmp_path, f"optim={name}")
    opt = instantiate(cfg.optim.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.Optimizer) and opt.param_groups[0]["lr"] == cfg.optim.optimizer.lr


@pytest.mark.parametrize("name", _options("experiment"))
def test_experiment_configs_compose_and_build(tmp_path, name, request):
    import train

    extra = []
    if name == "textual_inversion":  # a run on a trained text model and a folder of concept images
        from data.concept import write_concept

        concept = write_concept(tmp_path / "concept", "star", 3, image_size=16)
        extra = [f"ckpt={request.getfixturevalue('text_ckpt')}", f"concept={concept}", 'token="<my-star>"',
                 "init_word=star"]
    cfg = compose_train(tmp_path, f"experiment={name}", *extra)
    with open_dict(cfg):
        del cfg["hydra"]  # as in train.py, where Hydra hands over the config without its own node
    module, datamodule = train.build(cfg)
    if name == "textual_inversion":
        assert [n for n, p in module.named_parameters() if p.requires_grad] == ["vector"]
        assert datamodule.count == 3
    else:
        assert module.num_classes == datamodule.num_classes


# The tools' own configs (configs/<tool>.yaml, composed by sampling.cli) with the settings each requires.
TOOLS = {
    "benchmark_train": [],
    "benchmark_text": [],
    "data_variety": [],
    "prompt_adherence": ["ckpt=x.ckpt"],
    "train_factor_classifier": [],
    "benchmark_sample": [],
    "benchmark_edit": ["ckpt=x.ckpt"],
    "sweep_report": ["sweep_dir=runs/multirun/x"],
    "train_classifier": ["data=procedural"],
    "ddib_transfer": ["ckpt=x.ckpt", "data=procedural", "source=0", "target=1"],
    "eval": ["ckpt=x.ckpt", "data=procedural"],
    "export": ["ckpt=x.ckpt"],
    "textual_inversion_eval": ["ckpt=x.ckpt", "runs=runs/ti"],
    "text_edit_eval": ["ckpt=x.ckpt"],
    "make_concept": ["out=concepts/x"],
}


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_configs_compose(name):
    from sampling.checks import InputError
    from sampling.cli import compose_config, to_dict

    cfg = to_dict(compose_config(name, TOOLS[name]))
    for key, value in (o.split("=") for o in TOOLS[name]):
        if key == "data":  # a config group: its node is there, resolved
            assert cfg["data"]["train"]["_target_"] == "data.procedural.ProceduralShapes"
        else:
            assert str(cfg[key]) == value
    if TOOLS[name]:  # a required setting left out is one error line
        with pytest.raises(InputError):
            compose_config(name, [])


@pytest.mark.parametrize("name", _options("task"))
def test_task_configs_name_exactly_their_functions_parameters(name):
    """configs/task/<name>.yaml instantiates to a partial of its task function, and its keys are that function's
    parameters (besides the job): a key no parameter takes could otherwise be set and silently ignored."""
    import inspect

    from sampling.cli import TASK_INPUTS, compose_config

    cfg = compose_config("sample", ["ckpt=x.ckpt", f"task={name}", "task.source=0", "task.target=1"]
                         if name in ("ddib", "diffedit") else ["ckpt=x.ckpt", f"task={name}"])
    task = instantiate(cfg.task)
    params = list(inspect.signature(task.func).parameters)
    assert params[0] == "job"
    assert set(task.keywords) == set(params[1:]), (sorted(task.keywords), params[1:])
    assert set(TASK_INPUTS) <= set(cfg) and all(cfg[k] is None for k in TASK_INPUTS)  # shorthands default to unset


@pytest.mark.parametrize("name", _options("sampler"))
def test_sampler_configs_instantiate(name):
    from sampling.cli import compose_config, to_dict

    node = to_dict(compose_config("sample", ["ckpt=x.ckpt", f"sampler={name}"]).sampler)
    steps, spacing = node.pop("steps"), node.pop("spacing")
    sigma_max = node.pop("sigma_max", None)  # karras spacing's start, read by the job, not the sampler
    assert sigma_max is None or (spacing == "karras" and sigma_max > 0)
    sampler = instantiate(node)
    assert callable(sampler) and steps >= 1 and spacing in SCHEDULE_SPACINGS
