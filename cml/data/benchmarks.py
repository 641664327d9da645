"""Loaders for the standard few-shot image benchmarks: MiniImagenet, CIFAR-FS, FC100 and VGG Flower.

None of these is downloaded by the project (their licences and hosts vary: see the README's "Data sets"); each loader
reads the layout its usual release ships in and checks that the classes match the published split, so a wrong or
partial copy fails with a :class:`DataError` naming the file instead of training on the wrong classes.

Two formats are Python pickles, which can run code when loaded: the MiniImagenet cache
(``mini-imagenet-cache-*.pkl``) and CIFAR-100's python release (``cifar-100-python/{train,test,meta}``). They
are read with :class:`RestrictedUnpickler`, which lets through only what those files contain (numpy arrays,
dtypes and scalars, and the containers pickle builds natively) and refuses any other global. Reading them still
means trusting the file's provenance for its content, not for code. MiniImagenet's image-folder release (JPEGs
plus split CSVs) and VGG Flower (JPEGs plus a MATLAB ``.mat``, read with ``scipy.io.loadmat``) are data-only.
"""

from __future__ import annotations

import csv
import pickle
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cml.data.base import ClassPool, DataError, Splits, image_to_array

# ---------------------------------------------------------------------------------------------------------------
# Published splits
# ---------------------------------------------------------------------------------------------------------------

#: MiniImagenet, Ravi & Larochelle (ICLR 2017) split: ImageNet WordNet ids, 64 train / 16 val / 20 test. Cross-
#: checked against two independent public copies of the split (class lists in MiniImagenet loaders that read the
#: same pickle release).
MINIIMAGENET_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "n01532829", "n01558993", "n01704323", "n01749939", "n01770081", "n01843383", "n01910747", "n02074367",
        "n02089867", "n02091831", "n02101006", "n02105505", "n02108089", "n02108551", "n02108915", "n02111277",
        "n02113712", "n02120079", "n02165456", "n02457408", "n02606052", "n02687172", "n02747177", "n02795169",
        "n02823428", "n02966193", "n03017168", "n03047690", "n03062245", "n03207743", "n03220513", "n03337140",
        "n03347037", "n03400231", "n03476684", "n03527444", "n03676483", "n03838899", "n03854065", "n03888605",
        "n03908618", "n03924679", "n03998194", "n04067472", "n04243546", "n04251144", "n04258138", "n04275548",
        "n04296562", "n04389033", "n04435653", "n04443257", "n04509417", "n04515003", "n04596742", "n04604644",
        "n04612504", "n06794110", "n07584110", "n07697537", "n07747607", "n09246464", "n13054560", "n13133613",
    ),
    "val": (
        "n01855672", "n02091244", "n02114548", "n02138441", "n02174001", "n02950826", "n02971356", "n02981792",
        "n03075370", "n03417042", "n03535780", "n03584254", "n03770439", "n03773504", "n03980874", "n09256479",
    ),
    "test": (
        "n01930112", "n01981276", "n02099601", "n02110063", "n02110341", "n02116738", "n02129165", "n02219486",
        "n02443484", "n02871525", "n03127925", "n03146219", "n03272010", "n03544143", "n03775546", "n04146614",
        "n04149813", "n04418357", "n04522168", "n07613480",
    ),
}

#: CIFAR-FS, Bertinetto et al. (ICLR 2019) split of CIFAR-100's fine classes: 64 / 16 / 20. Cross-checked
#: against two independent public copies (torchmeta's assets and a loader's embedded class list), which agree.
CIFAR_FS_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "apple", "aquarium_fish", "bear", "bee", "bottle", "bowl", "boy", "bridge", "bus", "can", "castle",
        "caterpillar", "chair", "clock", "cloud", "cockroach", "couch", "cup", "dinosaur", "dolphin", "elephant",
        "forest", "girl", "hamster", "house", "kangaroo", "keyboard", "lawn_mower", "lion", "lizard", "lobster",
        "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "palm_tree", "pear", "pine_tree", "plate",
        "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "seal", "shrew", "skunk", "skyscraper", "snake",
        "spider", "squirrel", "streetcar", "sunflower", "tank", "tiger", "train", "trout", "tulip", "turtle",
        "willow_tree", "wolf",
    ),
    "val": (
        "beaver", "beetle", "butterfly", "camel", "cattle", "crab", "crocodile", "flatfish", "lamp", "maple_tree",
        "motorcycle", "otter", "sea", "shark", "television", "tractor",
    ),
    "test": (
        "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain", "poppy",
        "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe", "whale", "woman", "worm",
    ),
}

