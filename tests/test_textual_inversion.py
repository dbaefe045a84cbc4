"""Textual inversion (issue 12): only the new token's embedding is trained, the embedding file round-trips and
plugs into sample.py (several at once), resume is exact, and bad input gets one line and exit 2 with nothing
written."""

import hashlib
import json

import pytest
import torch

import sample
from data.concept import PLACEHOLDER, render_concept, write_concept
from models.text import WithTokens, make_encoder
from sampling.checkpoint import load_model
from sampling.checks import InputError
from sampling.embeddings import FORMAT, load_embeddings, read_embeddings, save_embeddings
from tests.runner import run
from training.textual_inversion import EMBEDDINGS_FILE, TextualInversion

QUIET = ["+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false"]


@pytest.fixture(scope="module")
def encoder():
    return make_encoder("all-MiniLM-L6-v2", 32)


@pytest.fixture(scope="module")
def concept(tmp_path_factory):
    return write_concept(tmp_path_factory.mktemp("concept") / "star", "star", 4, image_size=16)


def _ti(run_dir, ckpt, concept, *extra):
    return run(["experiment=textual_inversion", f"ckpt={ckpt}", f"concept={concept}", 'token="<my-star>"',
                "init_word=star", f"hydra.run.dir={run_dir}", "textual_inversion.batch_size=2",
                "callbacks.preview.every_n_steps=0", "callbacks.preview.n=2", "callbacks.preview.steps=2", *QUIET,
                *extra])


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_concept_images_are_new_shapes_with_captions():
    images, captions = render_concept("star", 3, image_size=16)
    assert images.shape == (3, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert all(PLACEHOLDER in c and c.startswith("a large ") for c in captions)
    letters, _ = render_concept("letter:A", 2, image_size=32)
    assert not torch.equal(letters[0], images[0].new_zeros(3, 32, 32))


def test_pseudo_token_encodes_like_its_initial_word_before_training(encoder):
    vector = encoder.word_vector("star")
    a = encoder.encode_with(["a red <my-star> on a black background"], {"<my-star>": vector})
    b = encoder.encode(["a red star on a black background"])
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    c = encoder.encode_with(["a red <my-star>"], {"<my-star>": vector + 0.5})
    assert not torch.allclose(c.pooled, encoder.encode(["a red star"]).pooled)


def test_only_the_new_token_is_trained(text_ckpt, concept, encoder):
    """A few optimiser steps in-process: the vector moves, the network and every encoder weight stay bit-identical."""
    model = load_model(text_ckpt)
    net_before = {k: v.clone() for k, v in model.net.state_dict().items()}
    enc_before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    from training.textual_inversion import concept_images

    images, captions = concept_images(str(concept), model)
    module = TextualInversion(model, images, "<my-star>", "star", captions, batch_size=2, lr=1e-2)
    assert [n for n, p in module.named_parameters() if p.requires_grad] == ["vector"]
    assert list(module.state_dict()) == ["vector"]  # the frozen net is never checkpointed
    start = module.vector.detach().clone()
    opt = module.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        loss = module._loss(images, torch.randint(len(images), (2,), generator=g), g, augment=True)
        loss.backward()
        opt.step()
    assert not torch.equal(module.vector.detach(), start)
    assert all(torch.equal(v, net_before[k]) for k, v in model.net.state_dict().items())
    assert all(torch.equal(v, enc_before[k]) for k, v in encoder.model.state_dict().items())
    assert encoder.existing_token("<my-star>") is None  # the shared tokenizer never learnt the token


def test_embedding_file_round_trips(tmp_path, encoder):
    vector = torch.randn(384)
    path = save_embeddings(tmp_path / "e.safetensors", {"<a>": vector}, encoder, {"<a>": "star"})
    vectors, meta = read_embeddings(path)
    assert torch.equal(vectors["<a>"], vector) and meta["format"] == FORMAT
    assert meta["encoder"] == encoder.name and json.loads(meta["init_words"]) == {"<a>": "star"}
    assert path.stat().st_size < 4096
    save_embeddings(tmp_path / "f.safetensors", {"<b>": vector + 1}, encoder, {"<b>": "cross"})
    both = load_embeddings([tmp_path / "e.safetensors", tmp_path / "f.safetensors"], encoder)
    assert set(both) == {"<a>", "<b>"}
    with pytest.raises(InputError, match="another embedding file"):
        load_embeddings([tmp_path / "e.safetensors", tmp_path / "e.safetensors"], encoder)
    words = WithTokens(encoder, both).encode(["a <a> and a <b>", "a star and a cross"])
    assert not torch.equal(words.tokens[0], words.tokens[1])


def test_train_writes_an_embedding_that_sample_reads(text_ckpt, concept, tmp_path):
    before = _sha(text_ckpt)
    proc = _ti(tmp_path / "run", text_ckpt, concept, "trainer.max_steps=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    vectors, meta = read_embeddings(tmp_path / "run" / EMBEDDINGS_FILE)
    assert list(vectors) == ["<my-star>"] and json.loads(meta["init_words"]) == {"<my-star>": "star"}
    assert _sha(text_ckpt) == before  # the model file is read, never written
    out = tmp_path / "samples"
    assert sample.main([f"ckpt={text_ckpt}", f"embeddings={tmp_path / 'run' / EMBEDDINGS_FILE}",
                        'prompt="a green <my-star>"', "n=2", "sampler.steps=2", f"out={out}"]) == 0
    assert (out / "grid.png").is_file()
    code = sample.main([f"ckpt={text_ckpt}", "prompt=a <my-star>", f"out={tmp_path / 'x'}"])  # unquoted: told how
    assert code == 2


@pytest.mark.slow
def test_textual_inversion_resumes_exactly(text_ckpt, concept, tmp_path):
    straight = _ti(tmp_path / "straight", text_ckpt, concept, "trainer.max_steps=4")
    assert straight.returncode == 0, straight.stderr[-2000:]
    half = _ti(tmp_path / "resumed", text_ckpt, concept, "trainer.max_steps=2")
    assert half.returncode == 0, half.stderr[-2000:]
    resumed = _ti(tmp_path / "resumed", text_ckpt, concept, "trainer.max_steps=4", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, _ = read_embeddings(tmp_path / "straight" / EMBEDDINGS_FILE)
    b, _ = read_embeddings(tmp_path / "resumed" / EMBEDDINGS_FILE)
    assert torch.equal(a["<my-star>"], b["<my-star>"])


def _refused_train(tmp_path, ckpt, concept, *extra, token='"<my-star>"'):
    run_dir = tmp_path / "run"
    proc = run(["experiment=textual_inversion", f"ckpt={ckpt}", f"concept={concept}", f"token={token}",
                "init_word=star", f"hydra.run.dir={run_dir}", "trainer.max_steps=1", *QUIET, *extra])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
    for name in ("checkpoints", "config.yaml", ".hydra", ".lock", "metrics.csv", EMBEDDINGS_FILE):
        assert not (run_dir / name).exists(), f"{name} was written"  # Hydra itself makes the folder and train.log
    return err[0]


def _build(tmp_path, ckpt, concept, *extra, token='"<my-star>"'):
    """train.py's build of a textual-inversion run, in-process (the entry point is tested once below)."""
    from omegaconf import open_dict

    import train
    from tests.test_configs import compose_train

    cfg = compose_train(tmp_path, "experiment=textual_inversion", f"ckpt={ckpt}", f"concept={concept}",
                        f"token={token}", "init_word=star", *extra)
    with open_dict(cfg):
        del cfg["hydra"]
    return train.build(cfg)


def test_bad_textual_inversion_inputs_are_refused(text_ckpt, concept, tmp_path):
    from data import DatasetError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        _build(tmp_path, text_ckpt, empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="unreadable"):
        _build(tmp_path, text_ckpt, broken)
    with pytest.raises(InputError, match="already reads it"):
        _build(tmp_path, text_ckpt, concept, token="star")
    with pytest.raises(InputError, match="init_word"):
        _build(tmp_path, text_ckpt, concept, "init_word=starfish-shaped")
    with pytest.raises(InputError, match="templates"):
        _build(tmp_path, text_ckpt, concept, "textual_inversion.templates=[a photo]")
    uncaptioned = tmp_path / "uncaptioned"
    uncaptioned.mkdir()
    (uncaptioned / "a.png").write_bytes((concept / "000.png").read_bytes())
    (uncaptioned / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a large red star"}\n')
    with pytest.raises(InputError, match="<S\\*>"):
        _build(tmp_path, text_ckpt, uncaptioned)


def test_label_checkpoint_gets_one_line_exit_2_and_nothing_written(tiny_ckpts, concept, tmp_path):
    assert "text-conditioned" in _refused_train(tmp_path, tiny_ckpts["cond"], concept)


def test_embedding_for_another_encoder_is_refused(text_ckpt, tmp_path, encoder, capsys):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"<x>": torch.randn(384)}, str(path), metadata={"format": FORMAT, "encoder": "t5-small",
                                                               "encoder_version": "1", "init_words": "{}"})
    out = tmp_path / "out"
    code = sample.main([f"ckpt={text_ckpt}", f"embeddings={path}", "prompt=a cat", f"out={out}", "sampler.steps=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "t5-small" in err[0] and not out.exists()


def test_make_concept_writes_a_captioned_folder_or_nothing(tmp_path, capsys):
    from data.folder import ImageFolder
    from scripts.make_concept import main

    assert main([f"out={tmp_path / 'a'}", "kind=letter:A", "n=3", "image_size=16"]) == 0
    folder = ImageFolder(str(tmp_path / "a"), image_size=16)
    assert len(folder) == 3 and all(PLACEHOLDER in folder.caption(i) for i in range(3))
    assert main([f"out={tmp_path / 'a'}"]) == 2  # holds images already
    assert main([f"out={tmp_path / 'b'}", "kind=hexagon"]) == 2 and not (tmp_path / "b").exists()
    assert main([f"out={tmp_path / 'c'}", "n=0"]) == 2 and not (tmp_path / "c").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_a_flipped_image_gets_the_mirrored_caption():
    from training.textual_inversion import mirror_caption

    assert mirror_caption("a large red <S*> at the top left on a black background") == \
        "a large red <S*> at the top right on a black background"
    assert mirror_caption("a <S*> on the right") == "a <S*> on the left"
    assert mirror_caption("a bright <S*> in the centre") == "a bright <S*> in the centre"
