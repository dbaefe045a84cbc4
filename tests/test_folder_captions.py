"""Image folder captions: metadata.jsonl or <name>.txt, one-line DatasetErrors, and label use without captions."""

import json
from pathlib import Path

import pytest
from PIL import Image

from data import DatasetError
from data.folder import ImageFolder

ROOT = Path(__file__).resolve().parents[1]


def write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 12), (value, value, value)).save(path)


def write_metadata(root: Path, entries) -> None:
    lines = [e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in entries]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def animals(tmp_path):
    """cat/a.png, cat/b.png, dog/c.png: a labelled folder without captions."""
    for k, rel in enumerate(("cat/a.png", "cat/b.png", "dog/c.png")):
        write_png(tmp_path / rel, 40 * k)
    return tmp_path


def relative(ds: ImageFolder) -> list[str]:
    return [p.relative_to(ds.root).as_posix() for p in ds.files]


def test_metadata_jsonl_captions_keep_labels(animals):
    write_metadata(animals, [
        {"file_name": "dog/c.png", "text": "a dog on grass", "extra": 1},
        {"file_name": "./cat/a.png", "text": "  a sleeping cat \n"},
        "",  # blank lines are skipped
        {"file_name": "cat/b.png", "text": "un café, s'il vous plaît"},
        {"file_name": "cat/gone.png", "text": "an image that was deleted"},  # ignored
    ])
    (animals / "cat" / "a.txt").write_text("ignored: metadata.jsonl wins")
    ds = ImageFolder(str(animals), image_size=8)
    assert relative(ds) == ["cat/a.png", "cat/b.png", "dog/c.png"]
    assert [ds.caption(i) for i in range(3)] == ["a sleeping cat", "un café, s'il vous plaît", "a dog on grass"]
    assert ds.captions() == sorted(["a sleeping cat", "un café, s'il vous plaît", "a dog on grass"])
    assert ds.classes == ("cat", "dog") and [ds[i][1] for i in range(3)] == [0, 0, 1]


def test_txt_beside_each_image(tmp_path):
    write_png(tmp_path / "one.png", 10)
    write_png(tmp_path / "deep" / "two.jpg", 20)
    write_png(tmp_path / "three.png", 30)
    (tmp_path / "one.txt").write_text("A red apple.\n")
    # Tux Paint style: the English caption first, then translations, which are ignored.
    (tmp_path / "deep" / "two.txt").write_text("\n  A cat.  \nfr.utf8=Un chat.\nde.utf8=Eine Katze.\n")
    (tmp_path / "three.txt").write_text("a twin caption")
    (tmp_path / "notes.txt").write_text("not beside any image: ignored")
    ds = ImageFolder(str(tmp_path), image_size=8)
    assert relative(ds) == ["deep/two.jpg", "one.png", "three.png"]
    assert [ds.caption(i) for i in range(3)] == ["A cat.", "A red apple.", "a twin caption"]
    assert ds.captions() == ["A cat.", "A red apple.", "a twin caption"]
    assert ds.num_classes is None and ds[0][0].shape == (3, 8, 8)


def test_repeated_captions_appear_once_in_captions(tmp_path):
    for k in range(4):
        write_png(tmp_path / f"{k}.png", k)
        (tmp_path / f"{k}.txt").write_text("a grey square" if k < 3 else "a black square")
    ds = ImageFolder(str(tmp_path))
    assert ds.captions() == ["a black square", "a grey square"]
    assert ds.captions() == sorted({ds.caption(i) for i in range(len(ds))})


def test_captions_follow_the_val_split(tmp_path):
    for k in range(20):
        write_png(tmp_path / f"img{k:02d}.png", k)
        (tmp_path / f"img{k:02d}.txt").write_text(f"image number {k}")
    train = ImageFolder(str(tmp_path), split="train", val_fraction=0.25)
    val = ImageFolder(str(tmp_path), split="val", val_fraction=0.25)
    for ds in (train, val):
        assert [ds.caption(i) for i in range(len(ds))] == [f"image number {int(p.stem[3:])}" for p in ds.files]
    assert set(train.captions()).isdisjoint(val.captions()) and len(train.captions() + val.captions()) == 20


