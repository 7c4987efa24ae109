"""The best learning rate at a new batch size, for Adam and for SGD (``surgelab advise``).

The laws of :mod:`theory.laws` compete for the same measurements (best learning rate ε_k at
several batch sizes B_k):

* Adam / sign-like updates, the surge law (Li et al. 2024, Eq. 13):
  ε(B) = ε_max / (½ (√(B_noise/B) + √(B/B_noise))): rises as √B, peaks at B = B_noise,
  then FALLS;
* SGD, McCandlish et al. 2018 (Eq. 2.7): ε(B) = ε_max / (1 + B_noise/B): rises linearly,
  saturates at ε_max; and the α = 0.5 form ε_max / √(1 + B_noise/B);
* the practitioners' rules, for comparison: keep the lr of the nearest measured batch size,
  or scale it by √(B/B₀) or B/B₀.

Each theory law's (B_noise, ε_max) is fitted by least squares in log lr
(:func:`theory.laws.fit`), with a percentile bootstrap interval over the points
(:func:`theory.stats.bootstrap_interval`) and a leave-one-batch-size-out error that ranks every
law, baselines included, on the same held-out points. Or the parameters are given directly
(from ``surgelab validate estimate`` or a sweep's summary).

What the data cannot support is not reported: with no more batch sizes than a law's two free
parameters the curve passes through the points exactly, so there is no fit error, no
leave-one-out error and no interval (NaN, and a warning says so).

=============== ============ ===========================================================
code            symbol       meaning
=============== ============ ===========================================================
``batch_size``  B            the batch size to advise on
``lr_adam``     ε_opt(B)     surge-law prediction
``lr_sgd``      ε_opt(B)     SGD-law prediction (the same points fitted with McCandlish)
``b_noise_*``   B_noise      fitted noise scale (Adam: the peak; SGD: the knee)
``eps_max_*``   ε_max        fitted scale (Adam: the peak value; SGD: the B → ∞ limit)
``rms_*``       —            RMS residual in log lr of each law's fit (NaN: not supported)
``laws``        —            every law's prediction, interval, fit and leave-one-out error
=============== ============ ===========================================================

Pure: the command line (reading files, printing) is :mod:`surgelab.cmd_advise`; the helpers
``points_from_*`` / :func:`params_from_estimate` turn a result folder's already-read tables
into points or parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from theory import laws
from theory.laws import LawFit as Fit
from theory.laws import law_lr
from theory.stats import bootstrap_interval

__all__ = [
    "LAWS",
    "Advice",
    "Fit",
    "advise",
    "fit_law",
    "format_advice",
    "law_lr",
    "params_from_estimate",
    "points_from_best_table",
    "points_from_points_table",
    "points_from_summary",
]

#: The theory laws fitted to the points; ``adam`` and ``sgd`` have the flat keys of
#: :class:`Advice` (``lr_adam``, ``lr_sgd``, ...), every law is in ``Advice.laws``.
LAWS: tuple[str, ...] = laws.THEORY

#: Bootstrap resamples below this give quantiles of too few values to be an interval.
MIN_BOOT = 10


def fit_law(law: str, B: ArrayLike, lr: ArrayLike, start: Fit | None = None) -> Fit:
    """:func:`theory.laws.fit`: least squares in log lr over (log B_noise, log ε_max)."""
    return laws.fit(law, B, lr, start=start)


@dataclass(frozen=True)
class Advice:
    """A recommendation at ``batch_size`` (all learning rates in the units of the inputs).

    ``laws``: one dict per law that could be evaluated, in registry order, with ``law``,
    ``label``, ``lr``, ``lo``/``hi`` (interval; NaN when not supported), ``b_noise``,
    ``eps_max`` (theory laws), ``b_ref``/``lr_ref`` (baselines: the measured point scaled),
    ``rms`` and ``loo_err`` (RMS log-lr error of leave-one-batch-size-out predictions).
    """

    batch_size: float
    lr_adam: float
    lr_sgd: float
    interval_adam: tuple[float, float]
    interval_sgd: tuple[float, float]
    b_noise_adam: float
    eps_max_adam: float
    b_noise_sgd: float
    eps_max_sgd: float
    rms_adam: float
    rms_sgd: float
    n_points: int
    b_range: tuple[float, float] | None
    source: str
    ci: float
    warnings: list[str] = field(default_factory=list)
    laws: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists); non-finite floats are left for the writer."""
        d = asdict(self)
        d["interval_adam"] = list(self.interval_adam)
        d["interval_sgd"] = list(self.interval_sgd)
        d["b_range"] = None if self.b_range is None else list(self.b_range)
        return d


