"""Sign updates (Adam with β1 = β2 = 0): V = sign(G_est), the Surge paper's Theorems 2-5.

Assumptions: G_est,i ~ N(μ_i, σ_i²/B) with INDEPENDENT coordinates (Eq. 36 needs it).

======================= ================== ============================================
code                    symbol             meaning
======================= ================== ============================================
``mu``                  μ_i                true gradient, (d,)
``sigma``               σ_i                per-example gradient std-dev, (d,), > 0
``H``                   H                  Hessian, (d, d), symmetric
``B``                   B                  batch size, scalar or (n,)
``xi``                  ξ_i(B)             E[sign G_est,i] = erf(√(B/2) μ_i/σ_i)   (Eq. 8)
``s_off``               S_off              Σ_{i≠j} μ_iμ_j H_ij / (σ_iσ_j)        (Eq. 14)
``b_noise``             B_noise            π Σ H_ii / (2 S_off)                    (Eq. 14)
``eps_max``             ε_max              Σ μ_i²/σ_i / (2 √(S_off Σ H_ii))      (after Eq. 13)
``dl_max``              ΔL_max             (Σ μ_i²/σ_i)² / (2 S_off)               (Eq. 19)
======================= ================== ============================================

Reference: Li et al., "Surge Phenomenon in Optimal Learning Rate and Batch Size Scaling",
NeurIPS 2024 (arXiv 2405.14578), Eqs. 8-19, with the corrections of ../shared/THEORY.md.
Each function's sympy derivation is in :mod:`theory.derive`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

from theory._checks import (
    as_batch_sizes,
    as_hessian,
    as_positive_scalar,
    as_vector,
    finite_scalar,
)


def _problem(mu: ArrayLike, sigma: ArrayLike | None, H: ArrayLike | None):
    m = as_vector(mu, "mu")
    s = None if sigma is None else as_vector(sigma, "sigma", d=m.size, positive=True)
    h = None if H is None else as_hessian(H, "H", d=m.size)
    return m, s, h


def expected_sign(mu: ArrayLike, sigma: ArrayLike, B: ArrayLike) -> NDArray[np.float64]:
    """ξ_i(B) = E[sign(G_est,i)] = erf(√(B/2) μ_i/σ_i) (Eq. 8).

    Args:
      mu: (d,) true gradient.  sigma: (d,) per-example std-dev, > 0.  B: scalar or (n,).

    Returns:
      (d,) for scalar ``B``, (n, d) for a 1-D ``B``.

    Examples:
      >>> float(expected_sign([0.0], [1.0], 4.0)[0])
      0.0

    References:
      Li et al. 2024, Eq. 8 (Appendix C).
    """
    m, s, _ = _problem(mu, sigma, None)
    b = as_batch_sizes(B)
    xi = erf(np.sqrt(np.atleast_1d(b)[:, None] / 2.0) * (m / s)[None, :])
    return xi if b.ndim else xi[0]


def _exact_terms(mu, sigma, H, B):
    m, s, h = _problem(mu, sigma, H)
    b = as_batch_sizes(B)
    xi = np.atleast_2d(expected_sign(m, s, np.atleast_1d(b)))
    numer = xi @ m  # Σ ξ_i μ_i
    hd = np.diag(h)
    # Σ(1-ξ²)H_ii + ξᵀHξ, which equals Σ H_ii + Σ_{i≠j} ξ_iξ_j H_ij exactly
    denom = np.sum(hd) + np.einsum("bi,ij,bj->b", xi, h, xi) - (xi**2) @ hd
    if np.any(denom <= 0):
        raise ValueError(
            "Theorem 2's denominator tr(H cov V) + E[V]^T H E[V] must be > 0 "
            "(Lemma 1's side condition); H is not positive enough for this update."
        )
    return b, numer, denom


def optimal_lr_exact(
    mu: ArrayLike, sigma: ArrayLike, H: ArrayLike, B: ArrayLike
) -> NDArray[np.float64] | float:
    """Theorem 2 (Eq. 9): ε_opt(B) = Σ ξ_i μ_i / (Σ(1−ξ_i²)H_ii + Σ_ij ξ_iξ_j H_ij).

    Exact for independent Gaussian coordinates. With a diagonal H it is non-decreasing in B.

    Examples:
      >>> import numpy as np
      >>> optimal_lr_exact([1.0, 1.0], [1.0, 1.0], np.eye(2), 1e9)  # ξ = 1: Σ|μ| / tr H
      1.0

    References:
      Li et al. 2024, Theorem 2, Eq. 9 (Appendix C).
    """
    b, numer, denom = _exact_terms(mu, sigma, H, B)
    out = numer / denom
    return out if b.ndim else float(out[0])


def gain_exact(
    mu: ArrayLike, sigma: ArrayLike, H: ArrayLike, B: ArrayLike
) -> NDArray[np.float64] | float:
    """Theorem 2 (Eq. 10): ΔL_opt(B) = ½ (Σ ξ_i μ_i)² / (same denominator as Eq. 9).

    Examples:
      >>> import numpy as np
      >>> gain_exact([1.0, 1.0], [1.0, 1.0], np.eye(2), 1e9)
      1.0

    References:
      Li et al. 2024, Theorem 2, Eq. 10 (Appendix C).
    """
    b, numer, denom = _exact_terms(mu, sigma, H, B)
    out = 0.5 * numer**2 / denom
    return out if b.ndim else float(out[0])


def s_off(mu: ArrayLike, sigma: ArrayLike, H: ArrayLike) -> float:
    """S_off = Σ_{i≠j} (μ_i μ_j / (σ_i σ_j)) H_ij (Theorem 3; H_ij inside the sum).

    Examples:
      >>> import numpy as np
      >>> s_off([1.0, 1.0], [1.0, 1.0], np.array([[1.0, 0.5], [0.5, 1.0]]))
      1.0

    References:
      Li et al. 2024, Eq. 14 (corrected: THEORY.md erratum 2).
    """
    m, s, h = _problem(mu, sigma, H)
    r = m / s
    return float(r @ h @ r - np.sum(r**2 * np.diag(h)))


def surge_params(mu: ArrayLike, sigma: ArrayLike, H: ArrayLike) -> tuple[float, float]:
    """Theorem 3 (Eqs. 13-14): ``(eps_max, b_noise)`` of the surge curve.

    B_noise = π Σ_i H_ii / (2 S_off),  ε_max = Σ_i μ_i²/σ_i / (2 √(S_off Σ_i H_ii)).

    If S_off ≤ 0 there is no peak in the small-batch regime: returns ``(inf, inf)``
    (ε_opt keeps rising as √B until the regime ends; use :func:`optimal_lr_exact`).

    Examples:
      >>> import numpy as np
      >>> e, n = surge_params([1.0, 1.0], [1.0, 1.0], np.array([[1.0, 0.5], [0.5, 1.0]]))
      >>> round(e, 12), round(n / np.pi, 12)
      (0.707106781187, 1.0)

    References:
      Li et al. 2024, Theorem 3, Eqs. 13-14 (corrected: THEORY.md errata 2-3).
    """
    m, s, h = _problem(mu, sigma, H)
    so = s_off(m, s, h)
    tr = float(np.trace(h))
    if tr <= 0:
        raise ValueError(f"H must have a positive trace for Theorem 3; got tr(H)={tr:.3g}")
    if so <= 0:
        return math.inf, math.inf
    return float(np.sum(m**2 / s)) / (2.0 * math.sqrt(so * tr)), math.pi * tr / (2.0 * so)


def small_batch_lr(
    mu: ArrayLike, sigma: ArrayLike, H: ArrayLike, B: ArrayLike
) -> NDArray[np.float64] | float:
    """Theorem 3 before the substitution: ξ linearised, √(2B/π) Σμ²/σ / (tr H + (2B/π) S_off).

    Identical to :func:`surge_lr` when S_off > 0, and still defined when S_off ≤ 0; NaN at
    batch sizes where the linearised denominator is ≤ 0 (possible only outside the regime,
    B > min_i π σ_i²/(2 μ_i²), with S_off < 0).

    Examples:
      >>> import numpy as np
      >>> round(float(small_batch_lr([1.0, 1.0], [1.0, 1.0], np.eye(2), np.pi / 2)), 12)
      1.0

    References:
      Li et al. 2024, Theorem 3 (Appendix D), before Eq. 13.
    """
    m, s, h = _problem(mu, sigma, H)
    b = as_batch_sizes(B)
    c = 2.0 * b / math.pi
    den = np.trace(h) + c * s_off(m, s, h)
    # with S_off < 0 the linearised denominator reaches 0 only beyond Theorem 3's regime
    # (|ξ_lin,i| > 1 there); the law has no meaning at such B, so report NaN, not a sign flip
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, np.sqrt(c) * np.sum(m**2 / s) / den, np.nan)
    return out if out.ndim else float(out)


def surge_lr(B: ArrayLike, eps_max: float, b_noise: float) -> NDArray[np.float64] | float:
    """Eq. 13: ε_opt(B) = ε_max / (½ (√(B_noise/B) + √(B/B_noise))); peaks at B = B_noise.

    Small B: ε_opt ≈ (2 ε_max/√B_noise) √B (square-root scaling).

    Examples:
      >>> float(surge_lr(100.0, 1.0, 100.0))
      1.0

    References:
      Li et al. 2024, Eq. 13 (corrected: THEORY.md erratum 1).
    """
    b = as_batch_sizes(B)
    e = as_positive_scalar(eps_max, "eps_max")
    n = as_positive_scalar(b_noise, "b_noise")
    out = e / (0.5 * (np.sqrt(n / b) + np.sqrt(b / n)))
    return out if out.ndim else float(out)


def large_batch_lr(mu: ArrayLike, H: ArrayLike) -> float:
    """Theorem 4 (Eq. 17): ε_opt → Σ|μ_i| / Σ_ij sign(μ_i) sign(μ_j) H_ij as B → ∞.

    Needs every μ_i ≠ 0 (a zero coordinate never has a deterministic sign).

    Examples:
      >>> import numpy as np
      >>> large_batch_lr([1.0, -1.0], np.array([[1.0, 0.5], [0.5, 1.0]]))
      2.0

    References:
      Li et al. 2024, Theorem 4, Eq. 17 (Appendix E).
    """
    m = as_vector(mu, "mu", nonzero=True)
    h = as_hessian(H, "H", d=m.size)
    sg = np.sign(m)
    denom = float(sg @ h @ sg)
    if denom <= 0:
        raise ValueError(f"sign(mu)^T H sign(mu) must be > 0 for Theorem 4; got {denom:.3g}")
    return float(np.sum(np.abs(m))) / denom


def gain_params(mu: ArrayLike, sigma: ArrayLike, H: ArrayLike) -> tuple[float, float]:
    """Theorem 5 (Eq. 19): ``(dl_max, b_noise)`` with ΔL_max = (Σ μ_i²/σ_i)² / (2 S_off).

    Examples:
      >>> import numpy as np
      >>> dl, n = gain_params([1.0, 1.0], [1.0, 1.0], np.array([[1.0, 0.5], [0.5, 1.0]]))
      >>> round(dl, 12), round(n / np.pi, 12)
      (2.0, 1.0)

    References:
      Li et al. 2024, Theorem 5, Eq. 19 (corrected: THEORY.md erratum 2).
    """
    m, s, h = _problem(mu, sigma, H)
    so = s_off(m, s, h)
    if so <= 0:
        return math.inf, math.inf
    return float(np.sum(m**2 / s)) ** 2 / (2.0 * so), math.pi * float(np.trace(h)) / (2.0 * so)


def gain_law(B: ArrayLike, dl_max: float, b_noise: float) -> NDArray[np.float64] | float:
    """Theorem 5 (Eq. 18): ΔL_opt(B) = ΔL_max / (1 + B_noise / B).

    Examples:
      >>> float(gain_law(2.0, 1.0, 2.0))
      0.5

    References:
      Li et al. 2024, Theorem 5, Eq. 18.
    """
    b = as_batch_sizes(B)
    dl = as_positive_scalar(dl_max, "dl_max")
    n = as_positive_scalar(b_noise, "b_noise")
    out = dl / (1.0 + n / b)
    return out if out.ndim else float(out)


def regime_bound(mu: ArrayLike, sigma: ArrayLike) -> NDArray[np.float64]:
    """Per-coordinate bound π σ_i² / (2 μ_i²): Theorem 3 needs B below all, Theorem 4 above all.

    Examples:
      >>> [round(float(v), 6) for v in regime_bound([1.0, 2.0], [1.0, 1.0])]
      [1.570796, 0.392699]

    References:
      Li et al. 2024, Theorems 3-4 (their conditions on B).
    """
    m, s, _ = _problem(mu, sigma, None)
    with np.errstate(divide="ignore"):
        return np.where(m == 0, np.inf, math.pi * s**2 / (2.0 * m**2))


def erf_rational(z: ArrayLike) -> NDArray[np.float64]:
    """The paper's rational approximation of ξ, as a function of z = √(B/2) μ/σ: z/√(z² + π/4).

    Its largest absolute error against erf(z) is about 0.108, near z ≈ 1.33.

    Examples:
      >>> [round(float(v), 6) for v in erf_rational([0.0, 1.0])]
      [0.0, 0.748398]

    References:
      Li et al. 2024, Eq. 8 (the ≈ form); max error computed in theory.derive.erf_approx.
    """
    try:
        z = np.asarray(z, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"z must be an array of numbers; got {z!r}") from exc
    if not np.all(np.isfinite(z)):
        raise ValueError("z must be finite (no NaN or inf)")
    return z / np.sqrt(z**2 + math.pi / 4.0)


# ---------------------------------------------------------------------------------------------
# the same laws from sufficient statistics (no dense H): what an estimator measures by HVPs


def surge_params_from_stats(
    tr_h: float, s_off: float, sum_mu2_over_sigma: float
) -> tuple[float, float]:
    """Theorem 3 (Eqs. 13-14) from its sufficient statistics: ``(eps_max, b_noise)``.

    B_noise = π tr H / (2 S_off),  ε_max = Σ_i μ_i²/σ_i / (2 √(S_off tr H)).
    Equal to :func:`surge_params` with ``tr_h = Σ H_ii``, ``s_off`` = :func:`s_off` and
    ``sum_mu2_over_sigma = Σ μ_i²/σ_i``; these three numbers are all Theorem 3 needs, so a
    network's Hessian enters only through Hessian-vector products.

    Args:
      tr_h: tr H, > 0.
      s_off: S_off = Σ_{i≠j} r_i r_j H_ij with r = μ/σ (any sign).
      sum_mu2_over_sigma: Σ μ_i²/σ_i, >= 0.

    Returns:
      ``(eps_max, b_noise)``; ``(inf, inf)`` when S_off <= 0 (no peak in the small-batch
      regime), as :func:`surge_params`.

    Examples:
      >>> e, n = surge_params_from_stats(2.0, 1.0, 2.0)   # μ = σ = 1, H = [[1, .5], [.5, 1]]
      >>> round(e, 12), round(n / np.pi, 12)
      (0.707106781187, 1.0)
      >>> surge_params_from_stats(2.0, -1.0, 2.0)
      (inf, inf)

    References:
      Li et al. 2024, Theorem 3, Eqs. 13-14 (corrected: THEORY.md errata 2-3).
    """
    tr = finite_scalar(tr_h, "tr_h")
    so = finite_scalar(s_off, "s_off")
    m2s = finite_scalar(sum_mu2_over_sigma, "sum_mu2_over_sigma")
    if tr <= 0:
        raise ValueError(f"H must have a positive trace for Theorem 3; got tr_h={tr:.3g}")
    if m2s < 0:
        raise ValueError(f"sum_mu2_over_sigma must be >= 0; got {m2s:.3g}")
    if so <= 0:
        return math.inf, math.inf
    return m2s / (2.0 * math.sqrt(so * tr)), math.pi * tr / (2.0 * so)


def optimal_lr_from_stats(numer: ArrayLike, denom: ArrayLike) -> NDArray[np.float64] | float:
    """Theorem 2 (Eq. 9) from its per-B sums: ε_opt(B) = N(B) / D(B).

    N(B) = Σ_i ξ_i(B) μ_i and D(B) = tr H + ξᵀHξ − Σ_i ξ_i² H_ii (= Σ(1−ξ_i²)H_ii + ξᵀHξ).
    Equal to :func:`optimal_lr_exact` where D(B) > 0. Unlike it, a D(B) <= 0 (Lemma 1's side
    condition fails: no maximum, or an estimated D too noisy to tell) gives NaN for that B
    instead of an error, because estimated sums can land there.

    Args:
      numer: N(B), scalar or (n,).
      denom: D(B), same shape.

    Returns:
      ε_opt(B), the shape of the inputs.

    Examples:
      >>> optimal_lr_from_stats(2.0, 2.0)        # ξ = 1, μ = 1, H = I (d = 2): Σ|μ| / tr H
      1.0
      >>> [float(v) for v in optimal_lr_from_stats([1.0, 1.0], [2.0, 0.0])]
      [0.5, nan]

    References:
      Li et al. 2024, Theorem 2, Eq. 9 (Appendix C).
    """
    n = np.asarray(numer, dtype=np.float64)
    d = np.asarray(denom, dtype=np.float64)
    if n.shape != d.shape:
        raise ValueError(f"numer and denom must have one shape; got {n.shape} and {d.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(d))):
        raise ValueError("numer and denom must be finite")
    out = np.where(d > 0, n / np.where(d > 0, d, 1.0), np.nan)
    return out if out.ndim else float(out)


def large_batch_lr_from_stats(sum_abs_mu: float, s_h_s: float) -> float:
    """Theorem 4 (Eq. 17) from its two sums: Σ|μ_i| / sᵀHs with s = sign μ.

    Equal to :func:`large_batch_lr`; NaN (not an error) when sᵀHs <= 0.

    Examples:
      >>> large_batch_lr_from_stats(2.0, 1.0)    # μ = (1, −1), H = [[1, .5], [.5, 1]]
      2.0

    References:
      Li et al. 2024, Theorem 4, Eq. 17 (Appendix E).
    """
    a = finite_scalar(sum_abs_mu, "sum_abs_mu")
    c = finite_scalar(s_h_s, "s_h_s")
    if a < 0:
        raise ValueError(f"sum_abs_mu must be >= 0; got {a:.3g}")
    return a / c if c > 0 else math.nan
