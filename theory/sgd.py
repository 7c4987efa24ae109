"""The SGD law of McCandlish et al. (2018): V = G_est, unbiased with covariance Σ/B.

Symbols (code ↔ paper):

=========== ===================== ===========================================
code        symbol                meaning
=========== ===================== ===========================================
``G``       G (= μ)               true gradient, shape (d,)
``H``       H                     Hessian, (d, d), symmetric
``Sigma``   Σ                     per-example gradient covariance: (d,) or (d, d)
``B``       B                     batch size, scalar or 1-D
``eps_max`` ε_max = |G|²/GᵀHG     best learning rate at B → ∞
``b_noise`` B_noise = tr(HΣ)/GᵀHG noise scale: ε_opt(B_noise) = ε_max / 2
=========== ===================== ===========================================

References: McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training"
(arXiv 1812.06162), Eqs. 2.6-2.8 and Appendix A.1; Li et al. 2024 Eqs. 3-5.
The sympy derivation is :func:`theory.derive.sgd_law`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from theory._checks import (
    as_batch_sizes,
    as_covariance,
    as_hessian,
    as_positive_scalar,
    as_vector,
    finite_scalar,
)


def _curvature(G: NDArray, H: NDArray) -> float:
    gHg = float(G @ H @ G)
    if not gHg > 0:
        raise ValueError(
            f"G^T H G must be > 0 for a maximum along G (Lemma 1's side condition); "
            f"got {gHg:.3g}. Check that H is positive definite along G."
        )
    return gHg


def _tr_H_Sigma(H: NDArray, Sigma: NDArray) -> float:
    return float(np.diag(H) @ Sigma) if Sigma.ndim == 1 else float(np.sum(H * Sigma.T))


def params(G: ArrayLike, H: ArrayLike, Sigma: ArrayLike) -> tuple[float, float]:
    """McCandlish's ε_max and B_noise.

    ε_max = |G|² / (Gᵀ H G),   B_noise = tr(H Σ) / (Gᵀ H G).

    Args:
      G: true gradient, (d,).
      H: Hessian, (d, d), symmetric.
      Sigma: per-example gradient covariance; (d,) variances or a (d, d) PSD matrix.

    Returns:
      ``(eps_max, b_noise)``.

    Examples:
      >>> import numpy as np
      >>> params(np.array([1.0, 1.0]), np.eye(2), np.array([2.0, 2.0]))
      (1.0, 2.0)

    References:
      McCandlish et al. 2018, Eqs. 2.6-2.7; Li et al. 2024, Eqs. 3-5.
    """
    g = as_vector(G, "G")
    h = as_hessian(H, "H", d=g.size)
    s = as_covariance(Sigma, "Sigma", d=g.size)
    gHg = _curvature(g, h)
    return float(g @ g) / gHg, _tr_H_Sigma(h, s) / gHg


def b_simple(G: ArrayLike, Sigma: ArrayLike) -> float:
    """B_simple = tr(Σ) / |G|², equal to B_noise when H ∝ I (McCandlish Eq. 2.9).

    Examples:
      >>> b_simple([1.0, 1.0], [2.0, 2.0])
      2.0

    References:
      McCandlish et al. 2018, Eq. 2.9.
    """
    g = as_vector(G, "G")
    s = as_covariance(Sigma, "Sigma", d=g.size)
    g2 = float(g @ g)
    if g2 == 0:
        raise ValueError("G must be nonzero for B_simple = tr(Sigma)/|G|^2")
    return float(np.sum(s) if s.ndim == 1 else np.trace(s)) / g2


def gain_max(G: ArrayLike, H: ArrayLike) -> float:
    """ΔL_max = ½ |G|⁴ / (Gᵀ H G): the best one-step improvement at B → ∞.

    Examples:
      >>> import numpy as np
      >>> gain_max([1.0, 1.0], np.eye(2))
      1.0

    References:
      McCandlish et al. 2018, Eq. 2.8; THEORY.md (|G|⁴, not |G|²).
    """
    g = as_vector(G, "G")
    h = as_hessian(H, "H", d=g.size)
    return 0.5 * float(g @ g) ** 2 / _curvature(g, h)


def optimal_lr(B: ArrayLike, eps_max: float, b_noise: float) -> NDArray[np.float64] | float:
    """ε_opt(B) = ε_max / (1 + B_noise / B) (McCandlish Eq. 2.7).

    Small B: ε_opt ≈ ε_max B / B_noise (linear scaling).

    Examples:
      >>> float(optimal_lr(2.0, 1.0, 2.0))
      0.5

    References:
      McCandlish et al. 2018, Eq. 2.7; Li et al. 2024, Eq. 3.
    """
    b = as_batch_sizes(B)
    e = as_positive_scalar(eps_max, "eps_max")
    n = _nonneg(b_noise, "b_noise")
    out = e / (1.0 + n / b)
    return out if out.ndim else float(out)


def gain(B: ArrayLike, dl_max: float, b_noise: float) -> NDArray[np.float64] | float:
    """ΔL_opt(B) = ΔL_max / (1 + B_noise / B) (McCandlish Eq. 2.8).

    Examples:
      >>> float(gain(2.0, 1.0, 2.0))
      0.5

    References:
      McCandlish et al. 2018, Eq. 2.8.
    """
    b = as_batch_sizes(B)
    dl = as_positive_scalar(dl_max, "dl_max")
    n = _nonneg(b_noise, "b_noise")
    out = dl / (1.0 + n / b)
    return out if out.ndim else float(out)


def optimal_lr_exact(
    G: ArrayLike, H: ArrayLike, Sigma: ArrayLike, B: ArrayLike
) -> NDArray[np.float64] | float:
    """Lemma 1 applied to V = G_est: |G|² / (GᵀHG + tr(HΣ)/B); equals :func:`optimal_lr`.

    Examples:
      >>> import numpy as np
      >>> optimal_lr_exact([1.0, 1.0], np.eye(2), [2.0, 2.0], 2.0)
      0.5

    References:
      Li et al. 2024, Lemma 1 (Eq. 6) with V = G_est; McCandlish et al. 2018, Eq. 2.6.
    """
    e, n = params(G, H, Sigma)
    return optimal_lr(B, e, n)


def two_batch_estimates(
    g_small_sq: ArrayLike, g_big_sq: ArrayLike, B_small: float, B_big: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Unbiased |G|² and tr(Σ) from squared norms of batch-mean gradients (McCandlish App. A.1).

    |G|² ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small),
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big).

    Both are unbiased because E|G_B|² = |G|² + tr(Σ)/B. Their ratio is a *biased*
    estimate of B_simple: average each (e.g. with separate EMAs) and take the ratio last.

    Returns:
      ``(g2, trace_sigma)`` with the broadcast shape of the inputs.

    Examples:
      >>> g2, tr = two_batch_estimates(3.0, 1.5, 1.0, 4.0)  # |G|² = 1, tr Σ = 2
      >>> float(g2), float(tr)
      (1.0, 2.0)

    References:
      McCandlish et al. 2018, Appendix A.1.
    """
    bs = as_positive_scalar(B_small, "B_small")
    bb = as_positive_scalar(B_big, "B_big")
    if not bb > bs:
        raise ValueError(f"B_big must exceed B_small; got B_small={B_small}, B_big={B_big}")
    s = np.asarray(g_small_sq, dtype=np.float64)
    b = np.asarray(g_big_sq, dtype=np.float64)
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(b))):
        raise ValueError("g_small_sq and g_big_sq must be finite")
    try:
        s, b = np.broadcast_arrays(s, b)
    except ValueError as exc:
        raise ValueError(
            f"g_small_sq and g_big_sq must have broadcastable shapes; got {s.shape} and {b.shape}"
        ) from exc
    g2 = (bb * b - bs * s) / (bb - bs)
    tr = (s - b) / (1.0 / bs - 1.0 / bb)
    return g2, tr


