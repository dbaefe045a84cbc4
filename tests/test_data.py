"""Datasets: exact values, determinism, splits, and one-line DatasetErrors for missing or bad data."""

import gzip
import math
import socket
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data import DatasetError
from data.digits import Digits
from data.fashion_mnist import FashionMNIST
from data.folder import ImageFolder
from data.procedural import (
    BACKGROUNDS,
    COLOURS,
    KINDS,
    MIN_LUMA_CONTRAST,
    POSITIONS,
    SIZES,
    ProceduralShapes,
    contrasting_backgrounds,
    luma,
)
from data.torchvision_sets import CIFAR10, MNIST
from data.transforms import to_tensor_image

ROOT = Path(__file__).resolve().parents[1]
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_ROOT / "train-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST not in {FASHION_ROOT}: apt-get install -y dataset-fashion-mnist",
)


def level(v: int) -> float:
    """The [-1, 1] value a uint8 level maps to, computed the way the datasets do (float32)."""
    return float(np.float32(v) / np.float32(127.5) - np.float32(1.0))


# ---------------------------------------------------------------- procedural


def test_procedural_is_deterministic_per_index_and_seed():
    a, b, other = (
        ProceduralShapes(size=100, seed=0),
        ProceduralShapes(size=100, seed=0),
        ProceduralShapes(seed=1),
    )
    for i in (0, 7, 99):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
        assert torch.equal(a.sample(i)["image"], a[i][0])
    assert sum(not torch.equal(a[i][0], other[i][0]) for i in range(20)) >= 18
    # Reading items in another order gives the same images (no shared RNG state).
    assert torch.equal(a[50][0], ProceduralShapes(size=100, seed=0)[50][0])


@pytest.mark.parametrize("image_size", [16, 32, 48])
@pytest.mark.parametrize("channels", [1, 3])
def test_procedural_shape_dtype_range(image_size, channels):
    ds = ProceduralShapes(size=20, image_size=image_size, channels=channels)
    assert len(ds) == 20
    for i in range(20):
        x, y = ds[i]
        assert x.shape == (channels, image_size, image_size) and x.dtype == torch.float32
        assert -1.0 <= x.min() and x.max() <= 1.0
        assert isinstance(y, int) and 0 <= y < ds.num_classes


@pytest.mark.parametrize("channels", [1, 3])
def test_procedural_mask_is_exact(channels):
    ds = ProceduralShapes(size=100, channels=channels)
    grey = channels == 1
    for i in range(100):
        s = ds.sample(i)
        mask, image = s["mask"][0], s["image"]
        assert s["mask"].shape == (1, 32, 32) and s["mask"].dtype == torch.bool
        assert 0 < mask.sum() < mask.numel()
        fg, bg = COLOURS[s["colour"]], BACKGROUNDS[s["background"]]
        fg, bg = ((luma(fg),), (luma(bg),)) if grey else (fg, bg)
        for c in range(channels):
            assert torch.all(image[c][mask] == level(fg[c]))
            assert torch.all(image[c][~mask] == level(bg[c]))


def test_procedural_caption_label_and_attributes_agree():
    ds = ProceduralShapes(size=200)
    for i in range(200):
        s = ds.sample(i)
        assert s["label"] == KINDS.index(s["kind"]) == ds[i][1]
        assert ds.classes[s["label"]] == s["kind"]
        words = s["caption"].split()
        assert words[:4] == ["a", s["size"], s["colour"], s["kind"]]
        assert s["caption"].endswith(f"on a {s['background']} background")
        assert all(w in words for w in s["position"].split())


def test_procedural_mask_geometry_matches_kind():
    # Area / half^2 of each kind's analytic shape; pixel counts at 64 px agree to a few percent.
    area = {"circle": math.pi, "square": 1.6**2, "triangle": math.sqrt(3), "cross": 8 / 3 - 4 / 9}
    ds = ProceduralShapes(size=200, image_size=64)
    for i in range(200):
        s = ds.sample(i)
        ratio = s["mask"].sum().item() / s["half"] ** 2
        assert ratio == pytest.approx(area[s["kind"]], rel=0.12), (i, s["kind"])


