"""The fonts data set: selection rules, splits by script family, determinism and the cache."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from cml.data import DataError, load_splits
from cml.data import fonts

# A mix of scripts and symbols, with homoglyphs (Latin o / Greek omicron / Cyrillic o) and accented letters.
SUBSET = "AaBbEeHhKkOoPpXx0123456789ΑΒΕΗΚΟΡΧαβγδεοπωАВЕНКОРХабвгдежоя→←∑∫≤≥éÅñüçЁ"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, fonts_cache: Path):
    """The default data set, from a temporary cache holding only the session's rendering of it (conftest.py)."""
    cache = tmp_path_factory.mktemp("fonts-cache")
    shutil.copy2(fonts.load_fonts_data(28, cache=fonts_cache).cache_path, cache)
    return cache, fonts.load_fonts(cache, 28)


def _chars(pool) -> list[str]:
    return [chr(int(name.split()[0][2:], 16)) for name in pool.names]


def test_size_and_split_thresholds(full) -> None:
    _, splits = full
    n = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(n) >= 1000, n
    assert n[1] >= 20 and n[2] >= 20, n
    x = splits.test.images(0)
    assert x.shape == (fonts.DEFAULT_IMAGES_PER_CLASS, 1, 28, 28) and str(x.dtype) == "torch.uint8"
    # Bright strokes on a dark background.
    assert float(x.float().mean()) < 100 and int(x.max()) > 200
    assert all(splits.val.count(i) == 20 for i in range(len(splits.val)))


def test_splits_are_disjoint_by_script_family(full) -> None:
    _, splits = full
    families = {s: {fonts.unicode_block(c)[1] for c in _chars(splits[s])} for s in ("train", "val", "test")}
    assert not families["train"] & families["val"]
    assert not families["train"] & families["test"]
    assert not families["val"] & families["test"]
    assert families["val"] == set(fonts.VAL_FAMILIES)
    assert families["test"] == set(fonts.TEST_FAMILIES)
    assert "Latin" in families["train"]
    chars = [_chars(splits[s]) for s in ("train", "val", "test")]
    assert len(set().union(*map(set, chars))) == sum(map(len, chars))


def test_exclusion_rules(full) -> None:
    _, splits = full
    chars = set(_chars(splits.train) + _chars(splits.val) + _chars(splits.test))
    for c in chars:
        cat = unicodedata.category(c)
        assert cat[0] not in "MCZ", (c, cat)  # no combining marks, controls, whitespace, private use
        assert unicodedata.combining(c) == 0
        assert unicodedata.normalize("NFKD", c) == c, c  # no accented or compatibility variants
    assert not {"é", "Å", "ñ", "ü", "ç", "Ё", "ﬁ", "²"} & chars
    assert {"A", "e", "n", "u", "c"} <= chars
    # Homoglyphs: at most one of Latin o, Greek omicron, Cyrillic o; of Latin A, Greek Alpha, Cyrillic A.
    assert len({"o", "\u03bf", "\u043e"} & chars) == 1
    assert len({"A", "\u0391", "\u0410"} & chars) == 1
    assert all("LastResort" not in p.name for p in fonts.list_font_files())


def test_only_fonts_that_draw_the_glyph_contribute() -> None:
    from fontTools.ttLib import TTFont

    files = fonts.list_font_files()
    coverage = fonts.font_coverage(files)
    cmaps = {}
    for path in files:
        with TTFont(str(path), lazy=True) as f:
            cmaps[path] = f.getBestCmap()
    for char in ("ա", "Ж", "∑", "A", "ω"):
        for path, cp in coverage[char]:
            assert cp in cmaps[path], (char, path.name)  # a mapped glyph, never the .notdef box
    # Armenian is in DejaVu only: no STIX or Computer Modern face may claim it.
    assert all(p.name.startswith("DejaVu") for p, _ in coverage["ա"])
    # TeX-encoded fonts contribute under the glyph's real character: cmmi10 draws omega at the code point of "!".
    assert any(p.name == "cmmi10.ttf" and cp == ord("!") for p, cp in coverage["ω"])
    assert not any(p.name == "cmmi10.ttf" for p, _ in coverage.get("!", []))


def test_min_faces_is_enforced() -> None:
    data = fonts.render_fonts(characters=SUBSET, min_faces=12, images_per_class=2)
    coverage = fonts.font_coverage(fonts.list_font_files())
    for c in data.characters:
        assert len(coverage[c]) >= 12
    assert (data.faces >= 12).all()
    with pytest.raises(DataError, match="lower min_faces"):
        fonts.render_fonts(characters="A", min_faces=1000)


def test_same_seed_identical_different_seed_different() -> None:
    a = fonts.render_fonts(characters=SUBSET, seed=3, images_per_class=6)
    b = fonts.render_fonts(characters=SUBSET, seed=3, images_per_class=6)
    c = fonts.render_fonts(characters=SUBSET, seed=4, images_per_class=6)
    assert np.array_equal(a.codepoints, b.codepoints) and a.images.tobytes() == b.images.tobytes()
    assert np.array_equal(a.codepoints, c.codepoints)
    assert not np.array_equal(a.images, c.images)
    # The distortions differ between the images of a class.
    assert not np.array_equal(a.images[0, 0], a.images[0, 1])


def test_cache_hit_does_not_render(full, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, splits = full
    files = list(cache.glob("fonts-v*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("rendered again despite the cache")

    monkeypatch.setattr(fonts, "render_fonts", boom)
    again = fonts.load_fonts(cache, 28)
    assert again.train.names == splits.train.names
    assert np.array_equal(again.val.images(3).numpy(), splits.val.images(3).numpy())
    # CML_CACHE decides the default folder; the registry reaches the same cached file.
    monkeypatch.setenv("CML_CACHE", str(cache))
    assert fonts.cache_dir() == cache
    assert len(load_splits("fonts", None, 28).test) == len(splits.test)
    # Another seed is another cache entry: it would render.
    with pytest.raises(AssertionError, match="rendered again"):
        fonts.load_fonts(cache, 28, seed=1)


def test_corrupt_cache_is_rendered_again(tmp_path: Path) -> None:
    kwargs = dict(image_size=12, images_per_class=2, min_faces=30)
    first = fonts.load_fonts_data(**kwargs, cache=tmp_path)
    assert first.cache_path is not None and first.cache_path.is_file()
    first.cache_path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable"):
        second = fonts.load_fonts_data(**kwargs, cache=tmp_path)
    assert np.array_equal(first.images, second.images)


def test_cache_dir_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CML_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert fonts.cache_dir() == tmp_path / "cml"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fonts.cache_dir() == Path.home() / ".cache" / "cml"


def test_unicode_block_table() -> None:
    assert fonts.unicode_block("A") == ("Basic Latin", "Latin")
    assert fonts.unicode_block("ω") == ("Greek and Coptic", "Greek")
    assert fonts.unicode_block("Ж")[1] == "Cyrillic"
    assert fonts.unicode_block("→")[1] == "Arrows"
    assert fonts.unicode_block("\U000e0001")[0].startswith("U+E0000")
