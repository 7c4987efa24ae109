"""Small statistics used wherever a measured number carries an interval.

One home for: the standard error of a mean, the delta-method standard error of a ratio, the
refined argmax of a curve on a log grid (with censoring at the grid's edges) and percentile
bootstrap intervals. Pure numpy; every function checks its inputs at the door.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Peak",
    "bootstrap_interval",
    "mean_se",
    "ratio_se",
    "ratio_se_paired",
    "refined_argmax",
]


def mean_se(x: ArrayLike, axis: int = -1) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and its standard error s/√n along ``axis`` (NaNs ignored; SE is NaN for n < 2).

    Examples:
      >>> m, se = mean_se([1.0, 2.0, 3.0])
      >>> float(m), round(float(se), 6)
      (2.0, 0.57735)
    """
    a = np.asarray(x, dtype=np.float64)
    n = np.sum(np.isfinite(a), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.nanmean(np.where(np.isfinite(a), a, np.nan), axis=axis) if a.size else np.nan
        sd = np.nanstd(np.where(np.isfinite(a), a, np.nan), axis=axis, ddof=1) if a.size else np.nan
        se = np.where(n >= 2, sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return np.asarray(m, dtype=np.float64), np.asarray(se, dtype=np.float64)


def ratio_se(
    a: ArrayLike, b: ArrayLike, se_a: ArrayLike, se_b: ArrayLike, cov_ab: ArrayLike = 0.0
) -> NDArray[np.float64]:
    """Delta-method standard error of a/b from the means' SEs and covariance.

    Var(a/b) ≈ (se_a² − 2 r cov + r² se_b²)/b², r = a/b; first order in 1/n, accurate when
    se_b ≪ |b|.

    Examples:
      >>> float(ratio_se(1.0, 2.0, 0.1, 0.0))
      0.05
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    se_a, se_b = np.asarray(se_a, dtype=np.float64), np.asarray(se_b, dtype=np.float64)
    cov = np.asarray(cov_ab, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = a / b
        var = (se_a**2 - 2.0 * r * cov + r**2 * se_b**2) / b**2
    return np.sqrt(np.maximum(var, 0.0))


def ratio_se_paired(
    num: ArrayLike,
    den: ArrayLike,
    num_off: float = 0.0,
    den_off: float = 0.0,
    den_sign: float = 1.0,
) -> float:
    """Delta-method SE of (num_off + mean num)/(den_off + den_sign·mean den) from paired samples.

    ``num`` and ``den`` are per-sample values of the same draws (e.g. Hutchinson probes).
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 1 or num.size < 2:
        raise ValueError(
            f"num and den must be paired 1-D samples of >= 2; got {num.shape=}, {den.shape=}"
        )
    a, c = num_off + num.mean(), den_off + den_sign * den.mean()
    if c == 0:
        return float("inf")
    ga, gc = 1.0 / c, -den_sign * a / c**2
    cov = np.cov(np.vstack([num, den]), ddof=1) / num.size
    var = ga**2 * cov[0, 0] + gc**2 * cov[1, 1] + 2 * ga * gc * cov[0, 1]
    return float(np.sqrt(max(var, 0.0)))


@dataclass(frozen=True)
class Peak:
    """The maximiser of a curve on a grid.

    ``x``: the refined maximiser (the vertex of a parabola in log x through the argmax and its
    neighbours, clipped to their span); ``y``: the curve there; ``index``: the grid argmax;
    ``censored``: "low" / "high" when the argmax is at the first / last grid point (the true
    optimum may lie beyond the grid), else "".
    """

    x: float
    y: float
    index: int
    censored: str

    @property
    def interior(self) -> bool:
        return not self.censored


def refined_argmax(x: ArrayLike, y: ArrayLike, *, log: bool = True) -> Peak:
    """Maximiser of y(x) on an ascending grid, refined by a parabola through three points.

    Args:
      x: ascending grid (positive if ``log``).
      y: values; NaN entries are ignored.
      log: fit the parabola in log x (learning rates, batch sizes).

    Returns:
      :class:`Peak`; at a grid edge the edge point with ``censored`` set.

    Examples:
      >>> p = refined_argmax([1.0, 2.0, 4.0, 8.0], [0.0, 1.0, 1.0, 0.0])
      >>> round(p.x, 6), p.censored
      (2.828427, '')
      >>> refined_argmax([1.0, 2.0], [1.0, 0.0]).censored
      'low'
    """
    xs = np.asarray(x, dtype=np.float64)
    v = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != v.shape or xs.size == 0:
        raise ValueError(f"x and y must be 1-D of one length >= 1; got {xs.shape=}, {v.shape=}")
    if np.any(np.diff(xs) <= 0) or (log and np.any(xs <= 0)):
        raise ValueError("x must be strictly ascending (and positive for a log grid)")
    if not np.any(np.isfinite(v)):
        raise ValueError("y has no finite value")
    i = int(np.nanargmax(np.where(np.isfinite(v), v, -np.inf)))
    if i == 0 or i == xs.size - 1:
        return Peak(float(xs[i]), float(v[i]), i, "low" if i == 0 else "high")
    t = np.log(xs[i - 1 : i + 2]) if log else xs[i - 1 : i + 2]
    w = v[i - 1 : i + 2]
    if not np.all(np.isfinite(w)):
        return Peak(float(xs[i]), float(v[i]), i, "")
    a2, a1, a0 = np.polyfit(t, w, 2)
    if not a2 < 0:
        return Peak(float(xs[i]), float(v[i]), i, "")
    tv = float(np.clip(-a1 / (2 * a2), t[0], t[2]))
    yv = float(a2 * tv**2 + a1 * tv + a0)
    return Peak(float(np.exp(tv)) if log else tv, yv, i, "")


def bootstrap_interval(
    stat: Callable[[NDArray[np.int64]], float],
    n: int,
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    min_valid: float = 0.5,
) -> tuple[float, float, int]:
    """Percentile bootstrap interval of a statistic of ``n`` resampled units.

    Args:
      stat: maps an index array (a resample of 0..n-1 with replacement) to the statistic;
        it may return NaN (a resample where the statistic is undefined).
      n: number of units (seeds, batch sizes ...); >= 2.
      level: two-sided coverage.
      min_valid: share of resamples that must give a finite statistic, else (NaN, NaN).

    Returns:
      ``(lo, hi, n_valid)``.

    Examples:
      >>> x = np.arange(10.0)
      >>> lo, hi, k = bootstrap_interval(lambda i: float(x[i].mean()), 10, n_boot=200)
      >>> bool(lo < 4.5 < hi), k
      (True, 200)
    """
    if n < 2:
        raise ValueError(f"a bootstrap needs n >= 2 units; got {n=}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level=}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10; got {n_boot=}")
    rng = np.random.default_rng(seed)
    vals = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=np.float64)
    ok = vals[np.isfinite(vals)]
    if ok.size < min_valid * n_boot:
        return float("nan"), float("nan"), int(ok.size)
    q = (1 - level) / 2
    return float(np.quantile(ok, q)), float(np.quantile(ok, 1 - q)), int(ok.size)
