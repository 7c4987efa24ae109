"""Bad input to the theory API raises ValueError naming the offending argument."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theory import correlated, efficiency, lemma1, sgd, sign, su

MU = np.array([0.5, -0.3, 0.2])
SIG = np.array([1.0, 2.0, 0.5])
H = np.eye(3) + 0.3
NONSYM = H + np.triu(np.ones((3, 3)), 1)
NOT_PSD = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])

CASES = [
    # (id, call, regex the message must match)
    ("B zero", lambda: sign.expected_sign(MU, SIG, 0.0), "B="),
    ("B negative array", lambda: sign.optimal_lr_exact(MU, SIG, H, [1.0, -2.0]), "B="),
    ("B NaN", lambda: sign.surge_lr(np.nan, 1.0, 1.0), "B must be finite"),
    ("B 2-D", lambda: sgd.optimal_lr(np.ones((2, 2)), 1.0, 1.0), "B must be a scalar or 1-D"),
    ("sigma zero", lambda: sign.optimal_lr_exact(MU, [1.0, 0.0, 1.0], H, 4.0), "sigma"),
    ("sigma negative", lambda: sign.expected_sign(MU, -SIG, 4.0), "sigma"),
    ("sigma length", lambda: sign.gain_exact(MU, SIG[:2], H, 4.0), "sigma"),
    ("mu NaN", lambda: sign.surge_params([np.nan, 1.0, 1.0], SIG, H), "mu"),
    ("mu 2-D", lambda: sign.expected_sign(np.ones((2, 3)), SIG, 1.0), "mu"),
    ("H shape", lambda: sign.optimal_lr_exact(MU, SIG, np.eye(2), 4.0), "H"),
    ("H non-symmetric", lambda: sign.surge_params(MU, SIG, NONSYM), "H must be symmetric"),
    ("H NaN", lambda: sign.large_batch_lr(MU, np.full((3, 3), np.nan)), "H"),
    ("mu zero (Thm 4)", lambda: sign.large_batch_lr([0.0, 1.0, 1.0], H), "mu"),
    ("eps_max negative", lambda: sign.surge_lr(4.0, -1.0, 10.0), "eps_max"),
    ("b_noise zero", lambda: sign.surge_lr(4.0, 1.0, 0.0), "b_noise"),
    ("Sigma not PSD", lambda: sgd.params(MU, H, NOT_PSD), "Sigma"),
    ("Sigma negative variance", lambda: sgd.params(MU, H, [1.0, -1.0, 1.0]), "Sigma"),
    ("G length", lambda: sgd.params(MU[:2], H, SIG), "H"),
    ("G^T H G", lambda: sgd.params([1.0, 0.0], np.diag([0.0, 1.0]), [1.0, 1.0]), "G\\^T H G"),
    ("B_big <= B_small", lambda: sgd.two_batch_estimates(1.0, 1.0, 8.0, 4.0), "B_big"),
    ("cov_v not PSD", lambda: lemma1.optimal_lr(MU, MU, NOT_PSD, H), "cov_v"),
    ("mean_v length", lambda: lemma1.optimal_lr(MU, MU[:2], SIG, H), "mean_v"),
    (
        "Lemma 1 side condition",
        lambda: lemma1.optimal_lr(MU, MU, np.zeros(3), -np.eye(3)),
        "side condition",
    ),
    ("eps NaN", lambda: lemma1.expected_gain(np.nan, 1.0, 1.0), "eps"),
    ("cov not PSD", lambda: correlated.sign_second_moment(MU, NOT_PSD, 4.0, H), "cov"),
    (
        "cov zero variance",
        lambda: correlated.sign_first_moment(MU, np.diag([1.0, 0.0, 1.0]), 4.0),
        "cov",
    ),
    ("cov shape", lambda: correlated.sign_first_moment(MU, np.eye(2), 4.0), "cov"),
    ("rho > 1", lambda: correlated.sign_product_expectation(0.0, 0.0, 1.5), "rho"),
    ("a NaN", lambda: correlated.sign_product_expectation(np.nan, 0.0, 0.5), "a must be finite"),
    (
        "shapes",
        lambda: correlated.sign_product_expectation(np.zeros(2), np.zeros(3), 0.0),
        "broadcast",
    ),
    (
        "H non-symmetric (corr)",
        lambda: correlated.sign_second_moment(MU, np.diag(SIG**2), 4.0, NONSYM),
        "H",
    ),
    ("kappa2 zero", lambda: su.beta(4.0, 0.0), "kappa2"),
    ("beta1 too small", lambda: su.ema_surge_threshold(0.3, 10.0), "beta1"),
    ("beta1 NaN", lambda: su.ema_surge_threshold(math.nan, 10.0), "beta1"),
    ("b_simple negative", lambda: su.ema_surge_threshold(0.9, -1.0), "b_simple"),
    ("beta out of (0,1]", lambda: su.surge_lr(1.5, 1.0, 0.5), "beta_"),
    ("mu zero (Su)", lambda: su.kappa_squared([0.0, 1.0], [1.0, 1.0]), "mu"),
    ("S non-positive", lambda: efficiency.fit_b_noise([1.0, -2.0], [1.0, 2.0]), "S"),
    ("E length", lambda: efficiency.fit_b_noise([1.0, 2.0], [1.0]), "E"),
    ("eps_opt length", lambda: efficiency.eps_max_adam([1.0, 2.0], [1.0], 3.0), "eps_opt"),
    ("alpha zero", lambda: efficiency.sgd_form_lr(4.0, 1.0, 2.0, 0.0), "alpha"),
]


@pytest.mark.parametrize("call, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_value_error_naming_argument(call, match):
    """Each invalid argument raises ValueError whose message names that argument."""
    with pytest.raises(ValueError, match=match):
        call()


def _sign_m2(xi: list[float]) -> float:
    """E[sᵀHs] for independent signs with E[s_i] = ξ_i: Σ_ij H_ij ξ_i ξ_j + Σ_i H_ii (1 − ξ_i²)."""
    n = len(xi)
    off = sum(H[i, j] * xi[i] * xi[j] for i in range(n) for j in range(n))
    return off + sum(H[i, i] * (1.0 - xi[i] ** 2) for i in range(n))


def _xi(B: float) -> list[float]:
    return [math.erf(math.sqrt(B / 2.0) * m / s) for m, s in zip(MU, SIG)]


def test_valid_inputs_give_hand_computed_values():
    """The same calls with valid arguments return values computed here independently (scalar
    math.erf loops and hand arithmetic), so the bad-input cases are not vacuous."""
    assert np.allclose(sign.expected_sign(MU, SIG, 4.0), _xi(4.0), rtol=1e-12)
    want = [sum(m * x for m, x in zip(MU, _xi(b))) / _sign_m2(_xi(b)) for b in (1.0, 2.0)]
    assert np.allclose(sign.optimal_lr_exact(MU, SIG, H, [1.0, 2.0]), want, rtol=1e-12)
    # |G|² = 0.38, GᵀHG = 0.38 + 0.3·(ΣG)² = 0.428, tr(HΣ) = 1.3·(1 + 2 + 0.5) = 4.55
    eps_max, b_noise = sgd.params(MU, H, SIG)
    assert eps_max == pytest.approx(0.38 / 0.428, rel=1e-12)
    assert b_noise == pytest.approx(4.55 / 0.428, rel=1e-12)
    assert lemma1.optimal_lr(MU, MU, SIG, H) == pytest.approx(0.38 / (4.55 + 0.428), rel=1e-12)
    # a diagonal covariance: the correlated formula reduces to independent signs
    m2 = correlated.sign_second_moment(MU, np.diag(SIG**2), 4.0, H)
    assert m2 == pytest.approx(_sign_m2(_xi(4.0)), rel=1e-9)
    # (1 − β1)/(3β1 − 1)·B_simple = 0.1/1.7·10
    assert su.ema_surge_threshold(0.9, 10.0) == pytest.approx(1.0 / 1.7, rel=1e-12)
    # points on 1/S = −100/E + 1/10: E = 2000 → S = 20, E = 4000 → S = 40/3
    assert efficiency.fit_b_noise([20.0, 40.0 / 3.0], [2000.0, 4000.0]) == pytest.approx(
        (100.0, 10.0), rel=1e-9
    )


def test_more_bad_inputs():
    """z of erf_rational must be finite; two-batch squared norms must broadcast."""
    with pytest.raises(ValueError, match="z must be finite"):
        sign.erf_rational([np.nan])
    with pytest.raises(ValueError, match="g_small_sq and g_big_sq"):
        sgd.two_batch_estimates(np.ones(2), np.ones(3), 1.0, 4.0)
