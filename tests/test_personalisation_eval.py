"""The measurements of issue 12: one-factor text edits (evaluation/text_edits.py) and the concept rate of textual
inversion (evaluation/personalisation.py)."""

import torch

from data.procedural import BACKGROUNDS, COLOURS, KINDS, ProceduralShapes, contrasting_backgrounds, parse_caption
from evaluation import text_edits
from evaluation.personalisation import composition_prompts, concept_scores, nearest_word, reference_pool
from evaluation.text_edits import pick_edits, score_edit


def test_each_edit_changes_exactly_one_factor_to_a_drawable_value():
    edits = pick_edits(3, seed=0, image_size=32)
    assert [e["factor"] for e in edits] == ["colour"] * 3 + ["shape"] * 3 + ["background"] * 3
    for e in edits:
        src, tgt = parse_caption(e["source_caption"]), parse_caption(e["target_caption"])
        changed = {k for k in src if src[k] != tgt[k]}
        assert changed == {e["factor"]}, (e["source_caption"], e["target_caption"])
        assert tgt["background"] in contrasting_backgrounds(tgt["colour"])
        # the image sample.py's image=procedural:<index>:<seed> loads (every method edits that spec)
        item = ProceduralShapes(size=e["index"] + 1, image_size=32, seed=e["data_seed"]).sample(e["index"])
        assert torch.equal(item["image"], e["image"]) and e["source_caption"] == item["caption"]
        mask = item["mask"][0]
        if e["factor"] == "colour":  # nothing may change on the background
            assert torch.equal(e["keep"], ~mask)
        elif e["factor"] == "background":
            assert torch.equal(e["keep"], mask)
        else:  # outside the grown bounding square: disjoint from the shape
            assert not (e["keep"] & mask).any() and e["keep"].any()


def test_score_edit_reads_success_kept_and_the_untouched_region(monkeypatch):
    e = pick_edits(1, seed=0, image_size=32)[0]  # a colour edit
    tgt = e["target"]

    def read_as(values):
        names = {"shape": KINDS, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS),
                 "size": ("small", "medium", "large")}
        return lambda net, images: {f: torch.tensor([names[f].index(values[f])]) for f in names}

    values = {"shape": tgt["kind"], "colour": tgt["colour"], "background": tgt["background"], "size": tgt["size"]}
    monkeypatch.setattr(text_edits, "predict_factors", read_as(values))
    out = e["image"].clone()
    assert score_edit(None, e, out) == {"success": 1.0, "kept": 1.0, "outside_mse": 0.0}
    out[:, e["keep"]] += 0.5  # the background moved
    assert abs(score_edit(None, e, out)["outside_mse"] - 0.25) < 1e-6
    monkeypatch.setattr(text_edits, "predict_factors", read_as(dict(values, colour=e["source"]["colour"],
                                                                    background="white" if tgt["background"] != "white"
                                                                    else "black")))
    assert score_edit(None, e, out)["success"] == 0.0 and score_edit(None, e, out)["kept"] == 0.0


def test_concept_rate_is_one_for_the_concept_and_zero_for_known_shapes():
    pool, is_concept = reference_pool("star", 32, 10)
    flat = lambda x: x.flatten(1)  # noqa: E731 (pixels as features: a star render is nearest to star renders)
    stars, others = pool[is_concept], pool[~is_concept]
    assert concept_scores(flat, stars[:3], pool, is_concept)["concept_distance"] < 1e-4
    fresh_shapes = torch.stack([ProceduralShapes(size=50, image_size=32, seed=99)[i][0] for i in range(50)])
    assert concept_scores(flat, fresh_shapes, pool, is_concept)["concept_rate"] < 0.3
    assert len(others) == 40


def test_composition_prompts_and_nearest_word():
    prompts, colours = composition_prompts("<s>", 6, seed=1)
    assert all(p.startswith(f"a large {c} <s> in the centre") for p, c in zip(prompts, colours))
    assert composition_prompts("<s>", 2, emoji=True) == (["a <s>", "a <s>"], None)
    from models.text import make_encoder

    encoder = make_encoder("all-MiniLM-L6-v2", 32)
    assert nearest_word(encoder, encoder.word_vector("circle")) == "circle"
    assert nearest_word(encoder, encoder.word_vector("circle"), exclude=("circle",)) != "circle"
