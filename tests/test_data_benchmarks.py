"""Benchmark loaders on tiny fixtures written in each release's exact format, and their error paths."""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from cml.data import DataError, load_splits
from cml.data.benchmarks import (
    CIFAR_FS_SPLIT,
    FC100_SPLIT,
    FLOWER_SPLIT,
    MINIIMAGENET_SPLIT,
    load_pickle,
)

# CIFAR-100's superclasses and their fine classes, as in the data set's own documentation.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
FINE = sorted(c for cs in CIFAR100_SUPERCLASSES.values() for c in cs)  # CIFAR-100's label order is alphabetical
COARSE = sorted(CIFAR100_SUPERCLASSES)
COARSE_OF = {c: COARSE.index(s) for s, cs in CIFAR100_SUPERCLASSES.items() for c in cs}


def _jpg(path: Path, value: int, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), value % 256, dtype=np.uint8)
    img[0, 0] = (255, 0, 0)
    Image.fromarray(img).save(path, quality=95)


# ---------------------------------------------------------------------------------------------------------------
# MiniImagenet
# ---------------------------------------------------------------------------------------------------------------


def _mini_pickles(root: Path, per_class: int = 2, protocol: int = 4) -> None:
    rng = np.random.default_rng(0)
    for split, names in MINIIMAGENET_SPLIT.items():
        n = len(names) * per_class
        images = rng.integers(0, 256, size=(n, 84, 84, 3), dtype=np.uint8)
        class_dict = {name: list(range(i * per_class, (i + 1) * per_class)) for i, name in enumerate(names)}
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": images, "class_dict": class_dict}, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_miniimagenet_pickles(tmp_path: Path, protocol: int) -> None:
    _mini_pickles(tmp_path, protocol=protocol)
    splits = load_splits("miniimagenet", tmp_path, 84)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (64, 16, 20)
    assert sorted(splits.test.names) == sorted(MINIIMAGENET_SPLIT["test"])
    x = splits.val.images(0)
    assert x.shape == (2, 3, 84, 84) and splits.val.count(1) == 2
    data = load_pickle(tmp_path / "mini-imagenet-cache-val.pkl", encoding="latin1")
    first = MINIIMAGENET_SPLIT["val"][0]
    assert np.array_equal(x.numpy(), data["image_data"][data["class_dict"][first]].transpose(0, 3, 1, 2))
    assert load_splits("miniimagenet", tmp_path, 32).train.images(5).shape == (2, 3, 32, 32)


def test_miniimagenet_csv_release(tmp_path: Path) -> None:
    for split, names in MINIIMAGENET_SPLIT.items():
        rows = []
        for i, name in enumerate(names):
            for k in range(2):
                filename = f"{name}{k:08d}.jpg"
                _jpg(tmp_path / "images" / filename, i * 2 + k, size=16)
                rows.append((filename, name))
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "label"])
            w.writerows(rows)
    splits = load_splits("miniimagenet", tmp_path, 16)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (64, 16, 20)
    assert splits.test.images(3).shape == (2, 3, 16, 16)
    assert splits.test.channels == 3
    # A CSV naming an image that is not there fails when that class loads, naming the file.
    (tmp_path / "images" / f"{MINIIMAGENET_SPLIT['test'][-1]}00000001.jpg").unlink()
    splits = load_splits("miniimagenet", tmp_path, 16)
    with pytest.raises(DataError, match="00000001.jpg not found"):
        splits.test.images(len(splits.test) - 1)
    # A missing split CSV is named.
    (tmp_path / "val.csv").unlink()
    with pytest.raises(DataError, match="val.csv not found"):
        load_splits("miniimagenet", tmp_path, 16)