#: FC100, Oreshkin et al. (NeurIPS 2018) split of CIFAR-100's 20 superclasses: 12 / 4 / 4 (60 / 20 / 20 fine
#: classes). Cross-checked against torchmeta's assets and the superclass indices {1-6, 9, 10, 15, 17-19} /
#: {8, 11, 13, 16} / {0, 7, 12, 14} used by TADAM-derived loaders.
FC100_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
        "household_furniture", "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "reptiles", "trees",
        "vehicles_1", "vehicles_2",
    ),
    "val": ("large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates", "small_mammals"),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}

#: VGG Flower (Oxford 102) class split of Meta-Dataset (Triantafillou et al., ICLR 2020): 71 / 15 / 16, as
#: 1-based labels of ``imagelabels.mat``; train is every label not in val or test. The CML authors' own split
#: could not be determined; this is the split common few-shot code (Meta-Dataset, learn2learn) uses.
FLOWER_VAL = (10, 16, 17, 23, 26, 47, 53, 56, 57, 62, 82, 83, 86, 97, 102)
FLOWER_TEST = (5, 9, 15, 19, 35, 40, 41, 42, 45, 46, 65, 85, 89, 94, 96, 98)
FLOWER_SPLIT: dict[str, tuple[int, ...]] = {
    "train": tuple(c for c in range(1, 103) if c not in FLOWER_VAL and c not in FLOWER_TEST),
    "val": FLOWER_VAL,
    "test": FLOWER_TEST,
}

_SPLITS = ("train", "val", "test")

# ---------------------------------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------------------------------


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a data pickle may name: numpy array, dtype and scalar reconstruction."""
    try:  # numpy >= 2 moved numpy.core to numpy._core; old pickles still name numpy.core
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    import codecs

    allowed: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar  # numpy scalars, e.g. int64 indices in a class list
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = numeric._frombuffer  # arrays pickled with protocol 5
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Python 3 writes bytes as _codecs.encode(text, "latin1") under protocol 2; encoding a string runs no code.
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that reconstructs numpy arrays and plain containers and refuses every other global.

    A pickle can name any importable callable (``os.system``, ``builtins.eval``...) and have it called while
    loading; :meth:`find_class` is where those names are resolved, so refusing all but the numpy reconstruction
    helpers makes loading a data pickle unable to run code.

    Args:
        file: binary file object.
        source: the file's path, for error messages.
        encoding: how to decode Python 2 ``str`` objects (``"bytes"`` keeps them as bytes, as CIFAR needs).
    """

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def __init__(self, file: Any, source: str, encoding: str = "ASCII") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._ALLOWED is None:
            RestrictedUnpickler._ALLOWED = _allowed_globals()
        try:
            return RestrictedUnpickler._ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source} asks to load {module}.{name}, which a data file never needs; refusing to unpickle "
                f"it (only numpy arrays are allowed). Get the file from its official source"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source} uses pickle persistent ids, which data files do not; refusing to load it")


