"""The factor classifier of prompt adherence (models/classifier.py, evaluation/factors.py) and the adherence
measurement around it (evaluation/adherence.py), without a diffusion model: the generation path is tested with it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data.procedural import FACTORS, HELD_OUT, ProceduralShapes, make_caption, parse_caption
from evaluation import factors
from evaluation.adherence import format_table, measure_adherence, scored_factors, select_prompts
from models.classifier import Classifier, FactorClassifier
from sampling.checks import InputError
from sampling.cli import compose_config, to_dict

# The tiny run: 150 steps of 32 images at 16 px (~5 s on one core). Chance is 0.25 for shape and 0.17 for colour;
# this run reaches about 0.45 and 0.99 on 400 test images (a standard error of ~0.02 at chance), and an untrained or
# label-shuffled network stays at chance.
TINY = {"image_size": 16, "channels": 3, "steps": 150, "batch_size": 32, "width": 16, "test_size": 400}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(cache folder, the tiny classifier, its meta, the log of training it): trained once into a fresh cache."""
    cache = tmp_path_factory.mktemp("cache")
    lines: list[str] = []
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFLAB_CACHE", str(cache))
        torch.set_num_threads(1)  # two threads on two shared cores run several times slower than one
        try:
            net, meta = factors.cached_factor_classifier(**TINY, log=lines.append)
        finally:
            torch.set_num_threads(threads)
    return cache, net, meta, lines


class OneHot(nn.Module):
    """A stand-in classifier that reads its answers off the image: pixel (0, 0, k) holds factor k's value index."""

    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Identity() for name in FACTORS})
        self.anchor = nn.Parameter(torch.zeros(()))  # gives predict_factors a device

    def forward(self, x):
        return {name: F.one_hot(x[:, 0, 0, k].long(), len(values)).float()
                for k, (name, values) in enumerate(FACTORS.items())}


def encode(wanted: dict[str, str], wrong: tuple[str, ...] = ()) -> torch.Tensor:
    """An image OneHot reads as ``wanted`` (value 0 for a factor it does not name), ``wrong`` factors off by one."""
    x = torch.zeros(1, 1, 1, len(FACTORS))
    for k, (name, values) in enumerate(FACTORS.items()):
        index = values.index(wanted[name]) if name in wanted else 0
        x[0, 0, 0, k] = (index + (name in wrong)) % len(values)
    return x


# ---- the network ------------------------------------------------------------------------------------------------

def test_factor_classifier_shapes_and_the_unchanged_classifier():
    net = FactorClassifier(3, factors.HEADS, 32, width=8)
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    out = net(x)
    assert list(out) == list(FACTORS)
    assert {name: tuple(v.shape) for name, v in out.items()} == {n: (5, len(v)) for n, v in FACTORS.items()}
    assert net.features(x).shape == (5, net.feature_dim) == (5, 32)
    assert all(torch.isfinite(v).all() for v in out.values())
    with pytest.raises(ValueError, match="expects"):
        net(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="multiple of 4"):
        FactorClassifier(3, factors.HEADS, 30)
    # Classifier keeps its parameter names, so classifiers cached before FactorClassifier still load.
    keys = list(Classifier(3, 4, 32, 8).state_dict())
    assert keys[:2] == ["stages.0.0.weight", "stages.0.0.bias"] and keys[-2:] == ["head.weight", "head.bias"]
    assert len(keys) == 5 * 4 + 2


# ---- scoring ----------------------------------------------------------------------------------------------------

def test_score_factors_counts_only_the_named_factors():
    predicted = [
        {"shape": "circle", "colour": "red", "background": "black", "size": "small", "position": "top"},
        {"shape": "square", "colour": "red", "background": "white", "size": "large", "position": "left"},
        {"shape": "cross", "colour": "blue", "background": "navy", "size": "medium", "position": "centre"},
    ]
    wanted = [
        {"shape": "circle", "colour": "green"},  # shape right, colour wrong
        {"shape": "square", "position": "left", "size": "small"},  # shape, position right; size wrong
        {},  # names nothing: scored on nothing, not even "all"
    ]
    accuracy, counts = factors.score_factors(predicted, wanted)
    assert counts == {"shape": 2, "colour": 1, "size": 1, "position": 1, "all": 2}
    assert accuracy == {"shape": 1.0, "colour": 0.0, "size": 0.0, "position": 1.0, "all": 0.0}
    assert list(accuracy) == ["shape", "colour", "size", "position", "all"]  # FACTORS order; background never named
    with pytest.raises(ValueError, match="unknown factors"):
        factors.score_factors(predicted[:1], [{"hue": "red"}])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        factors.score_factors(predicted[:2], wanted[:1])


