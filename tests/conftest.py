"""Shared pytest set-up: the repo root on sys.path, single-threaded determinism where it matters."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory):
    """Two tiny trained checkpoints (conditional and unconditional U-Net, 16x16), made once per session."""
    from tests.runner import train

    root = tmp_path_factory.mktemp("ckpts")
    train(root / "cond", "trainer.max_steps=4")
    train(root / "uncond", "trainer.max_steps=4", "model.num_classes=null")
    return {name: root / name / "checkpoints" / "last.ckpt" for name in ("cond", "uncond")}


@pytest.fixture(scope="session")
def text_ckpt(tmp_path_factory):
    """A tiny trained text-conditioned U-Net (16x16, procedural captions, MiniLM encodings), made once per session."""
    from tests.runner import train

    root = tmp_path_factory.mktemp("text_ckpt")
    train(root / "text", "trainer.max_steps=4", "model.cond=text")
    return root / "text" / "checkpoints" / "last.ckpt"
