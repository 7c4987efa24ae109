"""simulate.problems: presets are what they claim (structure, S_off sign, exact dense storage)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given

from simulate import problems
from tests.strategies import simulate_presets
from tests.tolerances import fp_tol
from theory import sign


@given(simulate_presets())
def test_presets_sign_of_s_off(case):
    """surge/dense/correlated have S_off > 0, diagonal has S_off = 0, negative-soff < 0."""
    name, p = case
    so = sign.s_off(p.mu, p.marginal_std(), p.H)
    if name in ("surge", "dense", "correlated"):
        assert so > 0
    elif name == "diagonal":
        # s_off = rᵀHr − Σ r_i² H_ii: a difference of equal sums, zero up to rounding
        r = p.mu / p.marginal_std()
        assert abs(so) <= fp_tol(p.d) * float(np.sum(r**2 * np.diag(p.H)))
    else:
        assert so < 0


@given(simulate_presets())
def test_hvp_matches_dense_hessian(case):
    """The O(d·r) product h ⊙ x + (x U) Uᵀ equals the dense H x."""
    _, p = case
    x = np.random.default_rng(0).normal(size=(3, p.d))
    H = p.H
    assert np.allclose(
        p.hvp(x), x @ H, rtol=0, atol=fp_tol(np.abs(H).sum(axis=1).max()) * np.abs(x).max()
    )


def test_dense_storage_is_exact():
    """dense: diag(h) + U Uᵀ with U = Q√(Λ − c) has exactly the drawn spectrum (up to rounding),
    and its top eigenvector is sign(μ)/√d."""
    p = problems.dense(3, d=16, cond=50.0)
    lam, vec = np.linalg.eigh(p.H)
    assert p.U.shape == (16, 16)
    assert lam.min() > 0
    assert lam.max() == pytest.approx(4.0 * 16, rel=fp_tol(lam.max() / lam.min()))
    top = vec[:, -1] * np.sign(vec[0, -1] * p.mu[0])
    assert np.allclose(top, np.sign(p.mu) / 4.0, atol=fp_tol(16 * lam.max()))


def test_finite_population_moments():
    """finite: the examples' mean is μ and their population std-dev is σ (ddof = 0)."""
    p = problems.finite(1, d=8, n_examples=300)
    assert p.examples.shape == (300, 8)
    assert np.allclose(p.examples.mean(axis=0), p.mu, atol=fp_tol(300) * np.abs(p.examples).max())
    assert np.allclose(p.examples.std(axis=0), p.sigma, rtol=fp_tol(300))


def test_problem_is_frozen():
    p = problems.surge(0, d=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.mu = np.zeros(8)
    with pytest.raises(ValueError):
        p.mu[0] = 1.0  # read-only array


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: problems.make("nope"), "problem"),
        (lambda: problems.surge(0, d=1), "d"),
        (lambda: problems.negative_soff(0, d=7), "d"),
        (lambda: problems.correlated(0, rho=1.0), "rho"),
        (lambda: problems.finite(0, n_examples=1), "n_examples"),
        (lambda: problems.Problem([1.0, 2.0], [1.0, -1.0], [1.0, 1.0], name="x"), "sigma"),
        (lambda: problems.Problem([1.0, 2.0], [1.0, 1.0], [1.0, -1.0], name="x"), "h"),
        (
            lambda: problems.Problem(
                [1.0, 2.0], [1.0, 1.0], [1.0, 1.0], U=np.ones((3, 1)), name="x"
            ),
            "U",
        ),
    ],
)
def test_bad_input_names_argument(call, arg):
    """Bad input raises ValueError whose message names the argument."""
    with pytest.raises(ValueError, match=arg):
        call()


def test_a_preset_is_the_kernels_problem():
    """One quadratic-problem class: a preset is a kernels.QuadraticProblem that update_moments
    takes as it is, giving the numbers of the same arrays passed to the kernel's own class;
    a finite dataset's moments are kernels.Moments too."""
    import kernels
    from simulate.surge import finite_moments, moments

    p = problems.correlated(0, d=6)
    assert isinstance(p, kernels.QuadraticProblem)
    q = kernels.QuadraticProblem(p.mu, p.sigma, p.h, U=p.U, W=p.W)
    a = moments(p, [1.0, 8.0], 64, seed=0, backend="reference")
    b = kernels.update_moments(q, [1.0, 8.0], 64, seed=0, backend="reference")
    assert type(a) is kernels.Moments
    assert np.array_equal(a.m1, b.m1) and np.array_equal(a.m2, b.m2)
    f = finite_moments(problems.finite(0, d=4, n_examples=16), [1.0, 4.0], 20, seed=0)
    assert type(f) is kernels.Moments and f.n_samples == 20 and f.update == "sign"
