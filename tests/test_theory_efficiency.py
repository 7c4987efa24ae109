"""The steps–examples trade-off (Eqs. 20-22) and the ε_max estimators (Eqs. 23-24)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tolerances import MC_SIGMAS, fp_tol, mc_close
from theory import efficiency, sign


@given(st.floats(2.0, 2000.0), st.floats(10.0, 1e5), st.integers(3, 12))
def test_fit_recovers_b_noise_and_s_min(b_noise, s_min, n):
    """On exact points S = S_min(1 + B_noise/B), the Eq. 22 fit returns B_noise and S_min."""
    B = np.geomspace(b_noise / 30, b_noise * 30, n)
    S = efficiency.steps_for_batch(B, s_min, b_noise)
    fb, fs = efficiency.fit_b_noise(S, B * S)
    # polyfit on a 900× span of 1/E: conditioning ~1e3-1e4 on the least-squares problem
    assert np.isclose(fb, b_noise, rtol=fp_tol(1e5), atol=0)
    assert np.isclose(fs, s_min, rtol=fp_tol(1e5), atol=0)


@given(st.floats(2.0, 2000.0), st.floats(10.0, 1e5))
def test_tradeoff_identity(b_noise, s_min):
    """(S/S_min − 1)(E/E_min − 1) = 1 along S(B), with E_min = S_min·B_noise (Eq. 20)."""
    B = np.geomspace(0.01, 1e4, 25) * b_noise
    S = efficiency.steps_for_batch(B, s_min, b_noise)
    prod = (S / s_min - 1) * (B * S / (s_min * b_noise) - 1)
    assert np.allclose(prod, 1.0, rtol=fp_tol(1e4), atol=0)
    assert np.allclose(
        efficiency.steps_for_examples(B * S, s_min, s_min * b_noise), S, rtol=fp_tol(1e4)
    )


@settings(max_examples=5)
@given(st.integers(0, 2**32 - 1))
def test_fit_is_unbiased_under_noise(seed):
    """With additive zero-mean noise on 1/S (the regression response), the Eq. 22 least-squares
    fit is unbiased: over 400 noisy replicates, mean fitted B_noise and 1/S_min are within
    5 SE of the truth."""
    rng = np.random.default_rng(seed)
    b_noise, s_min = rng.uniform(20, 500), rng.uniform(100, 1e4)
    B = np.geomspace(b_noise / 10, b_noise * 10, 8)
    S = efficiency.steps_for_batch(B, s_min, b_noise)
    E = B * S
    fits = []
    for _ in range(400):
        y = 1 / S + rng.normal(scale=0.02 / s_min, size=B.size)
        fits.append(efficiency.fit_b_noise(1 / y, E))
    fb = np.array([f[0] for f in fits])
    inv_s = 1 / np.array([f[1] for f in fits])
    se = lambda x: x.std(ddof=1) / np.sqrt(x.size)  # noqa: E731
    assert mc_close(fb.mean(), b_noise, se(fb))
    assert mc_close(inv_s.mean(), 1 / s_min, se(inv_s))
    # power: the 5-SE band is narrower than a 10% bias, so a wrong fit would be caught
    assert MC_SIGMAS * se(fb) < 0.1 * b_noise


@given(st.floats(1e-5, 1.0), st.floats(1.0, 1e4), st.floats(0.3, 3.0))
def test_eps_max_estimators_invert_their_curves(eps_max, b_noise, alpha):
    """Eq. 23 recovers ε_max from points on the Eq. 13 curve; Eq. 24 from points on
    ε_max/(1 + B_noise/B)^α. Applied point by point to SGD-law points, Eq. 23 is NOT constant
    (each term is ½ ε_max √(B/B_noise)): the estimators are specific to their curves."""
    B = np.geomspace(b_noise / 50, b_noise * 50, 11)
    assert np.isclose(
        efficiency.eps_max_adam(B, sign.surge_lr(B, eps_max, b_noise), b_noise),
        eps_max,
        rtol=fp_tol(10),
        atol=0,
    )
    pts = efficiency.sgd_form_lr(B, eps_max, b_noise, alpha)
    assert np.isclose(
        efficiency.eps_max_sgd(B, pts, b_noise, alpha), eps_max, rtol=fp_tol(10), atol=0
    )
    sgd_pts = efficiency.sgd_form_lr(B, eps_max, b_noise, 1.0)
    terms = np.array([efficiency.eps_max_adam(b, e, b_noise) for b, e in zip(B, sgd_pts)])
    assert np.allclose(terms, 0.5 * eps_max * np.sqrt(B / b_noise), rtol=fp_tol(10))
