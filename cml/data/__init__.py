"""Few-shot image data sets behind one function, ``load_splits(name, root, image_size)``: the loaders are
registered in the image family of the task table (:mod:`cml.tasks.image`), each beside its data set's facts; the
generic image-folder data set (``folder``) and ``evaluate --data``'s folder pool live here.

Where to get each and the layouts expected: the README's "Data sets" section.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cml.data.base import ClassPool, DataError, Splits, Task, TaskSampler, image_to_array
from cml.data.omniglot import download_omniglot
from cml.tasks import TASK_TABLE

#: The image data sets, in the task table's order.
DATASETS = tuple(name for name, entry in TASK_TABLE.items() if entry.loader is not None)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: PIL modes read as one channel; every other mode is converted to RGB.
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def _detect_channels(path: Path) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return 1 if img.mode in _GRAY_MODES else 3
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc


def _class_folders(root: Path, what: str) -> list[tuple[str, list[Path]]]:
    """``(class name, image files)`` for each non-empty class folder of ``root``, sorted by name."""
    if not root.is_dir():
        raise DataError(f"{what} {root} is not a folder; expected {root}/<class>/*.png|jpg")
    classes, empty = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _image_files(folder)
        if files:
            classes.append((folder.name, files))
        else:
            empty.append(folder)
    if not classes:
        # The usual mistake is a root one level too high (root/<alphabet>/<character>/*.png): say where to look.
        deeper = next((f for f in empty if any(_image_files(c) for c in f.iterdir() if c.is_dir())), None)
        hint = (f"; its subfolders hold folders of images (e.g. {deeper}): give one of them, or the folder whose "
                f"subfolders are the classes" if deeper is not None else "")
        raise DataError(f"no class folder with images in {root}: the class folders were expected directly in it, as "
                        f"{root}/<class>/*.png|jpg{hint}")
    if empty:
        # One line for all of them, not one per folder.
        names = ", ".join(f.name for f in empty[:3]) + (", ..." if len(empty) > 3 else "")
        each = "it holds" if len(empty) == 1 else f"each of these {len(empty)} holds"
        warnings.warn(f"{root}: skipping {names}: {each} no .png/.jpg image", stacklevel=3)
    return classes


def looks_inverted(pool: ClassPool, classes: int = 5) -> bool:
    """Whether a grayscale pool looks dark-on-light: the mean intensity of its first ``classes`` classes is above
    half the range. The project's grayscale convention is light strokes on a dark background (Omniglot is inverted
    on loading, fonts are rendered that way), so such a pool is probably inverted relative to training.
    """
    n = min(classes, len(pool))
    means = [float(pool.images(i).float().mean()) for i in range(n)]
    return bool(means) and sum(means) / len(means) > 127.5


def _folder_pool(classes: Sequence[tuple[str, list[Path]]], image_size: int, channels: int, source: str,
                 invert: bool) -> ClassPool:
    def loader(files: list[Path]) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            return np.stack([image_to_array(f, image_size, channels, invert=invert, name=str(f)) for f in files])

        return load

    return ClassPool([n for n, _ in classes], [loader(f) for _, f in classes], source,
                     counts=[len(f) for _, f in classes])


def load_folder_pool(root: str | Path, image_size: int, *, invert: bool = False) -> ClassPool:
    """All class folders of ``root/<class>/*.png|jpg`` as one pool (``python -m cml evaluate RUN --data PATH``).

    Channels are detected from the first image: a grayscale mode (``L``, ``1``...) gives 1 channel, anything
    else RGB. Images are used as they are: the project's grayscale convention is bright strokes on a dark
    background, so pass ``invert=True`` for dark-on-light images (such as scanned handwriting).

    Raises:
        DataError: ``root`` is missing or holds no class folder with images.
    """
    base = Path(root).expanduser()
    classes = _class_folders(base, "image folder")
    channels = _detect_channels(classes[0][1][0])
    return _folder_pool(classes, image_size, channels, str(base), invert)


def load_folder(
    root: str | Path | None,
    image_size: int,
    *,
    seed: int = 0,
    invert: bool = False,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> Splits:
    """A generic image-folder data set.

    With ``root/train``, ``root/val`` and ``root/test`` folders, each holds its split's class folders. Without
    them, ``root/<class>/`` folders are split by class into ``split_fractions``, in an order fixed by a hash of
    the class names (independent of ``seed``, so every run sees the same split).

    Raises:
        DataError: a missing root, a partial set of split folders, or fewer than 3 classes.
    """
    del seed
    if root is None:
        raise DataError("the folder data set needs --data PATH: root/{train,val,test}/<class>/*.png|jpg, or "
                        "root/<class>/*.png|jpg to split by class")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"folder data set: {base} is not a folder")
    present = [s for s in ("train", "val", "test") if (base / s).is_dir()]
    if present:
        if len(present) != 3:
            missing = sorted({"train", "val", "test"} - set(present))
            raise DataError(f"{base} has {', '.join(present)} but not {', '.join(missing)}; give all three split "
                            f"folders or none (then the classes are split by name)")
        per_split = {s: _class_folders(base / s, f"{s} split folder") for s in present}
        how = "split folders"
    else:
        classes = _class_folders(base, "image folder")
        if len(classes) < 3:
            raise DataError(f"{base} has {len(classes)} class folder(s); splitting into train/val/test needs 3")
        if len(split_fractions) != 3 or any(f <= 0 for f in split_fractions):
            raise DataError(f"split_fractions must be three positive numbers, got {tuple(split_fractions)}")
        order = sorted(classes, key=lambda c: hashlib.sha256(c[0].encode()).hexdigest())
        total = sum(split_fractions)
        n_val = max(1, round(len(order) * split_fractions[1] / total))
        n_test = max(1, round(len(order) * split_fractions[2] / total))
        n_train = len(order) - n_val - n_test
        if n_train < 1:
            raise DataError(f"{base}: {len(order)} classes leave none for training with {tuple(split_fractions)}")
        per_split = {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
                     "test": sorted(order[n_train + n_val:])}
        how = f"classes split {n_train}/{n_val}/{n_test} by name hash"
    channels = _detect_channels(per_split["train"][0][1][0])
    pools = {s: _folder_pool(per_split[s], image_size, channels, f"{base} ({s})", invert) for s in per_split}
    return Splits(pools["train"], pools["val"], pools["test"],
                  f"image folder {base} ({how}, {channels} channel{'s' if channels > 1 else ''})")


def load_splits(name: str, root: str | Path | None, image_size: int, *, seed: int = 0, **options: Any) -> Splits:
    """Load a data set's train/val/test splits by name.

    Args:
        name: one of :data:`DATASETS`.
        root: the data set's folder (``--data``); for ``fonts`` an optional cache folder.
        image_size: side of the square images.
        seed: passed to the loader (only ``fonts`` uses it, for its distortions; splits never depend on it).
        **options: loader-specific options (e.g. ``split="vinyals"`` for Omniglot); None values are ignored.

    Raises:
        DataError: an unknown name or option, or any loading problem (the message names the value or path).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    loader = TASK_TABLE[name].loader()
    if image_size < 1:
        raise DataError(f"image_size must be positive, got {image_size}")
    options = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(loader).parameters
    accepted = [p for p, v in params.items() if v.kind == inspect.Parameter.KEYWORD_ONLY and p != "seed"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(f"data set {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                        f"{', '.join(accepted) or 'none'}")
    return loader(root, image_size, seed=seed, **options)


__all__ = [
    "DATASETS", "ClassPool", "DataError", "Splits", "Task", "TaskSampler", "download_omniglot", "image_to_array",
    "load_folder", "load_folder_pool", "load_splits",
]