def test_procedural_position_words_match_the_pixels():
    ds = ProceduralShapes(size=300)
    half_size = ds.image_size / 2
    for i in range(300):
        s = ds.sample(i)
        cx, cy = s["centre"]
        ys, xs = torch.nonzero(s["mask"][0], as_tuple=True)
        mean_x = xs.float().mean().item() + 0.5
        if "left" in s["position"]:
            assert cx < half_size and mean_x < half_size
        if "right" in s["position"]:
            assert cx > half_size and mean_x > half_size
        if "top" in s["position"]:
            assert cy < half_size
        if "bottom" in s["position"]:
            assert cy > half_size


@pytest.mark.parametrize("image_size", [16, 32, 37])
def test_procedural_shapes_lie_fully_inside(image_size):
    ds = ProceduralShapes(size=300, image_size=image_size)
    centres = torch.arange(image_size) + 0.5
    for i in range(300):
        s = ds.sample(i)
        cx, cy = s["centre"]
        half = s["half"]
        assert 0 <= cx - half and cx + half <= image_size and 0 <= cy - half and cy + half <= image_size
        outside_x = (centres < cx - half) | (centres > cx + half)
        outside_y = (centres < cy - half) | (centres > cy + half)
        assert not s["mask"][0][:, outside_x].any() and not s["mask"][0][outside_y, :].any()


def test_procedural_attributes_all_occur_and_classes_roughly_balanced():
    ds = ProceduralShapes(size=500)
    params = [ds.params(i) for i in range(500)]
    kinds = Counter(p["kind"] for p in params[:200])
    assert set(kinds) == set(KINDS) and all(30 <= n <= 70 for n in kinds.values()), kinds
    assert {p["colour"] for p in params} == set(COLOURS)
    assert {p["size"] for p in params} == set(SIZES)
    assert {p["position"] for p in params} == set(POSITIONS)
    assert {p["background"] for p in params} == set(BACKGROUNDS)


def test_procedural_backgrounds_contrast_even_in_grey():
    for colour in COLOURS:
        options = contrasting_backgrounds(colour)
        assert len(options) >= 2, colour
        assert all(abs(luma(BACKGROUNDS[b]) - luma(COLOURS[colour])) >= MIN_LUMA_CONTRAST for b in options)
    ds = ProceduralShapes(size=100)
    assert all(
        ds.params(i)["background"] in contrasting_backgrounds(ds.params(i)["colour"]) for i in range(100)
    )


def test_procedural_bad_arguments():
    with pytest.raises(DatasetError, match="image_size"):
        ProceduralShapes(image_size=8)
    with pytest.raises(DatasetError, match="channels"):
        ProceduralShapes(channels=2)
    with pytest.raises(IndexError):
        ProceduralShapes(size=10)[10]


def test_procedural_renders_fast():
    ds = ProceduralShapes(size=1000)
    start = time.perf_counter()
    for i in range(1000):
        ds[i]
    assert time.perf_counter() - start < 1.0  # about 0.07 s on 2 CPU cores


# ---------------------------------------------------------------- transforms


def test_to_tensor_image_centre_crops_and_keeps_values():
    array = np.zeros((32, 96, 3), dtype=np.uint8)
    array[:, 32:64] = (10, 200, 255)
    x = to_tensor_image(Image.fromarray(array), 32, 3)
    assert x.shape == (3, 32, 32)
    assert [x[c].unique().tolist() for c in range(3)] == [[level(10)], [level(200)], [1.0]]


def test_to_tensor_image_resizes_shorter_side_and_converts():
    x = to_tensor_image(Image.new("RGB", (64, 128), (100, 100, 100)), 16, 3)
    assert x.shape == (3, 16, 16) and torch.all(x == level(100))
    grey = to_tensor_image(Image.new("RGB", (20, 20), (220, 30, 30)), 20, 1)
    assert grey.shape == (1, 20, 20) and torch.all(grey == level(luma((220, 30, 30))))
    wide16 = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert torch.all(to_tensor_image(wide16, 8, 1) == 1.0)


def test_to_tensor_image_composites_transparency_on_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red everywhere, but opaque only in the top row
    rgba[0, :, 3] = 255
    x = to_tensor_image(Image.fromarray(rgba, "RGBA"), 4, 3)
    assert torch.all(x[:, 1:] == 1.0)
    assert torch.all(x[0, 0] == 1.0) and torch.all(x[1:, 0] == -1.0)


# ---------------------------------------------------------------- digits