def test_factor_accuracy_reads_the_classifier_against_parsed_prompts():
    prompts = [make_caption("circle", "red", "navy", "small", "top left"), "a green square", "a blue triangle"]
    wanted = [parse_caption(p) for p in prompts]
    assert wanted[1] == {"shape": "square", "colour": "green"}
    images = torch.cat([encode(wanted[0], wrong=("position",)), encode(wanted[1]), encode(wanted[2], ("shape",))])
    accuracy, counts = factors.factor_accuracy(OneHot(), images, wanted, batch_size=2)  # two batches
    assert counts == {"shape": 3, "colour": 3, "background": 1, "size": 1, "position": 1, "all": 3}
    assert accuracy == pytest.approx({"shape": 2 / 3, "colour": 1.0, "background": 1.0, "size": 1.0,
                                      "position": 0.0, "all": 1 / 3})


def test_factor_labels_follow_params():
    shapes = ProceduralShapes(size=20, image_size=16, seed=3)
    labelled = factors.FactorLabels(shapes)
    for i in range(20):
        x, y = labelled[i]
        p = shapes.params(i)
        assert torch.equal(x, shapes[i][0])
        assert [values[int(v)] for values, v in zip(FACTORS.values(), y)] == [
            p["kind"], p["colour"], p["background"], p["size"], p["position"]]


# ---- training and the cache -------------------------------------------------------------------------------------

def test_tiny_training_beats_chance_on_shape_and_colour(tiny):
    _, net, meta, lines = tiny
    assert meta["test_accuracy"]["shape"] > 0.37 and meta["test_accuracy"]["colour"] > 0.8, meta["test_accuracy"]
    assert meta["held_out_accuracy"]["colour"] > 0.8, meta["held_out_accuracy"]
    assert any("training" in line for line in lines)
    # the meta's figures are the network's own on the test seed
    again = factors.dataset_accuracy(net, factors.factor_set(TINY["test_size"], 16, 3, meta["test_seed"]))
    assert again == meta["test_accuracy"]


def test_cache_round_trip(tiny, monkeypatch):
    cache, net, meta, _ = tiny
    monkeypatch.setenv("DIFFLAB_CACHE", str(cache))
    path = factors.factor_classifier_path({k: meta[k] for k in (*TINY, "lr", "seed", "test_seed")})
    assert path.parent == cache / "classifiers" and path.is_file()
    lines: list[str] = []
    loaded, loaded_meta = factors.cached_factor_classifier(**TINY, log=lines.append)
    assert lines == [f"factor classifier: {path}"]  # loaded, not retrained
    assert loaded_meta == meta and not loaded.training
    state, loaded_state = net.state_dict(), loaded.state_dict()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    # other settings are another file; a broken file is retrained, not fatal
    small = {"image_size": 16, "steps": 2, "batch_size": 4, "width": 8, "test_size": 4}
    factors.cached_factor_classifier(**small, log=lines.append)
    other = factors.factor_classifier_path({**factors.DEFAULTS, "channels": 3, **small})
    assert other != path and other.is_file()
    other.write_bytes(b"not a checkpoint")
    lines.clear()
    factors.cached_factor_classifier(**small, log=lines.append)
    assert any("training" in line for line in lines) and other.stat().st_size > 1000


# ---- prompt selection and measurement ---------------------------------------------------------------------------

