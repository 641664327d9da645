"""The few-shot data interface every data set implements, and the task sampler.

A data set is a :class:`Splits`: three disjoint :class:`ClassPool` objects (train, val, test). A pool is a
list of classes; each class is a stack of images, loaded on first use and kept in memory as ``uint8``.
:class:`TaskSampler` draws N-way K-shot tasks from a pool with its own ``torch.Generator``, so the same
seed gives the same tasks and nothing reads the global RNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError  # re-exported: every data loader raises it from here


def image_to_array(
    image: bytes | str | Path | Any,
    size: int,
    channels: int,
    *,
    invert: bool = False,
    name: str = "",
) -> np.ndarray:
    """Decode one image and resize it to ``size x size`` with antialiasing (PIL LANCZOS).

    Args:
        image: encoded bytes, a file path, or a PIL image.
        size: output side in pixels.
        channels: 1 gives ``(size, size)`` grayscale, 3 gives ``(size, size, 3)`` RGB.
        invert: turn dark-on-light into light-on-dark (Omniglot's black strokes on white become bright strokes).
        name: the image's file name, for error messages.

    Raises:
        DataError: if the image cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    try:
        if isinstance(image, (bytes, bytearray)):
            img = Image.open(io.BytesIO(image))
        elif isinstance(image, (str, Path)):
            img = Image.open(image)
        else:
            img = image
        img = img.convert("L" if channels == 1 else "RGB")
    except Image.DecompressionBombError as exc:
        # PIL refuses an image of more pixels than it can decode safely (a "decompression bomb"): a few-shot
        # image is never that large, so it is the file's problem, named, not a traceback.
        raise DataError(f"image {name or image!r} is too large to decode ({exc}); few-shot images are small: "
                        f"remove the file or resize it") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot decode image {name or image!r}: {exc}") from exc
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return 255 - arr if invert else arr


class Task(NamedTuple):
    """One task: ``support = (x, y)`` and ``query = (x, y)``.

    ``x`` is ``(n, C, H, W)`` float in [0, 1] for images, ``(n, 1)`` for regression; ``y`` is ``(n,)`` int64
    labels in ``[0, ways)`` for classification, ``(n, 1)`` float targets for regression.
    """

    support: tuple[Tensor, Tensor]
    query: tuple[Tensor, Tensor]

    def to(self, device: torch.device | str) -> "Task":
        """The same task with every tensor on ``device``."""
        return Task(tuple(t.to(device) for t in self.support), tuple(t.to(device) for t in self.query))


class ClassPool:
    """A list of classes, each a stack of same-sized ``uint8`` images loaded lazily.

    Args:
        names: one name per class, used in error messages and records.
        loaders: one zero-argument callable per class returning ``(n, H, W)`` (grayscale) or ``(n, H, W, C)``
            ``uint8`` images, already at the pool's image size.
        source: where the pool comes from (a path or a description), for error messages.
        counts: optional number of images per class, when known without loading (file lists, label tables):
            :meth:`count` then answers without decoding the images.
    """

    def __init__(
        self,
        names: Sequence[str],
        loaders: Sequence[Callable[[], np.ndarray]],
        source: str,
        counts: Sequence[int] | None = None,
    ) -> None:
        if len(names) != len(loaders) or (counts is not None and len(counts) != len(names)):
            raise DataError(
                f"ClassPool from {source}: {len(names)} names, {len(loaders)} loaders"
                + (f", {len(counts)} counts" if counts is not None else "")
            )
        self.names = list(names)
        self._loaders = list(loaders)
        self._counts = [int(c) for c in counts] if counts is not None else None
        self._cache: dict[int, Tensor] = {}
        self.source = source

    def __len__(self) -> int:
        return len(self.names)

    def images(self, index: int) -> Tensor:
        """The images of class ``index`` as a ``(n, C, H, W)`` uint8 tensor (cached after the first call)."""
        if index not in self._cache:
            arr = np.asarray(self._loaders[index]())
            if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or len(arr) == 0:
                raise DataError(
                    f"class {self.names[index]!r} of {self.source} loaded as an array of shape {arr.shape} and "
                    f"dtype {arr.dtype}; expected a non-empty (n, H, W) or (n, H, W, C) uint8 stack"
                )
            t = torch.from_numpy(np.ascontiguousarray(arr))
            t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
            self._cache[index] = t
        return self._cache[index]

    def count(self, index: int) -> int:
        """Number of images in class ``index`` (without loading them when ``counts`` was given)."""
        if self._counts is not None and index not in self._cache:
            return self._counts[index]
        return int(self.images(index).shape[0])

    @property
    def channels(self) -> int:
        """Channels of the images (1 grayscale, 3 RGB), from the first class (loads it)."""
        if not self.names:
            raise DataError(f"{self.source} has no classes")
        return int(self.images(0).shape[1])


@dataclass(frozen=True)
class Splits:
    """Three disjoint class pools and a short description of where they come from."""

    train: ClassPool
    val: ClassPool
    test: ClassPool
    description: str

    def __getitem__(self, split: str) -> ClassPool:
        if split not in ("train", "val", "test"):
            raise KeyError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")
        return getattr(self, split)

    def summary(self) -> str:
        """One line per split: classes and images per class (min-max) — what the CLI prints."""
        lines = [self.description]
        for name in ("train", "val", "test"):
            pool = self[name]
            counts = [pool.count(i) for i in range(len(pool))]
            lo, hi = (min(counts), max(counts)) if counts else (0, 0)
            per = f"{lo}" if lo == hi else f"{lo}-{hi}"
            lines.append(f"  {name:5s}: {len(pool):5d} classes, {per} images per class, {sum(counts)} images")
        return "\n".join(lines)


class TaskSampler:
    """Draws N-way K-shot tasks with Q queries per class from a :class:`ClassPool`.

    Args:
        pool: the classes to draw from.
        ways, shots, queries: N, K and Q.
        generator: the sampler's own RNG; the same generator state gives the same tasks.
        rotations: if True, every class in each of its four 90-degree rotations is a class of its own, so the
            pool has four times as many classes and one task may hold a character in two rotations as two
            classes (the standard Omniglot augmentation; Santoro et al., 2016; Finn et al., 2017).
        split: the split's name, for error messages.
        device: where the pool's images live while sampling and where tasks are made (None: the pool's own
            CPU tensors). Each class drawn is copied there once, as ``uint8``, so on a GPU a task is indexed,
            rotated and converted to float on the device instead of being copied from the host per task. The
            same generator gives the same tasks on any device (indices are drawn on the CPU).

    Raises:
        DataError: if the pool has fewer than ``ways`` classes or a class has fewer than ``shots + queries``
            images (checked at construction for the class count, on first draw for the image counts).
    """

    def __init__(
        self,
        pool: ClassPool,
        ways: int,
        shots: int,
        queries: int,
        generator: torch.Generator,
        rotations: bool = False,
        split: str = "?",
        device: torch.device | str | None = None,
    ) -> None:
        for label, value in (("ways", ways), ("shots", shots), ("queries", queries)):
            if value < 1:
                raise DataError(f"{label} must be at least 1, got {value}")
        available = len(pool) * (4 if rotations else 1)
        if available < ways:
            rotated = " (counting rotations)" if rotations else ""
            raise DataError(
                f"the {split} split of {pool.source} has {available} classes{rotated}, fewer than ways={ways}; "
                f"lower --ways or use a larger data set"
            )
        self.pool, self.ways, self.shots, self.queries = pool, ways, shots, queries
        self.generator, self.rotations, self.split = generator, rotations, split
        self.device = None if device is None else torch.device(device)
        self.resident: dict[int, Tensor] = {}  # class -> (n, C, H, W) uint8 on self.device

    def _images(self, c: int) -> Tensor:
        if self.device is None:
            return self.pool.images(c)
        if c not in self.resident:
            self.resident[c] = self.pool.images(c).to(self.device)
        return self.resident[c]

    def sample(self) -> Task:
        """One task on the sampler's device; images as float32 in [0, 1], labels 0..ways-1 in a random class
        order."""
        g = self.generator
        n_classes = len(self.pool) * (4 if self.rotations else 1)
        classes = torch.randperm(n_classes, generator=g)[: self.ways].tolist()
        per_class = self.shots + self.queries
        xs_s, xs_q = [], []
        for virtual in classes:
            c, k = virtual % len(self.pool), virtual // len(self.pool)  # class, quarter turns
            imgs = self._images(c)
            if imgs.shape[0] < per_class:
                raise DataError(
                    f"class {self.pool.names[c]!r} in the {self.split} split of {self.pool.source} has "
                    f"{imgs.shape[0]} images, fewer than shots + queries = {per_class}; lower --shots or --queries"
                )
            idx = torch.randperm(imgs.shape[0], generator=g)[:per_class]
            x = imgs[idx.to(imgs.device)]  # (shots + queries, C, H, W) uint8
            if k:
                x = torch.rot90(x, k, dims=(2, 3))
            xs_s.append(x[: self.shots])
            xs_q.append(x[self.shots :])
        labels = torch.arange(self.ways, device=self.device or "cpu")
        support = (torch.cat(xs_s).float().div_(255.0), labels.repeat_interleave(self.shots))
        query = (torch.cat(xs_q).float().div_(255.0), labels.repeat_interleave(self.queries))
        return Task(support, query)
