"""The shared before/after t-SNE map and the silhouette score."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from analysis import silhouette, tsne_embed


def _two_clusters(seed: int, n_per: int = 30, p: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0.0, 1.0, (n_per, p)), rng.normal(6.0, 1.0, (n_per, p))])
    return x, np.repeat([0, 1], n_per)


@pytest.fixture(scope="module")
def clusters():
    before, labels = _two_clusters(0)
    rng = np.random.default_rng(1)
    after = before + rng.normal(0.0, 0.05, before.shape)  # each point barely moves
    return before, after, labels, tsne_embed(before, after, seed=3)


def test_shapes_and_dtype(clusters) -> None:
    before, after, _, (eb, ea) = clusters
    assert eb.shape == (before.shape[0], 2) and ea.shape == (after.shape[0], 2)
    assert eb.dtype == np.float64 and np.isfinite(eb).all() and np.isfinite(ea).all()
    eb2, ea2 = tsne_embed(before[:10], after[:25], seed=0)
    assert eb2.shape == (10, 2) and ea2.shape == (25, 2)


def test_deterministic_for_a_fixed_seed(clusters) -> None:
    before, after, _, (eb, ea) = clusters
    eb2, ea2 = tsne_embed(before, after, seed=3)
    np.testing.assert_array_equal(eb, eb2)
    np.testing.assert_array_equal(ea, ea2)


def test_separated_clusters_stay_separated(clusters) -> None:
    _, _, labels, (eb, ea) = clusters
    assert silhouette(eb, labels) > 0.5
    assert silhouette(ea, labels) > 0.5
    assert silhouette(np.concatenate([eb, ea]), np.concatenate([labels, labels])) > 0.5


def test_before_and_after_share_coordinates(clusters) -> None:
    # A point that barely moves under adaptation must land next to itself: only true if both sets are
    # embedded in one map (two separate fits would be unrelated up to rotation, reflection and scale).
    _, _, _, (eb, ea) = clusters
    pts = np.concatenate([eb, ea])
    spread = np.linalg.norm(pts - pts.mean(axis=0), axis=1).mean()
    paired = np.linalg.norm(eb - ea, axis=1)
    assert np.median(paired) < 0.05 * spread


def test_a_shift_between_sets_shows_in_the_map() -> None:
    # Translating every feature leaves a t-SNE map of one set unchanged, so two separate fits (or placing
    # `after` into a map fitted on `before`) would overlay the sets; the joint map must pull them apart.
    before, labels = _two_clusters(9, n_per=20, p=10)
    after = before + 40.0
    eb, ea = tsne_embed(before, after, seed=0)
    which = np.repeat([0, 1], len(before))
    assert silhouette(np.concatenate([eb, ea]), which) > 0.5
    assert silhouette(eb, labels) > 0.5 and silhouette(ea, labels) > 0.5


def test_small_n_clips_perplexity() -> None:
    x, _ = _two_clusters(2, n_per=3, p=5)
    eb, ea = tsne_embed(x[:3], x[3:], seed=0, perplexity=30.0)  # 6 points: perplexity 30 -> 5/3
    assert eb.shape == (3, 2) and ea.shape == (3, 2) and np.isfinite(eb).all()


def test_sklearn_fallback(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # makes `import openTSNE` raise ImportError
    before, labels = _two_clusters(4, n_per=20, p=10)
    after = before[::-1].copy()
    eb, ea = tsne_embed(before, after, seed=5)
    eb2, ea2 = tsne_embed(before, after, seed=5)
    np.testing.assert_array_equal(eb, eb2)
    np.testing.assert_array_equal(ea, ea2)
    assert eb.shape == (40, 2) and ea.shape == (40, 2)
    assert silhouette(eb, labels) > 0.5
    # after is before reversed, so identical points must coincide in the shared map.
    pts = np.concatenate([eb, ea])
    assert np.median(np.linalg.norm(eb - ea[::-1], axis=1)) < 0.05 * np.ptp(pts, axis=0).max()
    # sklearn rejects perplexity >= n, so this also checks the clipping for a small set.
    eb, ea = tsne_embed(before[:3], after[:3], seed=5, perplexity=30.0)
    assert eb.shape == (3, 2) and np.isfinite(ea).all()


def test_tsne_bad_input_raises() -> None:
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"^before must have shape \(n, p\).*\(5,\)"):
        tsne_embed(np.zeros(5), x, seed=0)
    with pytest.raises(ValueError, match=r"same width p, got shapes \(5, 3\) and \(5, 4\)"):
        tsne_embed(x, np.zeros((5, 4)), seed=0)
    with pytest.raises(ValueError, match="perplexity must be a positive number"):
        tsne_embed(x, x, seed=0, perplexity=0.0)
    with pytest.raises(ValueError, match="at least 4 points"):
        tsne_embed(x[:2], x[:1], seed=0)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^after contains NaN or infinite"):
        tsne_embed(x, bad, seed=0)


def test_silhouette_matches_sklearn() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 7))
    labels = rng.integers(0, 3, size=50)
    x[labels == 1] += 2.0
    assert silhouette(x, labels) == pytest.approx(silhouette_score(x, labels, metric="euclidean"), abs=1e-12)
    sep, lab = _two_clusters(7)
    assert silhouette(sep, lab) > 0.5
    assert silhouette(sep, lab[::-1].copy()) == pytest.approx(silhouette(sep, lab))  # relabelling: same score
    assert silhouette(sep, rng.permutation(lab)) < 0.1  # labels unrelated to the clusters


def test_silhouette_bad_input_raises() -> None:
    x = np.random.default_rng(8).normal(size=(6, 2))
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        silhouette(x, np.zeros(6))
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\).*got \(5,\)"):
        silhouette(x, np.array([0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match="at most n - 1 = 5 classes, got 6"):
        silhouette(x, np.arange(6))
    with pytest.raises(ValueError, match=r"^features must have shape"):
        silhouette(np.zeros(6), np.array([0, 1, 0, 1, 0, 1]))