@pytest.mark.parametrize("combos", ["seen", "held_out"])
def test_select_prompts_is_seeded_and_draws_only_its_split(combos):
    prompts = select_prompts(combos, 24, seed=0)
    assert prompts == select_prompts(combos, 24, seed=0) and prompts != select_prompts(combos, 24, seed=1)
    assert len(set(prompts)) == 24
    pairs = {(parse_caption(p)["colour"], parse_caption(p)["shape"]) for p in prompts}
    assert all(set(parse_caption(p)) == set(FACTORS) for p in prompts)
    if combos == "held_out":
        assert pairs <= set(HELD_OUT) and len(pairs) > 1
    else:
        assert not pairs & set(HELD_OUT)
    assert len(select_prompts(combos, 10**6, seed=0)) == len(ProceduralShapes(size=1, combos=combos).captions())
    with pytest.raises(InputError, match="combos"):
        select_prompts("unseen", 3, 0)


def test_measure_adherence_scores_each_guidance_and_split():
    calls = []

    def sample(prompt, guidance, n, seed):  # colour right only from guidance 3; position never
        calls.append((prompt, guidance, n, seed))
        wrong = ("position",) if guidance >= 3 else ("colour", "position")
        return torch.cat([encode(parse_caption(prompt), wrong)] * n)

    report = measure_adherence(sample, OneHot(), cond_kind="text", guidances=[1, 3], combos=["seen", "held_out"],
                               prompts=3, n_per_prompt=2, seed=5, log=lambda s: None)
    assert [(r["combos"], r["guidance"]) for r in report["rows"]] == [
        ("seen", 1.0), ("seen", 3.0), ("held_out", 1.0), ("held_out", 3.0)]
    assert [r["accuracy"]["colour"] for r in report["rows"]] == [0.0, 1.0, 0.0, 1.0]
    assert all(r["accuracy"]["shape"] == 1.0 and r["accuracy"]["position"] == 0.0 for r in report["rows"])
    assert all(r["counts"]["shape"] == 6 and r["images"] == 6 for r in report["rows"])
    assert report["prompts"]["held_out"] == select_prompts("held_out", 3, 5)
    # the same seeds at every guidance: prompt k with seed + k
    assert [c[3] for c in calls if c[1] == 1.0] == [c[3] for c in calls if c[1] == 3.0] == [5, 6, 7, 5, 6, 7]
    table = format_table(report)
    assert table.splitlines()[0] == "| combos | guidance | shape | colour | background | size | position | all |"
    assert "| held_out | 3 | 1.000 | 1.000 | 1.000 | 1.000 | 0.000 | 0.000 |" in table

    label = measure_adherence(sample, OneHot(), cond_kind="label", guidances=[1], combos=["seen"], prompts=2,
                              n_per_prompt=1, seed=0, log=lambda s: None)
    assert label["rows"][0]["accuracy"] == {"shape": 1.0, "all": 1.0}  # a label model: shape alone
    assert scored_factors("a red cross on a navy background", "label") == {"shape": "cross"}
    with pytest.raises(InputError, match="unconditional"):
        measure_adherence(sample, OneHot(), cond_kind=None, guidances=[1], combos=["seen"], prompts=1,
                          n_per_prompt=1, seed=0)


# ---- configs ----------------------------------------------------------------------------------------------------

def test_configs_compose_with_the_library_defaults():
    cfg = to_dict(compose_config("train_factor_classifier", []))
    assert {k: cfg[k] for k in factors.DEFAULTS} == factors.DEFAULTS  # prompt_adherence uses DEFAULTS
    assert (cfg["image_size"], cfg["channels"]) == (32, 3)
    cfg = to_dict(compose_config("prompt_adherence", ["ckpt=x.ckpt", "guidances=[1,7]"]))
    assert cfg["guidances"] == [1, 7] and cfg["combos"] == ["seen", "held_out"]
    assert (cfg["prompts"], cfg["n_per_prompt"]) == (24, 8)


def test_scripts_refuse_bad_input_in_one_line(tmp_path, capsys):
    from scripts.prompt_adherence import main as adherence_main
    from scripts.train_factor_classifier import main as train_main

    for main, argv, message in [
        (train_main, ["steps=0"], "steps"),
        (train_main, ["image_size=30"], "multiple of 4"),
        (train_main, ["channels=2"], "channels"),
        (adherence_main, ["ckpt=x.ckpt", "guidances=[]"], "guidances"),
        (adherence_main, ["ckpt=x.ckpt", "prompts=0"], "prompts"),
        (adherence_main, [f"ckpt={tmp_path / 'missing.ckpt'}"], "missing.ckpt"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