def test_digits_split_sizes_labels_and_disjointness():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, val = Digits(split="train"), Digits(split="val")
    assert (len(train), len(val)) == (1617, 180) and Digits.num_classes == 10
    assert set(train.indices).isdisjoint(val.indices) and len(set(train.indices) | set(val.indices)) == 1797
    assert np.all(val.indices % 10 == 0)
    for ds in (train, val):
        assert [ds[k][1] for k in range(5)] == bunch.target[ds.indices[:5]].tolist()
    x, _ = train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    assert sorted({train[k][1] for k in range(len(train))}) == list(range(10))


def test_digits_values_and_channels():
    from sklearn.datasets import load_digits

    native = Digits(image_size=8, split="val")
    expected = torch.from_numpy(load_digits().images[0]).float() / 8 - 1
    assert torch.allclose(native[0][0][0], expected, atol=1e-6)
    rgb = Digits(channels=3, split="val")[3][0]
    assert rgb.shape == (3, 32, 32) and torch.equal(rgb[0], rgb[2])


# ---------------------------------------------------------------- fashion-mnist


@needs_fashion
def test_fashion_mnist_sizes_labels_and_padding():
    train, val = FashionMNIST(split="train"), FashionMNIST(split="val")
    assert (len(train), len(val)) == (60000, 10000)
    # First labels of the original files (zalandoresearch/fashion-mnist).
    assert [train[k][1] for k in range(10)] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert [val[k][1] for k in range(10)] == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert Counter(train.labels.tolist()) == {c: 6000 for c in range(10)}
    x, _ = train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.all(x[0][border] == -1.0)
    assert torch.equal(x[0, 2:30, 2:30], torch.from_numpy(train.images[0].astype(np.float32)) / 127.5 - 1)
    rgb = FashionMNIST(split="val", channels=3, image_size=28)[0][0]
    assert rgb.shape == (3, 28, 28) and torch.equal(rgb[1], val[0][0][0, 2:30, 2:30])


