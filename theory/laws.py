"""The batch-size → learning-rate laws: one registry for the fits, the advice and the report.

Three laws from theory, each with two free parameters (B_noise, ε_max), and three rules
practitioners use, each with none (they scale the best learning rate ε₀ measured at the
nearest batch size B₀, nearest in log B):

=============== ============================================= ===================================
name            ε(B)                                          source
=============== ============================================= ===================================
``adam``        ε_max / (½ (√(B_noise/B) + √(B/B_noise)))     surge law, Eq. 13 (Theorem 3)
``sgd``         ε_max / (1 + B_noise/B)                       McCandlish Eq. 2.7 (Eq. 24, α = 1)
``sgd_sqrt``    ε_max / √(1 + B_noise/B)                      Eq. 24, α = 0.5
``constant``    ε₀                                            keep the learning rate
``sqrt_rule``   ε₀ √(B/B₀)                                    square-root scaling (Adam)
``linear_rule`` ε₀ B/B₀                                       linear scaling (SGD)
=============== ============================================= ===================================

The theory laws' parameters are found in one of two ways:

* the paper's (:func:`eps_max_given_b_noise`): B_noise from the steps–examples fit (Eq. 22,
  :func:`theory.efficiency.fit_b_noise`), then ε_max as the mean over the measured points of
  the law inverted at each (Eq. 23 for ``adam``, Eq. 24 for ``sgd`` / ``sgd_sqrt``);
* from the best learning rates alone (:func:`fit`): least squares in log learning rate over
  (log B_noise, log ε_max).

=============== ============ ================================================================
code            symbol       meaning
=============== ============ ================================================================
``B``           B            batch size(s) to predict at
``b_noise``     B_noise      theory laws: the peak (``adam``) or the knee (``sgd``, ``sgd_sqrt``)
``eps_max``     ε_max        theory laws: the peak value (``adam``) or the B → ∞ limit
``b_ref``       B₀           baselines: the measured batch size nearest to B
``lr_ref``      ε₀           baselines: the best learning rate measured at B₀
=============== ============ ================================================================

References:
  Li et al. 2024 (arXiv 2405.14578), Eqs. 13, 23, 24; McCandlish et al. 2018 (arXiv
  1812.06162), Eq. 2.7; Malladi et al. 2022 (square-root rule for Adam); Goyal et al. 2017
  (linear scaling rule for SGD).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from theory.efficiency import eps_max_adam, eps_max_sgd, sgd_form_lr
from theory.sign import surge_lr

__all__ = [
    "BASELINES",
    "LAWS",
    "THEORY",
    "Law",
    "LawFit",
    "baseline_lr",
    "eps_max_given_b_noise",
    "fit",
    "fit_profile",
    "get",
    "law_lr",
    "nearest_batch_size",
]

#: A least-squares fit searches B_noise within [min B / 10⁴, max B · 10⁴]; a fit that ends at
#: that box did not locate B_noise (e.g. a surge law on points that never turn down).
B_NOISE_BOX = 1e4


@dataclass(frozen=True)
class Law:
    """One batch-size → learning-rate law.

    Attributes:
      name: registry key (also the suffix of the fit tables' columns, ``fit_err_<name>``).
      label: a short name for legends and reports.
      description: one line: the curve.
      fitting: one line: how its free parameters are found.
      n_free: free parameters fitted to the data (2 for the theory laws, 0 for the baselines).
      exponent: baselines: ε ∝ B^exponent from the anchor; theory laws: NaN.
    """

    name: str
    label: str
    description: str
    fitting: str
    n_free: int
    exponent: float = math.nan
    _curve: Callable[..., object] | None = field(default=None, repr=False, compare=False)
    _eps_max: Callable[..., float] | None = field(default=None, repr=False, compare=False)

    @property
    def is_baseline(self) -> bool:
        """True for the practitioners' rules (no free parameter; scaled from a measured B)."""
        return self.n_free == 0

    def lr(self, B: ArrayLike, eps_max: float, b_noise: float) -> NDArray[np.float64] | float:
        """The theory law's curve at ``B`` (float for scalar ``B``).

        Examples:
          >>> LAWS["adam"].lr(100.0, 1e-3, 100.0)  # the peak: ε(B_noise) = ε_max
          0.001
        """
        if self._curve is None:
            raise ValueError(
                f"the {self.name} rule has no (eps_max, b_noise) curve; use baseline_lr"
            )
        return self._curve(B, eps_max, b_noise)  # type: ignore[return-value]

    def eps_max(self, B: ArrayLike, lr: ArrayLike, b_noise: float) -> float:
        """ε_max of the theory law from measured best lrs at a given B_noise (Eq. 23 / 24)."""
        if self._eps_max is None:
            raise ValueError(f"the {self.name} rule has no eps_max")
        return self._eps_max(B, lr, b_noise)


def _scaled(exponent: float) -> Law:
    names = {0.0: "constant", 0.5: "sqrt_rule", 1.0: "linear_rule"}
    labels = {
        0.0: "constant lr",
        0.5: "square-root rule",
        1.0: "linear rule",
    }
    curves = {0.0: "ε(B) = ε₀", 0.5: "ε(B) = ε₀ √(B/B₀)", 1.0: "ε(B) = ε₀ B/B₀"}
    return Law(
        name=names[exponent],
        label=labels[exponent],
        description=f"{curves[exponent]}, from the best lr ε₀ at the nearest measured B₀",
        fitting="none: B₀ is the measured batch size nearest in log B, ε₀ its best lr",
        n_free=0,
        exponent=exponent,
    )


#: The registry, theory laws first.
LAWS: dict[str, Law] = {
    "adam": Law(
        "adam",
        "Adam surge law (Eq. 13/23)",
        "ε(B) = ε_max / (½(√(B_noise/B) + √(B/B_noise))): rises as √B, peaks at B_noise, falls",
        "B_noise from the S–E fit and ε_max by Eq. 23, or both by least squares in log lr",
        2,
        _curve=surge_lr,
        _eps_max=eps_max_adam,
    ),
    "sgd": Law(
        "sgd",
        "SGD law, α=1 (Eq. 24)",
        "ε(B) = ε_max / (1 + B_noise/B): rises linearly, saturates at ε_max",
        "B_noise from the S–E fit and ε_max by Eq. 24 (α = 1), or both by least squares in log lr",
        2,
        _curve=lambda B, m, n: sgd_form_lr(B, m, n, 1.0),
        _eps_max=lambda B, e, n: eps_max_sgd(B, e, n, 1.0),
    ),
    "sgd_sqrt": Law(
        "sgd_sqrt",
        "α=0.5 form (Eq. 24)",
        "ε(B) = ε_max / √(1 + B_noise/B): rises as √B, saturates at ε_max",
        "B_noise from the S–E fit and ε_max by Eq. 24 (α = 0.5), or both by least squares",
        2,
        _curve=lambda B, m, n: sgd_form_lr(B, m, n, 0.5),
        _eps_max=lambda B, e, n: eps_max_sgd(B, e, n, 0.5),
    ),
    "constant": _scaled(0.0),
    "sqrt_rule": _scaled(0.5),
    "linear_rule": _scaled(1.0),
}

#: The theory laws (two free parameters each) and the baselines (none), in registry order.
THEORY: tuple[str, ...] = tuple(k for k, v in LAWS.items() if not v.is_baseline)
BASELINES: tuple[str, ...] = tuple(k for k, v in LAWS.items() if v.is_baseline)


def get(name: str) -> Law:
    """The law called ``name``; a ValueError lists the registry otherwise.

    Examples:
      >>> get("sgd").n_free
      2
    """
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"law must be one of {', '.join(LAWS)}; got {name!r}") from None


