"""The quadratic problem every backend simulates: μ, σ, H = diag(h) + U Uᵀ, Σ = diag(σ²) + W Wᵀ.

======== ========== ==============================================================
code     symbol     meaning
======== ========== ==============================================================
``mu``   μ = G      true gradient, (d,)
``sigma`` σ_i       per-example noise std-dev of the independent part, (d,), > 0
``h``    h_i        diagonal part of the Hessian, (d,)
``U``    U          low-rank Hessian factor, (d, r), r ≥ 0:  H = diag(h) + U Uᵀ
``W``    W          low-rank noise factor, (d, k), k ≥ 0:  Σ = diag(σ²) + W Wᵀ
======== ========== ==============================================================

A batch of size B gives G_est = μ + (σ ⊙ z + W ζ)/√B with z ~ N(0, I_d), ζ ~ N(0, I_k), so
cov(G_est) = Σ/B (THEORY.md, "Setting").
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

from theory._checks import as_vector


def _as_factor(x: ArrayLike | None, name: str, d: int) -> NDArray[np.float64]:
    if x is None:
        return np.zeros((d, 0))
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a (d, r) array of numbers or None; got {x!r}") from exc
    if a.ndim == 1 and a.shape[0] == d:
        a = a[:, None]  # a single column given as a vector
    if a.ndim != 2 or a.shape[0] != d:
        raise ValueError(
            f"{name} must have shape (d, r) = ({d}, r) to match mu; got shape {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return np.ascontiguousarray(a)


@dataclasses.dataclass(frozen=True, eq=False)
class QuadraticProblem:
    """A local quadratic model with a structured Hessian and gradient noise (read-only arrays).

    Args:
      mu: (d,) true gradient μ, finite.
      sigma: (d,) independent per-example noise std-dev σ, finite and > 0.
      h: (d,) diagonal of the Hessian's diagonal part, finite (may be ≤ 0; Lemma 1 then needs
        m2 > 0, which the caller checks).
      U: (d, r) Hessian factor or None (r = 0). A (d,) vector is one column.
      W: (d, k) correlated-noise factor or None (k = 0). A (d,) vector is one column.

    Examples:
      >>> p = QuadraticProblem([1.0, -1.0], [2.0, 2.0], [1.0, 1.0])
      >>> p.d, p.rank, p.noise_rank
      (2, 0, 0)
    """

    mu: NDArray[np.float64]
    sigma: NDArray[np.float64]
    h: NDArray[np.float64]
    U: NDArray[np.float64] | None = None
    W: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        mu = as_vector(self.mu, "mu")
        d = mu.size
        sigma = as_vector(self.sigma, "sigma", d=d, positive=True)
        h = as_vector(self.h, "h", d=d)
        U = _as_factor(self.U, "U", d)
        W = _as_factor(self.W, "W", d)
        for name, a in (("mu", mu), ("sigma", sigma), ("h", h), ("U", U), ("W", W)):
            a = np.ascontiguousarray(a, dtype=np.float64).copy()
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @property
    def d(self) -> int:
        """Number of coordinates."""
        return int(self.mu.size)

    @property
    def rank(self) -> int:
        """r, the number of columns of U."""
        return int(self.U.shape[1])

    @property
    def noise_rank(self) -> int:
        """k, the number of columns of W (extra random coordinates d..d+k-1 per sample)."""
        return int(self.W.shape[1])

    def hessian(self) -> NDArray[np.float64]:
        """Dense H = diag(h) + U Uᵀ, (d, d), exactly symmetric — for theory and small problems."""
        H = np.diag(self.h) + self.U @ self.U.T
        return (H + H.T) / 2

    def noise_cov(self) -> NDArray[np.float64]:
        """Dense per-example covariance Σ = diag(σ²) + W Wᵀ, (d, d)."""
        return np.diag(self.sigma**2) + self.W @ self.W.T

    def marginal_std(self) -> NDArray[np.float64]:
        """Per-coordinate per-example std-dev √Σ_ii = √(σ_i² + |W_i|²), (d,)."""
        return np.sqrt(self.sigma**2 + np.sum(self.W**2, axis=1))


def centring(
    problem: QuadraticProblem, batch_sizes: NDArray[np.float64], update: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Shifts (K1_b, K2_b) close to m1, m2, subtracted before summing squares (one per B).

    Variances are accumulated as Σ(x − K)² − (Σ(x − K))²/n, accurate when K ≈ E[x]; for sign
    updates at large B the per-sample values are nearly constant and an unshifted sum of
    squares would cancel catastrophically. Exact values are not needed, only closeness:

    - sgd: K1 = |μ|², K2 = μᵀHμ + tr(HΣ)/B (both exact).
    - sign: ξ_i = erf(√(B/2) μ_i/√Σ_ii) (exact marginally), K1 = Σ μ_i ξ_i (exact),
      K2 = Σ h_i + |Uᵀξ|² + Σ_i (1 − ξ_i²)|U_i|² (exact for independent noise).

    Returns:
      (K1, K2), each (nB,).
    """
    mu, h, U, W, sig = problem.mu, problem.h, problem.U, problem.W, problem.sigma
    if update == "sgd":
        ut_mu = U.T @ mu
        tr_h_sigma = (
            np.sum(h * sig**2)
            + np.sum(U**2 * (sig**2)[:, None])
            + np.sum(h[:, None] * W**2)
            + np.sum((U.T @ W) ** 2)
        )
        k1 = np.full(batch_sizes.shape, float(mu @ mu))
        k2 = float(np.sum(h * mu**2) + ut_mu @ ut_mu) + tr_h_sigma / batch_sizes
        return k1, k2
    s = problem.marginal_std()
    xi = erf(np.sqrt(batch_sizes[:, None] / 2.0) * (mu / s)[None, :])
    k1 = xi @ mu
    ut_xi = xi @ U
    k2 = np.sum(h) + np.sum(ut_xi**2, axis=1) + (1.0 - xi**2) @ np.sum(U**2, axis=1)
    return k1, k2
