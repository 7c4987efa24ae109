"""Steps-examples trade-off and the ε_max estimators (Li et al. 2024 Eqs. 20-24, App. G).

(S/S_min − 1)(E/E_min − 1) = 1 with E = B·S; the critical batch size B_crit = E_min/S_min is
≈ B_noise. The linear form used for fitting (Eq. 22) is

    1/S = −B_noise · (1/E) + 1/S_min,

one (S, E) point per batch size, each at that batch size's best learning rate, all for the
same target loss.

=========== ========== ===============================================
code        symbol     meaning
=========== ========== ===============================================
``S``       S          optimiser steps to reach the target loss
``E``       E          examples processed to reach it, E = B·S
``s_min``   S_min      steps needed at B → ∞
``e_min``   E_min      examples needed at B → 0
``b_noise`` B_noise    fitted noise scale, = E_min / S_min
=========== ========== ===============================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from theory._checks import as_batch_sizes, as_positive_scalar, as_vector


def fit_b_noise(S: ArrayLike, E: ArrayLike) -> tuple[float, float]:
    """Least-squares fit of Eq. 22, 1/S = −B_noise/E + 1/S_min.

    Args:
      S: steps to target, one per batch size (> 0).
      E: examples to target, same length (> 0).

    Returns:
      ``(b_noise, s_min)``. ``s_min`` is ``inf`` when the fitted intercept is ≤ 0 (the points
      do not bend towards a finite minimum number of steps).

    Examples:
      >>> import numpy as np
      >>> B = np.array([8., 32., 128., 512.]); S = 100 * (1 + 64 / B); E = B * S
      >>> [round(v, 6) for v in fit_b_noise(S, E)]
      [64.0, 100.0]

    References:
      Li et al. 2024, Eq. 22 and Appendix G; McCandlish et al. 2018, Eq. 2.11.
    """
    s = as_vector(S, "S", positive=True)
    e = as_vector(E, "E", d=s.size, positive=True)
    if s.size < 2:
        raise ValueError(f"fit_b_noise needs at least 2 (S, E) points; got {s.size}")
    x, y = 1.0 / e, 1.0 / s
    if np.ptp(x) == 0:
        raise ValueError("E must take at least two distinct values to fit B_noise")
    slope, intercept = np.polyfit(x, y, 1)
    s_min = 1.0 / intercept if intercept > 0 else np.inf
    return float(-slope), float(s_min)


def steps_for_examples(E: ArrayLike, s_min: float, e_min: float) -> NDArray[np.float64]:
    """Solve Eq. 20, (S/S_min − 1)(E/E_min − 1) = 1, for S: S = S_min E / (E − E_min), E > E_min.

    Examples:
      >>> float(steps_for_examples(200.0, 100.0, 100.0))
      200.0

    References:
      Li et al. 2024, Eq. 20; McCandlish et al. 2018, Eq. 2.11.
    """
    e = np.asarray(E, dtype=np.float64)
    sm = as_positive_scalar(s_min, "s_min")
    em = as_positive_scalar(e_min, "e_min")
    if np.any(e <= em):
        raise ValueError(f"E must exceed E_min={em} (no batch size reaches the target sooner)")
    return sm * e / (e - em)


def steps_for_batch(B: ArrayLike, s_min: float, b_noise: float) -> NDArray[np.float64] | float:
    """S(B) = S_min (1 + B_noise/B), the trade-off of Eq. 20 written per batch size.

    Examples:
      >>> steps_for_batch(64.0, 100.0, 64.0)
      200.0

    References:
      Li et al. 2024, Eqs. 18-20 (S = S_min ΔL_max/ΔL_opt(B)).
    """
    b = as_batch_sizes(B)
    out = as_positive_scalar(s_min, "s_min") * (1.0 + as_positive_scalar(b_noise, "b_noise") / b)
    return out if out.ndim else float(out)


def eps_max_adam(B: ArrayLike, eps_opt: ArrayLike, b_noise: float) -> float:
    """Eq. 23: mean over grid points of ε_opt · ½(√(B_noise/B) + √(B/B_noise)).

    Examples:
      >>> round(eps_max_adam([4.0, 16.0], [0.8, 0.8], 8.0), 6)
      0.848528

    References:
      Li et al. 2024, Eq. 23.
    """
    b, eo, n = _grid(B, eps_opt, b_noise)
    return float(np.mean(eo * 0.5 * (np.sqrt(n / b) + np.sqrt(b / n))))


def eps_max_sgd(B: ArrayLike, eps_opt: ArrayLike, b_noise: float, alpha: float = 1.0) -> float:
    """Eq. 24: mean of ε_opt (1 + B_noise/B)^α; α = 1 is SGD's law, α = 0.5 the square-root form.

    Examples:
      >>> eps_max_sgd([8.0], [0.5], 8.0)
      1.0

    References:
      Li et al. 2024, Eq. 24.
    """
    b, eo, n = _grid(B, eps_opt, b_noise)
    a = as_positive_scalar(alpha, "alpha")
    return float(np.mean(eo * (1.0 + n / b) ** a))


def sgd_form_lr(
    B: ArrayLike, eps_max: float, b_noise: float, alpha: float = 1.0
) -> NDArray[np.float64] | float:
    """The SGD-style curve of Eq. 24: ε(B) = ε_max / (1 + B_noise/B)^α.

    Examples:
      >>> round(sgd_form_lr(8.0, 1.0, 8.0, 0.5), 12)
      0.707106781187

    References:
      Li et al. 2024, Eq. 24; McCandlish et al. 2018, Eq. 2.7 (α = 1).
    """
    b = as_batch_sizes(B)
    a = as_positive_scalar(alpha, "alpha")
    out = (
        as_positive_scalar(eps_max, "eps_max")
        / (1.0 + as_positive_scalar(b_noise, "b_noise") / b) ** a
    )
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class StepsFit:
    """A fit of S(B) = S_min (1 + B_crit/B) to steps-to-target (:func:`fit_steps_log`).

    Attributes:
      b_crit: B_crit = E_min/S_min, in the units of B (examples).
      s_min: S_min, the steps needed at B → ∞.
      residuals: log S_k − log S(B_k), natural log, one per point.
      rms: RMS of ``residuals``.
      at_bound: B_crit ended at the edge of its search range [min B/10⁴, max B·10⁴]: the
        points do not locate it (S does not bend within the measured batch sizes).
    """

    b_crit: float
    s_min: float
    residuals: NDArray[np.float64]
    rms: float
    at_bound: bool

    @property
    def e_min(self) -> float:
        """E_min = S_min · B_crit, the examples needed at B → 0."""
        return self.s_min * self.b_crit


def fit_steps_log(B: ArrayLike, S: ArrayLike) -> StepsFit:
    """Least-squares fit of log S = log S_min + log(1 + B_crit/B), in log steps.

    The same model as Eq. 22, fitted where its errors live: a run's steps-to-target has a
    roughly constant *relative* error, which Eq. 22's 1/S-against-1/E line weights by 1/S²
    (the small-batch points, with the most steps, count least). Here every point counts the
    same in log S. For a given B_crit the best log S_min is the mean of
    log S_k − log(1 + B_crit/B_k), so the fit is a search over log B_crit alone (a grid of 400
    points over [min B/10⁴, max B·10⁴], then a bounded Brent refinement).

    Args:
      B: batch sizes (> 0), at least 2 distinct.
      S: steps to the target at each (> 0).

    Returns:
      :class:`StepsFit`.

    Examples:
      >>> B = np.array([8., 32., 128., 512.]); f = fit_steps_log(B, 100 * (1 + 64 / B))
      >>> round(f.b_crit, 6), round(f.s_min, 6), f.at_bound
      (64.0, 100.0, False)

    References:
      Li et al. 2024, Eqs. 20-22; McCandlish et al. 2018, Eq. 2.11.
    """
    from scipy.optimize import minimize_scalar

    b = np.atleast_1d(as_batch_sizes(B))
    s = as_vector(np.atleast_1d(S), "S", d=b.size, positive=True)
    if np.unique(b).size < 2:
        raise ValueError(f"fit_steps_log needs >= 2 distinct batch sizes; got {b.tolist()}")
    ls = np.log(s)
    lo = math.log(b.min()) - math.log(1e4)
    hi = math.log(b.max()) + math.log(1e4)

    def resid(t: float) -> NDArray[np.float64]:
        shape = np.log1p(math.exp(t) / b)
        return ls - shape - np.mean(ls - shape)

    def cost(t: float) -> float:
        return float(np.sum(resid(t) ** 2))

    grid = np.linspace(lo, hi, 400)
    shapes = np.log1p(np.exp(grid)[:, None] / b[None, :])
    dev = ls[None, :] - shapes
    k = int(np.argmin(np.sum((dev - dev.mean(axis=1, keepdims=True)) ** 2, axis=1)))
    a, c = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    r = minimize_scalar(cost, bounds=(a, c), method="bounded", options={"xatol": 1e-12})
    t = float(r.x) if r.fun <= cost(grid[k]) else float(grid[k])
    res = resid(t)
    shape = np.log1p(math.exp(t) / b)
    s_min = float(np.exp(np.mean(ls - shape)))
    at_bound = bool(t <= lo + 1e-3 or t >= hi - 1e-3)
    return StepsFit(float(math.exp(t)), s_min, res, float(np.sqrt(np.mean(res**2))), at_bound)


def overhead_batch_size(b_crit: float, overhead: float = 0.2) -> float:
    """The batch size whose steps exceed perfect linear scaling by ``overhead`` (Zhang et al.).

    Zhang et al. (2024) call a batch size critical when the steps it needs are 20% more than
    linear scaling from small batches predicts, S(B) = (1 + overhead) · E_min/B. With
    S = S_min (1 + B_crit/B), E = B·S = E_min (1 + B/B_crit), so the condition
    E/E_min = 1 + overhead gives B = overhead · B_crit: at the S–E B_crit itself a run pays
    2× the minimum steps and 2× the minimum examples (overhead 100%).

    Args:
      b_crit: the S–E B_crit (> 0).
      overhead: the accepted extra steps over linear scaling (> 0; Zhang et al.: 0.2).

    Returns:
      overhead · B_crit.

    Examples:
      >>> overhead_batch_size(500.0)
      100.0

    References:
      Zhang et al. 2024 (arXiv 2410.21676), §2; McCandlish et al. 2018, Eq. 2.11.
    """
    return as_positive_scalar(overhead, "overhead") * as_positive_scalar(b_crit, "b_crit")


def _grid(B, eps_opt, b_noise):
    b = np.atleast_1d(as_batch_sizes(B))
    eo = as_vector(np.atleast_1d(eps_opt), "eps_opt", d=b.size, positive=True)
    return b, eo, as_positive_scalar(b_noise, "b_noise")