def load_pickle(path: str | Path, *, encoding: str = "ASCII") -> Any:
    """Unpickle a data file with :class:`RestrictedUnpickler`.

    Raises:
        DataError: the file is missing, truncated or corrupted, or names a global other than numpy's array
            reconstruction.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, str(path), encoding=encoding).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path} is truncated or not a valid pickle ({type(exc).__name__}: {exc}); download it again"
        ) from exc


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def _require_root(root: str | Path | None, name: str, layout: str) -> Path:
    if root is None:
        raise DataError(f"the {name} data set needs --data PATH pointing at a folder with {layout}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"{name}: {base} is not a folder; expected a folder with {layout}")
    return base


def _check_split(found: Sequence[str], expected: Sequence[str], what: str, where: str) -> None:
    """Raise unless ``found`` holds exactly the ``expected`` class names."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra or len(found) != len(expected):
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
        if extra:
            detail.append(f"unexpected {len(extra)} ({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''})")
        if not detail:
            detail.append("duplicated class names")
        raise DataError(
            f"{where}: the {what} has {len(found)} classes where the published split has {len(expected)}: "
            f"{'; '.join(detail)}. Is this the right file or a modified copy?"
        )


def _array_pool(images: np.ndarray, groups: Sequence[Sequence[int]], names: Sequence[str], size: int,
                source: str) -> ClassPool:
    """A pool over rows of an ``(N, H, W, 3)`` uint8 array, resized per class on first use."""

    def loader(rows: Sequence[int]) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            sel = images[np.asarray(rows, dtype=np.int64)]
            if sel.shape[1:3] == (size, size):
                return np.ascontiguousarray(sel)
            from PIL import Image

            return np.stack([image_to_array(Image.fromarray(im), size, channels=3) for im in sel])

        return load

    return ClassPool(list(names), [loader(g) for g in groups], source, counts=[len(g) for g in groups])


def _files_pool(groups: Sequence[Sequence[Path]], names: Sequence[str], size: int, source: str,
                channels: int = 3) -> ClassPool:
    def loader(files: Sequence[Path]) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            for f in files:
                if not f.is_file():
                    raise DataError(f"{f} not found (listed in {source})")
            return np.stack([image_to_array(f, size, channels=channels, name=str(f)) for f in files])

        return load

    return ClassPool(list(names), [loader(g) for g in groups], source, counts=[len(g) for g in groups])


# ---------------------------------------------------------------------------------------------------------------
# MiniImagenet
# ---------------------------------------------------------------------------------------------------------------


def _mini_from_pickles(base: Path, image_size: int) -> Splits:
    pools = {}
    for split in _SPLITS:
        path = base / f"mini-imagenet-cache-{split}.pkl"
        data = load_pickle(path, encoding="latin1")
        if not isinstance(data, dict) or "image_data" not in data or "class_dict" not in data:
            raise DataError(f"{path}: expected a dict with 'image_data' and 'class_dict'; got {type(data).__name__}"
                            + (f" with keys {sorted(map(str, data))}" if isinstance(data, dict) else ""))
        images, class_dict = data["image_data"], data["class_dict"]
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise DataError(f"{path}: 'image_data' should be an (N, H, W, 3) uint8 array, got "
                            f"{getattr(images, 'shape', type(images).__name__)} {getattr(images, 'dtype', '')}")
        names = sorted(str(k) for k in class_dict)
        _check_split(names, MINIIMAGENET_SPLIT[split], f"{split} split", str(path))
        groups = []
        for name in names:
            rows = np.asarray(class_dict[name], dtype=np.int64).ravel()
            if len(rows) == 0 or rows.min() < 0 or rows.max() >= len(images):
                raise DataError(f"{path}: class {name} lists image indices outside 0..{len(images) - 1}")
            groups.append(rows.tolist())
        pools[split] = _array_pool(images, groups, names, image_size, f"{path}")
    return Splits(pools["train"], pools["val"], pools["test"],
                  f"MiniImagenet (Ravi & Larochelle split 64/16/20) from the pickle release in {base}")


