"""Lemma 1 of the Surge paper: the best learning rate for ANY random update V (Eqs. 6-7).

With the quadratic model L(θ − εV) ≈ L(θ) − ε Gᵀ V + ½ ε² Vᵀ H V,

    E[ΔL](ε) = ε m1 − ½ ε² m2,   m1 = Gᵀ E[V],   m2 = E[Vᵀ H V] = tr(H cov V) + E[V]ᵀ H E[V],

so ε_opt = m1 / m2 and ΔL_opt = ½ m1 ε_opt = ½ m1² / m2, provided m2 > 0 (a maximum).

=========== ================ ==============================================
code        symbol           meaning
=========== ================ ==============================================
``G``       G                true gradient, (d,)
``mean_v``  E[V]             mean of the update, (d,)
``cov_v``   cov(V)           covariance of the update, (d, d) or (d,) diagonal
``H``       H                Hessian, (d, d), symmetric
``m1``      GᵀE[V]           first moment of the gain
``m2``      E[VᵀHV]          second moment of the gain
=========== ================ ==============================================

Reference: Li et al. 2024 (arXiv 2405.14578), Lemma 1, Eqs. 6-7 and Appendix B.
Derivation: :func:`theory.derive.lemma1`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from theory._checks import as_hessian, as_vector


def moments(G: ArrayLike, mean_v: ArrayLike, cov_v: ArrayLike, H: ArrayLike) -> tuple[float, float]:
    """``(m1, m2)`` = (Gᵀ E[V], tr(H cov V) + E[V]ᵀ H E[V]).

    Args:
      G: true gradient, (d,).
      mean_v: E[V], (d,).
      cov_v: cov(V): a (d, d) PSD matrix or a (d,) vector of variances (independent coords).
      H: Hessian, (d, d), symmetric.

    Returns:
      ``(m1, m2)`` as floats.

    Examples:
      >>> import numpy as np
      >>> moments([1.0, 0.0], [1.0, 0.0], [1.0, 1.0], np.eye(2))
      (1.0, 3.0)

    References:
      Li et al. 2024, Eq. 6 (Appendix B).
    """
    g = as_vector(G, "G")
    m = as_vector(mean_v, "mean_v", d=g.size)
    h = as_hessian(H, "H", d=g.size)
    c = np.asarray(cov_v, dtype=np.float64)
    if c.ndim == 1:
        c = as_vector(c, "cov_v", d=g.size)
        if np.any(c < 0):
            raise ValueError(f"cov_v variances must be >= 0; got min {c.min()!r}")
        tr = float(np.diag(h) @ c)
    else:
        c = as_hessian(c, "cov_v", d=g.size, psd=True)
        tr = float(np.sum(h * c.T))
    return float(g @ m), tr + float(m @ h @ m)


def optimal_lr(G: ArrayLike, mean_v: ArrayLike, cov_v: ArrayLike, H: ArrayLike) -> float:
    """ε_opt = Gᵀ E[V] / (tr(H cov V) + E[V]ᵀ H E[V]) (Lemma 1, Eq. 6).

    Raises ``ValueError`` when the denominator is ≤ 0: then E[ΔL] has no maximum.

    Examples:
      >>> import numpy as np
      >>> optimal_lr([1.0, 0.0], [1.0, 0.0], [1.0, 1.0], np.eye(2))
      0.3333333333333333

    References:
      Li et al. 2024, Lemma 1, Eq. 6.
    """
    m1, m2 = moments(G, mean_v, cov_v, H)
    _side_condition(m2)
    return m1 / m2


def optimal_gain(G: ArrayLike, mean_v: ArrayLike, cov_v: ArrayLike, H: ArrayLike) -> float:
    """ΔL_opt = ½ (Gᵀ E[V]) ε_opt = ½ m1² / m2 (Lemma 1, Eq. 7).

    Examples:
      >>> import numpy as np
      >>> round(optimal_gain([1.0, 0.0], [1.0, 0.0], [1.0, 1.0], np.eye(2)), 12)
      0.166666666667

    References:
      Li et al. 2024, Lemma 1, Eq. 7.
    """
    m1, m2 = moments(G, mean_v, cov_v, H)
    _side_condition(m2)
    return 0.5 * m1 * m1 / m2


def expected_gain(eps: ArrayLike, m1: float, m2: float) -> NDArray[np.float64] | float:
    """E[ΔL](ε) = ε m1 − ½ ε² m2, vectorised over the learning rate ``eps``.

    Examples:
      >>> expected_gain(1.0, 2.0, 2.0)
      1.0

    References:
      Li et al. 2024, Eq. 6 (the quadratic before maximisation).
    """
    e = np.asarray(eps, dtype=np.float64)
    if not np.all(np.isfinite(e)):
        raise ValueError("eps must be finite (no NaN or inf)")
    a, b = float(m1), float(m2)
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ValueError(f"m1 and m2 must be finite; got m1={m1!r}, m2={m2!r}")
    out = e * a - 0.5 * e * e * b
    return out if out.ndim else float(out)


def _side_condition(m2: float) -> None:
    if not m2 > 0:
        raise ValueError(
            f"tr(H cov V) + E[V]^T H E[V] must be > 0 for E[dL] to have a maximum "
            f"(Lemma 1's side condition); got {m2:.3g}. Check that H is PSD."
        )
