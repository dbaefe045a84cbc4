"""Text conditioning: the offline encoder, the caption cache, caption dropout, null and negative prompts reaching
the network, cross-attention's padding mask, and every sample.py task with a prompt on a tiny text checkpoint."""

import json
import socket
import warnings

import pytest
import torch

import sample
from data.procedural import HELD_OUT, ProceduralShapes, parse_caption
from diffusion.guidance import Guidance
from models.dit import DiT
from models.text import CaptionCache, TextCond, caption_key, make_encoder
from models.unet import UNet
from sampling.checkpoint import CheckpointError, load_model


@pytest.fixture(scope="module")
def encoder():
    return make_encoder("all-MiniLM-L6-v2", 32)


def test_encoder_loads_offline_and_encodes(monkeypatch):
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    make_encoder.cache_clear()  # really load it again, with the network refused
    enc = make_encoder("all-MiniLM-L6-v2", 32)
    out = enc.encode(["a red circle at the top left on a navy background", ""])
    assert out.tokens.shape == (2, 32, 384) and out.mask.shape == (2, 32) and out.pooled.shape == (2, 384)
    assert out.mask.dtype == torch.bool
    assert out.mask[1].sum() == 2  # the empty caption is [CLS] [SEP]
    assert out.mask[0].sum() == len(enc.tokenizer("a red circle at the top left on a navy background")["input_ids"])
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(out.tokens[0], out.tokens[1])


def test_long_prompt_is_truncated_with_a_warning(encoder):
    long = " ".join(["red"] * 60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = encoder.encode([long])
    assert out.mask.all()  # all 32 tokens used
    assert any("truncated" in str(w.message) for w in caught)


def test_procedural_captions_fit_the_token_length(encoder):
    counts = encoder.token_counts(ProceduralShapes(combos="all").captions())
    assert max(counts) <= 32


class CountingEncoder:
    """A stand-in encoder that counts its calls (for the cache tests)."""

    name, dim, max_length = "counting", 4, 8

    def __init__(self, version="1"):
        self.version, self.calls = version, 0

    def encode(self, texts):
        self.calls += 1
        n = len(texts)
        tokens = torch.arange(n * 8 * 4, dtype=torch.float32).reshape(n, 8, 4)
        mask = torch.ones(n, 8, dtype=torch.bool)
        return TextCond(tokens, mask, torch.ones(n, 4))


def test_caption_cache_is_keyed_and_invalidated(tmp_path):
    enc = CountingEncoder()
    a = CaptionCache.build(enc, ["b", "a"], tmp_path, log=lambda s: None)
    assert a.captions == ["", "a", "b"]  # row 0: the empty caption, the null condition
    assert enc.calls == 1
    again = CaptionCache.build(enc, ["a", "b"], tmp_path, log=lambda s: None)
    assert enc.calls == 1  # a hit: not encoded again
    assert torch.equal(again.cond.tokens, a.cond.tokens) and again.captions == a.captions
    CaptionCache.build(enc, ["a", "b", "c"], tmp_path, log=lambda s: None)
    assert enc.calls == 2  # another caption set: another entry
    other = CountingEncoder(version="2")
    CaptionCache.build(other, ["a", "b"], tmp_path, log=lambda s: None)
    assert other.calls == 1  # another encoder version: another entry
    assert caption_key(enc, ["a", "b"]) != caption_key(other, ["a", "b"])
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) == 3
    path = tmp_path / f"counting-{caption_key(enc, ['', 'a', 'b'])}.safetensors"
    path.write_bytes(b"garbage")  # a damaged entry is rebuilt, never trusted
    CaptionCache.build(enc, ["a", "b"], tmp_path, log=lambda s: None)
    assert enc.calls == 3
    assert torch.equal(a.lookup(["b", "a"]).tokens, a.cond.tokens[[2, 1]])
    with pytest.raises(KeyError, match="not in the cached caption set"):
        a.ids(["zzz"])


