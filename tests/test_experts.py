"""eDiff-I's expert ensemble (issue 15): routing of every t to exactly one expert, identical experts equal the single
model, interval-restricted training times, branching from a base model, joining experts into one checkpoint that
every task runs, and the per-bucket loss."""

import copy
import json

import pytest
import torch
from omegaconf import open_dict

import sample
from diffusion.parametrization import make_parametrization
from models.experts import ExpertEnsemble, check_boundaries, select
from models.text import TextCond
from models.unet import UNet
from sampling.checkpoint import CheckpointError, load_model
from scripts import bucket_loss, combine_experts
from tests.runner import train
from tests.runner import train as train_run


def tiny_unet(seed: int, cond: str = "label") -> UNet:
    torch.manual_seed(seed)
    net = UNet(in_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
               image_size=8, num_classes=3, num_groups=4, cond=cond, text_dim=16)
    for p in net.parameters():  # zero-initialised output layers would make every expert output 0
        torch.nn.init.normal_(p, std=0.2)
    return net.eval()


def test_every_timestep_has_exactly_one_expert():
    ens = ExpertEnsemble([tiny_unet(0), tiny_unet(1), tiny_unet(2)], [300, 700])
    t = torch.tensor([0, 299, 299.5, 300, 699.99, 700, 999, 999.5])
    assert ens.expert_index(t).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    every = ens.expert_index(torch.arange(1000))
    assert torch.equal(torch.bincount(every), torch.tensor([300, 400, 300]))


