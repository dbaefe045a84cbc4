"""Visual anagrams and factorized diffusion (issue 11): the views and components, the closed form, the tasks."""

from __future__ import annotations

import json

import pytest
import torch

import sample
from diffusion.illusions import (
    VIEWS,
    IllusionError,
    View,
    anagram_denoiser,
    check_view,
    factorized_denoiser,
    make_components,
    make_view,
)
from diffusion.samplers import make_timesteps, sample_ddim
from diffusion.schedules import cosine_schedule
from sampling.cli import build_job, compose_config
from sampling.illusions import _tween
from tests.gaussian import gaussian_denoiser

SHAPE = (3, 16, 16)


@pytest.mark.parametrize("name", VIEWS)
def test_view_inverse_gives_back_the_input_and_keeps_the_norm(name):
    view = make_view(name, SHAPE, jigsaw=4)
    x = torch.randn(5, *SHAPE, dtype=torch.float64)
    y = view.apply(x)
    assert torch.equal(view.inverse(y), x)  # exact: every view is a permutation or a sign flip
    assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-12)
    if name != "identity":
        assert not torch.equal(y, x)


@pytest.mark.parametrize("name", VIEWS)
def test_view_keeps_white_noise_white(name):
    """Pure noise under a view is again N(0, I): unit variance, uncorrelated pixels."""
    view = make_view(name, (1, 4, 4), jigsaw=2)
    z = view.apply(torch.randn(40000, 1, 4, 4, generator=torch.Generator().manual_seed(0))).flatten(1)
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(16), atol=0.03)


def test_animation_ends_on_the_view():
    """The GIF's turn ends exactly where the view puts the image (the tween and the view agree on direction)."""
    x = torch.randn(2, *SHAPE)
    for name in VIEWS:
        view = make_view(name, SHAPE)
        assert torch.allclose(_tween(view, x, 1.0), view.apply(x), atol=1e-4), name
        assert torch.allclose(_tween(view, x, 0.0), x, atol=1e-4), name


def test_non_orthogonal_views_are_refused():
    scale = View("scale", lambda x: 1.5 * x, lambda x: x / 1.5)  # invertible, but noise would not stay white
    with pytest.raises(IllusionError, match="not orthogonal"):
        check_view(scale, SHAPE)
    blur = View("blur", lambda x: (x + x.roll(1, -1)) / 2, lambda x: x)  # not invertible
    with pytest.raises(IllusionError, match="inverse"):
        check_view(blur, SHAPE)
    with pytest.raises(IllusionError, match="unknown view"):
        make_view("shear", SHAPE)
    with pytest.raises(IllusionError, match="divide"):
        make_view("jigsaw", (3, 30, 30), jigsaw=4)
    with pytest.raises(IllusionError, match="square"):
        make_view("rot90", (3, 16, 32))


def test_anagram_of_gaussians_is_the_gaussian_of_the_view_averaged_mean():
    """Closed form: for data N(mu_v, I) per view, view_v^-1 of the exact denoiser of view_v(x_t) is the exact
    denoiser of N(view_v^-1 mu_v, I), and their average is the exact denoiser of N(mean_v view_v^-1 mu_v, I).
    So on pure noise the combined eps estimate keeps unit variance, and sampling ends on that Gaussian."""
    schedule = cosine_schedule(1000)
    g = torch.Generator().manual_seed(0)
    views = [make_view(n, SHAPE) for n in ("identity", "rot90", "flip_v", "negate")]
    mus = [torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in views]
    denoiser = anagram_denoiser([gaussian_denoiser(schedule, mu, 1.0) for mu in mus], views)
    target = gaussian_denoiser(schedule, sum(v.inverse(mu[None])[0] for v, mu in zip(views, mus)) / len(views), 1.0)
    x_T = torch.randn(1000, *SHAPE, generator=g, dtype=torch.float64)
    for t in (999, 500, 20):
        tt = torch.full((len(x_T),), t)
        got, want = denoiser(x_T, tt), target(x_T, tt)
        assert torch.allclose(got.eps, want.eps, atol=1e-5) and torch.allclose(got.x0, want.x0, atol=1e-5)
    assert abs(denoiser(x_T, torch.full((len(x_T),), 999)).eps.var().item() - 1.0) < 0.01
    small = x_T[:500]
    ts = make_timesteps(1000, 100, "trailing")  # DDIM-100 shrinks the variance by about 2.5% itself
    x0 = sample_ddim(denoiser, small, schedule, ts, clip_x0=False)
    assert torch.allclose(x0, sample_ddim(target, small, schedule, ts, clip_x0=False), atol=1e-6)
    assert abs(x0.var(0).mean().item() - 1.0) < 0.04  # 500 samples


