"""Theorems 2-5 of the Surge paper (sign updates) as properties of the numeric API."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from tests.strategies import sign_problems, surge_problems
from tests.tolerances import ARGMAX_RTOL, QUAD_TOL, SLOPE_TOL, fp_tol
from theory import sign


def _xi_quad(m: float, s: float, B: float) -> float:
    """E[sign G] for G ~ N(m, s²/B): ∫ sign(x) N(x; m, s²/B) dx by adaptive quadrature over
    m ± 12 sd (the tails beyond carry < 1e-32), split at the jump of sign(x) at 0."""
    sd = s / math.sqrt(B)
    lo, hi = m - 12 * sd, m + 12 * sd
    f = lambda x: math.copysign(1.0, x) * norm.pdf(x, m, sd)  # noqa: E731
    return quad(f, lo, hi, points=[0.0] if lo < 0 < hi else None)[0]


def _argmax_log(f, lo, hi):
    res = minimize_scalar(
        lambda u: -f(math.exp(u)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return math.exp(res.x)


# quad over an infinite range once missed a narrow density far from 0 (σ/√B = 0.056 at μ = −2)
@example(problem=(np.array([-1.0, -2.0, -1.0]), np.array([1.0, 0.25, 1.0]), np.eye(3)), B=20.0)
@settings(max_examples=15)
@given(sign_problems(d=3), st.floats(0.5, 300.0))
def test_theorem2_against_quadrature_and_brute_force(problem, B):
    """Theorem 2 equals Lemma 1 evaluated by brute force over all 2^d sign patterns, with each
    coordinate's P(sign) from numerical integration of the Gaussian (independent coords)."""
    mu, sigma, h = problem
    xi_q = np.array([_xi_quad(m, s, B) for m, s in zip(mu, sigma)])
    assert np.allclose(sign.expected_sign(mu, sigma, B), xi_q, rtol=0, atol=QUAD_TOL)
    m1 = m2 = 0.0
    for pattern in itertools.product([-1.0, 1.0], repeat=mu.size):
        v = np.array(pattern)
        p = np.prod((1 + v * xi_q) / 2)
        m1 += p * (mu @ v)
        m2 += p * (v @ h @ v)
    eps_bf = m1 / m2
    eps = sign.optimal_lr_exact(mu, sigma, h, B)
    # propagate QUAD_TOL on each ξ_i: |dε| ≤ (Σ|μ| + 2|ε| Σ|H|) δ / m2 (2^d patterns, Σ P = 1)
    bound = (np.abs(mu).sum() + 2 * abs(eps) * np.abs(h).sum()) * QUAD_TOL / m2
    assert abs(eps - eps_bf) <= bound + fp_tol(abs(eps))
    assert abs(sign.gain_exact(mu, sigma, h, B) - 0.5 * m1 * m1 / m2) <= abs(m1) * bound + fp_tol(
        abs(m1 * eps)
    )


@given(sign_problems(diag_h=True))
def test_theorem2_diagonal_h_never_surges(problem):
    """With a diagonal Hessian, Theorem 2's ε_opt is non-decreasing in B (no surge)."""
    mu, sigma, h = problem
    B = np.geomspace(0.1, 1e5, 80)
    eps = sign.optimal_lr_exact(mu, sigma, h, B)
    assert np.all(np.diff(eps) >= -fp_tol(eps.max()))


@settings(max_examples=20)
@given(surge_problems())
def test_theorem3_error_is_first_order_in_B(problem):
    """Theorem 3 vs Theorem 2: the relative error of the linearised ε_opt (and ΔL_opt) scales as
    B¹ for B → 0 (erf x = (2/√π)(x − x³/3 + …), so ξ_lin/ξ = 1 + O(B)); the leading
    coefficient is −(1/6) Σ μ⁴/σ³ / Σ μ²/σ (the denominator's correction is O(B²))."""
    mu, sigma, h = problem
    bound = float(sign.regime_bound(mu, sigma).min())
    B = bound * np.geomspace(1e-4, 1e-2, 6)
    e_exact = sign.optimal_lr_exact(mu, sigma, h, B)
    e_lin = sign.small_batch_lr(mu, sigma, h, B)
    rel = np.abs(e_exact / e_lin - 1)
    slope = np.polyfit(np.log(B), np.log(rel), 1)[0]
    assert abs(slope - 1.0) <= SLOPE_TOL
    coef = np.sum(mu**4 / sigma**3) / np.sum(mu**2 / sigma) / 6
    # the leading coefficient, read off at the smallest B; the next term is O(B/bound) smaller
    assert abs((e_exact / e_lin - 1)[0] / B[0] + coef) <= SLOPE_TOL * coef
    en, n = sign.gain_params(mu, sigma, h)
    g_rel = np.abs(sign.gain_exact(mu, sigma, h, B) / sign.gain_law(B, en, n) - 1)
    assert abs(np.polyfit(np.log(B), np.log(g_rel), 1)[0] - 1.0) <= SLOPE_TOL


@given(surge_problems())
def test_theorem3_peak_is_b_noise(problem):
    """Numerically maximising Theorem 3's linearised ε_opt(B) and the Eq. 13 curve finds
    B_peak = B_noise with peak value ε_max."""
    mu, sigma, h = problem
    e, n = sign.surge_params(mu, sigma, h)
    peak = _argmax_log(lambda b: sign.small_batch_lr(mu, sigma, h, b), n / 1e3, n * 1e3)
    assert abs(peak / n - 1) <= ARGMAX_RTOL
    peak13 = _argmax_log(lambda b: sign.surge_lr(b, e, n), n / 1e3, n * 1e3)
    assert abs(peak13 / n - 1) <= ARGMAX_RTOL
    assert np.isclose(sign.surge_lr(n, e, n), e, rtol=fp_tol(), atol=0)