def test_miniimagenet_wrong_split(tmp_path: Path) -> None:
    _mini_pickles(tmp_path)
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    data = load_pickle(path, encoding="latin1")
    data["class_dict"]["n99999999"] = data["class_dict"].pop(MINIIMAGENET_SPLIT["train"][0])
    with open(path, "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(DataError, match="n99999999") as err:
        load_splits("miniimagenet", tmp_path, 84)
    assert str(path) in str(err.value) and "published split" in str(err.value)


def test_miniimagenet_missing_and_truncated(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MiniImagenet release"):
        load_splits("miniimagenet", tmp_path, 84)
    with pytest.raises(DataError, match="needs --data"):
        load_splits("miniimagenet", None, 84)
    _mini_pickles(tmp_path)
    (tmp_path / "mini-imagenet-cache-test.pkl").unlink()
    with pytest.raises(DataError, match="mini-imagenet-cache-test.pkl not found"):
        load_splits("miniimagenet", tmp_path, 84)
    _mini_pickles(tmp_path)
    path = tmp_path / "mini-imagenet-cache-val.pkl"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated") as err:
        load_splits("miniimagenet", tmp_path, 84)
    assert str(path) in str(err.value)


class _Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_malicious_pickles_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    _mini_pickles(tmp_path)
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    with open(path, "wb") as f:
        pickle.dump({"image_data": _Exploit(target), "class_dict": {}}, f)
    with pytest.raises(DataError, match="refusing to unpickle") as err:
        load_splits("miniimagenet", tmp_path, 84)
    assert "system" in str(err.value) and str(path) in str(err.value)
    assert not target.exists()
    with open(path, "wb") as f:
        pickle.dump([_Eval()], f)
    with pytest.raises(DataError, match="builtins.eval"):
        load_pickle(path)
    # The same guard protects CIFAR-100's pickles.
    cifar = tmp_path / "cifar-100-python"
    cifar.mkdir()
    with open(cifar / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": _Exploit(target)}, f)
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_splits("cifar-fs", tmp_path, 32)
    assert not target.exists()


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-FS and FC100
# ---------------------------------------------------------------------------------------------------------------


def _cifar(root: Path, fine_names: list[str] | None = None) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    names = fine_names or FINE
    # Python 2 pickles hold bytes keys; protocol 2 is what cPickle wrote.
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [n.encode() for n in names],
                     b"coarse_label_names": [n.encode() for n in COARSE]}, f, protocol=2)
    for part, per_class in (("train", 2), ("test", 1)):
        fine = [c for c in range(100) for _ in range(per_class)]
        coarse = [COARSE_OF[FINE[c]] for c in fine]
        # Each image's red plane holds its fine label, so the test can tell the classes apart.
        data = np.zeros((len(fine), 3072), dtype=np.uint8)
        data[:, :1024] = np.asarray(fine, dtype=np.uint8)[:, None]
        with open(folder / part, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": fine, b"coarse_labels": coarse,
                         b"filenames": [b"x.png"] * len(fine), b"batch_label": b"fixture"}, f, protocol=2)
    return folder


def test_cifar_fs(tmp_path: Path) -> None:
    _cifar(tmp_path)
    splits = load_splits("cifar-fs", tmp_path, 32)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (64, 16, 20)
    for split in ("train", "val", "test"):
        assert splits[split].names == list(CIFAR_FS_SPLIT[split])
    x = splits.test.images(0)
    assert x.shape == (3, 3, 32, 32)  # 2 train + 1 test image
    assert (x[:, 0] == FINE.index(CIFAR_FS_SPLIT["test"][0])).all() and (x[:, 1:] == 0).all()
    assert load_splits("cifar-fs", tmp_path / "cifar-100-python", 16).val.images(2).shape == (3, 3, 16, 16)


def test_fc100(tmp_path: Path) -> None:
    _cifar(tmp_path)
    splits = load_splits("fc100", tmp_path, 32)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (60, 20, 20)
    for split in ("train", "val", "test"):
        supers = {s for s, cs in CIFAR100_SUPERCLASSES.items() for c in cs if c in splits[split].names}
        assert supers == set(FC100_SPLIT[split])
    assert not set(splits.train.names) & set(splits.test.names)


