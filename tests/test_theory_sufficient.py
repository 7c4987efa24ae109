"""The laws from sufficient statistics equal the dense-H laws (theory.sign, theory.sgd).

The real-network estimator measures only a few sums (tr H, S_off, Σμ²/σ, Theorem 2's per-B
numerator and denominator, |G|², GᵀHG, tr(HΣ)) by Hessian-vector products. Each ``*_from_stats``
function must give the same law as the dense function when those sums are computed from a
dense random problem; here the sums are computed by explicit loops over coordinates (not by
the library's own helpers), so a wrong sum or a wrong formula fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from tests.tolerances import fp_tol
from theory import sgd, sign

SEEDS = range(8)


def _problem(seed: int, d: int = 7):
    """μ with mixed signs, σ > 0, a dense symmetric H with positive diagonal, a PSD Σ."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    H = (q * rng.uniform(0.2, 3.0, d)) @ q.T + rng.uniform(0.0, 0.5)
    H = (H + H.T) / 2
    mu = rng.choice([-1.0, 1.0], d) * rng.uniform(0.1, 2.0, d)
    sigma = rng.uniform(0.5, 3.0, d)
    w = rng.normal(size=(d, 2))
    Sigma = np.diag(sigma**2) + w @ w.T
    return mu, sigma, H, Sigma


def _loops(mu, sigma, H):
    """Theorem 3's sums by explicit loops over coordinate pairs (independent of the library)."""
    d = mu.size
    tr = sum(H[i, i] for i in range(d))
    s_off = sum(
        mu[i] * mu[j] * H[i, j] / (sigma[i] * sigma[j])
        for i in range(d)
        for j in range(d)
        if i != j
    )
    m2s = sum(mu[i] ** 2 / sigma[i] for i in range(d))
    return tr, s_off, m2s


@pytest.mark.parametrize("seed", SEEDS)
def test_surge_params_from_stats_equals_dense(seed):
    """Theorem 3: (ε_max, B_noise) from (tr H, S_off, Σμ²/σ) equal surge_params(μ, σ, H)."""
    mu, sigma, H, _ = _problem(seed)
    got = sign.surge_params_from_stats(*_loops(mu, sigma, H))
    want = sign.surge_params(mu, sigma, H)
    tol = fp_tol(mu.size**2 * float(np.max(np.abs(H))) * 100)  # O(d²) sums of O(100) terms
    for g, w in zip(got, want):
        assert g == w or math.isclose(g, w, rel_tol=tol)


def test_surge_params_from_stats_no_peak_and_bad_trace():
    """S_off <= 0 gives (inf, inf) as the dense law does; tr H <= 0 is an error naming tr_h."""
    mu = np.array([1.0, -1.0])
    H = np.array([[1.0, 0.5], [0.5, 1.0]])  # S_off = −1 for opposite signs
    assert sign.surge_params(mu, np.ones(2), H) == (math.inf, math.inf)
    assert sign.surge_params_from_stats(*_loops(mu, np.ones(2), H)) == (math.inf, math.inf)
    with pytest.raises(ValueError, match="tr_h"):
        sign.surge_params_from_stats(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="s_off"):
        sign.surge_params_from_stats(1.0, float("nan"), 1.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_optimal_lr_from_stats_equals_theorem_2(seed):
    """Theorem 2: N(B)/D(B) with N = Σ ξ_i μ_i and D = tr H + ξᵀHξ − Σ ξ_i² H_ii (loops)
    equals optimal_lr_exact(μ, σ, H, B) at every B."""
    mu, sigma, H, _ = _problem(seed)
    B = np.array([1.0, 3.0, 17.0, 200.0, 5000.0])
    d = mu.size
    numer, denom = [], []
    for b in B:
        xi = [erf(math.sqrt(b / 2) * mu[i] / sigma[i]) for i in range(d)]
        numer.append(sum(xi[i] * mu[i] for i in range(d)))
        denom.append(
            sum(H[i, i] * (1 - xi[i] ** 2) for i in range(d))
            + sum(xi[i] * xi[j] * H[i, j] for i in range(d) for j in range(d))
        )
    got = sign.optimal_lr_from_stats(numer, denom)
    want = sign.optimal_lr_exact(mu, sigma, H, B)
    assert np.allclose(got, want, rtol=fp_tol(d**2 * float(np.max(np.abs(H))) * 100), atol=0)


def test_optimal_lr_from_stats_nan_where_no_maximum():
    """D(B) <= 0 (no maximum) is NaN for that B only; mismatched shapes are an error."""
    out = sign.optimal_lr_from_stats([1.0, 1.0, 1.0], [4.0, 0.0, -1.0])
    assert out[0] == 0.25 and np.isnan(out[1]) and np.isnan(out[2])
    with pytest.raises(ValueError, match="shape"):
        sign.optimal_lr_from_stats([1.0, 1.0], [1.0])


@pytest.mark.parametrize("seed", SEEDS)
def test_large_batch_lr_from_stats_equals_theorem_4(seed):
    """Theorem 4: Σ|μ| / sᵀHs (loops) equals large_batch_lr(μ, H) where sᵀHs > 0."""
    mu, _, H, _ = _problem(seed)
    s = np.sign(mu)
    shs = sum(s[i] * s[j] * H[i, j] for i in range(mu.size) for j in range(mu.size))
    if shs <= 0:
        assert math.isnan(sign.large_batch_lr_from_stats(float(np.abs(mu).sum()), shs))
        return
    got = sign.large_batch_lr_from_stats(sum(abs(m) for m in mu), shs)
    assert math.isclose(got, sign.large_batch_lr(mu, H), rel_tol=fp_tol(mu.size**2 * 10))


@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_params_from_stats_equals_mccandlish_full_sigma(seed):
    """SGD law: (|G|², GᵀHG, tr(HΣ)) by loops, with a full (non-diagonal) Σ, give
    sgd.params(G, H, Σ); B_simple = tr Σ/|G|² gives sgd.b_simple(G, Σ)."""
    G, _, H, Sigma = _problem(seed)
    d = G.size
    g2 = sum(G[i] ** 2 for i in range(d))
    ghg = sum(G[i] * H[i, j] * G[j] for i in range(d) for j in range(d))
    trhs = sum(H[i, j] * Sigma[j, i] for i in range(d) for j in range(d))
    got = sgd.params_from_stats(g2, ghg, trhs)
    want = sgd.params(G, H, Sigma)
    tol = fp_tol(d**2 * float(np.max(np.abs(H)) * np.max(np.abs(Sigma))) * 10)
    assert math.isclose(got[0], want[0], rel_tol=tol)
    assert math.isclose(got[1], want[1], rel_tol=tol)
    tr_sigma = sum(Sigma[i, i] for i in range(d))
    assert math.isclose(
        sgd.b_simple_from_stats(tr_sigma, g2), sgd.b_simple(G, Sigma), rel_tol=fp_tol(d)
    )


def test_sgd_from_stats_outside_the_domain():
    """GᵀHG <= 0 gives (nan, nan) (no maximum along G); |G|² <= 0 gives B_simple = inf."""
    assert all(math.isnan(v) for v in sgd.params_from_stats(1.0, -1.0, 1.0))
    assert sgd.b_simple_from_stats(1.0, 0.0) == math.inf
    with pytest.raises(ValueError, match="tr_sigma"):
        sgd.b_simple_from_stats(-1.0, 1.0)
