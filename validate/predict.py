"""Every law's prediction from the measured sufficient statistics (pure; no network).

The statistics come from :mod:`validate.pergrad` (μ, σ² per coordinate) and
:mod:`validate.hessian` (HVP quantities); the laws themselves are
:mod:`theory.sign` / :mod:`theory.sgd`'s ``*_from_stats`` functions, which equal the dense-H
laws (tests/test_theory_sufficient.py). This module only forms the sums and debiases the
plug-in ones:

=============== =============================== =================================================
key             formula                         source
=============== =============================== =================================================
``b_noise_thm3`` π trH / (2 S_off)              Theorem 3 (Eq. 14)
``eps_max_thm3`` Σ μ²/σ / (2√(S_off trH))        Theorem 3 (after Eq. 13)
``lr_thm2``     N̂(B) / D(B)                    Theorem 2 (Eq. 9), N̂ bias-corrected
``numer``       N̂(B) ≈ Σ ξ_i(B) μ_i             :func:`sign_numerator` (``numer_plugin``: raw)
``lr_thm4``     Σ|μ_i| / sᵀHs                   Theorem 4 (Eq. 17), B → ∞
``g2``          |G|² = |μ̂|² − Σσ²/n             debiased: E|μ̂|² = |G|² + trΣ/n
``g_h_g``       GᵀHG = μ̂ᵀHμ̂ − tr(HΣ)/n          debiased the same way
``b_noise_sgd`` tr(HΣ)/GᵀHG                     McCandlish Eq. 2.7 (diagonal Σ)
``b_noise_sgd_full`` the same, full tr(HΣ)      per-example uᵀHu
``b_simple``    tr(Σ)/|G|²                      McCandlish Eq. 2.9
=============== =============================== =================================================

Reference: Li et al., NeurIPS 2024, Eqs. 8-17; McCandlish et al. 2018, Eqs. 2.6-2.9.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import erf

from theory import sgd as sgd_law
from theory import sign as sign_law
from theory.stats import ratio_se_paired
from validate.hessian import HessianStats
from validate.pergrad import GradStats, expected_sign, sum_mu2_over_sigma


def sign_numerator(
    mu_hat: ArrayLike, sigma: ArrayLike, batch_size: float, noise_frac: float
) -> float:
    """Theorem 2's numerator N(B) = Σ_i ξ_i μ_i, ξ_i = erf(√(B/2) μ_i/σ_i), from a noisy μ̂.

    The plug-in Σ ξ(μ̂_i) μ̂_i is biased upward: with μ̂_i = μ_i + e_i, e_i ~ N(0, s_i²),
    s_i² = q σ_i² (``noise_frac`` q = 1/n for n i.i.d. examples; q = (N − n)/(n (N − 1))
    for n drawn without replacement from a population of N; 0 when μ̂ is the population's
    own mean), write a_i = √(B/2)/σ_i and κ = 2 a_i² s_i² = B q (the same for every i).

    Derivation. For Gaussian e with variance s² and any c > 0:
    (i) E[erf(c(μ + e))] = erf(c' μ), c' = c/√(1 + 2c²s²);
    (ii) Stein, E[e f(μ + e)] = s² E[f'(μ + e)], with f = erf(c·) and (i) on the Gaussian:
    E[e erf(c(μ+e))] = s² (2c'/√π) exp(−c'² μ²);
    (iii) E[exp(−b(μ + e)²)] = exp(−b μ²/(1 + 2bs²))/√(1 + 2bs²).
    Take c = a/√(1 − κ), so c' = a, and b = c²: (i)+(ii) give
    E[μ̂ erf(c μ̂)] = μ erf(aμ) + s² (2a/√π) exp(−a² μ²), and by (iii)
    E[exp(−c² μ̂²)] = √(1 − κ) exp(−a² μ²). So, for κ < 1, EXACTLY unbiased:

        N̂ = Σ_i μ̂_i erf(c_i μ̂_i) − s_i² (2 a_i/√π) exp(−c_i² μ̂_i²)/√(1 − κ).

    To first order in κ the correction is −Σ_i s_i² 2a_i/√π = −√(2B/π) Σ σ_i q (the issue's
    √(2B/π)·Σσ_i/n). For κ ≥ 1 (B ≥ 1/q: μ̂ noisier than a batch) no unbiased form of this
    kind exists; the plug-in minus the first-order term (with its exp(−a² μ̂²) factor) is
    returned. σ_i is taken as known (its error enters at second order); σ_i = 0 coordinates
    are deterministic: ξ_i = sign μ_i, contributing |μ̂_i|.

    Args:
      mu_hat: (d,) estimated means μ̂.
      sigma: (d,) per-example standard deviations.
      batch_size: B.
      noise_frac: q = Var(μ̂_i)/σ_i² (≥ 0).

    Returns:
      N̂(B), a float.

    Examples:
      >>> round(sign_numerator([1.0, -2.0], [1.0, 1.0], 8, 0.0), 6)   # no noise: plug-in
      2.995322
      >>> rng = np.random.default_rng(0)
      >>> mu = np.zeros(200_000)                                  # no signal: N(B) = 0
      >>> mh = mu + rng.normal(size=mu.size) * 0.1                # q = 0.01
      >>> abs(sign_numerator(mh, np.ones_like(mh), 4, 0.01)) < 30  # the plug-in: ≈ 3191
      True
    """
    m = np.asarray(mu_hat, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if not noise_frac >= 0:
        raise ValueError(f"noise_frac must be >= 0; got {noise_frac}")
    ok = s > 0
    sig = np.where(ok, s, 1.0)
    a = math.sqrt(batch_size / 2.0) / sig
    kappa = batch_size * noise_frac
    s2 = noise_frac * sig * sig
    if kappa < 1:
        c = a / math.sqrt(1.0 - kappa)
        term = m * erf(c * m) - s2 * (2 * a / math.sqrt(math.pi)) * np.exp(
            -((c * m) ** 2)
        ) / math.sqrt(1.0 - kappa)
    else:
        term = m * erf(a * m) - s2 * (2 * a / math.sqrt(math.pi)) * np.exp(-((a * m) ** 2))
    return float(np.where(ok, term, np.abs(m)).sum())


def _sgd_curve(b: np.ndarray, eps_max: float, b_noise: float) -> np.ndarray:
    ok = math.isfinite(eps_max) and eps_max > 0 and math.isfinite(b_noise) and b_noise >= 0
    if not ok:
        return np.full(b.shape, np.nan)
    return np.asarray(sgd_law.optimal_lr(b, eps_max, b_noise), dtype=np.float64)


def laws(stats: GradStats, hs: HessianStats, noise_frac: float | None = None) -> dict[str, Any]:
    """Every law's prediction from the gradient and Hessian statistics.

    Returns a dict of scalars (``b_noise_thm3``, ``eps_max_thm3``, ``lr_thm4``, ``b_simple``,
    ``b_noise_sgd`` (diagonal Σ), ``b_noise_sgd_full`` (full tr(HΣ) from per-example HVPs),
    ``eps_max_sgd``, …, with ``*_se`` from the probes) and per-B arrays ``lr_thm2``,
    ``lr_thm3``, ``lr_sgd``, ``lr_sgd_full``, ``numer`` (bias-corrected, :func:`sign_numerator`),
    ``numer_plugin`` and ``denom`` (Theorem 2's sums).

    ``noise_frac`` is q = Var(μ̂_i)/σ_i² of the numerator correction (default 1/n: μ̂ from n
    i.i.d. examples; 0: μ̂ is the population's mean, nothing to correct).
    """
    mu, var, n = stats.mu, stats.var, stats.n
    b = hs.batch_sizes
    mu2_sig = sum_mu2_over_sigma(stats)
    # a Hutchinson tr(H) <= 0 (non-convex point, or too few probes) leaves Theorem 3 undefined
    if hs.tr_h > 0:
        eps3, bn3 = sign_law.surge_params_from_stats(hs.tr_h, hs.s_off, mu2_sig)
    else:
        eps3, bn3 = math.nan, math.nan
    bn3_se = (
        (math.pi / 2)
        * ratio_se_paired(hs.tr_samples, hs.r2_samples, den_off=hs.r_h_r, den_sign=-1.0)
        if math.isfinite(bn3)
        else math.nan
    )
    lr3 = (
        np.asarray(sign_law.surge_lr(b, eps3, bn3), dtype=np.float64)
        if math.isfinite(bn3)
        else np.full(b.shape, np.nan)
    )
    numer_plugin = (expected_sign(stats, b) @ mu).cpu().numpy()
    q = 1.0 / n if noise_frac is None else float(noise_frac)
    mu_np, sig_np = mu.cpu().numpy(), stats.sigma.cpu().numpy()
    numer = np.array([sign_numerator(mu_np, sig_np, float(bk), q) for bk in b])
    lr2 = np.asarray(sign_law.optimal_lr_from_stats(numer, hs.denom), dtype=np.float64)
    tr_sigma = float(var.sum())
    mu2 = float(mu @ mu)
    g2 = mu2 - tr_sigma / n  # E|μ̂|² = |G|² + trΣ/n
    g_h_g = hs.mu_h_mu - hs.tr_h_sigma / n  # E μ̂ᵀHμ̂ = GᵀHG + tr(HΣ)/n
    eps_sgd, bn_sgd = sgd_law.params_from_stats(g2, g_h_g, hs.tr_h_sigma)
    if math.isfinite(hs.tr_h_sigma_full):
        g_h_g_full = hs.mu_h_mu - hs.tr_h_sigma_full / n
        eps_full, bn_full = sgd_law.params_from_stats(g2, g_h_g_full, hs.tr_h_sigma_full)
    else:
        g_h_g_full, eps_full, bn_full = math.nan, math.nan, math.nan
    return {
        "n_examples": n,
        "probes": hs.probes,
        "d": int(mu.shape[0]),
        "tr_h": hs.tr_h,
        "tr_h_se": hs.tr_h_se,
        "s_off": hs.s_off,
        "s_off_se": hs.s_off_se,
        "r_h_r": hs.r_h_r,
        "sum_mu2_over_sigma": mu2_sig,
        "b_noise_thm3": bn3,
        "b_noise_thm3_se": bn3_se,
        "eps_max_thm3": eps3,
        "s_h_s": hs.s_h_s,
        "lr_thm4": sign_law.large_batch_lr_from_stats(float(mu.abs().sum()), hs.s_h_s),
        "g2": g2,
        "g2_plugin": mu2,
        "tr_sigma": tr_sigma,
        "b_simple": sgd_law.b_simple_from_stats(tr_sigma, g2),
        "mu_h_mu": hs.mu_h_mu,
        "g_h_g": g_h_g,
        "tr_h_sigma": hs.tr_h_sigma,
        "tr_h_sigma_se": hs.tr_h_sigma_se,
        "b_noise_sgd": bn_sgd,
        "eps_max_sgd": eps_sgd,
        "tr_h_sigma_full": hs.tr_h_sigma_full,
        "tr_h_sigma_full_se": hs.tr_h_sigma_full_se,
        "b_noise_sgd_full": bn_full,
        "eps_max_sgd_full": eps_full,
        "g_h_g_full": g_h_g_full,
        "batch_sizes": b,
        "lr_thm2": lr2,
        "lr_thm3": lr3,
        "lr_sgd": _sgd_curve(b, eps_sgd, bn_sgd),
        "lr_sgd_full": _sgd_curve(b, eps_full, bn_full),
        "numer": numer,
        "numer_plugin": numer_plugin,
        "numer_noise_frac": q,
        "denom": hs.denom,
        "denom_se": hs.denom_se,
    }
