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
``lr_thm2``     Σ ξ_i μ_i / D(B)                Theorem 2 (Eq. 9)
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

from theory import sgd as sgd_law
from theory import sign as sign_law
from theory.stats import ratio_se_paired
from validate.hessian import HessianStats
from validate.pergrad import GradStats, expected_sign, sum_mu2_over_sigma


def _sgd_curve(b: np.ndarray, eps_max: float, b_noise: float) -> np.ndarray:
    ok = math.isfinite(eps_max) and eps_max > 0 and math.isfinite(b_noise) and b_noise >= 0
    if not ok:
        return np.full(b.shape, np.nan)
    return np.asarray(sgd_law.optimal_lr(b, eps_max, b_noise), dtype=np.float64)


def laws(stats: GradStats, hs: HessianStats) -> dict[str, Any]:
    """Every law's prediction from the gradient and Hessian statistics.

    Returns a dict of scalars (``b_noise_thm3``, ``eps_max_thm3``, ``lr_thm4``, ``b_simple``,
    ``b_noise_sgd`` (diagonal Σ), ``b_noise_sgd_full`` (full tr(HΣ) from per-example HVPs),
    ``eps_max_sgd``, …, with ``*_se`` from the probes) and per-B arrays ``lr_thm2``,
    ``lr_thm3``, ``lr_sgd``, ``lr_sgd_full``, ``numer`` and ``denom`` (Theorem 2's sums).
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
    numer = (expected_sign(stats, b) @ mu).cpu().numpy()
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
        "denom": hs.denom,
        "denom_se": hs.denom_se,
    }