def _mini_from_csv(base: Path, image_size: int) -> Splits:
    images_dir = base / "images"
    pools = {}
    for split in _SPLITS:
        path = base / f"{split}.csv"
        if not path.is_file():
            raise DataError(f"{path} not found; the image-folder release of MiniImagenet has images/ and "
                            f"train.csv, val.csv, test.csv")
        groups: dict[str, list[Path]] = {}
        try:
            with open(path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
                    raise DataError(f"{path}: expected a header 'filename,label', got {header!r}")
                for line, row in enumerate(reader, start=2):
                    if not row:
                        continue
                    if len(row) < 2:
                        raise DataError(f"{path} line {line}: expected 'filename,label', got {row!r}")
                    filename, label = row[0].strip(), row[1].strip()
                    file = images_dir / filename
                    if not file.is_file() and (images_dir / label / filename).is_file():
                        file = images_dir / label / filename  # some copies sort the images into class folders
                    groups.setdefault(label, []).append(file)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        names = sorted(groups)
        _check_split(names, MINIIMAGENET_SPLIT[split], f"{split} split", str(path))
        first = groups[names[0]][0]
        if not first.is_file():
            raise DataError(f"{first} not found (listed in {path}); images/ should hold the JPEGs")
        pools[split] = _files_pool([groups[n] for n in names], names, image_size, str(path))
    return Splits(pools["train"], pools["val"], pools["test"],
                  f"MiniImagenet (Ravi & Larochelle split 64/16/20) from images/ and split CSVs in {base}")


def load_miniimagenet(root: str | Path | None, image_size: int = 84, *, seed: int = 0) -> Splits:
    """MiniImagenet, Ravi & Larochelle's 64/16/20 class split.

    Reads either release, preferring the pickles when both are present:

    * ``mini-imagenet-cache-{train,val,test}.pkl``: dicts with ``image_data`` ``(N, 84, 84, 3)`` uint8 and
      ``class_dict`` (WordNet id -> image indices); read with :class:`RestrictedUnpickler`.
    * ``images/*.jpg`` with ``train.csv``, ``val.csv``, ``test.csv`` (header ``filename,label``).

    Args:
        root: the folder holding either release.
        image_size: output side (84 is the benchmark's size).
        seed: unused; the split is fixed.

    Raises:
        DataError: a missing or truncated file, a pickle that is not plain data, or classes that differ from
            the published split (names the file).
    """
    del seed
    base = _require_root(root, "miniimagenet",
                         "mini-imagenet-cache-{train,val,test}.pkl or images/ plus train.csv, val.csv, test.csv")
    if any((base / f"mini-imagenet-cache-{s}.pkl").exists() for s in _SPLITS):
        return _mini_from_pickles(base, image_size)
    if any((base / f"{s}.csv").exists() for s in _SPLITS):
        return _mini_from_csv(base, image_size)
    raise DataError(
        f"no MiniImagenet release in {base}: expected mini-imagenet-cache-{{train,val,test}}.pkl, or images/ with "
        f"train.csv, val.csv and test.csv"
    )


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-FS and FC100
# ---------------------------------------------------------------------------------------------------------------


def _cifar_folder(base: Path) -> Path:
    for folder in (base / "cifar-100-python", base):
        if (folder / "meta").is_file() or (folder / "train").is_file():
            return folder
    raise DataError(
        f"no CIFAR-100 python release in {base}: expected cifar-100-python/train, cifar-100-python/test and "
        f"cifar-100-python/meta (unpack cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html)"
    )


def _decode_names(values: Any, path: Path, key: str) -> list[str]:
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    except (TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {key} is not a list of names ({exc})") from exc


def _load_cifar100(base: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str], Path]:
    """All 60,000 CIFAR-100 images as ``(N, 32, 32, 3)`` with fine and coarse labels and the label names."""
    folder = _cifar_folder(base)
    meta_path = folder / "meta"
    meta = load_pickle(meta_path, encoding="bytes")
    if not isinstance(meta, dict) or b"fine_label_names" not in meta or b"coarse_label_names" not in meta:
        raise DataError(f"{meta_path}: expected a dict with b'fine_label_names' and b'coarse_label_names'")
    fine_names = _decode_names(meta[b"fine_label_names"], meta_path, "fine_label_names")
    coarse_names = _decode_names(meta[b"coarse_label_names"], meta_path, "coarse_label_names")
    if len(fine_names) != 100 or len(coarse_names) != 20:
        raise DataError(f"{meta_path}: {len(fine_names)} fine and {len(coarse_names)} coarse label names; "
                        f"CIFAR-100 has 100 and 20")
    parts, fines, coarses = [], [], []
    for name in ("train", "test"):
        path = folder / name
        d = load_pickle(path, encoding="bytes")
        if not isinstance(d, dict) or not all(k in d for k in (b"data", b"fine_labels", b"coarse_labels")):
            raise DataError(f"{path}: expected a dict with b'data', b'fine_labels' and b'coarse_labels'")
        data = np.asarray(d[b"data"])
        fine = np.asarray(d[b"fine_labels"], dtype=np.int64)
        coarse = np.asarray(d[b"coarse_labels"], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(fine) != len(data) \
                or len(coarse) != len(data):
            raise DataError(f"{path}: b'data' should be (N, 3072) uint8 with N fine and coarse labels; got "
                            f"{data.shape} {data.dtype}, {len(fine)} and {len(coarse)} labels")
        if len(fine) and (fine.min() < 0 or fine.max() > 99 or coarse.min() < 0 or coarse.max() > 19):
            raise DataError(f"{path}: labels outside 0..99 (fine) or 0..19 (coarse)")
        # Rows are channel-major (1024 red, 1024 green, 1024 blue), each a 32x32 image in row order.
        parts.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        fines.append(fine)
        coarses.append(coarse)
    return (np.ascontiguousarray(np.concatenate(parts)), np.concatenate(fines), np.concatenate(coarses),
            fine_names, coarse_names, folder)


def load_cifar_fs(root: str | Path | None, image_size: int = 32, *, seed: int = 0) -> Splits:
    """CIFAR-FS (Bertinetto et al., 2019): CIFAR-100's 100 classes split 64/16/20, 600 images each.

    Args:
        root: a folder holding ``cifar-100-python/`` (or that folder itself).
        image_size: output side (32 is native).
        seed: unused; the split is fixed.

    Raises:
        DataError: missing or truncated files, or label names that do not match CIFAR-100's.
    """
    del seed
    base = _require_root(root, "cifar-fs", "cifar-100-python/{train,test,meta}")
    images, fine, _, fine_names, _, folder = _load_cifar100(base)
    _check_split(fine_names, [c for s in _SPLITS for c in CIFAR_FS_SPLIT[s]], "fine label list",
                 str(folder / "meta"))
    index = {n: i for i, n in enumerate(fine_names)}
    pools = {}
    for split in _SPLITS:
        names = list(CIFAR_FS_SPLIT[split])
        groups = [np.nonzero(fine == index[n])[0].tolist() for n in names]
        pools[split] = _array_pool(images, groups, names, image_size, f"{folder} (CIFAR-FS {split})")
    return Splits(pools["train"], pools["val"], pools["test"],
                  f"CIFAR-FS (Bertinetto et al. split 64/16/20) from {folder}")


def load_fc100(root: str | Path | None, image_size: int = 32, *, seed: int = 0) -> Splits:
    """FC100 (Oreshkin et al., 2018): CIFAR-100 split by superclass, 12/4/4 superclasses = 60/20/20 classes.

    Args:
        root: a folder holding ``cifar-100-python/`` (or that folder itself).
        image_size: output side (32 is native).
        seed: unused; the split is fixed.

    Raises:
        DataError: missing or truncated files, or superclass names that do not match CIFAR-100's.
    """
    del seed
    base = _require_root(root, "fc100", "cifar-100-python/{train,test,meta}")
    images, fine, coarse, fine_names, coarse_names, folder = _load_cifar100(base)
    _check_split(coarse_names, [c for s in _SPLITS for c in FC100_SPLIT[s]], "coarse label list",
                 str(folder / "meta"))
    coarse_index = {n: i for i, n in enumerate(coarse_names)}
    # Each fine class belongs to one superclass; read the mapping from the labels themselves.
    fine_to_coarse: dict[int, int] = {}
    for f, c in zip(fine.tolist(), coarse.tolist()):
        if fine_to_coarse.setdefault(f, c) != c:
            raise DataError(f"{folder}: fine class {fine_names[f]} appears under two superclasses")
    pools = {}
    for split in _SPLITS:
        wanted = {coarse_index[n] for n in FC100_SPLIT[split]}
        classes = sorted(f for f, c in fine_to_coarse.items() if c in wanted)
        if len(classes) != 5 * len(wanted):
            raise DataError(f"{folder}: the {split} superclasses hold {len(classes)} fine classes with images, "
                            f"FC100 expects {5 * len(wanted)}")
        groups = [np.nonzero(fine == f)[0].tolist() for f in classes]
        pools[split] = _array_pool(images, groups, [fine_names[f] for f in classes], image_size,
                                   f"{folder} (FC100 {split})")
    return Splits(pools["train"], pools["val"], pools["test"],
                  f"FC100 (Oreshkin et al. superclass split 12/4/4 = 60/20/20 classes) from {folder}")


# ---------------------------------------------------------------------------------------------------------------
# VGG Flower
# ---------------------------------------------------------------------------------------------------------------


def load_flower(root: str | Path | None, image_size: int = 84, *, seed: int = 0) -> Splits:
    """VGG Flower (Oxford 102 Flowers, Nilsback & Zisserman 2008) with Meta-Dataset's 71/15/16 class split.

    Args:
        root: a folder with ``jpg/image_XXXXX.jpg`` (8,189 images) and ``imagelabels.mat`` (``labels``: 1..102
            per image, in file order).
        image_size: output side.
        seed: unused; the split is fixed.

    Raises:
        DataError: a missing file, an unreadable ``.mat``, or labels that do not cover the 102 classes.
    """
    del seed
    base = _require_root(root, "flower", "jpg/image_XXXXX.jpg and imagelabels.mat")
    mat_path = base / "imagelabels.mat"
    if not mat_path.is_file():
        raise DataError(f"{mat_path} not found; download imagelabels.mat beside jpg/ "
                        f"(https://www.robots.ox.ac.uk/~vgg/data/flowers/102/)")
    import scipy.io

    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(str(mat_path))
    # scipy reports damaged files in many ways (a truncated header is an IndexError; a v7.3 HDF5 file is
    # NotImplementedError); each means the same to the user.
    except (OSError, ValueError, TypeError, IndexError, KeyError, zlib.error, NotImplementedError,
            MatReadError) as exc:
        raise DataError(f"cannot read {mat_path}: {exc}; download it again") from exc
    if "labels" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{mat_path} has no 'labels' variable (found {found}); is this Oxford 102's imagelabels.mat?")
    labels = np.asarray(mat["labels"]).ravel().astype(np.int64)
    present = sorted(set(labels.tolist()))
    if present != list(range(1, 103)):
        raise DataError(f"{mat_path}: labels cover {len(present)} classes ({present[:3]}...{present[-3:]}); "
                        f"Oxford 102 Flowers has labels 1..102")
    jpg = base / "jpg"
    if not jpg.is_dir():
        raise DataError(f"{jpg} not found; unpack 102flowers.tgz into {base}")
    files = [jpg / f"image_{i:05d}.jpg" for i in range(1, len(labels) + 1)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {len(files)} images listed by {mat_path} are missing from {jpg} "
                        f"(first: {missing[0].name})")
    pools = {}
    for split in _SPLITS:
        classes = FLOWER_SPLIT[split]
        groups = [[files[i] for i in np.nonzero(labels == c)[0]] for c in classes]
        pools[split] = _files_pool(groups, [f"class_{c:03d}" for c in classes], image_size,
                                   f"{base} (flower {split})")
    return Splits(pools["train"], pools["val"], pools["test"],
                  f"VGG Flower (Meta-Dataset class split 71/15/16) from {base}")
