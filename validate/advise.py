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
    "ASSUMPTIONS",
    "LAWS",
    "Advice",
    "Evidence",
    "Fit",
    "advise",
    "default_batch_sizes",
    "fit_law",
    "format_advice",
    "format_recommendation",
    "format_shortcut",
    "law_lr",
    "params_from_estimate",
    "points_from_best_table",
    "points_from_points_table",
    "points_from_summary",
    "recommend",
    "shortcut",
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
    b, e = laws.check_points(B, lr)
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
    col = "best_lr" if rows and "best_lr" in rows[0] else "lr"
    if not rows or "batch_size" not in rows[0] or col not in rows[0]:
        raise ValueError("best_lr.csv must have columns 'batch_size' and 'best_lr' and >= 1 row")
    if "rule" in rows[0]:  # one optimum per rule: the paper's (largest further reduction)
        rows = [r for r in rows if r["rule"] == "further"]
    want = None
    if "target" in rows[0]:
        targets = sorted({float(r["target"]) for r in rows})
        want = float(primary) if primary is not None else targets[0]
        rows = [r for r in rows if float(r["target"]) == want]
    b = np.array([float(r["batch_size"]) for r in rows])
    e = np.array([_lr_or_nan(r[col]) for r in rows])
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


# ---------------------------------------------------------------------------------------------
# the Recommendation: one learning rate per (optimizer setting, batch size), from the sweep


@dataclass(frozen=True)
class Evidence:
    """The measured training optima of one optimizer setting (one sweep), already read.

    Attributes:
      optimizer: the optimizer setting, in words (``"Adam (β1=0.9, β2=0.999)"``).
      batch_sizes, lrs: the measured best learning rate at each batch size (one target loss).
      target: the target loss the best lrs are for (None: unknown).
      censored: per point, True when the best lr is the smallest or largest lr tried at that
        batch size (the optimum may lie beyond it).
      lr_lo, lr_hi: per point, an interval for the optimum (e.g. a sweep's seed-bootstrap
        interval of lr*; NaN where there is none); None: unknown.
      b_crit: the same sweep's S–E B_crit (Eq. 22), shown for comparison; None if not fitted.
      source: where the points were read (for the report).
      fitted: the sweep's own fit of each theory law, ``{law: (eps_max, b_noise)}`` (the
        paper's protocol: B_noise = the S–E B_crit, ε_max by Eq. 23 / 24), with ``loo`` its
        leave-one-batch-size-out RMS log-lr error of every law and rule (``{name: err}``).
        None: the laws are fitted here by least squares in log lr, and ranked on
        :func:`advise`'s folds.
    """

    optimizer: str
    batch_sizes: Sequence[float]
    lrs: Sequence[float]
    target: float | None = None
    censored: Sequence[bool] | None = None
    lr_lo: Sequence[float] | None = None
    lr_hi: Sequence[float] | None = None
    b_crit: float | None = None
    source: str = ""
    fitted: Mapping[str, tuple[float, float]] | None = None
    loo: Mapping[str, float] | None = None


#: The rule used when leave-one-out cannot rank the laws (<= 2 measured batch sizes): the
#: square-root rule, the practitioners' default for Adam (Malladi et al. 2022).
A_PRIORI = "sqrt_rule"


def default_batch_sizes(measured: ArrayLike) -> tuple[int, ...]:
    """The batch sizes a recommendation covers by default: the smallest, the geometric middle
    and the largest measured batch size, and 2× the largest (just beyond the measured range).

    Examples:
      >>> default_batch_sizes([4, 16, 64])
      (4, 16, 64, 128)
      >>> default_batch_sizes([8, 32, 128, 512, 2048])
      (8, 128, 2048, 4096)
    """
    b = np.unique(np.asarray(measured, dtype=np.float64))
    if b.size == 0 or not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(f"measured batch sizes must be positive and finite; got {measured!r}")
    lo, hi = float(b.min()), float(b.max())
    mid = float(b[np.argmin(np.abs(np.log(b) - 0.5 * (math.log(lo) + math.log(hi))))])
    return tuple(sorted({round(lo), round(mid), round(hi), round(2 * hi)}))


def _z(ci: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + ci / 2)