def _check_points(B: ArrayLike, lr: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    b = np.asarray(B, dtype=np.float64).reshape(-1)
    e = np.asarray(lr, dtype=np.float64).reshape(-1)
    if b.size == 0:
        raise ValueError("no (batch_size, lr) points given; need at least 2 batch sizes")
    if b.shape != e.shape:
        raise ValueError(f"batch_size and lr must have the same length; got {b.size} and {e.size}")
    if not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(f"batch sizes must be positive and finite; got {b.tolist()}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"learning rates must be positive and finite; got {e.tolist()}")
    if np.unique(b).size < 2:
        raise ValueError(
            f"need points at >= 2 distinct batch sizes to fit (B_noise, eps_max); "
            f"got {np.unique(b).tolist()}"
        )
    return b, e


def _positive(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number; got {name}={v!r}")
    return float(v)


def _loo(b: NDArray[np.float64], e: NDArray[np.float64], fits: Mapping[str, Fit]) -> dict:
    """Leave-one-batch-size-out RMS log-lr error of every law, on the same folds."""
    ub = np.unique(b)
    errs: dict[str, list[float]] = {name: [] for name in laws.LAWS}
    for u in ub:
        out, keep = b == u, b != u
        for name in laws.LAWS:
            if laws.LAWS[name].is_baseline:
                pred = float(laws.baseline_lr(name, u, b[keep], e[keep]))
            else:
                pred = float(fit_law(name, b[keep], e[keep], start=fits[name]).predict(u))
            errs[name] += list(math.log(pred) - np.log(e[out]))
    return {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in errs.items()}


def _intervals(
    b: NDArray[np.float64],
    e: NDArray[np.float64],
    target: float,
    fits: Mapping[str, Fit],
    *,
    n_boot: int,
    ci: float,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over the points of each theory law's prediction at ``target``."""

    def stat(law: str):
        def prediction(idx: NDArray[np.int64]) -> float:
            if np.unique(b[idx]).size < 2:
                return math.nan
            return float(fit_law(law, b[idx], e[idx], start=fits[law]).predict(target))

        return prediction

    out = {}
    for law in LAWS:  # one seed: every law sees the same resamples
        lo, hi, _ = bootstrap_interval(stat(law), b.size, n_boot=n_boot, level=ci, seed=seed)
        out[law] = (lo, hi)
    return out


def advise(
    batch_size: float,
    points: tuple[ArrayLike, ArrayLike] | None = None,
    *,
    b_noise: float | None = None,
    eps_max: float | None = None,
    b_noise_sgd: float | None = None,
    eps_max_sgd: float | None = None,
    n_boot: int = 200,
    ci: float = 0.9,
    seed: int = 0,
    source: str = "",
    notes: Sequence[str] = (),
) -> Advice:
    """Predict the best learning rate at ``batch_size`` by every law the inputs allow.

    Args:
      batch_size: the new batch size B (> 0).
      points: ``(B, lr)`` arrays of measured best learning rates; every law is fitted to them.
      b_noise, eps_max: the surge law's parameters, when no points are given.
      b_noise_sgd, eps_max_sgd: the SGD law's parameters (default: the same as Adam's).
      n_boot: bootstrap resamples of the points: 0 (no interval) or >= 10.
      ci: interval coverage, in (0, 1).
      seed: bootstrap generator seed.
      source: where the inputs came from (for the report).
      notes: warnings from reading the inputs, passed through.

    Returns:
      :class:`Advice`. Warnings: too few batch sizes for a fit error or interval, the target
      outside the measured batch sizes (extrapolation), B > B_noise for Adam (past the peak:
      "larger batches now need a SMALLER Adam learning rate"), or a fit whose B_noise ran to
      its bound.

    Examples:
      >>> a = advise(25.0, None, b_noise=100.0, eps_max=1e-3, b_noise_sgd=100.0, eps_max_sgd=1.0)
      >>> round(a.lr_adam, 12), round(a.lr_sgd, 12)  # 1e-3/(½(2 + ½)), 1/(1 + 4)
      (0.0008, 0.2)
    """
    ok = isinstance(batch_size, (int, float)) and not isinstance(batch_size, bool)
    if not (ok and math.isfinite(batch_size) and batch_size > 0):
        raise ValueError(f"batch size must be positive and finite; got {batch_size=}")
    target = float(batch_size)
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1); got {ci=}")
    if not (n_boot == 0 or n_boot >= MIN_BOOT):
        raise ValueError(f"n_boot must be 0 (no interval) or >= {MIN_BOOT}; got {n_boot=}")
    warnings: list[str] = list(notes)
    nan2 = (math.nan, math.nan)
    rows: list[dict[str, Any]] = []
    if points is not None:
        b, e = _check_points(*points)
        n_b = int(np.unique(b).size)
        fits = {law: fit_law(law, b, e) for law in LAWS}
        supported = n_b > max(laws.LAWS[law].n_free for law in LAWS)
        if supported:
            loo = _loo(b, e, fits)
            intervals = (
                _intervals(b, e, target, fits, n_boot=n_boot, ci=ci, seed=seed)
                if n_boot
                else {law: nan2 for law in LAWS}
            )
        else:
            loo = {name: math.nan for name in laws.LAWS}
            intervals = {law: nan2 for law in LAWS}
            warnings.append(
                f"only {n_b} batch sizes for the laws' 2 free parameters: each curve passes "
                f"through the points exactly, so there is no fit error, no leave-one-out error "
                f"and no interval; measure the best lr at >= 3 batch sizes"
            )
        b_range: tuple[float, float] | None = (float(b.min()), float(b.max()))
        n_points = int(b.size)
        if not b_range[0] <= target <= b_range[1]:
            warnings.append(
                f"batch size {target:g} lies outside the measured range "
                f"[{b_range[0]:g}, {b_range[1]:g}]: this is an extrapolation"
            )
        for law, f in fits.items():
            if f.at_bound:
                warnings.append(
                    f"the {law} law's B_noise ran to the edge of its search range "
                    f"({f.b_noise:.3g}): the points do not locate it"
                )
        for law, f in fits.items():
            rows.append(
                {
                    "law": law,
                    "label": laws.LAWS[law].label,
                    "lr": float(f.predict(target)),
                    "lo": intervals[law][0],
                    "hi": intervals[law][1],
                    "b_noise": f.b_noise,
                    "eps_max": f.eps_max,
                    "rms": f.rms,
                    "loo_err": loo[law],
                }
            )
        ref = laws.nearest_batch_size(target, b)
        for name in laws.BASELINES:
            rows.append(
                {
                    "law": name,
                    "label": laws.LAWS[name].label,
                    "lr": float(laws.baseline_lr(name, target, b, e)),
                    "lo": math.nan,
                    "hi": math.nan,
                    "b_ref": float(ref),
                    "lr_ref": float(laws.baseline_lr("constant", target, b, e)),
                    "loo_err": loo[name],
                }
            )
    else:
        if b_noise is None or eps_max is None:
            raise ValueError("give either points (batch_size, lr) or both b_noise and eps_max")
        bn, em = _positive("b_noise", b_noise), _positive("eps_max", eps_max)
        bs = _positive("b_noise_sgd", bn if b_noise_sgd is None else b_noise_sgd)
        es = _positive("eps_max_sgd", em if eps_max_sgd is None else eps_max_sgd)
        fits = {
            "adam": Fit("adam", bn, em, math.nan, 0, False),
            "sgd": Fit("sgd", bs, es, math.nan, 0, False),
        }
        intervals = {law: nan2 for law in fits}
        b_range, n_points = None, 0
        if b_noise_sgd is None:
            warnings.append(
                "no SGD parameters given: the SGD law uses the Adam law's "
                "(B_noise, eps_max); its learning rate is indicative only"
            )
        for law, f in fits.items():
            rows.append(
                {
                    "law": law,
                    "label": laws.LAWS[law].label,
                    "lr": float(f.predict(target)),
                    "lo": math.nan,
                    "hi": math.nan,
                    "b_noise": f.b_noise,
                    "eps_max": f.eps_max,
                    "rms": math.nan,
                    "loo_err": math.nan,
                }
            )
    fa, fs = fits["adam"], fits["sgd"]
    if target > fa.b_noise:
        warnings.append(
            f"B = {target:g} is past the Adam peak B_noise = {fa.b_noise:.3g}: "
            f"larger batches now need a SMALLER Adam learning rate"
        )
    return Advice(
        batch_size=target,
        lr_adam=float(fa.predict(target)),
        lr_sgd=float(fs.predict(target)),
        interval_adam=intervals["adam"],
        interval_sgd=intervals["sgd"],
        b_noise_adam=fa.b_noise,
        eps_max_adam=fa.eps_max,
        b_noise_sgd=fs.b_noise,
        eps_max_sgd=fs.eps_max,
        rms_adam=fa.rms,
        rms_sgd=fs.rms,
        n_points=n_points,
        b_range=b_range,
        source=source,
        ci=ci,
        warnings=warnings,
        laws=rows,
    )


# ---------------------------------------------------------------------------------------------
# result folders, already read: tables and summaries in, points or parameters out


def _lr_or_nan(v: Any) -> float:
    if v is None or v == "" or (isinstance(v, str) and v.strip().lower() == "nan"):
        return math.nan
    return float(v)


def points_from_summary(
    summary: Mapping[str, Any],
) -> tuple[NDArray[np.float64], NDArray[np.float64], int] | None:
    """A sweep summary's ``best_lr`` list as ``(B, lr, n_without)``; None if it has none.

    ``n_without``: batch sizes listed without a best lr (nothing reached the target), left out.

    Examples:
      >>> points_from_summary({"best_lr": [{"batch_size": 8, "lr": 0.1},
      ...                                  {"batch_size": 16, "lr": None}]})
      (array([8.]), array([0.1]), 1)
    """
    best = summary.get("best_lr")
    if not isinstance(best, list) or not best:
        return None
    b = np.array([float(r["batch_size"]) for r in best])
    e = np.array([_lr_or_nan(r.get("lr")) for r in best])
    k = np.isfinite(e)
    return b[k], e[k], int((~k).sum())


def points_from_best_table(
    rows: Sequence[Mapping[str, Any]], primary: Any = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], int, Any]:
    """A sweep's ``best_lr.csv`` rows as ``(B, lr, n_without, target)``.

    Rows of the ``primary`` target (default: the lowest target in the table) are used; rows
    without a best lr are left out and counted in ``n_without``.
    """
    if not rows or "batch_size" not in rows[0] or "best_lr" not in rows[0]:
        raise ValueError("best_lr.csv must have columns 'batch_size' and 'best_lr' and >= 1 row")
    want = None
    if "target" in rows[0]:
        targets = sorted({float(r["target"]) for r in rows})
        want = float(primary) if primary is not None else targets[0]
        rows = [r for r in rows if float(r["target"]) == want]
    b = np.array([float(r["batch_size"]) for r in rows])
    e = np.array([_lr_or_nan(r["best_lr"]) for r in rows])
    k = np.isfinite(e)
    return b[k], e[k], int((~k).sum()), want


def points_from_points_table(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Best lrs from a sweep's points table, by the sweep's own analysis.

    :func:`validate.fits.summarise` (the paper's best lr, usable-seed fraction, primary
    target), so a folder advises the same points whichever of its files is read.
    """
    from validate.fits import summarise

    need = {"batch_size", "lr", "seed", "target", "loss_reduction"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"points.csv must have columns {sorted(need)} and >= 1 row")
    best = summarise(rows, n_boot=0)["best_lr"]
    return (
        np.array([float(r["batch_size"]) for r in best]),
        np.array([float(r["lr"]) for r in best]),
    )


def params_from_estimate(summary: Mapping[str, Any]) -> tuple[dict[str, float | None], Any] | None:
    """An estimate run's last checkpoint as advise parameters, and its step; None if none.

    Theorem 3's ``b_noise_thm3`` / ``eps_max_thm3`` for Adam; SGD's ``b_noise_sgd_full`` /
    ``eps_max_sgd_full`` (else ``b_noise_sgd`` / ``eps_max_sgd``). Non-finite values are None.
    """
    cps = summary.get("checkpoints")
    if not isinstance(cps, list) or not cps:
        return None
    c = cps[-1]

    def num(key: str) -> float | None:
        v = c.get(key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return float(v) if ok else None

    params = {
        "b_noise": num("b_noise_thm3"),
        "eps_max": num("eps_max_thm3"),
        "b_noise_sgd": num("b_noise_sgd_full") or num("b_noise_sgd"),
        "eps_max_sgd": num("eps_max_sgd_full") or num("eps_max_sgd"),
    }
    return params, c.get("step")


def format_advice(a: Advice) -> str:
    """A person-readable report of an :class:`Advice`."""

    def iv(lo: float, hi: float) -> str:
        ok = math.isfinite(lo) and math.isfinite(hi)
        return f"  ({a.ci:.0%} interval {lo:.3g} … {hi:.3g})" if ok else ""

    def err(v: Any, what: str) -> str:
        return f", {what} {v:.3f}" if isinstance(v, float) and math.isfinite(v) else ""

    head = f"Advice for batch size {a.batch_size:g}"
    lines = [head + (f"  [from {a.source}]" if a.source else ""), ""]
    for r in a.laws:
        name = r["label"]
        lines.append(f"  {name + ':':<28} learning rate {r['lr']:.4g}{iv(r['lo'], r['hi'])}")
        if "b_noise" in r:
            lines.append(
                f"      B_noise = {r['b_noise']:.4g}, eps_max = {r['eps_max']:.4g}"
                + err(r.get("rms"), "fit RMS in log lr")
                + err(r.get("loo_err"), "leave-one-out RMS")
            )
        else:
            lines.append(
                f"      from lr {r['lr_ref']:.4g} at B = {r['b_ref']:g}"
                + err(r.get("loo_err"), "leave-one-out RMS in log lr")
            )
    if a.b_range is not None:
        lines.append(
            f"  from {a.n_points} points at batch sizes {a.b_range[0]:g} … {a.b_range[1]:g}"
        )
    for w in a.warnings:
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)
