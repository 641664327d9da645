"""2-D t-SNE maps of features before and after adaptation, and the silhouette of labelled features."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["silhouette", "tsne_embed"]


def _as_features(a: np.ndarray, name: str) -> np.ndarray:
    """``a: (n, p)`` as a finite float64 array; raises naming ``name`` otherwise."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, p) with n, p >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values (shape {arr.shape})")
    return arr


def _fit_opentsne(x: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    from openTSNE import TSNE

    # Exact neighbours (sklearn) instead of Annoy, which openTSNE picks from n = 1000 on: query-set features
    # are small enough, and exact search leaves nothing random beyond the seeded PCA initialisation.
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        initialization="pca",
        neighbors="exact",
        n_jobs=1,
        random_state=seed,
        verbose=False,
    )
    return np.asarray(tsne.fit(x), dtype=np.float64)


def _fit_sklearn(x: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1)
    return np.asarray(tsne.fit_transform(x), dtype=np.float64)


def tsne_embed(
    before: np.ndarray, after: np.ndarray, seed: int, perplexity: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """Embed before- and after-adaptation features into one shared 2-D t-SNE map.

    The map is fitted once on the concatenation ``[before; after]`` and split back, so both sets live in
    the same coordinates. That is chosen over fitting on ``before`` and placing ``after`` with openTSNE's
    ``transform``: ``transform`` optimises each new point against a frozen reference map, attracting it
    towards its nearest reference points, so structure that exists only after adaptation (classes that
    adaptation separates, a set that moves as a whole) is pulled back onto the geometry of ``before`` and
    understated. The joint fit treats both sets alike, and a point's neighbours may come from either set,
    so a shift between them shows up as a separation in the map rather than being absorbed.

    openTSNE is used when importable (exact nearest neighbours, PCA initialisation), else
    ``sklearn.manifold.TSNE`` (Barnes-Hut, PCA initialisation) on the same concatenation. Both run on one
    thread (``n_jobs=1`` and BLAS/OpenMP limited to one thread), which makes either deterministic for a
    fixed ``seed``; the two backends give different maps.

    Perplexity is clipped to ``min(perplexity, (N - 1) / 3)`` with ``N = n_before + n_after``: t-SNE
    calibrates each point on its ``3 * perplexity`` nearest neighbours, of which there are only ``N - 1``,
    so small query sets would otherwise exceed the data (openTSNE) or be rejected (sklearn).

    Args:
        before: (n_b, p) features before adaptation.
        after: (n_a, p) features after adaptation, same feature width p (n_a may differ from n_b).
        seed: random seed for the t-SNE initialisation and optimisation.
        perplexity: requested perplexity (> 0), clipped as above.

    Returns:
        ``(before_2d, after_2d)`` of shapes (n_b, 2) and (n_a, 2), float64, in one coordinate system.

    Raises:
        ValueError: if either input is not a non-empty finite (n, p) array, the widths differ,
            ``perplexity <= 0``, or ``n_b + n_a < 4`` (the clipped perplexity would fall below 1).

    References:
        van der Maaten & Hinton (2008), "Visualizing Data using t-SNE", JMLR 9.
        Policar, Strazar & Zupan (2024), "openTSNE: A Modular Python Library for t-SNE Dimensionality
        Reduction and Embedding", JSS 109.
    """
    b = _as_features(before, "before")
    a = _as_features(after, "after")
    if b.shape[1] != a.shape[1]:
        raise ValueError(f"before and after must have the same width p, got shapes {b.shape} and {a.shape}")
    if not np.isfinite(perplexity) or perplexity <= 0:
        raise ValueError(f"perplexity must be a positive number, got {perplexity}")
    n = b.shape[0] + a.shape[0]
    if n < 4:
        raise ValueError(f"need at least 4 points in before and after together, got {b.shape[0]} + {a.shape[0]}")
    effective = min(float(perplexity), (n - 1) / 3)
    x = np.concatenate([b, a], axis=0)
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        fit = _fit_sklearn
    else:
        fit = _fit_opentsne
    # One BLAS/OpenMP thread: multi-threaded reductions (PCA initialisation, sklearn's Barnes-Hut gradient)
    # may sum in a varying order, which t-SNE amplifies into different maps; and sklearn's OpenMP gradient
    # ignores n_jobs and slows down by orders of magnitude when its threads compete for busy cores.
    with threadpool_limits(limits=1):
        emb = fit(x, seed, effective)
    return emb[: b.shape[0]].copy(), emb[b.shape[0]:].copy()


def silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette score of labelled points, Euclidean distance in feature space (a similarity-like
    quality score in [-1, 1]: high when each class is tight and far from the others).

    Args:
        features: (n, p) features (or a 2-D embedding of them).
        labels: (n,) class labels.

    Returns:
        ``sklearn.metrics.silhouette_score(features, labels, metric="euclidean")`` as a Python float.

    Raises:
        ValueError: if ``features`` is not a non-empty finite (n, p) array, ``labels`` is not (n,), there are
            fewer than 2 classes, or every point is its own class (the score needs 2 <= classes <= n - 1).

    References:
        Rousseeuw (1987), "Silhouettes: a graphical aid to the interpretation and validation of cluster
        analysis", J. Comput. Appl. Math. 20.
    """
    f = _as_features(features, "features")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != f.shape[0]:
        raise ValueError(f"labels must have shape ({f.shape[0]},) to match features {f.shape}, got {lab.shape}")
    k = np.unique(lab).size
    if k < 2:
        raise ValueError(f"silhouette needs at least 2 classes, got {k}")
    if k > f.shape[0] - 1:
        raise ValueError(f"silhouette needs at most n - 1 = {f.shape[0] - 1} classes, got {k}")
    # Imported here, not with the package: scikit-learn takes seconds to import, and every trainer process
    # imports analysis (its confidence intervals) whether or not it records a silhouette.
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(f, lab, metric="euclidean"))
