"""Sign updates with CORRELATED Gaussian gradient noise: exact first and second moments.

Theorem 2 assumes independent coordinates. Without that assumption the moments of
v = sign(G_est), G_est ~ N(μ, Σ/B), still have closed forms, because

    m1 = E[Gᵀv] = Σ_i μ_i E[sign G_est,i]           (one coordinate at a time)
    m2 = E[vᵀHv] = Σ_ij H_ij E[v_i v_j]                (pairs of coordinates only)

and for a bivariate normal with standardised means a, b and correlation ρ

    E[sign X sign Y] = 4 Φ₂(a, b; ρ) − 2 Φ(a) − 2 Φ(b) + 1   (= (2/π) arcsin ρ at a = b = 0).

Φ₂ is evaluated with Owen's T function (vectorised, exact to rounding):
Φ₂(h, k; ρ) = ½Φ(h) + ½Φ(k) − T(h, (k − ρh)/(h√(1−ρ²))) − T(k, (h − ρk)/(k√(1−ρ²))) − δ,
δ = ½ when hk < 0 or (hk = 0 and h + k < 0), else 0 (Owen 1956, Eq. 2.1).
Overflow of the Owen-T slopes to ±inf is harmless: T(h, ±inf) = ±½Φ(−|h|).

=========== ================ ===============================================
code        symbol           meaning
=========== ================ ===============================================
``a, b``    μ_x/σ_x, μ_y/σ_y standardised means
``rho``     ρ                correlation, in [−1, 1]
``mu``      μ                true gradient, (d,)
``cov``     Σ                per-example gradient covariance, (d, d) PSD, Σ_ii > 0
``B``       B                batch size; G_est ~ N(μ, Σ/B)
``H``       H                Hessian, (d, d), symmetric
=========== ================ ===============================================

References: Li et al. 2024 Lemma 1 (Eq. 6); Sheppard (1899) for the arcsin law;
D. B. Owen, "Tables for computing bivariate normal probabilities" (1956).
Derivation: :func:`theory.derive.correlated_signs`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf, ndtr, owens_t

from theory._checks import as_batch_sizes, as_hessian, as_vector


def bivariate_normal_cdf(h: ArrayLike, k: ArrayLike, rho: ArrayLike) -> NDArray[np.float64]:
    """Φ₂(h, k; ρ) = P(X ≤ h, Y ≤ k) for standard normals with correlation ρ, vectorised.

    Args:
      h, k: upper limits (broadcastable arrays, finite).
      rho: correlation in [−1, 1] (broadcastable).

    Returns:
      The broadcast array of probabilities.

    Examples:
      >>> round(float(bivariate_normal_cdf(0.0, 0.0, 0.5)), 12)  # 1/4 + arcsin(1/2)/(2π)
      0.333333333333

    References:
      Owen (1956), Eq. 2.1; Sheppard (1899) at h = k = 0.
    """
    h, k, r = _broadcast_finite(h=h, k=k, rho=rho)
    if np.any(np.abs(r) > 1):
        raise ValueError(f"rho must lie in [-1, 1]; got max |rho| = {np.abs(r).max():.3g}")
    interior = np.abs(r) < 1
    s = np.sqrt(np.where(interior, 1.0 - r * r, 1.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ah = (k - r * h) / (h * s)
        ak = (h - r * k) / (k * s)
    # h = 0 is the limit h -> 0+: the Owen T term becomes T(0, ±inf) = ±1/4 (sign of k - ρh)
    th = np.where(h == 0, 0.25 * np.sign(k - r * h), owens_t(h, np.where(h == 0, 0.0, ah)))
    tk = np.where(k == 0, 0.25 * np.sign(h - r * k), owens_t(k, np.where(k == 0, 0.0, ak)))
    # signs, not the product h·k, decide δ: h·k underflows to 0 for tiny opposite-sign limits
    sgn = np.sign(h) * np.sign(k)
    delta = np.where((sgn < 0) | ((sgn == 0) & (h + k < 0)), 0.5, 0.0)
    out = 0.5 * ndtr(h) + 0.5 * ndtr(k) - th - tk - delta
    # h = k = 0: both Owen terms are 0/0 limits; Sheppard's closed form instead
    sheppard = 0.25 + np.arcsin(np.clip(r, -1.0, 1.0)) / (2.0 * math.pi)
    out = np.where((h == 0) & (k == 0), sheppard, out)
    # |ρ| = 1: X = ±Y, the distribution is on a line
    out = np.where(r >= 1, ndtr(np.minimum(h, k)), out)
    out = np.where(r <= -1, np.maximum(ndtr(h) + ndtr(k) - 1.0, 0.0), out)
    return np.clip(out, 0.0, 1.0)


def sign_product_expectation(a: ArrayLike, b: ArrayLike, rho: ArrayLike) -> NDArray[np.float64]:
    """E[sign X · sign Y] for (X, Y) bivariate normal, unit variances, means a, b, correlation ρ.

    E[sign X sign Y] = 4 Φ₂(a, b; ρ) − 2 Φ(a) − 2 Φ(b) + 1, which is (2/π) arcsin ρ when
    a = b = 0 and ξ_a ξ_b = erf(a/√2) erf(b/√2) when ρ = 0.

    Args:
      a, b: standardised means μ_x/σ_x and μ_y/σ_y (broadcastable, finite).
      rho: correlation in [−1, 1] (broadcastable).

    Returns:
      The broadcast array of expectations, each in [−1, 1].

    Examples:
      >>> round(float(sign_product_expectation(0.0, 0.0, 0.5)), 12)  # (2/π) arcsin(1/2) = 1/3
      0.333333333333

    References:
      THEORY.md "Correlated coordinates"; Sheppard (1899).
    """
    a_, b_, r = _broadcast_finite(a=a, b=b, rho=rho)
    # P(X > 0, Y > 0) = Φ₂(a, b; ρ) because (−X + a, −Y + b) has the same law as (X − a, Y − b)
    p = bivariate_normal_cdf(a_, b_, r)
    return np.clip(4.0 * p - 2.0 * ndtr(a_) - 2.0 * ndtr(b_) + 1.0, -1.0, 1.0)


def sign_first_moment(mu: ArrayLike, cov: ArrayLike, B: ArrayLike) -> NDArray[np.float64] | float:
    """m1(B) = E[μᵀ sign(G_est)] = Σ_i μ_i erf(√(B/2) μ_i / √Σ_ii), G_est ~ N(μ, Σ/B).

    Only the diagonal of ``cov`` matters: each coordinate's sign is a function of that
    coordinate alone.

    Args:
      mu: (d,) true gradient.
      cov: (d, d) per-example covariance (PSD, positive diagonal) or (d,) variances.
      B: batch size, scalar or 1-D.

    Returns:
      A float for scalar ``B``, an (n,) array for a 1-D ``B``.

    Examples:
      >>> import numpy as np
      >>> round(float(sign_first_moment([1.0], np.eye(1), 2.0)), 12)  # erf(1)
      0.84270079295

    References:
      Li et al. 2024, Eq. 8 (Theorem 2's numerator), which needs no independence.
    """
    m, c = _mu_cov(mu, cov)
    b = as_batch_sizes(B)
    bb = np.atleast_1d(b)
    sd = np.sqrt(np.diag(c))
    out = erf(np.sqrt(bb[:, None] / 2.0) * (m / sd)[None, :]) @ m
    return out if b.ndim else float(out[0])


def sign_second_moment(
    mu: ArrayLike, cov: ArrayLike, B: ArrayLike, H: ArrayLike
) -> NDArray[np.float64] | float:
    """m2(B) = E[vᵀHv], v = sign(G_est), G_est ~ N(μ, Σ/B), via pairwise orthant formulas.

    m2 = Σ_i H_ii + Σ_{i≠j} H_ij E[v_i v_j], with E[v_i v_j] = sign_product_expectation(
    √B μ_i/√Σ_ii, √B μ_j/√Σ_jj, Σ_ij/√(Σ_ii Σ_jj)). Exact for every d: vᵀHv is a sum over
    pairs, so only pairwise laws enter. Cost O(n d²).

    Args:
      mu: (d,) true gradient.
      cov: (d, d) per-example covariance (PSD, positive diagonal) or (d,) variances.
      B: batch size, scalar or 1-D.
      H: (d, d) symmetric Hessian.

    Returns:
      A float for scalar ``B``, an (n,) array for a 1-D ``B``.

    Examples:
      >>> import numpy as np
      >>> float(sign_second_moment([0.0, 0.0], np.eye(2), 4.0, np.ones((2, 2))))  # 2 + 2·0
      2.0

    References:
      Li et al. 2024, Eq. 6 (Lemma 1's denominator); THEORY.md "Correlated coordinates".
    """
    m, c = _mu_cov(mu, cov)
    h = as_hessian(H, "H", d=m.size)
    b = as_batch_sizes(B)
    bb = np.atleast_1d(b)
    sd = np.sqrt(np.diag(c))
    rho = np.clip(c / np.outer(sd, sd), -1.0, 1.0)
    z = np.sqrt(bb)[:, None] * (m / sd)[None, :]  # (n, d)
    e = sign_product_expectation(z[:, :, None], z[:, None, :], rho[None, :, :])
    idx = np.arange(m.size)
    e[:, idx, idx] = 1.0  # sign² = 1 exactly
    out = np.einsum("nij,ij->n", e, h)
    return out if b.ndim else float(out[0])


def optimal_lr_exact(
    mu: ArrayLike, cov: ArrayLike, H: ArrayLike, B: ArrayLike
) -> NDArray[np.float64] | float:
    """ε_opt(B) = m1(B) / m2(B) for sign updates under correlated Gaussian noise (Lemma 1).

    Reduces to :func:`theory.sign.optimal_lr_exact` (Theorem 2) for a diagonal ``cov``.

    Examples:
      >>> import numpy as np
      >>> float(optimal_lr_exact([1.0, 1.0], np.eye(2), np.eye(2), 1e6))  # Σ|μ| / tr H
      1.0

    References:
      Li et al. 2024, Lemma 1 (Eq. 6), without Theorem 2's independence assumption.
    """
    m1 = sign_first_moment(mu, cov, B)
    m2 = sign_second_moment(mu, cov, B, H)
    if np.any(np.asarray(m2) <= 0):
        raise ValueError(
            "E[v^T H v] must be > 0 (Lemma 1's side condition); H is not positive "
            "enough for sign updates on this problem"
        )
    return m1 / m2


def _mu_cov(mu: ArrayLike, cov: ArrayLike) -> tuple[NDArray, NDArray]:
    m = as_vector(mu, "mu")
    c = np.asarray(cov, dtype=np.float64) if not isinstance(cov, np.ndarray) else cov
    if np.ndim(c) == 1:
        c = np.diag(as_vector(c, "cov", d=m.size, positive=True))
    else:
        c = as_hessian(c, "cov", d=m.size, psd=True)
    if np.any(np.diag(c) <= 0):
        raise ValueError(
            "cov must have a strictly positive diagonal (every coordinate noisy); "
            f"got min variance {np.diag(c).min()!r}"
        )
    return m, c


def _broadcast_finite(**arrays: ArrayLike) -> list[NDArray[np.float64]]:
    out = []
    for name, x in arrays.items():
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be an array of numbers; got {x!r}") from exc
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        out.append(a)
    try:
        return list(np.broadcast_arrays(*out))
    except ValueError as exc:
        shapes = ", ".join(f"{n}{np.shape(v)}" for n, v in zip(arrays, out))
        raise ValueError(f"arguments must broadcast together; got shapes {shapes}") from exc
