"""The emoji dataset: rendering, the fixed split, caption cleaning, the render cache and its error messages.

The whole set is rendered once per session, at 16 px into a temporary DIFFLAB_CACHE (about 3 s on 2 CPU cores);
every other test reads it from that cache or renders only the first few emoji (``limit``).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data.emoji as emoji_data
from data import DatasetError
from data.emoji import FONT, Emoji, cache_path, in_test_split, make_caption

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
needs_font = pytest.mark.skipif(
    not Path(FONT).is_file(), reason=f"{FONT} absent: run `make data` or apt-get install -y fonts-noto-color-emoji"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private DIFFLAB_CACHE for this module, holding the whole set rendered once at SIZE px."""
    root = tmp_path_factory.mktemp("difflab_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFLAB_CACHE", str(root))
        if Path(FONT).is_file():
            Emoji(image_size=SIZE)
        yield root


@pytest.fixture
def use_cache(cache, monkeypatch):
    monkeypatch.setenv("DIFFLAB_CACHE", str(cache))
    return cache


@pytest.fixture
def splits(use_cache):
    return Emoji(image_size=SIZE, split="train"), Emoji(image_size=SIZE, split="test")


# ---------------------------------------------------------------- captions (no font needed)


@pytest.mark.parametrize(
    "name, char, caption",
    [
        (":red_heart:", "\u2764\ufe0f", "a red heart"),
        (":grinning_face_with_big_eyes:", "\U0001F603", "a grinning face with big eyes"),
        (":flag_Germany:", "", "a flag of germany"),  # the emoji package's names before 2.0
        (":Germany:", "\U0001F1E9\U0001F1EA", "a flag of germany"),  # since 2.0 a flag is its bare country name
        (":Côte_d’Ivoire:", "\U0001F1E8\U0001F1EE", "a flag of cote d'ivoire"),
        (":Scotland:", "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F", "a flag of scotland"),
        (":flag_in_hole:", "\u26f3", "a flag in hole"),  # not a country flag
        (":Antigua_&_Barbuda:", "\U0001F1E6\U0001F1EC", "a flag of antigua and barbuda"),
        (":hourglass_done:", "\u231b", "an hourglass done"),
        (":unicorn:", "\U0001F984", "a unicorn"),
        (":euro_banknote:", "\U0001F4B6", "a euro banknote"),
        (":OK_button:", "\U0001F197", "an ok button"),
        (":sunglasses:", "\U0001F576\ufe0f", "sunglasses"),
        (":face_with_rolling_eyes:", "\U0001F644", "a face with rolling eyes"),
        (":piñata:", "\U0001FA85", "a pinata"),
        (":keycap_#:", "#\ufe0f\u20e3", "a keycap showing a number sign"),
        (":keycap_7:", "7\ufe0f\u20e3", "a keycap showing 7"),
        (":eight_o’clock:", "\U0001F557", "a clock showing eight o'clock"),
        (":family_man_man_girl_boy:", "", "a family of two men, a girl and a boy"),
        (":family_adult_child:", "", "a family of an adult and a child"),
        (":kiss_woman_man:", "", "a kiss between a woman and a man"),
        (":family:", "\U0001F46A", "a family"),
    ],
)
def test_caption_cleaning(name, char, caption):
    assert make_caption(name, char) == caption


@needs_font
def test_every_caption_is_clean_lower_case_ascii(splits):
    captions = [ds.caption(i) for ds in splits for i in range(len(ds))]
    for c in captions:
        assert c == c.lower() and c.isascii() and c == " ".join(c.split()), c
        assert "_" not in c and ":" not in c, c
    assert sum(c.split()[0] in ("a", "an") for c in captions) > 0.9 * len(captions)  # plurals take none
    assert len(set(captions)) >= 0.99 * len(captions)  # repeats are allowed but should stay rare


@needs_font
def test_captions_is_the_sorted_set_of_caption(splits):
    for ds in splits:
        assert ds.captions() == sorted({ds.caption(i) for i in range(len(ds))})
        assert all(ds.caption(i) == make_caption(ds.names[i], ds.chars[i]) for i in range(len(ds)))
        assert all(n.startswith(":") and n.endswith(":") for n in ds.names)


# ---------------------------------------------------------------- images and split


