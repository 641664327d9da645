"""Linear centred kernel alignment (CKA), a similarity between two representations of the same examples.

Both functions return a *similarity*: 1 for representations equal up to an orthogonal transform and an
isotropic scaling, near 0 for unrelated ones. Everything is computed in float64 on the CPU, detached from
any autograd graph.

Degenerate input: a representation that is constant across the n examples has zero variance after
centring, so its self-HSIC is 0 and CKA is 0/0. That is raised as a ValueError naming the argument rather
than returned as NaN or as an arbitrary 0 or 1: it almost always means a dead layer or a wrong tensor, and a
NaN averaged into a curve would hide it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear_cka", "linear_cka_features"]

# A centred representation whose Frobenius norm is this small relative to the uncentred one is constant up
# to the rounding of the mean (identical rows do not always centre to exact zeros in floating point).
_CONSTANT_RTOL = 1e-12


def _as_matrix(t: Tensor, name: str) -> Tensor:
    """``t: (n, ...)`` as a float64 CPU ``(n, prod(...))`` matrix, detached; validates rank and values."""
    t = torch.as_tensor(t)
    if t.dim() < 2:
        raise ValueError(
            f"{name} must have shape (n, p) or (n, ...) with one row per example, got shape {tuple(t.shape)}"
        )
    if t.is_complex():
        raise ValueError(f"{name} must be real, got dtype {t.dtype}")
    m = t.detach().to(device="cpu", dtype=torch.float64).reshape(t.shape[0], -1)
    if m.shape[1] == 0:
        raise ValueError(f"{name} has no features per example: shape {tuple(t.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or infinite values (shape {tuple(t.shape)})")
    return m


def _centred_pair(x: Tensor, y: Tensor, min_n: int) -> tuple[Tensor, Tensor]:
    """Validated, flattened, column-centred ``x: (n, p1)`` and ``y: (n, p2)``."""
    xm, ym = _as_matrix(x, "x"), _as_matrix(y, "y")
    if xm.shape[0] != ym.shape[0]:
        raise ValueError(
            "x and y must hold the same examples (same first dimension), got x shape "
            f"{tuple(torch.as_tensor(x).shape)} and y shape {tuple(torch.as_tensor(y).shape)}"
        )
    n = xm.shape[0]
    if n < min_n:
        raise ValueError(f"need at least {min_n} examples, got n={n} (x shape {tuple(xm.shape)})")
    out = []
    for name, m in (("x", xm), ("y", ym)):
        c = m - m.mean(dim=0, keepdim=True)
        if torch.linalg.matrix_norm(c) <= _CONSTANT_RTOL * torch.linalg.matrix_norm(m):
            raise ValueError(
                f"{name} is constant across the {n} examples (zero variance after centring), so its "
                "self-HSIC is 0 and CKA is undefined"
            )
        out.append(c)
    return out[0], out[1]


def _hsic_unbiased(k: Tensor, l: Tensor) -> Tensor:
    """Unbiased HSIC estimator of Song et al. (2012) for ``k, l: (n, n)`` Gram matrices, n >= 4.

    HSIC_1 = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)), where K~, L~
    are K, L with their diagonals set to zero.
    """
    n = k.shape[0]
    kt = k.clone()
    lt = l.clone()
    kt.fill_diagonal_(0.0)
    lt.fill_diagonal_(0.0)
    ones = torch.ones(n, dtype=k.dtype)
    trace_term = (kt * lt).sum()  # tr(K~ L~), both symmetric
    sum_term = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    cross_term = 2.0 / (n - 2) * (ones @ kt @ (lt @ ones))
    return (trace_term + sum_term - cross_term) / (n * (n - 3))


def linear_cka(x: Tensor, y: Tensor, debiased: bool = False) -> float:
    """Linear CKA similarity between two representations of the same n examples, in Gram-matrix form.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with the linear kernels K = X X^T, L = Y Y^T.
    Working with the ``(n, n)`` Gram matrices costs O(n^2 p), which is what a query set (n small, p in the
    thousands) wants. The columns of x and y are centred first; for the biased estimator that is exactly
    the H K H centring of the Gram matrix, and it avoids the cancellation that centring a Gram matrix of
    features with large means suffers. The unbiased estimator is unchanged by centring the features.

    Args:
        x: (n, p1) representation, or (n, ...) which is flattened per example to (n, prod(...)).
        y: (n, p2) representation of the same n examples, in the same order; flattened likewise.
        debiased: False uses the biased HSIC estimator tr(K H L H) / (n-1)^2 (Gretton et al., 2005), which
            is in [0, 1] but is inflated when n is small relative to p: independent features of width p >> n
            give values far above 0. True uses the unbiased estimator of Song et al. (2012), which removes
            that bias; the result is then an estimate that may fall slightly below 0 (or above 1).

    Returns:
        The CKA similarity as a Python float.

    Raises:
        ValueError: if x or y is not of rank >= 2 or has no features, their first dimensions differ, a
            value is not finite, n < 2 (n < 4 when ``debiased``), either representation is constant across
            the examples (CKA is 0/0), or, debiased only, a self-HSIC estimate is not positive.

    References:
        Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations Revisited",
        ICML (linear CKA).
        Gretton, Bousquet, Smola & Schoelkopf (2005), "Measuring Statistical Dependence with
        Hilbert-Schmidt Norms", ALT (biased HSIC).
        Song, Smola, Gretton, Bedo & Borgwardt (2012), "Feature Selection via Dependence Maximization",
        JMLR 13 (unbiased HSIC).
        Nguyen, Raghu & Kornblith (2021), "Do Wide and Deep Networks Learn the Same Things?", ICLR (CKA with
        the unbiased HSIC estimator).
    """
    xc, yc = _centred_pair(x, y, min_n=4 if debiased else 2)
    k = xc @ xc.T
    l = yc @ yc.T
    if debiased:
        hxy, hxx, hyy = _hsic_unbiased(k, l), _hsic_unbiased(k, k), _hsic_unbiased(l, l)
        if hxx <= 0 or hyy <= 0:
            raise ValueError(
                f"debiased self-HSIC estimate is not positive (x: {hxx.item():.3g}, y: {hyy.item():.3g}) "
                f"with n={xc.shape[0]}; use more examples or debiased=False"
            )
    else:
        # The 1/(n-1)^2 factors cancel in the ratio, so plain Frobenius inner products suffice.
        hxy, hxx, hyy = (k * l).sum(), (k * k).sum(), (l * l).sum()
    return float(hxy / torch.sqrt(hxx * hyy))


def linear_cka_features(x: Tensor, y: Tensor) -> float:
    """Linear CKA similarity in feature-space form: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), centred.

    Mathematically equal to ``linear_cka(x, y)`` (biased). It forms ``(p2, p1)``, ``(p1, p1)`` and
    ``(p2, p2)`` matrices, so it suits narrow representations; it exists mainly as an independent check of
    the Gram-matrix form.

    Args:
        x: (n, p1) representation, or (n, ...) flattened per example.
        y: (n, p2) representation of the same n examples; flattened likewise.

    Returns:
        The CKA similarity as a Python float, in [0, 1].

    Raises:
        ValueError: on the same shape, value and degeneracy conditions as :func:`linear_cka` (n >= 2).

    References:
        Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations Revisited",
        ICML (linear CKA in terms of features).
    """
    xc, yc = _centred_pair(x, y, min_n=2)
    num = torch.linalg.matrix_norm(yc.T @ xc) ** 2
    den = torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)
    return float(num / den)