def law_lr(name: str, B: ArrayLike, eps_max: float, b_noise: float) -> NDArray[np.float64] | float:
    """The curve of theory law ``name`` at ``B`` (scalar in, float out).

    Examples:
      >>> round(law_lr("sgd_sqrt", 8.0, 1.0, 8.0), 12)  # 1/√2
      0.707106781187
      >>> law_lr("sgd", 8.0, 1.0, 8.0)
      0.5
    """
    return get(name).lr(B, eps_max, b_noise)


def eps_max_given_b_noise(name: str, B: ArrayLike, lr: ArrayLike, b_noise: float) -> float:
    """ε_max of theory law ``name`` at a given B_noise: the mean of the law inverted per point.

    ``adam``: Eq. 23, mean of ε_k · ½(√(B_noise/B_k) + √(B_k/B_noise)); ``sgd`` / ``sgd_sqrt``:
    Eq. 24, mean of ε_k (1 + B_noise/B_k)^α with α = 1 / 0.5.

    Examples:
      >>> eps_max_given_b_noise("sgd", [8.0, 16.0], [0.5, 2 / 3], 8.0)  # both on ε_max = 1
      1.0
    """
    return get(name).eps_max(B, lr, b_noise)


def check_points(B: ArrayLike, lr: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(batch sizes, lrs) as 1-D float arrays of one length, all positive and finite."""
    b = np.asarray(B, dtype=np.float64).reshape(-1)
    e = np.asarray(lr, dtype=np.float64).reshape(-1)
    if b.size == 0:
        raise ValueError("no (batch_size, lr) points given")
    if b.shape != e.shape:
        raise ValueError(f"batch sizes and lrs must have one length; got {b.size} and {e.size}")
    if not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(f"batch sizes must be positive and finite; got {b.tolist()}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"learning rates must be positive and finite; got {e.tolist()}")
    return b, e


def baseline_lr(
    name: str, B: ArrayLike, B_meas: ArrayLike, lr_meas: ArrayLike
) -> NDArray[np.float64] | float:
    """A baseline's prediction at ``B`` from measured best lrs: ε₀ (B/B₀)^p.

    B₀ is the measured batch size nearest to B in log B (the smaller of two equally near), ε₀
    the geometric mean of the lrs measured there; p = 0, ½, 1 for ``constant``,
    ``sqrt_rule``, ``linear_rule``.

    Args:
      name: a baseline of :data:`BASELINES`.
      B: batch size(s) to predict at.
      B_meas, lr_meas: the measured (batch size, best lr) points.

    Returns:
      The predicted learning rate(s) (float for scalar ``B``).

    Examples:
      >>> round(baseline_lr("sqrt_rule", 32.0, [16.0, 256.0], [0.01, 0.02]), 9)
      0.014142136
      >>> baseline_lr("linear_rule", 512.0, [16.0, 256.0], [0.01, 0.02])
      0.04
    """
    law = get(name)
    if not law.is_baseline:
        raise ValueError(f"{name} is a theory law; use law_lr or fit")
    b, e = check_points(B_meas, lr_meas)
    target = np.asarray(B, dtype=np.float64)
    if not np.all(np.isfinite(target)) or np.any(target <= 0):
        raise ValueError(f"batch size must be positive and finite; got B={B!r}")
    ub = np.unique(b)
    ref = np.array([math.exp(float(np.mean(np.log(e[b == u])))) for u in ub])
    t = np.atleast_1d(target)
    k = _nearest(t, ub)
    out = ref[k] * (t / ub[k]) ** law.exponent
    return float(out[0]) if target.ndim == 0 else out.reshape(target.shape)


def _nearest(t: NDArray[np.float64], ub: NDArray[np.float64]) -> NDArray[np.int64]:
    # equal log distances (B = 32 between 16 and 64) differ by rounding: treat distances
    # within a few ulps as equal, and take the smaller batch size
    d = np.abs(np.log(t)[:, None] - np.log(ub)[None, :])
    tie = d <= d.min(axis=1, keepdims=True) * (1 + 1e-12) + 1e-12
    return np.argmax(tie, axis=1)


def nearest_batch_size(B: ArrayLike, B_meas: ArrayLike) -> NDArray[np.float64] | float:
    """The measured batch size B₀ the baselines scale from: nearest to B in log B.

    Of two equally near, the smaller.

    Examples:
      >>> nearest_batch_size(32.0, [16.0, 64.0]), nearest_batch_size(40.0, [16.0, 64.0])
      (16.0, 64.0)
    """
    t = np.asarray(B, dtype=np.float64)
    ub = np.unique(np.asarray(B_meas, dtype=np.float64))
    if ub.size == 0 or np.any(~np.isfinite(ub)) or np.any(ub <= 0):
        raise ValueError(f"measured batch sizes must be positive and finite; got {B_meas!r}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"batch size must be positive and finite; got B={B!r}")
    out = ub[_nearest(np.atleast_1d(t), ub)]
    return float(out[0]) if t.ndim == 0 else out.reshape(t.shape)


@dataclass(frozen=True)
class LawFit:
    """A theory law fitted to (B, lr) points by :func:`fit`.

    Attributes:
      law: registry name.
      b_noise, eps_max: the fitted parameters.
      rms: RMS residual in natural-log lr; NaN when the points cannot support it (no more
        distinct batch sizes than free parameters: the curve passes through them exactly).
      n_batch_sizes: distinct batch sizes fitted.
      at_bound: B_noise ended at the edge of its search box: the points do not locate it.
    """

    law: str
    b_noise: float
    eps_max: float
    rms: float
    n_batch_sizes: int
    at_bound: bool

    @property
    def supported(self) -> bool:
        """True when there are more distinct batch sizes than free parameters."""
        return self.n_batch_sizes > get(self.law).n_free

    def predict(self, B: ArrayLike) -> NDArray[np.float64] | float:
        """The fitted curve at ``B``."""
        return law_lr(self.law, B, self.eps_max, self.b_noise)


def _fit_inputs(
    name: str, B: ArrayLike, lr: ArrayLike
) -> tuple[Law, NDArray[np.float64], NDArray[np.float64], int, float, float]:
    """The checked inputs of a fit: ``(law, B, log lr, distinct B, log B_noise box lo, hi)``."""
    law = get(name)
    if law.is_baseline:
        raise ValueError(f"{name} has no free parameters to fit; use baseline_lr")
    b, e = check_points(B, lr)
    n_b = int(np.unique(b).size)
    if n_b < 2:
        raise ValueError(
            f"need points at >= 2 distinct batch sizes to fit (B_noise, eps_max); "
            f"got {np.unique(b).tolist()}"
        )
    lb = np.log(b)
    return (
        law,
        b,
        np.log(e),
        n_b,
        lb.min() - math.log(B_NOISE_BOX),
        lb.max() + math.log(B_NOISE_BOX),
    )


def fit(name: str, B: ArrayLike, lr: ArrayLike, *, start: LawFit | None = None) -> LawFit:
    """Fit theory law ``name`` to best lrs: least squares in log lr over (log B_noise, log ε_max).

    Minimises Σ_k (log ε(B_k; B_noise, ε_max) − log ε_k)² with B_noise confined to
    [min B / 10⁴, max B · 10⁴] (``at_bound`` flags a fit that ran into that box). Several
    starting points are tried, unless ``start`` (e.g. the full-data fit, for bootstrap refits)
    is given.

    Args:
      name: a theory law of :data:`THEORY`.
      B, lr: the measured points (at least 2 distinct batch sizes).
      start: a previous fit to start from.

    Returns:
      :class:`LawFit`.

    Examples:
      >>> from theory.sgd import optimal_lr
      >>> B = [4.0, 16.0, 64.0, 256.0]
      >>> f = fit("sgd", B, optimal_lr(B, 0.5, 30.0))
      >>> round(f.b_noise, 4), round(f.eps_max, 6), f.supported
      (30.0, 0.5, True)
    """
    law, b, le, n_b, lo, hi = _fit_inputs(name, B, lr)
    lb = np.log(b)

    def resid(p: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.log(law.lr(b, math.exp(p[1]), math.exp(p[0]))) - le

    k = int(np.argmax(le))
    if start is not None:
        starts = [(math.log(start.b_noise), math.log(start.eps_max))]
    else:
        starts = [
            (lb[k], le[k]),
            (float(np.median(lb)), le.max() + math.log(2.0)),
            (lb.max() + 1.0, le.max() + 1.0),
            (lb.min() - 1.0, le.max()),
        ]
    best = None
    for bn0, em0 in starts:
        x0 = np.array([np.clip(bn0, lo + 1e-6, hi - 1e-6), em0])
        r = least_squares(resid, x0, bounds=([lo, -np.inf], [hi, np.inf]), method="trf")
        if best is None or r.cost < best.cost:
            best = r
    assert best is not None
    at_bound = bool(best.x[0] <= lo + 1e-3 or best.x[0] >= hi - 1e-3)
    rms = float(np.sqrt(np.mean(best.fun**2))) if n_b > law.n_free else math.nan
    return LawFit(name, float(math.exp(best.x[0])), float(math.exp(best.x[1])), rms, n_b, at_bound)


def fit_profile(name: str, B: ArrayLike, lr: ArrayLike, *, grid: int = 161) -> LawFit:
    """The least-squares fit of :func:`fit`, by profiling out ε_max: cheap, for bootstrap refits.

    log lr = log ε_max + f(B; B_noise) for every theory law, so for a given B_noise the best
    log ε_max is the mean of log ε_k − f(B_k; B_noise) in closed form. The profile residual
    is scanned on ``grid`` log-spaced B_noise over the same box as :func:`fit` and the best
    point refined by a bounded scalar minimisation between its grid neighbours. It finds the
    global minimum of the profile on the box (up to the grid resolution separating two
    minima), where :func:`fit`'s multi-start local solver may stop at a local one, and with
    no iterative 2-D solve (``tests/test_theory_laws.py`` checks it against :func:`fit`).

    Examples:
      >>> from theory.sgd import optimal_lr
      >>> B = [4.0, 16.0, 64.0, 256.0]
      >>> f = fit_profile("sgd", B, optimal_lr(B, 0.5, 30.0))
      >>> round(f.b_noise, 4), round(f.eps_max, 6)
      (30.0, 0.5)
    """
    from scipy.optimize import minimize_scalar

    law, b, le, n_b, lo, hi = _fit_inputs(name, B, lr)

    # every theory law is a function of B / B_noise alone: one vectorised call for the grid
    def shapes(t: NDArray[np.float64]) -> NDArray[np.float64]:
        r = (b[None, :] / np.exp(t)[:, None]).ravel()
        return np.log(np.asarray(law.lr(r, 1.0, 1.0), dtype=np.float64)).reshape(t.size, -1)

    def costs_at(t: NDArray[np.float64]) -> NDArray[np.float64]:
        r = le[None, :] - shapes(t)
        return np.sum((r - r.mean(1, keepdims=True)) ** 2, axis=1)

    def cost(t: float) -> float:
        return float(costs_at(np.array([t]))[0])

    def shape(t: float) -> NDArray[np.float64]:
        return shapes(np.array([t]))[0]

    ts = np.linspace(lo, hi, grid)
    costs = costs_at(ts)
    k = int(np.argmin(costs))
    a, c = ts[max(k - 1, 0)], ts[min(k + 1, grid - 1)]
    r = minimize_scalar(cost, bounds=(a, c), method="bounded", options={"xatol": 1e-9})
    t = float(r.x) if r.fun <= costs[k] else float(ts[k])
    res = le - shape(t)
    log_eps = float(res.mean())
    at_bound = bool(t <= lo + 1e-3 or t >= hi - 1e-3)
    rms = float(np.sqrt(np.mean((res - log_eps) ** 2))) if n_b > law.n_free else math.nan
    return LawFit(name, float(math.exp(t)), float(math.exp(log_eps)), rms, n_b, at_bound)
