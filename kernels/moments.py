"""Monte Carlo moments of an update v: m1 = E[Gᵀv], m2 = E[vᵀHv], for many batch sizes at once.

Lemma 1 (THEORY.md, Eqs. 6–7): for any random update v,
E[ΔL](ε) = ε m1 − ½ ε² m2 with m1 = Gᵀ E[v], m2 = tr(H cov v) + E[v]ᵀ H E[v] = E[vᵀHv],
so ε_opt = m1/m2 and ΔL_opt = ½ m1²/m2. This module estimates m1 and m2 by simulation on a
:class:`~kernels.problem.QuadraticProblem`, with one shared normal draw per (sample,
coordinate) for every batch size (common random numbers), and returns them with standard
errors and their covariance (for delta-method errors of m1/m2 and of E[ΔL]).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kernels import _backend
from kernels.problem import QuadraticProblem, centring
from theory._checks import as_batch_sizes
from theory.stats import ratio_se

UPDATES = ("sign", "sgd")


@dataclasses.dataclass(frozen=True, eq=False)
class Moments:
    """Estimates of m1 = E[Gᵀv], m2 = E[vᵀHv] per batch size, with standard errors.

    Attributes:
      batch_sizes: (nB,) the batch sizes, in the order given.
      m1, m2: (nB,) sample means of Gᵀv and vᵀHv.
      m1_se, m2_se: (nB,) standard errors of those means (sample std-dev / √n).
      cov12: (nB,) covariance of the two means (sample covariance / n).
      n_samples: samples per batch size (the same samples for every B).
      update: "sign" or "sgd".  backend: the backend that ran.  seed: the Philox seed.
    """

    batch_sizes: NDArray[np.float64]
    m1: NDArray[np.float64]
    m2: NDArray[np.float64]
    m1_se: NDArray[np.float64]
    m2_se: NDArray[np.float64]
    cov12: NDArray[np.float64]
    n_samples: int
    update: str
    backend: str
    seed: int

    def optimal_lr(self) -> NDArray[np.float64]:
        """ε_opt(B) = m1/m2, the maximiser of E[ΔL](ε) (Lemma 1, Eq. 7), (nB,)."""
        return self.m1 / self.m2

    def optimal_lr_se(self) -> NDArray[np.float64]:
        """Delta-method standard error of m1/m2, using the m1–m2 covariance, (nB,).

        Var(m1/m2) ≈ (m1/m2)² (Var m1/m1² + Var m2/m2² − 2 Cov(m1, m2)/(m1 m2))
        (:func:`theory.stats.ratio_se`); first order in 1/n, accurate when m2_se ≪ |m2|.

        Examples:
          >>> m = Moments(np.array([1.0]), np.array([1.0]), np.array([2.0]), np.array([0.1]),
          ...             np.zeros(1), np.zeros(1), 10, "sgd", "reference", 0)
          >>> m.optimal_lr_se().tolist()
          [0.05]
        """
        return ratio_se(self.m1, self.m2, self.m1_se, self.m2_se, self.cov12)

    def optimal_gain(self) -> NDArray[np.float64]:
        """ΔL_opt(B) = ½ m1²/m2 (Lemma 1), (nB,)."""
        return 0.5 * self.m1**2 / self.m2

    def optimal_gain_se(self) -> NDArray[np.float64]:
        """Delta-method standard error of ΔL_opt = ½ m1²/m2, (nB,).

        Relative variance (2 se1/m1)² + (se2/m2)² − 4 Cov(m1, m2)/(m1 m2), first order in 1/n.

        Examples:
          >>> m = Moments(np.array([1.0]), np.array([2.0]), np.array([1.0]), np.array([0.1]),
          ...             np.zeros(1), np.zeros(1), 10, "sgd", "reference", 0)
          >>> m.optimal_gain_se().tolist()  # ΔL = 2, relative SE 2·0.1/2
          [0.2]
        """
        rel = (
            (2.0 * self.m1_se / self.m1) ** 2
            + (self.m2_se / self.m2) ** 2
            - 4.0 * self.cov12 / (self.m1 * self.m2)
        )
        return np.abs(self.optimal_gain()) * np.sqrt(np.maximum(rel, 0.0))

    def expected_gain(self, lrs: ArrayLike) -> NDArray[np.float64]:
        """E[ΔL](ε) = ε m1 − ½ ε² m2 on a learning-rate grid: the (nB, nLR) table.

        Args:
          lrs: learning rates ε, scalar or 1-D, finite.

        Returns:
          (nB, nLR) array; row b is batch size ``batch_sizes[b]``.

        Examples:
          >>> m = Moments(np.array([1.0]), np.array([2.0]), np.array([4.0]), np.zeros(1),
          ...             np.zeros(1), np.zeros(1), 10, "sgd", "reference", 0)
          >>> m.expected_gain([0.5]).tolist()
          [[0.5]]
        """
        e = _lrs(lrs)
        return e[None, :] * self.m1[:, None] - 0.5 * e[None, :] ** 2 * self.m2[:, None]

    def expected_gain_se(self, lrs: ArrayLike) -> NDArray[np.float64]:
        """Standard error of :meth:`expected_gain`, (nB, nLR).

        √(ε² Var m1 + ¼ ε⁴ Var m2 − ε³ Cov(m1, m2)), exact for a linear function of the means.
        """
        e = _lrs(lrs)[None, :]
        var = (
            e**2 * self.m1_se[:, None] ** 2
            + 0.25 * e**4 * self.m2_se[:, None] ** 2
            - e**3 * self.cov12[:, None]
        )
        return np.sqrt(np.maximum(var, 0.0))


def _lrs(lrs: ArrayLike) -> NDArray[np.float64]:
    try:
        e = np.atleast_1d(np.asarray(lrs, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lrs must be a number or 1-D array of numbers; got {lrs!r}") from exc
    if e.ndim != 1 or e.size == 0 or not np.all(np.isfinite(e)):
        raise ValueError(f"lrs must be a non-empty finite scalar or 1-D array; got {lrs!r}")
    return e


def _check_int(x: object, name: str, lo: int, hi: int | None = None) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {name}={x!r}")
    v = int(x)
    if v < lo or (hi is not None and v >= hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi})"
        raise ValueError(f"{name} must be {rng}; got {name}={x!r}")
    return v


def from_shifted_sums(
    sums: NDArray[np.float64], k1: NDArray[np.float64], k2: NDArray[np.float64], n: int
) -> tuple[NDArray[np.float64], ...]:
    """(m1, m2, m1_se, m2_se, cov12) from Σd1, Σd2, Σd1², Σd2², Σd1d2 (d = x − K) over n samples.

    Sample (co)variances with ddof = 1: (Σd_a d_b − Σd_a Σd_b / n)/(n − 1); the means' SEs are
    √(var/n), their covariance cov/n.
    """
    s1, s2, s11, s22, s12 = (sums[:, j] for j in range(5))
    m1 = k1 + s1 / n
    m2 = k2 + s2 / n
    v1 = np.maximum(s11 - s1 * s1 / n, 0.0) / (n - 1)
    v2 = np.maximum(s22 - s2 * s2 / n, 0.0) / (n - 1)
    c12 = (s12 - s1 * s2 / n) / (n - 1)
    return m1, m2, np.sqrt(v1 / n), np.sqrt(v2 / n), c12 / n


def update_moments(
    problem: QuadraticProblem,
    batch_sizes: ArrayLike,
    n_samples: int,
    *,
    update: str = "sign",
    seed: int,
    backend: str = "auto",
    first_sample: int = 0,
) -> Moments:
    """Monte Carlo m1 = E[Gᵀv] and m2 = E[vᵀHv] for v = sign(G_est) or G_est, every B at once.

    G_est = μ + (σ ⊙ z + W ζ)/√B with z ~ N(0, I_d), ζ ~ N(0, I_k); the normals of sample s
    come from Philox4x32-10 keyed by (seed, s, coordinate) (see :mod:`kernels.philox`) and are
    shared by all batch sizes. Per sample, x1 = μᵀv and x2 = Σ h_i v_i² + |Uᵀv|² (for sign
    Σ h_i + |Uᵀv|²); the results are their means over samples, with float64 accumulation.

    Args:
      problem: the quadratic problem (:class:`kernels.QuadraticProblem`).
      batch_sizes: B, positive scalar or 1-D array (need not be integers or sorted).
      n_samples: number of Monte Carlo samples, ≥ 2 (for a standard error) and < 2⁶³.
      update: "sign" (Adam with β1 = β2 = 0) or "sgd".
      seed: Philox seed, an integer in [0, 2⁶⁴).
      backend: "auto" (cuda if cupy sees a GPU and the kernels take the problem's ranks,
        else numba), "reference", "numba" or "cuda".
      first_sample: index of the first sample drawn (disjoint ranges give independent
        estimates that can be pooled; the same range reproduces the same numbers).

    Returns:
      :class:`Moments` with arrays over ``batch_sizes`` (always 1-D).

    Raises:
      ValueError: a bad argument (named in the message).  RuntimeError: ``backend="cuda"``
      without cupy or a GPU (the message says which).

    Examples:
      >>> p = QuadraticProblem([1.0, 0.5], [1.0, 2.0], [1.0, 1.0])
      >>> m = update_moments(p, [1, 100], 256, update="sgd", seed=0, backend="reference")
      >>> m.m1.shape
      (2,)
    """
    if not isinstance(problem, QuadraticProblem):
        raise ValueError(
            f"problem must be a kernels.QuadraticProblem; got {type(problem).__name__}"
        )
    b = np.atleast_1d(as_batch_sizes(batch_sizes, "batch_sizes"))
    n = _check_int(n_samples, "n_samples", 2, 2**63)  # numba takes it as int64
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}; got update={update!r}")
    seed = _check_int(seed, "seed", 0, 2**64)
    first = _check_int(first_sample, "first_sample", 0)
    if first + n > 2**64:
        raise ValueError(f"first_sample + n_samples must be <= 2**64; got {first + n}")
    name = _backend.resolve(backend)
    if name == "cuda" and backend == "auto":
        from kernels import cuda_backend

        if not cuda_backend.supports(problem, update):  # too much shared memory: CPU instead
            name = "numba" if _backend.has_numba() else "reference"
    k1, k2 = centring(problem, b, update)
    if name == "reference":
        from kernels import reference

        x1, x2 = reference.per_sample(problem, b, n, update, seed, first)
        c12 = np.sum((x1 - x1.mean(0)) * (x2 - x2.mean(0)), axis=0) / (n - 1)
        return Moments(
            b,
            x1.mean(0),
            x2.mean(0),
            x1.std(0, ddof=1) / np.sqrt(n),
            x2.std(0, ddof=1) / np.sqrt(n),
            c12 / n,
            n,
            update,
            name,
            seed,
        )
    if name == "numba":
        from kernels import numba_backend as impl
    else:
        from kernels import cuda_backend as impl
    sums = impl.shifted_sums(problem, b, n, update, seed, k1, k2, first)
    return Moments(b, *from_shifted_sums(sums, k1, k2, n), n, update, name, seed)
