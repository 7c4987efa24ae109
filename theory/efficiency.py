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


def _grid(B, eps_opt, b_noise):
    b = np.atleast_1d(as_batch_sizes(B))
    eo = as_vector(np.atleast_1d(eps_opt), "eps_opt", d=b.size, positive=True)
    return b, eo, as_positive_scalar(b_noise, "b_noise")
