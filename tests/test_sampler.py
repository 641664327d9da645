"""TaskSampler: determinism, labels, support/query disjointness, errors and rotations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cml.data import ClassPool, DataError, TaskSampler

CLASSES, PER_CLASS, SIZE = 12, 10, 8


def _pool(channels: int = 1) -> ClassPool:
    """Random images whose pixel (0, 0) and (0, 1) encode (class, index): every image is identifiable."""
    rng = np.random.default_rng(0)

    def loader(c: int):
        def load() -> np.ndarray:
            shape = (PER_CLASS, SIZE, SIZE) + ((channels,) if channels > 1 else ())
            x = rng.integers(0, 256, size=shape, dtype=np.uint8)
            x[:, 0, 0] = c
            x[:, 0, 1] = np.arange(PER_CLASS).reshape((-1,) + (1,) * (x.ndim - 3))
            return x

        return load

    return ClassPool([f"class{c}" for c in range(CLASSES)], [loader(c) for c in range(CLASSES)], "synthetic")


def _ids(x: torch.Tensor) -> list[tuple[int, int]]:
    raw = (x * 255).round().to(torch.int64)
    return [(int(v[0, 0, 0]), int(v[0, 0, 1])) for v in raw]


def test_same_seed_same_tasks_other_seed_other_tasks() -> None:
    pool = _pool()
    a = TaskSampler(pool, 5, 2, 3, torch.Generator().manual_seed(7))
    b = TaskSampler(pool, 5, 2, 3, torch.Generator().manual_seed(7))
    c = TaskSampler(pool, 5, 2, 3, torch.Generator().manual_seed(8))
    ta, tb, tc = [[s.sample() for _ in range(4)] for s in (a, b, c)]
    for x, y in zip(ta, tb):
        assert torch.equal(x.support[0], y.support[0]) and torch.equal(x.query[0], y.query[0])
        assert torch.equal(x.support[1], y.support[1]) and torch.equal(x.query[1], y.query[1])
    assert any(not torch.equal(x.support[0], z.support[0]) for x, z in zip(ta, tc))


def test_labels_shapes_and_counts() -> None:
    ways, shots, queries = 5, 3, 4
    task = TaskSampler(_pool(3), ways, shots, queries, torch.Generator().manual_seed(0)).sample()
    (xs, ys), (xq, yq) = task
    assert xs.shape == (ways * shots, 3, SIZE, SIZE) and xq.shape == (ways * queries, 3, SIZE, SIZE)
    assert xs.dtype == torch.float32 and 0.0 <= float(xs.min()) and float(xs.max()) <= 1.0
    assert ys.dtype == torch.int64 and yq.dtype == torch.int64
    assert torch.equal(torch.bincount(ys, minlength=ways), torch.full((ways,), shots))
    assert torch.equal(torch.bincount(yq, minlength=ways), torch.full((ways,), queries))
    assert set(ys.tolist()) == set(range(ways))


def test_support_and_query_are_disjoint_and_consistent() -> None:
    sampler = TaskSampler(_pool(), 5, 2, 5, torch.Generator().manual_seed(1))
    for _ in range(20):
        (xs, ys), (xq, yq) = sampler.sample()
        support, query = _ids(xs), _ids(xq)
        assert not set(support) & set(query)
        assert len(set(support)) == len(support) and len(set(query)) == len(query)
        # One original class per label, the same in support and query.
        for label in range(5):
            classes = {support[i][0] for i in range(len(support)) if ys[i] == label}
            classes |= {query[i][0] for i in range(len(query)) if yq[i] == label}
            assert len(classes) == 1


def test_errors_name_the_split() -> None:
    with pytest.raises(DataError, match="the val split of synthetic has 12 classes, fewer than ways=20"):
        TaskSampler(_pool(), 20, 1, 1, torch.Generator(), split="val")
    with pytest.raises(DataError, match="shots must be at least 1"):
        TaskSampler(_pool(), 5, 0, 1, torch.Generator())
    sampler = TaskSampler(_pool(), 5, 6, 6, torch.Generator(), split="test")
    with pytest.raises(DataError, match="in the test split of synthetic has 10 images, fewer than"):
        sampler.sample()


def test_rotations_are_multiples_of_90_degrees() -> None:
    pool = _pool()
    sampler = TaskSampler(pool, 5, 2, 2, torch.Generator().manual_seed(3), rotations=True)
    seen_k = set()
    for _ in range(10):
        (xs, ys), (xq, yq) = sampler.sample()
        for x, y in ((xs, ys), (xq, yq)):
            raw = (x * 255).round().to(torch.uint8)
            for label in range(5):
                ks = set()
                for img in raw[y == label]:
                    matches = [
                        k for c in range(len(pool)) for k in range(4)
                        if any(torch.equal(torch.rot90(orig, k, dims=(1, 2)), img) for orig in pool.images(c))
                    ]
                    assert len(matches) == 1  # exactly one original under exactly one rotation
                    ks.add(matches[0])
                assert len(ks) == 1  # one rotation per class within a task
                seen_k |= ks
    assert seen_k == {0, 1, 2, 3}


def test_rotated_copies_are_classes_of_their_own() -> None:
    # 3 characters x 4 rotations = 12 classes: enough for 10-way tasks, which must then repeat a character.
    pool = ClassPool([f"c{i}" for i in range(3)],
                     [lambda i=i: np.random.default_rng(i).integers(0, 256, (4, 8, 8), dtype=np.uint8)
                      for i in range(3)], "three characters")
    with pytest.raises(DataError, match="3 classes, fewer than ways=10"):
        TaskSampler(pool, 10, 1, 1, torch.Generator())
    (xs, _), _ = TaskSampler(pool, 10, 1, 1, torch.Generator().manual_seed(0), rotations=True).sample()
    raw = (xs * 255).round().to(torch.uint8)
    originals = [(c, k) for img in raw for c in range(3) for k in range(4)
                 if any(torch.equal(torch.rot90(o, k, dims=(1, 2)), img) for o in pool.images(c))]
    assert len(set(originals)) == 10 and len({c for c, _ in originals}) == 3