def test_cifar_wrong_names_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no CIFAR-100 python release"):
        load_splits("cifar-fs", tmp_path, 32)
    wrong = FINE.copy()
    wrong[FINE.index("whale")] = "narwhal"
    folder = _cifar(tmp_path, wrong)
    with pytest.raises(DataError, match="narwhal") as err:
        load_splits("cifar-fs", tmp_path, 32)
    assert str(folder / "meta") in str(err.value)
    _cifar(tmp_path)
    (folder / "test").unlink()
    with pytest.raises(DataError, match="cifar-100-python/test not found"):
        load_splits("fc100", tmp_path, 32)
    _cifar(tmp_path)
    (folder / "train").write_bytes((folder / "train").read_bytes()[:500])
    with pytest.raises(DataError, match="truncated"):
        load_splits("fc100", tmp_path, 32)


# ---------------------------------------------------------------------------------------------------------------
# VGG Flower
# ---------------------------------------------------------------------------------------------------------------


def _flower(root: Path, per_class: int = 2) -> np.ndarray:
    labels = np.repeat(np.arange(1, 103), per_class)
    np.random.default_rng(0).shuffle(labels)  # the real file's images are not grouped by class
    for i, _ in enumerate(labels, start=1):
        _jpg(root / "jpg" / f"image_{i:05d}.jpg", i, size=10)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": labels[None, :].astype(np.uint8)})
    return labels


def test_flower(tmp_path: Path) -> None:
    labels = _flower(tmp_path)
    splits = load_splits("flower", tmp_path, 10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (71, 15, 16)
    assert splits.val.names[0] == f"class_{FLOWER_SPLIT['val'][0]:03d}"
    x = splits.test.images(2)
    assert x.shape == (2, 3, 10, 10)
    # The right images: their grey level is their 1-based file number (mod 256).
    files = np.nonzero(labels == FLOWER_SPLIT["test"][2])[0] + 1
    assert sorted(int(v) for v in x[:, 1, 5, 5]) == pytest.approx(sorted(files % 256), abs=3)


def test_flower_errors(tmp_path: Path) -> None:
    _flower(tmp_path)
    (tmp_path / "jpg" / "image_00007.jpg").unlink()
    with pytest.raises(DataError, match="image_00007.jpg"):
        load_splits("flower", tmp_path, 10)
    (tmp_path / "imagelabels.mat").unlink()
    with pytest.raises(DataError, match="imagelabels.mat not found"):
        load_splits("flower", tmp_path, 10)
    scipy.io.savemat(tmp_path / "imagelabels.mat", {"labels": np.arange(1, 51)[None, :]})
    with pytest.raises(DataError, match="cover 50 classes"):
        load_splits("flower", tmp_path, 10)
    (tmp_path / "imagelabels.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match="cannot read"):
        load_splits("flower", tmp_path, 10)


def test_pickles_written_by_numpy_1_load(tmp_path: Path) -> None:
    """Files written before numpy 2 name ``numpy.core``; the unpickler maps them to the same helpers."""
    original = {"image_data": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3), "class_dict": {"a": [np.int64(1)]}}
    raw = pickle.dumps(original, protocol=2)
    assert b"numpy._core.multiarray" in raw
    path = tmp_path / "old.pkl"
    path.write_bytes(raw.replace(b"numpy._core.", b"numpy.core."))
    loaded = load_pickle(path, encoding="latin1")
    assert np.array_equal(loaded["image_data"], original["image_data"])
    assert int(loaded["class_dict"]["a"][0]) == 1


def test_published_split_tables() -> None:
    def check(split: dict, sizes: tuple[int, int, int], universe: set) -> None:
        parts = [set(split[s]) for s in ("train", "val", "test")]
        assert tuple(len(split[s]) for s in ("train", "val", "test")) == sizes
        assert tuple(map(len, parts)) == sizes  # no duplicates
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert set().union(*parts) <= universe

    check(MINIIMAGENET_SPLIT, (64, 16, 20), {n for s in MINIIMAGENET_SPLIT.values() for n in s})
    check(CIFAR_FS_SPLIT, (64, 16, 20), set(FINE))
    check(FC100_SPLIT, (12, 4, 4), set(COARSE))
    check(FLOWER_SPLIT, (71, 15, 16), set(range(1, 103)))
    assert all(n.startswith("n") and len(n) == 9 for s in MINIIMAGENET_SPLIT.values() for n in s)