@pytest.mark.parametrize("kind", ["low_high", "grey_colour"])
def test_components_are_linear_and_sum_to_the_identity(kind):
    comps = make_components(kind, sigma=1.5, channels=3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    assert torch.allclose(sum(c.apply(x) for c in comps), x, atol=1e-6)
    for c in comps:
        assert torch.allclose(c.apply(2.0 * x - 3.0 * y), 2.0 * c.apply(x) - 3.0 * c.apply(y), atol=1e-5)
        assert c.apply(x).abs().sum() > 0.1 * x.abs().sum()  # neither component is empty
    if kind == "low_high":  # the low band is smooth: its neighbour differences are much smaller
        low = comps[0].apply(x)
        assert low.diff(dim=-1).abs().mean() < 0.3 * x.diff(dim=-1).abs().mean()


def test_factorized_with_equal_denoisers_is_plain_sampling():
    schedule = cosine_schedule(1000)
    den = gaussian_denoiser(schedule, 0.3, 0.7)
    x_T = torch.randn(8, *SHAPE, generator=torch.Generator().manual_seed(2))
    ts = make_timesteps(1000, 20, "trailing")
    plain = sample_ddim(den, x_T, schedule, ts)
    factored = sample_ddim(factorized_denoiser([den, den], make_components("low_high", 2.0)), x_T, schedule, ts)
    assert torch.allclose(factored, plain, atol=1e-5)


def _run(ckpt, out, *overrides):
    return sample.main([f"ckpt={ckpt}", f"out={out}", "sampler.steps=3", *overrides])


def _pixels(outputs: dict) -> torch.Tensor:
    """The sample_XXXX.png images of a task's outputs as one integer tensor."""
    return torch.stack([torch.tensor(list(v.getdata())) for k, v in sorted(outputs.items()) if k.startswith("sample_")])


def test_hybrid_task_with_equal_labels_is_generate(tiny_ckpts, tmp_path):
    """Both conditions the same label: factorized sampling gives generate's images (same seeds, same sampler)."""
    ckpt = tiny_ckpts["cond"]
    def cfg(*o):
        return compose_config("sample", [f"ckpt={ckpt}", "sampler=ddpm", "sampler.steps=4", "n=3", *o])
    job, task = build_job(cfg("task=hybrid", "task.labels=[1,1]", "guidance=2"))
    hybrid = _pixels(task(job))
    job, task = build_job(cfg("label=1", "guidance=2"))
    plain = _pixels(task(job))
    assert (hybrid - plain).abs().max() <= 1  # the same images up to one level of 8-bit rounding


def test_anagram_task_with_one_identity_view_is_generate(tiny_ckpts):
    ckpt = tiny_ckpts["cond"]
    def cfg(*o):
        return compose_config("sample", [f"ckpt={ckpt}", "sampler=ddim", "sampler.steps=4", "n=2", *o])
    job, task = build_job(cfg("task=anagram", "task.views=[identity]", "task.labels=[2]"))
    a = task(job)
    job, task = build_job(cfg("label=2"))
    b = task(job)
    for i in range(2):
        assert list(a[f"sample_{i:04d}.png"].getdata()) == list(b[f"sample_{i:04d}.png"].getdata())


def test_anagram_writes_views_strips_and_gif(tiny_ckpts, tmp_path):
    out = tmp_path / "a"
    assert _run(tiny_ckpts["cond"], out, "task=anagram", "task.views=[identity,rot180,jigsaw]",
                "task.labels=[0,1,2]", "n=2", "guidance=2") == 0
    names = {p.name for p in out.iterdir()}
    assert {"views.png", "anagram.gif", "anagram_0000.png", "anagram_0001.png", "anagram.json"} <= names
    meta = json.loads((out / "anagram.json").read_text())
    assert meta["views"] == ["identity", "rot180", "jigsaw4"] and meta["conditions"] == [0, 1, 2]
    assert "sampler" in (out / "config.yaml").read_text() and "sample_ddpm" in (out / "config.yaml").read_text()


def test_illusions_take_prompts_on_a_text_model(text_ckpt, tmp_path):
    assert _run(text_ckpt, tmp_path / "a", "task=anagram", "task.views=[identity,flip_v]",
                'task.prompts=["a red triangle","a blue circle"]', "n=1", "guidance=2") == 0
    assert _run(text_ckpt, tmp_path / "h", "task=hybrid", 'task.prompts=["a red circle","a green square"]',
                "task.sigma=1.5", "n=1") == 0
    assert json.loads((tmp_path / "h" / "hybrid.json").read_text())["conditions"] == ["a red circle", "a green square"]


BAD = {
    "view count differs from label count": (["task=anagram", "task.views=[identity,rot180]", "task.labels=[1]"],
                                            "task.labels: 1 given for 2 view(s)"),
    "unknown view": (["task=anagram", "task.views=[identity,shear]", "task.labels=[1,2]"], "unknown view 'shear'"),
    "jigsaw does not divide": (["task=anagram", "task.views=[identity,jigsaw]", "task.labels=[1,2]", "task.jigsaw=3"],
                               "must be >= 2 and divide the image size 16"),
    "jigsaw out of range": (["task=anagram", "task.jigsaw=1", "task.labels=[1,2]"], "task.jigsaw must be an integer"),
    "view twice": (["task=anagram", "task.views=[rot90,rot90]", "task.labels=[1,2]"], "each view once"),
    "no conditions": (["task=anagram"], "give one condition per view as task.labels"),
    "prompts on a label model": (["task=anagram", 'task.prompts=["a","b"]'], "not a prompt"),
    "label out of range": (["task=hybrid", "task.labels=[1,99]"], "label must be an integer"),
    "component count": (["task=hybrid", "task.labels=[1,2,3]"], "task.labels: 3 given for 2 component(s)"),
    "sigma too large for the image": (["task=hybrid", "task.labels=[1,2]", "task.sigma=6"], "must fit the 16-pixel"),
    "sigma 0": (["task=hybrid", "task.labels=[1,2]", "task.sigma=0"], "task.sigma must be a finite number in (0, 8]"),
    "kind bogus": (["task=hybrid", "task.labels=[1,2]", "task.kind=bogus"], "task.kind must be one of"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_illusion_input_one_line_exit_2(name, tiny_ckpts, tmp_path, capsys):
    overrides, message = BAD[name]
    assert _run(tiny_ckpts["cond"], tmp_path / "o", *overrides) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_labels_on_a_text_model_are_refused(text_ckpt, tmp_path, capsys):
    assert _run(text_ckpt, tmp_path / "o", "task=anagram", "task.labels=[1,2]") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "text" in err


def test_anagram_accuracy_scores_each_view_against_its_own_condition(tiny_ckpts):
    """evaluation.illusions: view v's score sees view_v(image) with condition v (a recording scorer)."""
    from evaluation.illusions import anagram_accuracy, hybrid_accuracy

    job, _ = build_job(compose_config("sample", [f"ckpt={tiny_ckpts['cond']}", "sampler.steps=2"]))
    seen = []
    score = lambda images, c: (seen.append((images, c)), float(c == 1))[1]  # noqa: E731
    r = anagram_accuracy(job, score, ["identity", "rot180"], [1, 2], n=2)
    assert r["accuracy"] == [1.0, 0.0] and r["all"] == 0.0 and r["views"] == ["identity", "rot180"]
    first = [im for im, c in seen if c == 1]
    second = [im for im, c in seen if c == 2]
    for a, b in zip(first, second):
        assert torch.equal(torch.rot90(a, 2, (-2, -1)), b)
    seen.clear()
    h = hybrid_accuracy(job, score, [1, 2], n=2, sigma=1.0)
    low = make_components("low_high", 1.0)[0].apply(h["images"])
    assert torch.allclose(seen[0][0], low) and seen[0][1] == 1 and seen[1][1] == 2