def _nonneg(x: float, name: str) -> float:
    v = float(x)
    if np.isnan(v) or v < 0:
        raise ValueError(f"{name} must be >= 0 (inf allowed); got {name}={x!r}")
    return v


# ---------------------------------------------------------------------------------------------
# the same law from sufficient statistics (no dense H or Σ): what an estimator measures


def params_from_stats(g2: float, g_h_g: float, tr_h_sigma: float) -> tuple[float, float]:
    """McCandlish's ``(eps_max, b_noise)`` from |G|², GᵀHG and tr(HΣ).

    ε_max = |G|² / GᵀHG,  B_noise = tr(HΣ) / GᵀHG: the same as :func:`params`, whose dense
    H and Σ enter only through these three numbers. Estimated sums can leave the law's
    domain, so instead of an error: GᵀHG <= 0 gives ``(nan, nan)`` (no maximum along G).

    Args:
      g2: |G|² (estimated; any sign).  g_h_g: GᵀHG.  tr_h_sigma: tr(HΣ).

    Examples:
      >>> params_from_stats(2.0, 2.0, 4.0)     # G = (1, 1), H = I, Σ = diag(2, 2)
      (1.0, 2.0)
      >>> params_from_stats(2.0, 0.0, 4.0)
      (nan, nan)

    References:
      McCandlish et al. 2018, Eqs. 2.6-2.7; Li et al. 2024, Eqs. 3-5.
    """
    a = finite_scalar(g2, "g2")
    c = finite_scalar(g_h_g, "g_h_g")
    t = finite_scalar(tr_h_sigma, "tr_h_sigma")
    if not c > 0:
        return float("nan"), float("nan")
    return a / c, t / c


def b_simple_from_stats(tr_sigma: float, g2: float) -> float:
    """B_simple = tr(Σ) / |G|² from the two sums (McCandlish Eq. 2.9).

    Equal to :func:`b_simple`; an estimated |G|² <= 0 (the signal is not resolved) gives inf.

    Examples:
      >>> b_simple_from_stats(4.0, 2.0)
      2.0
      >>> b_simple_from_stats(4.0, -0.1)
      inf

    References:
      McCandlish et al. 2018, Eq. 2.9.
    """
    t = finite_scalar(tr_sigma, "tr_sigma")
    a = finite_scalar(g2, "g2")
    if t < 0:
        raise ValueError(f"tr_sigma must be >= 0; got {t:.3g}")
    return t / a if a > 0 else float("inf")
