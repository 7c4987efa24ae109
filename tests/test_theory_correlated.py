"""Correlated coordinates: the orthant formula E[sign X sign Y] and the exact m1, m2."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from tests.strategies import correlated_problems, sign_problems
from tests.tolerances import CDF_TOL, fp_tol, mc_close
from theory import correlated, sign


@given(st.floats(-0.999, 0.999))
def test_zero_means_is_arcsin(rho):
    """At zero means E[sign X sign Y] = (2/π) arcsin ρ (Sheppard)."""
    assert np.isclose(
        correlated.sign_product_expectation(0.0, 0.0, rho),
        2 / np.pi * np.arcsin(rho),
        rtol=0,
        atol=fp_tol(10),
    )


@given(st.floats(-3, 3), st.floats(-3, 3))
def test_independent_limit_factorises(a, b):
    """At ρ = 0 the expectation factorises: E[sign X sign Y] = ξ(a) ξ(b) (Theorem 2's case)."""
    xa = sign.expected_sign([a], [1.0], 1.0)[0]  # erf(√(B/2) a/σ) = erf(a/√2) at B = σ = 1
    xb = sign.expected_sign([b], [1.0], 1.0)[0]
    assert np.isclose(
        correlated.sign_product_expectation(a, b, 0.0), xa * xb, rtol=0, atol=fp_tol(10)
    )


@settings(max_examples=6)
@given(st.integers(0, 2**32 - 1))
def test_orthant_formula_against_monte_carlo(seed):
    """4Φ₂ − 2Φ(a) − 2Φ(b) + 1 agrees with a seeded Monte Carlo mean of sign X sign Y within
    5 SE, on a vector of (a, b, ρ) including zeros and |ρ| = 1."""
    rng = np.random.default_rng(seed)
    a = np.array([0.0, 0.0, 0.7, -1.2, 0.3, 1.5, -0.4])
    b = np.array([0.0, 0.9, -0.5, -0.8, 0.3, 0.2, 0.0])
    rho = np.array([0.6, -0.3, 0.9, -0.95, 1.0, -1.0, rng.uniform(-1, 1)])
    n = 20_000
    z1 = rng.normal(size=(n, a.size))
    z2 = rho * z1 + np.sqrt(1 - rho**2) * rng.normal(size=(n, a.size))
    prod = np.sign(a + z1) * np.sign(b + z2)
    se = prod.std(axis=0, ddof=1) / np.sqrt(n)
    theory = correlated.sign_product_expectation(a, b, rho)
    assert mc_close(prod.mean(axis=0), theory, se, floor=fp_tol())


@settings(max_examples=6)
@given(correlated_problems(), st.floats(0.5, 50.0), st.integers(0, 2**32 - 1))
def test_moments_against_monte_carlo(problem, B, seed):
    """sign_first_moment and sign_second_moment (pairwise orthant formula, exact for any d)
    match a Monte Carlo of v = sign(G_est), G_est ~ N(μ, Σ/B) with correlated Σ, within 5 SE.

    A mean of n bounded samples cannot see events rarer than ~1/n (the sample SE is then 0),
    so the comparison gets a floor of range/n, range = 2Σ|μ_i| (m1) or 2Σ|H_ij| (m2).
    """
    mu, cov, h = problem
    rng = np.random.default_rng(seed)
    n = 20_000
    g = mu + rng.normal(size=(n, mu.size)) @ np.linalg.cholesky(cov / B).T
    v = np.sign(g)
    m1s, m2s = v @ mu, np.einsum("ni,ij,nj->n", v, h, v)
    se = lambda x: x.std(ddof=1) / np.sqrt(n)  # noqa: E731
    assert mc_close(
        m1s.mean(),
        correlated.sign_first_moment(mu, cov, B),
        se(m1s),
        floor=2 * np.abs(mu).sum() / n,
    )
    assert mc_close(
        m2s.mean(),
        correlated.sign_second_moment(mu, cov, B, h),
        se(m2s),
        floor=2 * np.abs(h).sum() / n,
    )


@example(h=3.3794717867804433e-228, k=-2.2250738585072014e-308, rho=0.0)  # h·k underflowed
@settings(max_examples=20)
@given(st.floats(-4, 4), st.floats(-4, 4), st.floats(-0.99, 0.99))
def test_bivariate_cdf_matches_scipy(h, k, rho):
    """Owen's-T Φ₂ equals scipy's bivariate normal cdf to CDF_TOL."""
    ref = multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]]).cdf([h, k])
    assert abs(float(correlated.bivariate_normal_cdf(h, k, rho)) - ref) <= CDF_TOL


@given(sign_problems(), st.lists(st.floats(0.5, 1e3), min_size=1, max_size=5))
def test_diagonal_covariance_reduces_to_theorem2(problem, Bs):
    """With a diagonal covariance the exact correlated ε_opt equals Theorem 2's."""
    mu, sigma, h = problem
    B = np.array(Bs)
    assert np.allclose(
        correlated.optimal_lr_exact(mu, np.diag(sigma**2), h, B),
        sign.optimal_lr_exact(mu, sigma, h, B),
        rtol=fp_tol(100),
        atol=0,
    )


def test_vectorised_over_batch_and_pairs():
    """Scalar B gives a float; 1-D B gives one value per batch size, each equal to the scalar
    call; sign_product_expectation broadcasts its arguments."""
    mu = np.array([0.3, -0.2, 0.5])
    cov = np.array([[1.0, 0.5, 0.1], [0.5, 2.0, -0.3], [0.1, -0.3, 1.5]])
    h = np.eye(3) + 0.2
    B = np.array([1.0, 10.0, 100.0])
    vec = correlated.sign_second_moment(mu, cov, B, h)
    assert vec.shape == (3,)
    assert np.allclose(
        vec, [correlated.sign_second_moment(mu, cov, b, h) for b in B], rtol=fp_tol(), atol=0
    )
    assert isinstance(correlated.sign_first_moment(mu, cov, 4.0), float)
    out = correlated.sign_product_expectation(np.zeros((4, 1)), np.zeros((1, 3)), 0.5)
    assert out.shape == (4, 3)
