"""Su Jianlin's mean-field version of the sign-update law (kexue.fm/archives/10542, 11301).

Mean field: every coordinate has the same noise-to-signal ratio, κ² ≈ (σ_i/μ_i)², so
ξ_i ≈ sign(μ_i) β with β = (1 + π κ²/(2B))^(−1/2) (the rational erf approximation). Then
Lemma 1 gives

    ε_opt = β Σ|μ_i| / (Σ H_ii + β² S_sign),   S_sign = Σ_{i≠j} sign(μ_i μ_j) H_ij
          = ε_max / (½ (β_noise/β + β/β_noise)),  β_noise = √(Σ H_ii / S_sign),

peaking at β = β_noise, i.e. at B_noise = π κ² β_noise² / (2 (1 − β_noise²)) (a surge only if
β_noise < 1). The loss-drop law is ΔL_opt = ΔL_max2 / (1 + B_noise-2/B) with
B_noise-2 = π κ² β_noise² / (2 (1 + β_noise²)), so 1/B_noise-2 − 1/B_noise = 4/(π κ²).

=============== ============== ==============================================
code            symbol         meaning
=============== ============== ==============================================
``mu``          μ              true gradient, (d,), every μ_i ≠ 0
``H``           H              Hessian, (d, d), symmetric
``kappa2``      κ²             mean-field noise-to-signal ratio, mean (σ_i/μ_i)²
``beta``        β              mean-field |E sign G_est,i|
``beta_noise``  β_noise        √(Σ H_ii / S_sign)
``s_sign``      S_sign         Σ_{i≠j} sign(μ_iμ_j) H_ij
``b_noise2``    B_noise-2      E_min / S_min of the loss-drop law
=============== ============== ==============================================

References: Su Jianlin, kexue.fm/archives/10542 (mean field) and kexue.fm/archives/11301
(Adam with EMA momentum); summary in ../shared/seeds/003_*.txt; Li et al. 2024 for the exact
law. Derivation: :func:`theory.derive.su_mean_field`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from theory._checks import as_batch_sizes, as_hessian, as_positive_scalar, as_vector


def kappa_squared(mu: ArrayLike, sigma: ArrayLike) -> float:
    """κ² = mean_i (σ_i/μ_i)², the mean-field noise-to-signal ratio.

    Examples:
      >>> kappa_squared([1.0, -2.0], [2.0, 2.0])
      2.5

    References:
      Su, kexue.fm/archives/10542 (mean-field approximation).
    """
    m = as_vector(mu, "mu", nonzero=True)
    s = as_vector(sigma, "sigma", d=m.size, positive=True)
    return float(np.mean((s / m) ** 2))


def beta(B: ArrayLike, kappa2: float) -> NDArray[np.float64] | float:
    """β(B) = (1 + π κ² / (2B))^(−1/2), the mean-field |E[sign G_est,i]|.

    Examples:
      >>> round(float(beta(3.141592653589793 / 2, 1.0)), 12)  # (1 + 1)^(-1/2)
      0.707106781187

    References:
      Su, kexue.fm/archives/10542; the rational form of Li et al. 2024 Eq. 8.
    """
    b = as_batch_sizes(B)
    k = as_positive_scalar(kappa2, "kappa2")
    out = 1.0 / np.sqrt(1.0 + math.pi * k / (2.0 * b))
    return out if out.ndim else float(out)


def s_sign(mu: ArrayLike, H: ArrayLike) -> float:
    """S_sign = Σ_{i≠j} sign(μ_i μ_j) H_ij = sign(μ)ᵀ H sign(μ) − Σ H_ii.

    Examples:
      >>> import numpy as np
      >>> s_sign([1.0, -1.0], np.array([[1.0, -0.5], [-0.5, 1.0]]))
      1.0

    References:
      Su, kexue.fm/archives/10542.
    """
    m = as_vector(mu, "mu", nonzero=True)
    h = as_hessian(H, "H", d=m.size)
    sg = np.sign(m)
    return float(sg @ h @ sg - np.trace(h))


def beta_noise(mu: ArrayLike, H: ArrayLike) -> float:
    """β_noise = √(Σ H_ii / S_sign); ``inf`` when S_sign ≤ 0 (no peak).

    Examples:
      >>> import numpy as np
      >>> beta_noise([1.0, 1.0], np.array([[1.0, 4.0], [4.0, 1.0]]))
      0.5

    References:
      Su, kexue.fm/archives/10542.
    """
    h = as_hessian(H, "H")
    t, s = _trace_positive(h), s_sign(mu, h)
    return math.sqrt(t / s) if s > 0 else math.inf


def params(mu: ArrayLike, H: ArrayLike) -> tuple[float, float]:
    """``(eps_max, beta_noise)``: ε_max = Σ|μ_i| / (2 √(Σ H_ii · S_sign)).

    Returns ``(inf, inf)`` when S_sign ≤ 0 (ε_opt rises with β all the way to β = 1).

    Examples:
      >>> import numpy as np
      >>> params([1.0, 1.0], np.array([[1.0, 4.0], [4.0, 1.0]]))
      (0.25, 0.5)

    References:
      Su, kexue.fm/archives/10542.
    """
    m = as_vector(mu, "mu", nonzero=True)
    h = as_hessian(H, "H", d=m.size)
    t, s = _trace_positive(h), s_sign(m, h)
    if s <= 0:
        return math.inf, math.inf
    return float(np.sum(np.abs(m))) / (2.0 * math.sqrt(t * s)), math.sqrt(t / s)


def optimal_lr(
    B: ArrayLike, mu: ArrayLike, H: ArrayLike, kappa2: float
) -> NDArray[np.float64] | float:
    """Mean-field ε_opt(B) = β Σ|μ_i| / (Σ H_ii + β² S_sign), β = β(B).

    Examples:
      >>> import numpy as np
      >>> round(float(optimal_lr(1e12, [1.0, 1.0], np.eye(2), 1.0)), 9)  # β → 1: Σ|μ| / tr H
      1.0

    References:
      Su, kexue.fm/archives/10542; Li et al. 2024 Eq. 9 with ξ_i = sign(μ_i) β.
    """
    m = as_vector(mu, "mu", nonzero=True)
    h = as_hessian(H, "H", d=m.size)
    bt = beta(B, kappa2)
    t, s = _trace_positive(h), s_sign(m, h)
    den = t + np.asarray(bt) ** 2 * s
    if np.any(den <= 0):
        raise ValueError("sum H_ii + beta^2 S_sign must be > 0 (Lemma 1's side condition)")
    out = bt * float(np.sum(np.abs(m))) / den
    return out if np.ndim(out) else float(out)


def surge_lr(beta_: ArrayLike, eps_max: float, beta_noise_: float) -> NDArray[np.float64] | float:
    """ε_opt = ε_max / (½ (β_noise/β + β/β_noise)) as a function of β ∈ (0, 1].

    Examples:
      >>> surge_lr(0.5, 2.0, 0.5)
      2.0

    References:
      Su, kexue.fm/archives/10542.
    """
    b = np.asarray(beta_, dtype=np.float64)
    if not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(b > 1):
        raise ValueError(f"beta_ must lie in (0, 1]; got {beta_!r}")
    e = as_positive_scalar(eps_max, "eps_max")
    n = as_positive_scalar(beta_noise_, "beta_noise_")
    out = e / (0.5 * (n / b + b / n))
    return out if out.ndim else float(out)


def b_noise(kappa2: float, beta_noise_: float) -> float:
    """B_noise = π κ² β_noise² / (2 (1 − β_noise²)): the batch size where β = β_noise.

    ``inf`` when β_noise ≥ 1 (β < 1 always, so the peak is never reached: no surge).

    Examples:
      >>> round(b_noise(2.0 / 3.141592653589793, 0.5), 12)  # κ²·π/2 = 1; 0.25/0.75
      0.333333333333

    References:
      Su, kexue.fm/archives/10542.
    """
    k = as_positive_scalar(kappa2, "kappa2")
    n = as_positive_scalar(beta_noise_, "beta_noise_", allow_inf=True)
    if n >= 1:
        return math.inf
    return math.pi * k * n * n / (2.0 * (1.0 - n * n))


def b_noise2(kappa2: float, beta_noise_: float) -> float:
    """B_noise-2 = π κ² β_noise² / (2 (1 + β_noise²)) = E_min/S_min of the loss-drop law.

    Satisfies 1/B_noise-2 − 1/B_noise = 4/(π κ²). For β_noise = inf it is π κ²/2.

    Examples:
      >>> round(b_noise2(2.0 / 3.141592653589793, 1.0), 12)  # 1 · 1/2
      0.5

    References:
      Su, kexue.fm/archives/10542 (loss-drop law of the mean-field model).
    """
    k = as_positive_scalar(kappa2, "kappa2")
    n = as_positive_scalar(beta_noise_, "beta_noise_", allow_inf=True)
    if math.isinf(n):
        return math.pi * k / 2.0
    return math.pi * k * n * n / (2.0 * (1.0 + n * n))


def gain(B: ArrayLike, mu: ArrayLike, H: ArrayLike, kappa2: float) -> NDArray[np.float64] | float:
    """Mean-field ΔL_opt(B) = ½ (β Σ|μ_i|)² / (Σ H_ii + β² S_sign).

    Examples:
      >>> import numpy as np
      >>> round(float(gain(1e12, [1.0, 1.0], np.eye(2), 1.0)), 9)  # ½ (Σ|μ|)² / tr H
      1.0

    References:
      Su, kexue.fm/archives/10542; Li et al. 2024 Eq. 10 with ξ_i = sign(μ_i) β.
    """
    m = as_vector(mu, "mu", nonzero=True)
    h = as_hessian(H, "H", d=m.size)
    bt = np.asarray(beta(B, kappa2))
    t, s = _trace_positive(h), s_sign(m, h)
    den = t + bt**2 * s
    if np.any(den <= 0):
        raise ValueError("sum H_ii + beta^2 S_sign must be > 0 (Lemma 1's side condition)")
    out = 0.5 * (bt * float(np.sum(np.abs(m)))) ** 2 / den
    return out if out.ndim else float(out)


def gain_params(mu: ArrayLike, H: ArrayLike, kappa2: float) -> tuple[float, float]:
    """``(dl_max2, b_noise2)`` with ΔL_opt(B) = ΔL_max2 / (1 + B_noise-2 / B) exactly.

    ΔL_max2 = ½ (Σ|μ_i|)² / (Σ H_ii + S_sign), B_noise-2 = π κ² Σ H_ii / (2 (Σ H_ii + S_sign)).

    Examples:
      >>> import numpy as np
      >>> dl, bn2 = gain_params([1.0, 1.0], np.eye(2), 2.0 / np.pi)
      >>> round(dl, 12), round(bn2, 12)
      (1.0, 1.0)

    References:
      Su, kexue.fm/archives/10542.
    """
    m = as_vector(mu, "mu", nonzero=True)
    h = as_hessian(H, "H", d=m.size)
    k = as_positive_scalar(kappa2, "kappa2")
    t, s = _trace_positive(h), s_sign(m, h)
    if t + s <= 0:
        raise ValueError(f"sign(mu)^T H sign(mu) must be > 0; got {t + s:.3g}")
    return (0.5 * float(np.sum(np.abs(m))) ** 2 / (t + s), math.pi * k * t / (2.0 * (t + s)))


def ema_surge_threshold(beta1: float, b_simple: float) -> float:
    """Su's EMA-momentum threshold: the best LR falls for B > (1 − β1)/(3β1 − 1) · B_simple.

    Holds for Adam with momentum β1 ∈ (1/3, 1), even for a diagonal Hessian (which the
    momentum-free sign theory says never surges). At β1 = 0.9 the factor is 1/17.

    Examples:
      >>> round(ema_surge_threshold(0.9, 17.0), 12)
      1.0

    References:
      Su, kexue.fm/archives/11301 (Adam with EMA momentum); THEORY.md "Other derivations".
    """
    b1 = float(beta1)
    if not (np.isfinite(b1) and 1.0 / 3.0 < b1 < 1.0):
        raise ValueError(f"beta1 must lie in (1/3, 1) for the EMA threshold to exist; got {beta1=}")
    return (1.0 - b1) / (3.0 * b1 - 1.0) * as_positive_scalar(b_simple, "b_simple")


def _trace_positive(h: NDArray) -> float:
    t = float(np.trace(h))
    if t <= 0:
        raise ValueError(f"H must have a positive trace; got tr(H)={t:.3g}")
    return t