def test_caption_dropout_hits_its_rate():
    from diffusion.schedules import cosine_schedule
    from training.module import DiffusionModule

    enc = CountingEncoder()
    cache = CaptionCache(["", "x", "y"], enc.encode(["", "x", "y"]))
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, cond):
            seen.append(cond)
            return x * self.w

    module = DiffusionModule(Spy(), cosine_schedule(100), optimizer=torch.optim.AdamW, captions=cache,
                             label_dropout=0.1)
    n = 20000
    g = torch.Generator().manual_seed(0)
    module._loss(torch.zeros(n, 1, 2, 2), torch.zeros(n, dtype=torch.long), g, 0.1, ["x"] * n)
    dropped = (seen[-1].tokens[:, 0] == cache.cond.tokens[0, 0]).all(dim=-1).float().mean().item()
    assert abs(dropped - 0.1) < 4 * (0.1 * 0.9 / n) ** 0.5  # 4 sigma of a binomial rate
    kept = (seen[-1].tokens[:, 0] == cache.cond.tokens[1, 0]).all(dim=-1).float().mean().item()
    assert abs(dropped + kept - 1.0) < 1e-6  # every row is the caption's or the empty caption's encoding
    module._loss(torch.zeros(8, 1, 2, 2), torch.zeros(8, dtype=torch.long), g, 0.0, ["y"] * 8)
    assert torch.equal(seen[-1].tokens, cache.cond.tokens[[2] * 8])  # no dropout at validation


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_cross_attention_ignores_padded_tokens(kind):
    torch.manual_seed(0)
    if kind == "unet":
        net = UNet(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,), image_size=16,
                   cond="text")
    else:
        net = DiT(input_size=16, patch_size=4, in_channels=3, hidden_size=64, depth=2, num_heads=4, cond="text")
    with torch.no_grad():  # leave the zero-initialised outputs: otherwise cross-attention starts as the identity
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    B, L = 2, 8
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, :3] = True
    cond = TextCond(torch.randn(B, L, 384), mask, torch.randn(B, 384))
    x, t = torch.randn(B, 3, 16, 16), torch.tensor([10, 900])
    out = net(x, t, cond)
    padded = cond.tokens.clone()
    padded[:, 3:] = 100 * torch.randn(B, L - 3, 384)
    assert torch.equal(net(x, t, TextCond(padded, mask, cond.pooled)), out)
    real = cond.tokens.clone()
    real[:, :3] = torch.randn(B, 3, 384)
    assert not torch.allclose(net(x, t, TextCond(real, mask, cond.pooled)), out)  # real tokens do matter


def test_label_presets_keep_their_parameters():
    # cond=label builds exactly the modules a checkpoint from before text conditioning holds
    old = UNet(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(8,), num_classes=4)
    keys = set(old.state_dict())
    assert not any("xattn" in k or "pooled" in k or "context" in k for k in keys)
    dit = DiT(input_size=32, patch_size=4, in_channels=3, hidden_size=64, depth=2, num_heads=4, num_classes=4)
    assert not any("cross" in k or "pooled" in k for k in dit.state_dict())


def test_null_and_negative_prompts_reach_the_network(encoder):
    from diffusion.parametrization import make_parametrization
    from diffusion.schedules import cosine_schedule
    from sampling.checkpoint import LoadedModel
    from sampling.job import Job

    calls = []

    def net(x, t, cond):
        calls.append(cond)
        return torch.zeros_like(x)

    model = LoadedModel(net, cosine_schedule(100), make_parametrization("eps"), None, (3, 8, 8), {}, encoder)
    x, t = torch.zeros(2, 3, 8, 8), torch.tensor([50, 50])
    for negative, null_text in ((None, ""), ("a blue square", "a blue square")):
        calls.clear()
        job = Job(model, None, 10, "trailing", Guidance(3.0, batched=False), negative_prompt=negative)
        job.denoiser("a red circle", 2)(x, t)
        (cond, null) = calls
        assert torch.equal(cond.tokens, encoder.encode(["a red circle"] * 2).tokens)
        assert torch.equal(null.tokens, encoder.encode([null_text] * 2).tokens)


# -- sample.py on a tiny text checkpoint --------------------------------------------------------------------

TASKS = [
    ["prompt=a red circle at the top left on a navy background", "guidance=3", "n=2"],
    ["task=sdedit", "image=procedural:3", "prompt=a blue square", "n=1"],
    ["task=inpaint", "image=procedural:3", "mask=procedural:3", "prompt=a green cross", "n=1",
     "negative_prompt=a red circle", "guidance=2"],
    ["task=outpaint", "image=procedural:3", "prompt=a red circle", "task.pad=[4,0,4,0]", "n=1"],
    ["task=zoom", "task.frames=2", "prompt=a red circle"],
    ["task=invert", "image=procedural:3", "prompt=a large orange triangle"],
    ["task=ddib", "image=procedural:3", "task.source=an orange triangle", "task.target=a blue circle"],
    ["task=diffedit", "image=procedural:3", "task.query=a blue square", "task.reference=an orange triangle",
     "task.mask_draws=2", "task.mask_threshold=0.2"],
    ["task=denoise_compare", "image=procedural:3", "prompt=an orange triangle"],
]


@pytest.mark.parametrize("args", TASKS, ids=lambda a: a[0].split("=")[1] if a[0].startswith("task") else "generate")
def test_every_task_runs_with_a_prompt(text_ckpt, tmp_path, args):
    out = tmp_path / "out"
    assert sample.main([f"ckpt={text_ckpt}", f"out={out}", "sampler.steps=3", *args]) == 0
    assert any(out.iterdir())