def _rec_rows_for(ev: Evidence, targets: Sequence[float], ci: float) -> list[dict[str, Any]]:
    b, e = _check_points(ev.batch_sizes, ev.lrs)
    n = b.size
    cens = np.zeros(n, bool) if ev.censored is None else np.asarray(ev.censored, bool)
    lo_pt = np.full(n, math.nan) if ev.lr_lo is None else np.asarray(ev.lr_lo, np.float64)
    hi_pt = np.full(n, math.nan) if ev.lr_hi is None else np.asarray(ev.lr_hi, np.float64)
    if not cens.shape == lo_pt.shape == hi_pt.shape == (n,):
        raise ValueError("censored, lr_lo and lr_hi must have one entry per measured point")
    n_b = int(np.unique(b).size)
    where = f"the best lrs at {n_b} batch sizes {b.min():g}…{b.max():g}"
    if ev.target is not None:
        where += f" at target loss {ev.target:g}"
    if ev.fitted is not None and ev.loo is not None:
        # the sweep's own fit (paper's protocol) and its leave-one-out errors
        fits = {
            law: Fit(law, float(bn), float(em), math.nan, n_b, False)
            for law, (em, bn) in ev.fitted.items()
        }
        loo = {k: float(v) for k, v in ev.loo.items() if math.isfinite(v)}
        how = (
            f"the sweep's fit: B_noise = S–E B_crit {ev.fitted['adam'][1]:.3g}, ε_max from {where}"
        )
        peak_what = "the S–E B_crit"
    else:
        a = advise(float(b[0]), (b, e), n_boot=0, ci=ci)
        loo = {r["law"]: r["loo_err"] for r in a.laws if math.isfinite(r["loo_err"])}
        fits = {law: fit_law(law, b, e) for law in LAWS}
        how = f"fitted by least squares in log lr to {where}"
        peak_what = "the peak of the surge law fitted to these best lrs"
    ranked = sorted(loo, key=loo.__getitem__)
    chosen = ranked[0] if ranked else A_PRIORI
    peak = fits["adam"]
    peak_known = n_b > 2 and not peak.at_bound
    z = _z(ci)
    out = []
    for t in targets:
        t = float(t)
        caveats: list[str] = []
        at = np.isclose(b, t, rtol=1e-9)
        extrap = not b.min() <= t <= b.max()
        factor = max(t / b.max(), b.min() / t) if extrap else 1.0
        if at.any():
            law = "measured"
            lr = math.exp(float(np.mean(np.log(e[at]))))
            lo = float(np.nanmin(lo_pt[at])) if np.any(np.isfinite(lo_pt[at])) else math.nan
            hi = float(np.nanmax(hi_pt[at])) if np.any(np.isfinite(hi_pt[at])) else math.nan
            err = math.nan
            basis = f"measured: the best lr of the sweep at B = {t:g}"
            if math.isfinite(lo) and math.isfinite(hi) and not cens[at].any():
                basis += " (with the interval the source gives for it)"
            if cens[at].any():
                caveats.append(
                    f"censored: at B = {t:g} the best lr is on the edge of the lr grid, so the "
                    "optimum may lie beyond it; widen the lr grid"
                )
        else:
            law = chosen
            spec = laws.LAWS[law]
            if spec.is_baseline:
                lr = float(laws.baseline_lr(law, t, b, e))
                b0 = laws.nearest_batch_size(t, b)
                basis = f"{spec.label} from the best lr at B = {b0:g}"
            else:
                lr = float(fits[law].predict(t))
                basis = f"{spec.label}, {how}"
            err = loo.get(law, math.nan)
            if math.isfinite(err):
                lo, hi = lr * math.exp(-z * err), lr * math.exp(z * err)
                others = ", ".join(f"{k} {loo[k]:.2f}" for k in ranked[1:3])
                basis += (
                    f". Leave-one-out error {err:.2f} in log lr, best of {len(ranked)} laws and "
                    f"rules on this run (next: {others})"
                )
            else:
                lo = hi = math.nan
                basis += ". Chosen a priori (leave-one-out needs >= 3 measured batch sizes)"
                caveats.append(
                    f"only {n_b} measured batch sizes: no law can be checked on held-out data"
                )
        if extrap:
            side = (
                f"the largest measured B = {b.max():g}"
                if t > b.max()
                else (f"the smallest measured B = {b.min():g}")
            )
            caveats.append(f"extrapolated {factor:.3g}× beyond {side}")
        past = None
        if peak_known:
            past = bool(t > peak.b_noise)
            if past:
                caveats.append(
                    f"past the predicted peak ({peak_what} = {peak.b_noise:.3g}): the surge law "
                    "says larger batches need a SMALLER Adam lr here"
                )
        elif law != "measured":
            caveats.append("the surge law's peak is not located by these points (fit at its bound)")
        if law != "measured" and cens.any():
            caveats.append(
                f"{int(cens.sum())} of {n} measured best lrs are censored (on the lr grid's "
                "edge): the fit uses bounds there"
            )
        out.append(
            {
                "optimizer": ev.optimizer,
                "batch_size": t,
                "lr": lr,
                "lo": lo,
                "hi": hi,
                "basis": basis,
                "extrapolated": extrap,
                "law": law,
                "loo_err": err,
                "extrapolation_factor": factor,
                "past_peak": past,
                "fitted_peak": peak.b_noise if peak_known else None,
                "b_crit": ev.b_crit,
                "target": ev.target,
                "source": ev.source,
                "caveats": caveats,
            }
        )
    return out


