"""The registry (load_splits, DATASETS), the generic image-folder data set and load_folder_pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cml.data import DATASETS, DataError, load_folder_pool, load_splits
from cml.data.base import ClassPool


def _folder(root: Path, classes: int, per_class: int, mode: str = "L", ext: str = ".png") -> None:
    for c in range(classes):
        for k in range(per_class):
            d = root / f"class{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            value = (c * 16 + k) % 256
            if mode == "L":
                Image.fromarray(np.full((20, 20), value, dtype=np.uint8), "L").save(d / f"{k}{ext}")
            else:
                Image.fromarray(np.full((20, 20, 3), value, dtype=np.uint8), "RGB").save(d / f"{k}{ext}")


def test_names() -> None:
    assert DATASETS == ("omniglot", "fonts", "folder", "miniimagenet", "cifar-fs", "fc100", "flower")
    with pytest.raises(DataError, match="unknown data set 'mnist'; choose one of omniglot"):
        load_splits("mnist", None, 28)


def test_unknown_option_is_named(tmp_path: Path) -> None:
    _folder(tmp_path, 5, 2)
    with pytest.raises(DataError, match="no option 'spilt'"):
        load_splits("folder", tmp_path, 16, spilt="x")
    # None means "not given" (the CLI passes every flag).
    assert len(load_splits("folder", tmp_path, 16, invert=None).train) == 3


def test_folder_pool_grayscale_and_rgb(tmp_path: Path) -> None:
    _folder(tmp_path / "gray", 3, 4)
    pool = load_folder_pool(tmp_path / "gray", 8)
    assert isinstance(pool, ClassPool) and pool.names == ["class00", "class01", "class02"]
    assert pool.count(1) == 4 and pool.images(1).shape == (4, 1, 8, 8)
    assert int(pool.images(1)[2].float().mean().round()) == 16 + 2
    inverted = load_folder_pool(tmp_path / "gray", 8, invert=True)
    assert int(inverted.images(1)[2].float().mean().round()) == 255 - 18
    _folder(tmp_path / "rgb", 2, 3, mode="RGB", ext=".jpg")
    assert load_folder_pool(tmp_path / "rgb", 8).images(0).shape == (3, 3, 8, 8)


def test_folder_pool_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load_folder_pool(tmp_path / "missing", 8)
    with pytest.raises(DataError, match="no class folder with images"):
        load_folder_pool(tmp_path, 8)
    (tmp_path / "empty").mkdir()
    _folder(tmp_path, 1, 2)
    with pytest.warns(UserWarning, match="holds no .png/.jpg"):
        assert load_folder_pool(tmp_path, 8).names == ["class00"]
    (tmp_path / "empty").rmdir()
    (tmp_path / "class00" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode image .*0.png"):
        load_folder_pool(tmp_path, 8)


def test_folder_with_split_folders(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        _folder(tmp_path / split, n, 2)
    splits = load_splits("folder", tmp_path, 12)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 3)
    assert "split folders" in splits.description
    (tmp_path / "val").rename(tmp_path / "valid")
    with pytest.raises(DataError, match="not val"):
        load_splits("folder", tmp_path, 12)


def test_folder_split_by_class_is_fixed(tmp_path: Path) -> None:
    _folder(tmp_path, 10, 2)
    a = load_splits("folder", tmp_path, 12, seed=0)
    b = load_splits("folder", tmp_path, 12, seed=5)
    assert (len(a.train), len(a.val), len(a.test)) == (6, 2, 2)
    assert a.train.names == b.train.names and a.test.names == b.test.names
    assert not set(a.train.names) & (set(a.val.names) | set(a.test.names))
    with pytest.raises(DataError, match="needs --data"):
        load_splits("folder", None, 12)