@given(surge_problems())
def test_theorem3_square_root_small_batch(problem):
    """For B ≪ B_noise, ε_opt ≈ (2 ε_max/√B_noise) √B with relative error O(B/B_noise)."""
    mu, sigma, h = problem
    e, n = sign.surge_params(mu, sigma, h)
    B = n * np.array([1e-6, 1e-4])
    approx = 2 * e / math.sqrt(n) * np.sqrt(B)
    rel = np.abs(sign.surge_lr(B, e, n) / approx - 1)
    # exact: 1/(1 + B/B_noise) − 1 ≈ −B/B_noise
    assert np.allclose(rel, B / n, rtol=1e-3)


# found by hypothesis: beyond the regime bound the linearised denominator turns negative
@example(
    problem=(
        np.array([-1.0, -1.0]),
        np.array([1.0, 1.0]),
        np.array([[0.5185563, 0.09451887], [0.09451887, 0.9814437]]),
    )
)
@given(sign_problems())
def test_theorem3_no_peak_without_positive_s_off(problem):
    """If S_off ≤ 0 the linearised ε_opt rises monotonically (no peak) and surge_params is inf."""
    mu, sigma, h = problem
    # make every off-diagonal term of S_off ≤ 0 by flipping the sign of μ_iμ_j H_ij pairs:
    # H_ij → −|H_ij| sign(μ_iμ_j) keeps symmetry; add a diagonal shift to stay PSD
    s = np.sign(mu)
    off = -np.abs(h) * np.outer(s, s)
    np.fill_diagonal(off, 0.0)
    h2 = off + np.diag(np.abs(off).sum(1) + np.diag(h))
    assert sign.s_off(mu, sigma, h2) <= 0
    assert sign.surge_params(mu, sigma, h2) == (math.inf, math.inf)
    # Theorem 3's regime, B below every π σ_i²/(2 μ_i²): there |ξ_lin,i| ≤ 1, so the
    # linearised denominator stays > 0 (PSD H) and dε/dB ∝ Σ H_ii − (2B/π) S_off > 0
    bound = float(sign.regime_bound(mu, sigma).min())
    eps = sign.small_batch_lr(mu, sigma, h2, np.geomspace(1e-6, 1.0, 50) * bound)
    assert np.all(np.diff(eps) > 0)


@given(sign_problems())
def test_theorem4_large_batch_limit(problem):
    """optimal_lr_exact → large_batch_lr as B → ∞ (Theorem 4); already exact once erf = 1."""
    mu, sigma, h = problem
    lim = sign.large_batch_lr(mu, h)
    bound = float(sign.regime_bound(mu, sigma).max())
    big = sign.optimal_lr_exact(mu, sigma, h, np.array([1e3, 1e6]) * bound)
    assert np.isclose(big[-1], lim, rtol=fp_tol(100), atol=0)
    # and the approach is monotone in the gap: farther out is closer
    near = sign.optimal_lr_exact(mu, sigma, h, bound)
    assert abs(big[0] - lim) <= abs(near - lim) + fp_tol(abs(lim))


@given(surge_problems(), st.floats(1e-3, 1e3))
def test_theorem5_gain_law_is_linearised_theorem2(problem, scale):
    """ΔL_max/(1 + B_noise/B) equals Theorem 2's ΔL_opt with ξ linearised (Eq. 18), and the
    noise scale is the same B_noise as Theorem 3's."""
    mu, sigma, h = problem
    dl, n = sign.gain_params(mu, sigma, h)
    assert np.isclose(n, sign.surge_params(mu, sigma, h)[1], rtol=fp_tol(), atol=0)
    B = scale * n
    c = math.sqrt(2 * B / math.pi)
    r = mu / sigma
    lin = 0.5 * (c * np.sum(mu * r)) ** 2 / (np.trace(h) + c * c * sign.s_off(mu, sigma, h))
    assert np.isclose(sign.gain_law(B, dl, n), lin, rtol=fp_tol(100), atol=0)


def test_exact_peak_moves_a_few_percent():
    """With the exact erf the peak of ε_opt sits a few percent above B_noise when B_noise is
    well inside Theorem 3's regime: 0 < B_peak/B_noise − 1 < B_noise/min_i(πσ_i²/(2μ_i²))."""
    d = 20
    mu = np.full(d, 0.05)
    sigma = np.full(d, 4.0)
    h = 0.01 * np.eye(d) + np.ones((d, d))
    _, n = sign.surge_params(mu, sigma, h)
    ratio = n / sign.regime_bound(mu, sigma).min()
    assert ratio < 0.1
    peak = _argmax_log(lambda b: sign.optimal_lr_exact(mu, sigma, h, b), n / 100, n * 100)
    assert 0 < peak / n - 1 < ratio


def test_small_batch_lr_is_nan_where_linearisation_breaks():
    """With S_off < 0 the linearised denominator tr H + (2B/π) S_off vanishes only beyond the
    regime bound; there small_batch_lr reports NaN (not a negative learning rate)."""
    mu, sigma = np.array([1.0, 1.0]), np.array([1.0, 1.0])
    h = np.array([[1.0, -0.9], [-0.9, 1.0]])
    bound = float(sign.regime_bound(mu, sigma).min())
    inside = sign.small_batch_lr(mu, sigma, h, np.geomspace(1e-3, 1.0, 10) * bound)
    assert np.all(np.isfinite(inside)) and np.all(inside > 0)
    assert np.isnan(sign.small_batch_lr(mu, sigma, h, 1e3 * bound))