def recommend(
    evidence: Sequence[Evidence], batch_sizes: Sequence[float] | None = None, *, ci: float = 0.9
) -> list[dict[str, Any]]:
    """The Recommendation: per optimizer setting and batch size, a learning rate and its basis.

    One source of truth, the measured training optimum: at a measured batch size the answer is
    the sweep's best lr there (interval: where the optimum lies, when known). Elsewhere it is
    the law or practitioners' rule with the smallest leave-one-batch-size-out RMS error in log
    lr on these points (:func:`advise`'s folds: laws refitted without the held-out batch size,
    rules scaled from the nearest other one), and the interval is
    lr · exp(± z · that error), z the normal quantile of ``ci``: the spread its held-out
    predictions had on this run's data. With <= 2 measured batch sizes nothing can be held
    out, and the square-root rule is used with no interval.

    Args:
      evidence: one :class:`Evidence` per optimizer setting.
      batch_sizes: the batch sizes to recommend for (default per setting:
        :func:`default_batch_sizes` of its measured batch sizes).
      ci: coverage of the interval, in (0, 1).

    Returns:
      One dict per (setting, batch size): ``optimizer``, ``batch_size``, ``lr``, ``lo``,
      ``hi``, ``basis`` (in words), ``extrapolated``, and ``law`` (``"measured"`` or the
      registry name), ``loo_err``, ``extrapolation_factor``, ``past_peak`` (None: the surge
      law's peak is not located), ``fitted_peak``, ``b_crit``, ``target``, ``source``,
      ``caveats`` (list of sentences).

    Examples:
      >>> from theory.sign import surge_lr
      >>> B = [8.0, 32.0, 128.0, 512.0, 2048.0]
      >>> ev = Evidence("Adam", B, [float(surge_lr(b, 1e-2, 128.0)) for b in B])
      >>> r = recommend([ev], [128, 1024])
      >>> r[0]["law"], round(r[0]["lr"], 6), r[1]["law"], round(r[1]["lr"], 6)  # 1e-2/(½(√⅛ + √8))
      ('measured', 0.01, 'adam', 0.006285)
      >>> r[1]["past_peak"], r[1]["extrapolated"]
      (True, False)
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1); got {ci=}")
    if batch_sizes is not None:
        t = np.asarray(batch_sizes, dtype=np.float64).reshape(-1)
        if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
            raise ValueError(f"batch sizes must be positive and finite; got {batch_sizes!r}")
    out: list[dict[str, Any]] = []
    for ev in evidence:
        targets = batch_sizes if batch_sizes is not None else default_batch_sizes(ev.batch_sizes)
        out += _rec_rows_for(ev, list(targets), ci)
    return out


def format_recommendation(rows: Sequence[Mapping[str, Any]]) -> str:
    """The Recommendation as text: one block per (optimizer, batch size)."""
    lines = ["Recommendation (the measured training optimum; learning rate at each batch size)"]
    for r in rows:
        iv = ""
        if r["lo"] is not None and r["hi"] is not None:
            if math.isfinite(r["lo"]) and math.isfinite(r["hi"]):
                iv = f"  (interval {r['lo']:.3g} … {r['hi']:.3g})"
        lines.append(f"  {r['optimizer']}, B = {r['batch_size']:g}: lr {r['lr']:.3g}{iv}")
        lines.append(f"      basis: {r['basis']}")
        for c in r.get("caveats") or []:
            lines.append(f"      note: {c}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the practical shortcut: one measured (B0, best lr) pair and a noise scale

#: What each rule of the shortcut needs to hold (shown next to its learning rate).
ASSUMPTIONS: dict[str, str] = {
    "adam": (
        "Adam or sign-like updates; B_noise ≈ the S–E B_crit at this point of training (the "
        "paper's recipe); LR0 is the best lr at B0, not just one that works; predicts a peak at "
        "B_noise and a FALL beyond it"
    ),
    "sgd": (
        "plain SGD (McCandlish et al. 2018); B_noise is SGD's noise scale (≈ B_simple); LR0 is "
        "the best lr at B0; the lr saturates at ε_max, never falls"
    ),
    "sqrt_rule": (
        "Adam-like updates with B well below the noise scale (Malladi et al. 2022); needs no "
        "B_noise, and so cannot see a peak"
    ),
    "linear_rule": (
        "SGD with B well below the noise scale (Goyal et al. 2017); needs no B_noise; "
        "overshoots near and past B_noise"
    ),
}

#: The rules of the shortcut, in the order printed.
SHORTCUT_LAWS: tuple[str, ...] = ("adam", "sgd", "sqrt_rule", "linear_rule")


def shortcut(
    batch_size: float,
    current_batch_size: float,
    current_lr: float,
    b_noise: float,
    *,
    b_noise_source: str = "given",
) -> dict[str, Any]:
    """The paper's recipe from one measured pair: B_noise ≈ B_crit and (B0, LR0) fix ε_max.

    Each theory law of :data:`SHORTCUT_LAWS` gets ε_max from the one point
    (:func:`theory.laws.eps_max_given_b_noise`: Eq. 23 for the surge law, Eq. 24 for SGD's)
    and is evaluated at B1; the rules scale LR0 by √(B1/B0) and B1/B0.

    Args:
      batch_size: B1, the new batch size (> 0).
      current_batch_size: B0, the batch size trained now (> 0).
      current_lr: LR0, the best lr at B0 (> 0).
      b_noise: the noise scale (> 0).
      b_noise_source: where ``b_noise`` came from, in words.

    Returns:
      ``{"batch_size", "current_batch_size", "current_lr", "b_noise", "b_noise_source",
      "rows": [{law, label, lr, assumptions, eps_max?}], "notes": [...]}``.

    Examples:
      >>> s = shortcut(400.0, 100.0, 1e-3, 100.0)
      >>> [round(r["lr"], 6) for r in s["rows"]]  # surge: 1e-3/(½(½+2)); SGD: 2e-3/(1+¼)
      [0.0008, 0.0016, 0.002, 0.004]
    """
    b1 = _positive("batch_size", batch_size)
    b0 = _positive("current_batch_size", current_batch_size)
    lr0 = _positive("current_lr", current_lr)
    bn = _positive("b_noise", b_noise)
    rows = []
    for name in SHORTCUT_LAWS:
        spec = laws.LAWS[name]
        row: dict[str, Any] = {"law": name, "label": spec.label}
        if spec.is_baseline:
            row["lr"] = float(laws.baseline_lr(name, b1, [b0], [lr0]))
        else:
            em = laws.eps_max_given_b_noise(name, [b0], [lr0], bn)
            row["eps_max"] = em
            row["lr"] = float(law_lr(name, b1, em, bn))
        row["assumptions"] = ASSUMPTIONS[name]
        rows.append(row)
    notes = []
    if bn < 1:
        notes.append(
            f"B_noise = {bn:.3g} is below one example: outside the regime of the batch-size "
            "laws (they need B_noise >= 1); treat the law rows as unsupported"
        )
    if b1 > bn:
        notes.append(
            f"B1 = {b1:g} is past B_noise = {bn:.3g}: the surge law's lr falls there while the "
            "square-root and linear rules keep growing"
        )
    if max(b1 / b0, b0 / b1) > 16:
        notes.append(
            f"B1/B0 = {b1 / b0:.3g}: a jump this large extrapolates every rule; step the batch "
            "size and re-measure the best lr on the way"
        )
    return {
        "batch_size": b1,
        "current_batch_size": b0,
        "current_lr": lr0,
        "b_noise": bn,
        "b_noise_source": b_noise_source,
        "rows": rows,
        "notes": notes,
    }


def format_shortcut(s: Mapping[str, Any]) -> str:
    """The shortcut's rules side by side, each with what it assumes."""
    lines = [
        f"Learning rate at B1 = {s['batch_size']:g}, from LR0 = {s['current_lr']:.4g} at "
        f"B0 = {s['current_batch_size']:g}, B_noise = {s['b_noise']:.4g} ({s['b_noise_source']})",
        "",
    ]
    for r in s["rows"]:
        lines.append(f"  {r['label'] + ':':<28} lr {r['lr']:.4g}")
        lines.append(f"      assumes: {r['assumptions']}")
    for n in s["notes"]:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# steps to target against batch size: S_min, B_crit (``surgelab fit``, ``advise --table``)


def _eq22(b: NDArray[np.float64], s: NDArray[np.float64]) -> tuple[float, float]:
    """Eq. 22 as (B_crit, S_min), NaN when the line does not give a positive finite pair."""
    from theory.efficiency import fit_b_noise

    try:
        bc, sm = fit_b_noise(s, b * s)
    except ValueError:
        return math.nan, math.nan
    if not (bc > 0 and math.isfinite(sm)):
        return math.nan, math.nan
    return bc, sm


def fit_steps(
    B: ArrayLike,
    S: ArrayLike,
    *,
    n_boot: int = 1000,
    ci: float = 0.9,
    seed: int = 0,
    overhead: float = 0.2,
) -> dict[str, Any]:
    """S_min and B_crit = E_min/S_min from steps to a target at several batch sizes.

    Two fits of the same model S = S_min (1 + B_crit/B): the paper's line 1/S = −B_crit/E +
    1/S_min (Eq. 22, :func:`theory.efficiency.fit_b_noise`) and a least-squares fit in log S
    (:func:`theory.efficiency.fit_steps_log`, the headline: every run counts the same). Each
    gets a percentile bootstrap interval over the rows (:func:`theory.stats.bootstrap_interval`).
    The batch size of Zhang et al. (2024), 20% more steps than linear scaling, is
    ``overhead`` · B_crit (:func:`theory.efficiency.overhead_batch_size`).

    Args:
      B, S: batch size and steps to the target of each run (> 0; >= 2 distinct B).
      n_boot: bootstrap resamples of the rows (0: no interval, else >= 10).
      ci: interval coverage.
      seed: bootstrap seed.
      overhead: the accepted step overhead of the critical batch size of Zhang et al.

    Returns:
      dict with ``n_points``, ``n_batch_sizes``, ``b_crit``, ``b_crit_lo``/``_hi``, ``s_min``,
      ``e_min``, ``rms_log``, ``at_bound``, ``b_crit_eq22``, ``b_crit_eq22_lo``/``_hi``,
      ``s_min_eq22``, ``b_overhead`` (with ``_lo``/``_hi``), ``overhead``, and ``rows`` (per
      point: ``batch_size``, ``steps``, ``examples``, ``steps_fit``, ``resid_log``,
      ``steps_fit_eq22``, ``resid_log_eq22``; residuals are natural-log).

    Examples:
      >>> B = np.array([8., 32., 128., 512.])
      >>> f = fit_steps(B, 100 * (1 + 64 / B), n_boot=0)
      >>> round(f["b_crit"], 6), round(f["b_crit_eq22"], 6), round(f["b_overhead"], 6)
      (64.0, 64.0, 12.8)
    """
    from theory.efficiency import fit_steps_log, overhead_batch_size

    b = np.asarray(B, dtype=np.float64).reshape(-1)
    s = np.asarray(S, dtype=np.float64).reshape(-1)
    if b.shape != s.shape or b.size == 0:
        raise ValueError(f"B and S must be non-empty and of one length; got {b.size}, {s.size}")
    if not (np.all(np.isfinite(b)) and np.all(b > 0) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("batch sizes and steps must be positive and finite")
    if np.unique(b).size < 2:
        raise ValueError(f"need runs at >= 2 distinct batch sizes; got {np.unique(b).tolist()}")
    if not (n_boot == 0 or n_boot >= MIN_BOOT):
        raise ValueError(f"n_boot must be 0 (no interval) or >= {MIN_BOOT}; got {n_boot=}")
    lf = fit_steps_log(b, s)
    bc22, sm22 = _eq22(b, s)
    nan2 = (math.nan, math.nan)
    iv, iv22 = nan2, nan2
    if n_boot:

        def log_stat(i: NDArray[np.int64]) -> float:
            if np.unique(b[i]).size < 2:
                return math.nan
            f = fit_steps_log(b[i], s[i])
            return math.nan if f.at_bound else f.b_crit

        def eq22_stat(i: NDArray[np.int64]) -> float:
            return _eq22(b[i], s[i])[0] if np.unique(b[i]).size >= 2 else math.nan

        iv = bootstrap_interval(log_stat, b.size, n_boot=n_boot, level=ci, seed=seed)[:2]
        iv22 = bootstrap_interval(eq22_stat, b.size, n_boot=n_boot, level=ci, seed=seed)[:2]
    fit_log = lf.s_min * (1 + lf.b_crit / b)
    fit22 = sm22 * (1 + bc22 / b) if math.isfinite(bc22) else np.full(b.size, math.nan)
    rows = [
        {
            "batch_size": float(b[k]),
            "steps": float(s[k]),
            "examples": float(b[k] * s[k]),
            "steps_fit": float(fit_log[k]),
            "resid_log": float(lf.residuals[k]),
            "steps_fit_eq22": float(fit22[k]),
            "resid_log_eq22": float(math.log(s[k] / fit22[k])) if fit22[k] > 0 else math.nan,
        }
        for k in range(b.size)
    ]
    return {
        "n_points": int(b.size),
        "n_batch_sizes": int(np.unique(b).size),
        "b_crit": lf.b_crit,
        "b_crit_lo": iv[0],
        "b_crit_hi": iv[1],
        "s_min": lf.s_min,
        "e_min": lf.e_min,
        "rms_log": lf.rms,
        "at_bound": lf.at_bound,
        "b_crit_eq22": bc22,
        "b_crit_eq22_lo": iv22[0],
        "b_crit_eq22_hi": iv22[1],
        "s_min_eq22": sm22,
        "overhead": overhead,
        "b_overhead": overhead_batch_size(lf.b_crit, overhead),
        "b_overhead_lo": overhead * iv[0],
        "b_overhead_hi": overhead * iv[1],
        "rows": rows,
    }


def plot_steps_examples(
    rows: Sequence[Mapping[str, Any]],
    fits: Sequence[Mapping[str, Any]],
    *,
    tokens_per_example: float | None = None,
    ax: Any = None,
) -> Any:
    """S against E (examples, or tokens), each target's points and its two fitted curves.

    Args:
      rows: ``fit.csv`` rows (``target``, ``batch_size``, ``steps``, ``examples``).
      fits: per target, ``target``, ``b_crit``, ``s_min``, ``b_crit_eq22``, ``s_min_eq22``.
      tokens_per_example: when given, the x-axis is in tokens (examples × this).
      ax: matplotlib axes (default: a new figure's).

    Returns:
      The axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    k = 1.0 if tokens_per_example is None else float(tokens_per_example)
    for i, f in enumerate(fits):
        c = f"C{i}"
        pts = [r for r in rows if r.get("target") == f.get("target")]
        name = "" if f.get("target") is None else f"target {f['target']:g}: "
        ax.scatter([k * r["examples"] for r in pts], [r["steps"] for r in pts], color=c, s=18)
        bs = np.geomspace(
            min(r["batch_size"] for r in pts) / 4, max(r["batch_size"] for r in pts) * 4
        )
        for bc, sm, ls, what in (
            (f["b_crit"], f["s_min"], "-", "log-space fit"),
            (f.get("b_crit_eq22"), f.get("s_min_eq22"), ":", "Eq. 22 fit"),
        ):
            if bc is None or sm is None or not (math.isfinite(bc) and math.isfinite(sm)):
                continue
            S = sm * (1 + bc / bs)
            ax.plot(k * bs * S, S, ls, color=c, label=f"{name}{what}, B_crit = {bc:.3g}")
        ax.plot(
            [2 * k * f["s_min"] * f["b_crit"]], [2 * f["s_min"]], "o", mfc="none", color=c, ms=9
        )
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(
        "tokens to the target (E × tokens per example)"
        if tokens_per_example
        else "examples to the target E = B·S"
    )
    ax.set_ylabel("steps to the target S")
    ax.set_title("steps against examples (circle: B = B_crit, 2× S_min and 2× E_min)", fontsize=9)
    ax.legend(fontsize=7)
    return ax