def test_prompts_file_gives_one_captioned_row_per_prompt(text_ckpt, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue square on a white background\n")
    out = tmp_path / "out"
    assert sample.main([f"ckpt={text_ckpt}", f"out={out}", "sampler.steps=2", f"prompts={prompts}", "n=3"]) == 0
    info = json.loads((out / "prompts.json").read_text())
    assert info["prompts"] == ["a red circle", "a blue square on a white background"]
    assert len(list(out.glob("sample_*.png"))) == 6
    from PIL import Image

    grid = Image.open(out / "grid.png")
    assert grid.height > 2 * 16 * 2  # two rows of 2x-scaled 16-px tiles, with their captions


def _refused(capsys, args, tmp_path):
    out = tmp_path / "out"
    code = sample.main([*args, f"out={out}", "sampler.steps=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists()
    return err[0]


def test_bad_text_inputs_get_one_line_and_exit_2(text_ckpt, tiny_ckpts, tmp_path, capsys):
    label_ckpt = tiny_ckpts["cond"]
    assert "label" in _refused(capsys, [f"ckpt={label_ckpt}", "prompt=a red circle"], tmp_path)
    assert "text-conditioned" in _refused(capsys, [f"ckpt={text_ckpt}", "label=1"], tmp_path)
    assert "label" in _refused(capsys, [f"ckpt={label_ckpt}", "negative_prompt=red", "label=1"], tmp_path)
    assert "does not exist" in _refused(capsys, [f"ckpt={text_ckpt}", f"prompts={tmp_path / 'no.txt'}"], tmp_path)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    assert "UTF-8" in _refused(capsys, [f"ckpt={text_ckpt}", f"prompts={latin}"], tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert "no prompts" in _refused(capsys, [f"ckpt={text_ckpt}", f"prompts={empty}"], tmp_path)
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    assert "unreadable" in _refused(capsys, [f"ckpt={text_ckpt}", f"prompts={folder}"], tmp_path)
    assert "query" in _refused(capsys, [f"ckpt={text_ckpt}", "task=diffedit", "image=procedural:1"], tmp_path)


def _with_text_record(src, dst, **changes):
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["difflab"]["config"]["text"].update(changes)
    torch.save(ckpt, dst)
    return dst


def test_checkpoint_with_another_encoder_is_refused(text_ckpt, tmp_path, capsys):
    missing = _with_text_record(text_ckpt, tmp_path / "missing.ckpt", name="t5-xxl")
    with pytest.raises(CheckpointError, match="unknown text encoder"):
        load_model(missing)
    other = _with_text_record(text_ckpt, tmp_path / "other.ckpt", version="0.0.1")
    with pytest.raises(CheckpointError, match="version"):
        load_model(other)
    assert "t5-xxl" in _refused(capsys, [f"ckpt={missing}", "prompt=a"], tmp_path)


def test_checkpoint_from_before_text_loads_as_a_label_model(tiny_ckpts, tmp_path):
    ckpt = torch.load(tiny_ckpts["cond"], map_location="cpu", weights_only=True)
    model_cfg = ckpt["difflab"]["config"]["model"]
    for key in ("cond", "text_dim"):
        model_cfg.pop(key)
    torch.save(ckpt, tmp_path / "old.ckpt")
    model = load_model(tmp_path / "old.ckpt")
    assert model.cond_kind == "label" and model.encoder is None and model.num_classes == 4


def test_text_checkpoint_records_its_encoder(text_ckpt, encoder):
    model = load_model(text_ckpt)
    assert model.cond_kind == "text" and model.num_classes is None
    record = model.config["text"]
    assert record == {"name": encoder.name, "version": encoder.version, "dim": 384, "max_length": 32}


def test_held_out_combinations_never_reach_training():
    seen = ProceduralShapes(size=2000, combos="seen")
    pairs = {(seen.params(i)["colour"], seen.params(i)["kind"]) for i in range(2000)}
    assert not pairs & set(HELD_OUT)
    assert len(pairs) == 24 - len(HELD_OUT)
    assert not any((parse_caption(c)["colour"], parse_caption(c)["shape"]) in HELD_OUT for c in seen.captions())
    held = ProceduralShapes(size=200, combos="held_out")
    assert {(held.params(i)["colour"], held.params(i)["kind"]) for i in range(200)} == set(HELD_OUT)


def test_labelled_sets_give_class_prompts_for_evaluation():
    from evaluation.data_config import class_captions

    prompts = class_captions({"train": {"_target_": "data.fashion_mnist.FashionMNIST"}})
    assert prompts[7] == "a photo of a sneaker" and prompts[9] == "a photo of an ankle boot" and len(prompts) == 10
    assert class_captions({"train": {"_target_": "data.digits.Digits"}})[3] == "a photo of a digit 3"
    assert class_captions({"train": {"_target_": "data.procedural.ProceduralShapes"}}) is None


def test_conditional_variance_counts_what_the_condition_explains():
    from evaluation.variety import conditional_variance

    # two groups, each constant: the condition explains everything
    data = [(torch.full((1, 2, 2), float(k % 2)), k % 2) for k in range(10)]
    r = conditional_variance(data, lambda i, y: y, 10)
    assert r["within"] == 0 and abs(r["total"] - 0.25) < 1e-6 and r["explained"] == 1 and r["groups"] == 2
    r = conditional_variance(data, lambda i, y: 0, 10)  # one group: nothing explained
    assert abs(r["explained"]) < 1e-6