def test_image_without_caption_names_the_file(animals):
    (animals / "cat" / "a.txt").write_text("a cat")
    (animals / "dog" / "c.txt").write_text("a dog")
    with pytest.raises(DatasetError) as info:
        ImageFolder(str(animals))
    message = str(info.value)
    assert "\n" not in message and str(animals / "cat" / "b.png") in message and ".txt" in message

    write_metadata(animals, [{"file_name": "cat/a.png", "text": "a cat"}])
    with pytest.raises(DatasetError) as info:
        ImageFolder(str(animals))
    message = str(info.value)
    assert str(animals / "cat" / "b.png") in message and "(and 1 more)" in message and "metadata.jsonl" in message


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ('{"file_name": "cat/b.png", "text": "a cat"', "line 2 is not valid JSON"),
        ('{"file_name": "cat/b.png"}', 'line 2 needs a non-empty "text"'),
        ('{"file_name": "cat/b.png", "text": "   "}', 'line 2 needs a non-empty "text"'),
        ('{"text": "no file"}', 'line 2 needs a "file_name"'),
        ('["cat/b.png", "a cat"]', 'line 2 needs a "file_name"'),
        ('{"file_name": "./cat/a.png", "text": "again"}', "line 2 lists cat/a.png a second time"),
    ],
)
def test_bad_metadata_line_is_named(animals, bad_line, expected):
    write_metadata(animals, [{"file_name": "cat/a.png", "text": "a cat"}, bad_line,
                             {"file_name": "dog/c.png", "text": "a dog"}])
    with pytest.raises(DatasetError) as info:
        ImageFolder(str(animals))
    message = str(info.value)
    assert "\n" not in message and expected in message and str(animals / "metadata.jsonl") in message


def test_non_utf8_captions_are_refused(animals):
    (animals / "metadata.jsonl").write_bytes('{"file_name": "cat/a.png", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match="metadata.jsonl is not UTF-8"):
        ImageFolder(str(animals))
    (animals / "metadata.jsonl").unlink()
    for name in ("a", "b"):
        (animals / "cat" / f"{name}.txt").write_text("a cat")
    (animals / "dog" / "c.txt").write_bytes("un caf\u00e9".encode("cp1252"))
    with pytest.raises(DatasetError, match="c.txt is not UTF-8"):
        ImageFolder(str(animals))


def test_empty_txt_is_refused(tmp_path):
    write_png(tmp_path / "a.png", 0)
    (tmp_path / "a.txt").write_text("\n \n")
    with pytest.raises(DatasetError, match="a.txt is empty"):
        ImageFolder(str(tmp_path))


def test_utf8_bom_is_accepted(tmp_path):
    write_png(tmp_path / "a.png", 0)
    (tmp_path / "metadata.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"file_name": "a.png", "text": "a black image"}\n')
    assert ImageFolder(str(tmp_path)).caption(0) == "a black image"


def test_folder_without_captions_still_trains_labels(animals):
    ds = ImageFolder(str(animals), image_size=8)
    assert ds.num_classes == 2 and [ds[i][1] for i in range(3)] == [0, 0, 1]
    assert ds[2][0].shape == (3, 8, 8)
    for ask in (lambda: ds.caption(0), ds.captions):
        with pytest.raises(DatasetError) as info:
            ask()
        message = str(info.value)
        assert "\n" not in message and "has no captions" in message and str(animals) in message
        assert "metadata.jsonl" in message and ".txt" in message


def test_folder_config_builds_a_captioned_folder(tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    for k in range(8):
        write_png(tmp_path / f"{k}.png", 30 * k)
        (tmp_path / f"{k}.txt").write_text(f"shade {k}")
    cfg = OmegaConf.create({"seed": 0, "data": OmegaConf.load(ROOT / "configs" / "data" / "folder.yaml")})
    assert cfg.data.cond == "label"  # a folder may have no captions: text models say model.cond=text
    cfg.data.train.root = str(tmp_path)
    dm = instantiate(cfg.data)
    train, val = dm.train_set, dm.val_set
    assert len(train) + len(val) == 8
    assert sorted(train.captions() + val.captions()) == [f"shade {k}" for k in range(8)]


def test_reference_captions_for_captioned_unlabelled_data(animals):
    """evaluate.py draws sample i of a text model on unlabelled captioned data under caption i of the real images."""
    from evaluation.data_config import reference_captions

    write_metadata(animals, [{"file_name": f, "text": f"caption {f}"} for f in ("cat/a.png", "cat/b.png", "dog/c.png")])
    node = {"num_classes": None, "train": {"_target_": "data.folder.ImageFolder", "root": str(animals),
                                           "image_size": 8}}
    assert reference_captions(node) == ["caption cat/a.png", "caption cat/b.png", "caption dog/c.png"]
    assert reference_captions({**node, "num_classes": 2}) is None  # labelled data: "a photo of a <class>" instead
