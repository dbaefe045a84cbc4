"""The new backbones and schedule of issue 15 go through the one safe loader: a U-ViT or simple-diffusion U-Net
checkpoint (list-valued num_res_blocks, the shifted cosine schedule) loads and samples through sample.py."""

import pytest
import torch

import sample
from models.unet import UNet
from models.uvit import UViT
from sampling.checkpoint import load_model

UVIT = {"_target_": "models.uvit.UViT", "input_size": 16, "patch_size": 4, "in_channels": 3, "hidden_size": 32,
        "depth": 3, "num_heads": 2, "num_classes": 4, "learn_sigma": False, "cond": "label"}
SIMPLE = {"_target_": "models.unet.UNet", "in_channels": 3, "base_channels": 8, "channel_mult": [1, 2],
          "num_res_blocks": [1, 2], "attention_resolutions": [8], "image_size": 16, "dropout": 0.1,
          "dropout_resolutions": [8], "num_heads": 2, "num_classes": 4, "num_groups": 4}
SHIFTED = {"_target_": "diffusion.schedules.shifted_cosine_schedule", "timesteps": 100, "resolution": 16,
           "base_resolution": 8}


@pytest.mark.parametrize("model, schedule", [(UVIT, SHIFTED), (SIMPLE, SHIFTED)], ids=["uvit", "unet_simple"])
def test_a_new_backbone_checkpoint_loads_and_samples(tmp_path, model, schedule):
    torch.manual_seed(0)
    cls = {"models.uvit.UViT": UViT, "models.unet.UNet": UNet}[model["_target_"]]
    net = cls(**{k: v for k, v in model.items() if k != "_target_"})
    config = {"model": model, "diffusion": {"schedule": schedule, "prediction": "v"},
              "data": {"channels": 3, "image_size": 16, "num_classes": 4}}
    state = {f"{prefix}.{k}": v for prefix in ("net", "ema") for k, v in net.state_dict().items()}
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": state, "difflab": {"config": config}}, path)
    loaded = load_model(path)
    assert type(loaded.net) is cls and loaded.schedule.num_timesteps == 100
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 90])
    torch.testing.assert_close(loaded.net(x, t, torch.tensor([0, 4])), net.eval()(x, t, torch.tensor([0, 4])))
    out = tmp_path / "out"
    assert sample.main([f"ckpt={path}", f"out={out}", "sampler.steps=3", "n=2", "label=1", "guidance=2"]) == 0
    assert any(out.iterdir())
