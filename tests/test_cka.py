"""Properties of linear CKA (Kornblith et al., 2019) and of its debiased variant."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch

from analysis import linear_cka, linear_cka_features


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(p: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(_randn(p, p, seed=seed))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed, and exactly orthogonal to rounding


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one(debiased: bool) -> None:
    x = _randn(30, 12, seed=0)
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_symmetric(debiased: bool) -> None:
    x, y = _randn(25, 8, seed=1), _randn(25, 40, seed=2) @ _randn(40, 40, seed=3)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(linear_cka(y, x, debiased=debiased), abs=1e-14)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(debiased: bool) -> None:
    x = _randn(40, 10, seed=4)
    y = torch.tanh(x @ _randn(10, 15, seed=5)) + 0.3 * _randn(40, 15, seed=6)  # related to x, not equal
    ref = linear_cka(x, y, debiased=debiased)
    assert 0.2 < ref < 0.99  # a value where a wrong invariance would show
    qx, qy = _orthogonal(10, seed=7), _orthogonal(15, seed=8)
    assert linear_cka(x @ qx, y, debiased=debiased) == pytest.approx(ref, abs=1e-12)
    assert linear_cka(x, y @ qy, debiased=debiased) == pytest.approx(ref, abs=1e-12)
    assert linear_cka(3.7 * x, y, debiased=debiased) == pytest.approx(ref, abs=1e-12)
    assert linear_cka(x, 0.01 * y, debiased=debiased) == pytest.approx(ref, abs=1e-12)
    # Translation of the features is removed by centring.
    assert linear_cka(x + 5.0, y - 2.0, debiased=debiased) == pytest.approx(ref, abs=1e-12)


def test_not_invariant_to_general_invertible_transform() -> None:
    x = _randn(60, 10, seed=9)
    # Strongly anisotropic and invertible: CKA weights directions by variance, so it must drop well below 1.
    a = _orthogonal(10, seed=10) @ torch.diag(torch.logspace(0, 3, 10, dtype=torch.float64))
    assert torch.linalg.matrix_rank(a) == 10
    assert linear_cka(x, x @ a) < 0.8


def test_in_unit_interval_on_random_inputs() -> None:
    for seed in range(20):
        n = 5 + seed
        x = _randn(n, 3 + seed % 7, seed=100 + seed)
        y = _randn(n, 50, seed=200 + seed) + (seed % 3) * torch.cat([x, x], dim=1)[:, :1]
        value = linear_cka(x, y)
        assert 0.0 <= value <= 1.0


def test_gram_form_equals_feature_form() -> None:
    for seed, (n, p1, p2) in enumerate([(10, 3, 7), (7, 50, 20), (32, 16, 16), (5, 200, 2)]):
        x = _randn(n, p1, seed=300 + seed) + 4.0
        y = _randn(n, p2, seed=400 + seed) @ _randn(p2, p2, seed=500 + seed) - 1.0
        assert abs(linear_cka(x, y) - linear_cka_features(x, y)) < 1e-12


def test_higher_rank_inputs_are_flattened_per_example() -> None:
    x = _randn(9, 2, 3, 4, seed=11)
    y = _randn(9, 5, 2, seed=12)
    assert linear_cka(x, y) == pytest.approx(linear_cka(x.reshape(9, -1), y.reshape(9, -1)), abs=1e-15)
    assert linear_cka(x, x.reshape(9, -1)) == pytest.approx(1.0, abs=1e-12)


def test_float32_and_autograd_inputs_are_accepted() -> None:
    x = _randn(12, 6, seed=13).float().requires_grad_(True)
    y = _randn(12, 4, seed=14).float()
    assert linear_cka(x, y) == pytest.approx(linear_cka(x.detach().double(), y.double()), abs=1e-12)


def _hsic_unbiased_by_loops(k: list[list[Fraction]], l: list[list[Fraction]]) -> Fraction:
    """Song et al. (2012) unbiased HSIC, term by term with explicit index loops, in exact arithmetic:

    HSIC_1 = [tr(K~ L~) + (1' K~ 1)(1' L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1' K~ L~ 1] / (n(n-3)),
    K~, L~ = K, L with zero diagonal.
    """
    n = len(k)
    kt = [[k[i][j] if i != j else Fraction(0) for j in range(n)] for i in range(n)]
    lt = [[l[i][j] if i != j else Fraction(0) for j in range(n)] for i in range(n)]
    trace = sum(kt[i][j] * lt[j][i] for i in range(n) for j in range(n))
    sum_k = sum(kt[i][j] for i in range(n) for j in range(n))
    sum_l = sum(lt[i][j] for i in range(n) for j in range(n))
    cross = sum(kt[i][j] * lt[j][q] for i in range(n) for j in range(n) for q in range(n))
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - Fraction(2, n - 2) * cross) / (n * (n - 3))


def _hsic_u_statistic(k: list[list[Fraction]], l: list[list[Fraction]]) -> Fraction:
    """HSIC = E[k_ij l_ij] + E[k_ij] E[l_qr] - 2 E[k_ij l_iq] with each expectation replaced by its average
    over distinct indices: an unbiased symmetric estimator, hence the same U-statistic as Song et al.'s."""
    n = len(k)
    t1 = [k[i][j] * l[i][j] for i, j in itertools.permutations(range(n), 2)]
    t2 = [k[i][j] * l[q][r] for i, j, q, r in itertools.permutations(range(n), 4)]
    t3 = [k[i][j] * l[i][q] for i, j, q in itertools.permutations(range(n), 3)]
    return Fraction(sum(t1), len(t1)) + Fraction(sum(t2), len(t2)) - 2 * Fraction(sum(t3), len(t3))


def _gram(rows: list[list[int]]) -> list[list[Fraction]]:
    return [[Fraction(sum(a * b for a, b in zip(r, s))) for s in rows] for r in rows]


def test_debiased_matches_unbiased_hsic_worked_by_hand() -> None:
    # Small integer data, deliberately uncentred: the estimator is invariant to translating the features,
    # so the implementation (which centres first) must agree with the raw-Gram formula.
    x_rows = [[1, 0, 2], [0, 1, 1], [3, 1, 0], [2, 2, 2], [0, 3, 1], [1, 1, 4]]
    y_rows = [[2, 1], [1, 0], [0, 2], [3, 3], [1, 4], [2, 0]]
    k, l = _gram(x_rows), _gram(y_rows)
    hxy, hxx, hyy = _hsic_unbiased_by_loops(k, l), _hsic_unbiased_by_loops(k, k), _hsic_unbiased_by_loops(l, l)
    # Two derivations of the same estimator agree exactly, so the reference itself is right.
    assert (hxy, hxx, hyy) == (_hsic_u_statistic(k, l), _hsic_u_statistic(k, k), _hsic_u_statistic(l, l))
    assert hxx > 0 and hyy > 0
    expected = float(hxy) / math.sqrt(float(hxx) * float(hyy))
    got = linear_cka(torch.tensor(x_rows), torch.tensor(y_rows), debiased=True)
    assert got == pytest.approx(expected, abs=1e-12)
    # And it differs from the biased estimator on this data, so the test pins the debiased path.
    assert abs(linear_cka(torch.tensor(x_rows), torch.tensor(y_rows)) - expected) > 1e-3


def test_debiased_removes_small_n_bias_for_independent_features() -> None:
    plain, debiased = [], []
    for seed in range(10):
        x, y = _randn(20, 2000, seed=600 + seed), _randn(20, 2000, seed=700 + seed)
        plain.append(linear_cka(x, y))
        debiased.append(linear_cka(x, y, debiased=True))
    # The biased estimator sees "similarity" in pure noise when p >> n.
    assert min(plain) > 0.5
    # One debiased draw at n=20 has a standard deviation of about 0.08 around 0, so the bias is judged on
    # the mean of 10 draws (standard error about 0.025).
    assert abs(sum(debiased) / len(debiased)) < 0.1
    assert max(abs(v) for v in debiased) < 0.4


@pytest.mark.parametrize("fn", [linear_cka, linear_cka_features])
def test_shape_errors_name_the_argument(fn) -> None:
    good = _randn(8, 3, seed=15)
    with pytest.raises(ValueError, match=r"^x must have shape .*got shape \(8,\)"):
        fn(torch.zeros(8), good)
    with pytest.raises(ValueError, match=r"^y must have shape .*got shape \(8,\)"):
        fn(good, torch.zeros(8))
    with pytest.raises(ValueError, match=r"x shape \(8, 3\) and y shape \(7, 3\)"):
        fn(good, good[:7])
    with pytest.raises(ValueError, match=r"^x has no features"):
        fn(torch.zeros(8, 0), good)
    with pytest.raises(ValueError, match="at least 2 examples"):
        fn(good[:1], good[:1])


def test_debiased_needs_four_examples() -> None:
    x = _randn(3, 5, seed=16)
    assert 0.0 <= linear_cka(x, x.flip(0)) <= 1.0
    with pytest.raises(ValueError, match="at least 4 examples, got n=3"):
        linear_cka(x, x, debiased=True)


@pytest.mark.parametrize("debiased", [False, True])
def test_constant_representation_raises(debiased: bool) -> None:
    x = _randn(10, 4, seed=17)
    const = torch.full((10, 6), 0.1, dtype=torch.float32)  # 0.1 does not centre to exact zeros
    with pytest.raises(ValueError, match=r"^y is constant across the 10 examples"):
        linear_cka(x, const, debiased=debiased)
    with pytest.raises(ValueError, match=r"^x is constant"):
        linear_cka(torch.zeros(10, 3), x, debiased=debiased)
    with pytest.raises(ValueError, match=r"^x is constant"):
        linear_cka_features(const, x)


def test_non_finite_input_raises() -> None:
    x = _randn(6, 2, seed=18)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^y contains NaN"):
        linear_cka(x, bad)