@needs_font
def test_images_shape_range_and_white_background(splits):
    for ds in splits:
        x, y = ds[0]
        assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32 and y == -1
        assert ds.num_classes is None and ds.classes is None
        images = torch.stack([ds[i][0] for i in range(len(ds))])
        assert images.min() >= -1.0 and images.max() <= 1.0
        corners = images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]  # (N, 3, 4)
        assert corners.mean() > 0.95
        # At 16 px a corner pixel averages a wide patch, which rounded-square buttons (keycaps) reach: light
        # grey then, never dark.
        assert (corners.amin(dim=(1, 2)) > 0.0).float().mean() > 0.99
        assert ((1 - images).flatten(1).amax(1) > 0.2).all()  # no blank image, even for white emoji (outlined)
    train, _ = splits
    heart = train.images[train.names.index(":red_heart:")]  # a train emoji under the fixed split
    r, g, b = heart[SIZE // 2, SIZE // 2].astype(int)  # red at the centre
    assert r > 150 and g < 100 and b < 100


@needs_font
def test_split_sizes_disjoint_val_alias_and_pinned(splits, use_cache):
    train, test = splits
    assert 1800 <= len(train) + len(test) <= 2000  # 1,899 with emoji 2.16 and Debian's font (DATA.md)
    assert 0.07 <= len(test) / (len(train) + len(test)) <= 0.13
    assert set(train.chars).isdisjoint(test.chars)
    assert all(in_test_split(c) for c in test.chars) and not any(in_test_split(c) for c in train.chars)
    assert Emoji(image_size=SIZE, split="val").chars == test.chars
    # Golden: the first test emoji (code point order) under crc32 % 10 of the UTF-8 code points, pinned so
    # that a change of the hash, which would mix earlier test images into training, is noticed.
    assert test.names[:5] == [":information:", ":up-down_arrow:", ":up-left_arrow:", ":fast-forward_button:",
                              ":fast_up_button:"]


@needs_font
def test_grey_is_pil_luma_of_the_colour_images(splits, use_cache):
    train, _ = splits
    grey = Emoji(image_size=SIZE, channels=1)
    assert grey.chars == train.chars and grey[3][0].shape == (1, SIZE, SIZE)
    expected = np.asarray(Image.fromarray(train.images[3]).convert("L"))
    assert torch.equal(grey[3][0][0], torch.from_numpy(expected.astype(np.float32)) / 127.5 - 1)


@needs_font
def test_limit_renders_a_prefix_at_any_size(use_cache, splits):
    small = Emoji(image_size=64, limit=40)
    assert 20 <= len(small) <= 40 and small[0][0].shape == (3, 64, 64)
    train, _ = splits
    assert small.chars == train.chars[: len(small)]


# ---------------------------------------------------------------- cache


@needs_font
def test_cache_hit_gives_identical_arrays_without_rendering(use_cache, splits, monkeypatch):
    train, _ = splits
    path = cache_path(FONT, SIZE, None)
    assert path.is_file() and path.parent == use_cache / "emoji"
    assert not list(path.parent.glob("*.tmp"))
    mtime = path.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("rendered although the cache holds this set")

    monkeypatch.setattr(emoji_data, "render_all", refuse)
    again = Emoji(image_size=SIZE)
    assert np.array_equal(again.images, train.images) and again.names == train.names
    assert path.stat().st_mtime_ns == mtime


@needs_font
def test_damaged_cache_is_rendered_again_and_replaced(use_cache, monkeypatch):
    first = Emoji(image_size=SIZE, limit=30)
    path = cache_path(FONT, SIZE, 30)
    path.write_bytes(b"not a zip file")
    second = Emoji(image_size=SIZE, limit=30)
    assert np.array_equal(first.images, second.images)
    monkeypatch.setattr(emoji_data, "render_all", None)  # the replaced file is read, not rendered again
    assert np.array_equal(Emoji(image_size=SIZE, limit=30).images, first.images)


@needs_font
def test_cache_key_follows_size_font_and_emoji_version(use_cache):
    import emoji

    a, b = cache_path(FONT, 16, None), cache_path(FONT, 32, None)
    assert a != b and "16px" in a.name and emoji.__version__ in a.name
    assert str(Path(FONT).stat().st_size) in a.name


# ---------------------------------------------------------------- errors and config


def test_missing_font_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetError) as info:
        Emoji(font=str(tmp_path / "nowhere.ttf"))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nowhere.ttf") in message
    assert "make data" in message and "apt-get install -y fonts-noto-color-emoji" in message


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="channels"):
        Emoji(channels=2)
    with pytest.raises(DatasetError, match="split"):
        Emoji(split="bogus")
    with pytest.raises(DatasetError, match="image_size"):
        Emoji(image_size=4)
    not_a_font = tmp_path / "x.ttf"
    not_a_font.write_bytes(b"nope")
    with pytest.raises(DatasetError, match="cannot be loaded"):
        Emoji(font=str(not_a_font))


@needs_font
def test_config_builds_both_splits(use_cache):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"seed": 0, "data": OmegaConf.load(ROOT / "configs" / "data" / "emoji.yaml")})
    assert cfg.data.cond == "text" and cfg.data.num_classes is None and cfg.data.hflip is False
    cfg.data.image_size = SIZE  # read from the session's cache
    dm = instantiate(cfg.data)
    train, val = dm.train_set, dm.val_set
    assert dm.cond == "text" and isinstance(train, Emoji) and set(train.chars).isdisjoint(val.chars)
    assert train[0][0].shape == (cfg.data.channels, SIZE, SIZE) and val.split == "val"
