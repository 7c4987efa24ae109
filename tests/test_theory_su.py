"""Su's mean-field variant: β_noise peak, B_noise-2 identity, agreement with Theorem 3."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from tests.strategies import surge_problems
from tests.tolerances import ARGMAX_RTOL, SLOPE_TOL, fp_tol
from theory import sign, su


def _peak(mu, h, k2):
    res = minimize_scalar(
        lambda u: -su.optimal_lr(math.exp(u), mu, h, k2),
        bounds=(math.log(1e-6), math.log(1e9)),
        method="bounded",
        options={"xatol": 1e-11},
    )
    return math.exp(res.x)


@given(surge_problems(), st.floats(1.0, 1e3))
def test_peak_at_beta_noise(problem, k2):
    """The mean-field ε_opt(B) peaks where β(B) = β_noise, i.e. at B = su.b_noise, with value
    ε_max (when β_noise < 1)."""
    mu, _, h = problem
    e, bn = su.params(mu, h)
    assert bn < 1
    b_peak = _peak(mu, h, k2)
    assert abs(b_peak / su.b_noise(k2, bn) - 1) <= 10 * ARGMAX_RTOL  # 20 decades searched
    assert abs(su.beta(b_peak, k2) / bn - 1) <= 10 * ARGMAX_RTOL
    assert np.isclose(su.optimal_lr(su.b_noise(k2, bn), mu, h, k2), e, rtol=fp_tol(10), atol=0)


@given(surge_problems(), st.floats(1.0, 1e3))
def test_b_noise2_identity_and_gain_law(problem, k2):
    """1/B_noise-2 − 1/B_noise = 4/(πκ²), and ΔL_opt(B) = ΔL_max2/(1 + B_noise-2/B)."""
    mu, _, h = problem
    _, bn = su.params(mu, h)
    b1, b2 = su.b_noise(k2, bn), su.b_noise2(k2, bn)
    assert np.isclose(1 / b2 - 1 / b1, 4 / (math.pi * k2), rtol=fp_tol(100), atol=0)
    dl, b2g = su.gain_params(mu, h, k2)
    assert np.isclose(b2g, b2, rtol=fp_tol(10), atol=0)
    B = np.geomspace(b2 / 100, b2 * 100, 9)
    assert np.allclose(su.gain(B, mu, h, k2), dl / (1 + b2 / B), rtol=fp_tol(100), atol=0)


@given(surge_problems(), st.floats(0.05, 3.0))
def test_small_batch_agrees_with_theorem3(problem, c):
    """With equal |μ_i|/σ_i = 1/κ, Su's law and Theorem 3 agree as B → 0: the relative gap is
    −B/(2·bound) + O(B²), bound = πκ²/2 (β/β_lin = (1 + 2B/(πκ²))^(−1/2); the denominators
    differ only at O(B²)). And Su's B_noise → Theorem 3's as β_noise → 0."""
    mu, _, h = problem
    k = c * 10
    sigma = k * np.abs(mu)
    k2 = su.kappa_squared(mu, sigma)
    assert np.isclose(k2, k * k, rtol=fp_tol())
    bound = float(sign.regime_bound(mu, sigma).min())
    B = bound * np.array([1e-6, 1e-5])
    rel = su.optimal_lr(B, mu, h, k2) / sign.small_batch_lr(mu, sigma, h, B) - 1
    assert np.all(np.abs(rel / (-B / (2 * bound)) - 1) <= SLOPE_TOL)
    _, bn = su.params(mu, h)
    _, t3 = sign.surge_params(mu, sigma, h)
    # Su: πκ²β²/(2(1 − β²)) vs Theorem 3: πκ²β²/2 — ratio exactly 1/(1 − β_noise²)
    assert np.isclose(su.b_noise(k2, bn) / t3, 1 / (1 - bn * bn), rtol=fp_tol(100), atol=0)


def test_ema_threshold():
    """Su's EMA threshold (1 − β1)/(3β1 − 1)·B_simple: B_simple/17 at β1 = 0.9, → ∞ as
    β1 → 1/3⁺, → 0 as β1 → 1."""
    assert np.isclose(su.ema_surge_threshold(0.9, 1.0), 1 / 17, rtol=fp_tol())
    assert su.ema_surge_threshold(1 / 3 + 1e-9, 1.0) > 1e7
    assert su.ema_surge_threshold(0.999999, 1.0) < 1e-6


def test_no_surge_when_beta_noise_at_least_one():
    """β_noise ≥ 1 (weak off-diagonal curvature): B_noise = inf and ε_opt rises with B."""
    mu = np.array([1.0, 1.0])
    h = np.array([[1.0, 0.5], [0.5, 1.0]])  # S_sign = 1 < Σ H_ii = 2
    _, bn = su.params(mu, h)
    assert bn > 1 and su.b_noise(1.0, bn) == math.inf
    eps = su.optimal_lr(np.geomspace(1e-3, 1e6, 40), mu, h, 1.0)
    assert np.all(np.diff(eps) > 0)