def test_identical_experts_equal_the_single_model():
    single = tiny_unet(0)
    ens = ExpertEnsemble([copy.deepcopy(single), copy.deepcopy(single)], [500])
    x, t = torch.randn(6, 1, 8, 8), torch.tensor([10, 900, 499, 500, 0, 999])
    labels = torch.tensor([0, 1, 2, 3, 1, 0])  # 3 = the null label
    torch.testing.assert_close(ens(x, t, labels), single(x, t, labels), rtol=0, atol=1e-6)
    torch.testing.assert_close(ens(x, t, None), single(x, t, None), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cond_kind", ["label", "text"])
def test_a_mixed_batch_gives_each_sample_its_own_experts_output(cond_kind):
    experts = [tiny_unet(0, cond_kind), tiny_unet(1, cond_kind)]
    ens = ExpertEnsemble(experts, [500])
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([10, 900, 499, 500, 3])
    if cond_kind == "text":
        cond = TextCond(torch.randn(5, 4, 16), torch.rand(5, 4) > 0.3, torch.randn(5, 16))
    else:
        cond = torch.tensor([0, 1, 2, 0, 1])
    out = ens(x, t, cond)
    for i in range(5):
        k = int(t[i] >= 500)
        one = select(cond, torch.tensor([i]), 5)
        torch.testing.assert_close(out[i:i + 1], experts[k](x[i:i + 1], t[i:i + 1], one), rtol=0, atol=1e-6)
    assert not torch.allclose(experts[0](x, t, cond), experts[1](x, t, cond))  # the experts really differ


def test_ensemble_arguments_are_checked():
    with pytest.raises(ValueError, match="increase strictly"):
        check_boundaries([700, 300], 1000)
    with pytest.raises(ValueError, match="increase strictly"):
        check_boundaries([0], 1000)
    with pytest.raises(ValueError, match="need 2 experts"):
        ExpertEnsemble([tiny_unet(0)], [500])
    other = UNet(in_channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
                 image_size=8, num_classes=3, num_groups=4)
    with pytest.raises(ValueError, match="differ in in_channels"):
        ExpertEnsemble([tiny_unet(0), other], [500])


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal"])
def test_training_times_stay_in_the_interval_with_the_truncated_distribution(sampling):
    param = make_parametrization("v", time_sampling=sampling)
    g = torch.Generator().manual_seed(0)
    t = param.sample_timesteps(200_000, 1000, g, (250, 600))
    assert int(t.min()) == 250 and int(t.max()) == 599
    full = param.sample_timesteps(400_000, 1000, torch.Generator().manual_seed(1))
    inside = full[(full >= 250) & (full < 600)].double()
    # the truncated draw has the law of the full one conditioned on the interval
    assert abs(float(t.double().mean()) - float(inside.mean())) < 1.0
    assert abs(float(t.double().std()) - float(inside.std())) < 1.0
    full_range = param.sample_timesteps(7, 1000, torch.Generator().manual_seed(5), (0, 1000))
    assert torch.equal(full_range, param.sample_timesteps(7, 1000, torch.Generator().manual_seed(5)))


# -- base model, experts, one checkpoint ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    train(root / "base", "trainer.max_steps=4")
    base = root / "base" / "checkpoints" / "last.ckpt"
    # lr ~ 0: the low expert's weights stay the base model's, which shows init_from loaded them
    train(root / "lo", f"init_from={base}", "diffusion.t_interval=[0,400]",
          "trainer.max_steps=2", "optim.optimizer.lr=1e-30")
    train(root / "hi", f"init_from={base}", "diffusion.t_interval=[400,1000]",
          "trainer.max_steps=4")
    return {name: root / name / "checkpoints" / "last.ckpt" for name in ("base", "lo", "hi")}


def test_an_expert_starts_from_the_base_weights(experts):
    base, lo = (torch.load(experts[k], weights_only=True)["state_dict"] for k in ("base", "lo"))
    for key in base:
        if key.startswith("net."):
            torch.testing.assert_close(lo[key], base[key], rtol=0, atol=1e-12)


def test_joined_experts_load_as_one_ensemble_and_run_every_task(experts, tmp_path):
    out = tmp_path / "ensemble.ckpt"
    assert combine_experts.main([f"experts=[{experts['hi']},{experts['lo']}]", f"out={out}"]) == 0
    model = load_model(out)
    assert isinstance(model.net, ExpertEnsemble) and model.net.boundaries == [400]
    hi = torch.load(experts["hi"], weights_only=True)["state_dict"]
    for key, value in model.net.experts[1].state_dict().items():
        torch.testing.assert_close(value, hi[f"ema.{key}"], rtol=0, atol=0)
    for args in (["label=1", "guidance=2", "n=2"], ["sampler=dpmpp_2m", "n=1"], ["sampler=ddpm", "n=1"],
                 ["task=sdedit", "image=procedural:3", "label=2"],
                 ["task=inpaint", "image=procedural:3", "mask=procedural:3", "label=1"],
                 ["task=invert", "image=procedural:3"],
                 ["task=anagram", "task.views=[identity,rot180]", "task.labels=[1,2]", "task.n=1"]):
        folder = tmp_path / args[0].replace("=", "_")
        assert sample.main([f"ckpt={out}", f"out={folder}", "sampler.steps=3", *args]) == 0, args
        assert any(folder.iterdir())


@pytest.mark.parametrize("which, needle", [
    (["base", "hi"], "not an expert"),
    (["hi", "hi"], "must tile"),
    (["lo"], "2 to 16 experts"),
])
def test_experts_that_do_not_form_an_ensemble_are_refused(experts, tmp_path, capsys, which, needle):
    out = tmp_path / "ensemble.ckpt"
    assert combine_experts.main([f"experts=[{','.join(str(experts[w]) for w in which)}]", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_an_ensemble_config_naming_a_foreign_expert_is_refused(experts, tmp_path):
    ckpt = combine_experts.combine_experts([experts["lo"], experts["hi"]])
    ckpt["difflab"]["config"]["model"]["expert"]["_target_"] = "os.system"
    path = tmp_path / "bad.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="model.expert config names 'os.system'"):
        load_model(path)
    ckpt["difflab"]["config"]["model"]["expert"]["_target_"] = "models.unet.UNet"
    ckpt["difflab"]["config"]["model"]["boundaries"] = list(range(1, 40))
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="list of 1 to 15"):
        load_model(path)


def test_bad_intervals_are_refused_by_train(tmp_path):
    import train
    from sampling.checks import InputError
    from tests.test_configs import compose_train

    for bad in ("[0,1001]", "[0.5,10]", "[7]"):
        cfg = compose_train(tmp_path, f"diffusion.t_interval={bad}")
        with open_dict(cfg):
            del cfg["hydra"]  # as in train.py, where Hydra hands over the config without its own node
        with pytest.raises(InputError, match="diffusion.t_interval"):
            train.check_settings(cfg)
    proc = train_run(tmp_path / "run", "diffusion.t_interval=[500,400]", check=False)  # the whole entry point
    assert proc.returncode == 2 and "diffusion.t_interval" in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bucket_loss_table(experts, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bucket_loss.main([f"ckpts=[{experts['base']},{experts['base']}]", "names=[base,again]", "n=8",
                             "buckets=4", "draws=1", f"out={out}", f"plot={tmp_path / 'b.png'}"]) == 0
    report = json.loads(out.read_text())
    rows = report["models"]["base"]
    assert [(r["t_lo"], r["t_hi"]) for r in rows] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert report["models"]["again"] == rows  # every model sees the same images, noise and timesteps
    # x0 is harder to recover at higher noise
    assert rows[0]["x0_mse"] < rows[-1]["x0_mse"]
    assert (tmp_path / "b.png").stat().st_size > 0
    assert bucket_loss.main([f"ckpts=[{experts['base']}]", "buckets=0"]) == 2