def test_fashion_mnist_missing_or_corrupt_files(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist") as info:
        FashionMNIST(root=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(DatasetError, match="not a valid IDX"):
        FashionMNIST(root=str(tmp_path), split="val")


# ---------------------------------------------------------------- torchvision


@pytest.fixture
def offline(monkeypatch):
    """Name resolution fails, exactly as on the project's offline machines, wherever the test runs."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("cls, name", [(MNIST, "MNIST"), (CIFAR10, "CIFAR-10")])
def test_torchvision_offline_error_is_one_quick_line(cls, name, tmp_path, offline):
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        cls(root=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name} is not available offline")
    assert str(tmp_path) in message and "data=fashion_mnist" in message


def write_idx(path: Path, array: np.ndarray) -> None:
    header = np.array([0x0800 | array.ndim, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_local_files_without_network(tmp_path, offline):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.array([4, 1, 7]))
    ds = MNIST(root=str(tmp_path), split="val", channels=3)
    assert len(ds) == 3 and [ds[k][1] for k in range(3)] == [4, 1, 7]
    x = ds[1][0]
    assert x.shape == (3, 32, 32) and torch.all(x[:, :2] == -1.0) and torch.all(x[:, :, -2:] == -1.0)
    assert torch.equal(x[0, 2:30, 2:30], torch.from_numpy(images[1].astype(np.float32)) / 127.5 - 1)


# ---------------------------------------------------------------- image folder


def write_png(path: Path, colour, mode: str = "RGB", size=(12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_folder_labels_from_subfolders_and_exact_values(tmp_path):
    write_png(tmp_path / "cat" / "a.png", (255, 0, 0))
    write_png(tmp_path / "cat" / "b.PNG", (0, 255, 0))
    write_png(tmp_path / "dog" / "deep" / "c.png", (0, 0, 255, 0), mode="RGBA")  # fully transparent
    write_png(tmp_path / "dog" / "d.bmp", (10, 20, 30))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "._d.png").write_bytes(b"\x00\x05macOS resource fork")
    ds = ImageFolder(str(tmp_path), image_size=8)
    assert ds.classes == ("cat", "dog") and ds.num_classes == 2
    assert [p.relative_to(tmp_path).as_posix() for p in ds.files] == [
        "cat/a.png",
        "cat/b.PNG",
        "dog/d.bmp",
        "dog/deep/c.png",
    ]
    assert ds.labels == [0, 0, 1, 1]
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and y == 0
    assert torch.all(x[0] == 1.0) and torch.all(x[1:] == -1.0)
    assert torch.all(ds[3][0] == 1.0)  # transparent -> white
    assert torch.all(ds[2][0][2] == level(30))
    assert ImageFolder(str(tmp_path), image_size=8, channels=1)[0][0].shape == (1, 8, 8)


def test_folder_unlabelled_when_any_image_is_at_the_root(tmp_path):
    write_png(tmp_path / "top.png", (1, 2, 3))
    write_png(tmp_path / "sub" / "x.jpg", (4, 5, 6))
    ds = ImageFolder(str(tmp_path))
    assert ds.num_classes is None and ds.classes is None and [ds[k][1] for k in range(2)] == [0, 0]


def test_folder_val_split_is_deterministic_and_disjoint(tmp_path):
    for k in range(20):
        write_png(tmp_path / f"img{k:02d}.png", (k, k, k))
    train = ImageFolder(str(tmp_path), split="train", val_fraction=0.25)
    val = ImageFolder(str(tmp_path), split="val", val_fraction=0.25)
    assert (len(train), len(val)) == (15, 5)
    assert set(train.files).isdisjoint(val.files) and len(set(train.files) | set(val.files)) == 20
    assert val.files == ImageFolder(str(tmp_path), split="val", val_fraction=0.25).files
    with pytest.raises(DatasetError, match="val split is empty"):
        ImageFolder(str(tmp_path), split="val")


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        ImageFolder(str(tmp_path / "empty"))
    write_png(tmp_path / "ok" / "good.png", (0, 0, 0))
    (tmp_path / "ok" / "x.png").write_bytes(b"garbage bytes, not a PNG")
    with pytest.raises(DatasetError, match="unreadable image") as info:
        ImageFolder(str(tmp_path / "ok"))
    assert str(tmp_path / "ok" / "x.png") in str(info.value)


# ---------------------------------------------------------------- configs/data/*.yaml


CONFIGS = sorted((ROOT / "configs" / "data").glob("*.yaml"))


def test_every_dataset_has_a_config():
    assert {p.stem for p in CONFIGS} == {
        "procedural",
        "digits",
        "fashion_mnist",
        "mnist",
        "cifar10",
        "folder",
        "emoji",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_data_config_builds_its_datasets(path, tmp_path, offline, monkeypatch):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"seed": 0, "data": OmegaConf.load(path)})
    assert cfg.data._target_ == "data.datamodule.DiffusionDataModule"
    assert set(cfg.data) == {
        "_target_",
        "image_size",
        "channels",
        "num_classes",
        "train",
        "val",
        "batch_size",
        "hflip",
        "num_workers",
        "seed",
        "cond",
    }
    assert cfg.data.cond in ("label", "text")
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    if path.stem == "emoji":
        from data.emoji import FONT

        if not Path(FONT).exists():
            pytest.skip(f"{FONT} missing: apt-get install -y fonts-noto-color-emoji")
        cfg.data.train.limit = cfg.data.val.limit = 40  # rendering all 1,899 takes seconds; the config is the test
    if path.stem == "folder":
        assert OmegaConf.is_missing(cfg.data.train, "root")
        for k in range(4):
            write_png(tmp_path / f"{k}.png", (k, k, k))
        cfg.data.train.root = str(tmp_path)
    if path.stem in ("mnist", "cifar10"):
        cfg.data.train.root = str(tmp_path)  # torchvision creates folders under root before downloading
        with pytest.raises(Exception) as info:
            instantiate(cfg.data.train)
        cause = info.value
        while cause is not None and not isinstance(cause, DatasetError):
            cause = cause.__cause__
        assert isinstance(cause, DatasetError)
        return
    if path.stem == "fashion_mnist" and not (FASHION_ROOT / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST not in {FASHION_ROOT}: apt-get install -y dataset-fashion-mnist")
    for split in ("train", "val"):
        ds = instantiate(cfg.data[split])
        x, y = ds[0]
        assert x.shape == (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        assert ds.num_classes == cfg.data.num_classes and isinstance(y, int)
        if path.stem != "folder":  # every other set is captioned (folder only with metadata.jsonl or .txt files)
            assert ds.caption(0) in ds.captions()
