"""The paper's analysis of a sweep table: best lrs, S–E B_crit, ε_max, law comparison.

Pure functions on the tidy points table (one dict per (batch_size, lr, seed, target), the
fields of :func:`validate.engine.train_group`). The estimators and their intervals are those
of :mod:`validate.optimum` (read its docstring: the two best-lr rules, the local quadratic in
log lr, censoring at the grid's edges, the seed bootstrap, S–E B_crit and the
leave-one-batch-size-out comparison with its verdict); this module assembles them into the
tables of a run folder and the numbers of its ``summary.json``:

* ``best_lr.csv`` (:func:`summarise` ``["best"]``): one row per (target, batch size, rule):
  ``target, batch_size, rule, lr, lo, hi, censored`` (+ ``grid_lr``, ``value``, ``n_seeds``,
  ``p_edge``, ``floor`` (what widened the interval: the grid cell, the adaptive-seed width),
  ``S``, ``E``);
* ``loo.csv`` (``["loo_table"]``): ``target, law, err, lo, hi`` (+ ``diff``, ``diff_lo``,
  ``diff_hi`` against ``best_baseline``, ``n_folds``);
* ``b_crit.csv`` (``["b_crit_table"]``): ``target, value, lo, hi`` (+ ``s_min``, seed-only
  ``lo_seeds``/``hi_seeds``, ``n_batch_sizes``, ``n_censored``, ``reason``);
* ``fits.csv`` (``["fits"]``): one row per target: ``b_crit`` (alias ``b_noise``) and its
  interval, ``s_min``, the theory laws' ``eps_max_<law>`` (Eq. 23 / 24 at B_crit from the
  interior optima), ``fit_err_<law>`` (in-sample RMS log-lr error over the interior
  optima), ``loo_err_<law>`` for the theory laws and the baselines, ``loo_folds``,
  ``n_best_at_edge`` (censored optima of the paper's rule), the verdict and ``reason``;
* ``summary.json`` only (``["falls"]``): per target the fall of the paper's-rule lr* past
  its peak (from B_peak to B_last, factor and interval, censored batch sizes, a sentence).

The **primary target** of a summary is the lowest target whose B_crit fit is valid (the
furthest point into training the sweep resolves), or the lowest target when none is.

Names: the S–E fit's B is called **B_crit** everywhere (= E_min/S_min, the paper's B_noise
estimate); ``b_noise`` / ``b_noise_lo`` / ``b_noise_hi`` / ``b_noise_by_target`` are kept as
aliases for readers of older folders (``surgelab advise``, the report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from theory import laws
from validate import optimum
from validate.optimum import MIN_BOOT_SEEDS, RULES, Cube, fit_b_crit, targets_of

NAN = float("nan")

__all__ = [
    "BASELINES",
    "BOOT_LEVEL",
    "LAWS",
    "MIN_BOOT_SEEDS",
    "RULES",
    "Cube",
    "fit_all",
    "fit_b_crit",
    "fit_target",
    "primary_fit",
    "summarise",
    "targets_of",
]

#: The theory laws fitted (ε_max, fit and leave-one-out errors) and the baselines scored
#: alongside them (leave-one-out errors only), from :mod:`theory.laws`.
LAWS: tuple[str, ...] = laws.THEORY
BASELINES: tuple[str, ...] = laws.BASELINES

#: Coverage of every interval.
BOOT_LEVEL = optimum.LEVEL


def _rms(x: Sequence[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(a**2))) if a.size else NAN


def fit_target(
    rows: Sequence[Mapping[str, Any]],
    target: float,
    *,
    min_ok_frac: float = 0.5,
    n_boot: int = 200,
    seed: int = 0,
    level: float = BOOT_LEVEL,
    half_width: int = 1,
    s_rule: str = "further",
    censored_s: bool = True,
    seed_log_width: float | None = None,
    max_seeds: int | None = None,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """One target: ``(fit row, tables)``; tables ``best``, ``loo``, ``b_crit`` (one row) and
    ``falls`` (one dict: the fall of lr* past its peak, :func:`validate.optimum.analyse_target`).

    Args:
      rows: the points table.
      target: the target loss to analyse.
      min_ok_frac, n_boot, seed, level, half_width, s_rule, censored_s, seed_log_width,
        max_seeds: as :func:`validate.optimum.analyse_target`.

    Returns:
      The fit row (module docstring, ``fits.csv``) and that target's table rows.
    """
    a = optimum.analyse_target(
        rows,
        target,
        n_boot=n_boot,
        level=level,
        seed=seed,
        min_ok_frac=min_ok_frac,
        half_width=half_width,
        s_rule=s_rule,
        censored_s=censored_s,
        seed_log_width=seed_log_width,
        max_seeds=max_seeds,
    )
    bc = a.b_crit
    B = a.cube.B
    lr = a.point.lr["further"]
    interior = np.array([c == "" for c in a.point.censored["further"]]) & np.isfinite(lr)
    fit: dict[str, Any] = {
        "target": a.target,
        "n_batch_sizes": int(interior.sum()),
        "b_crit": bc["value"],
        "b_crit_lo": bc["lo"],
        "b_crit_hi": bc["hi"],
        "b_noise": bc["value"],
        "b_noise_lo": bc["lo"],
        "b_noise_hi": bc["hi"],
        "s_min": bc["s_min"],
    }
    ok_law = math.isfinite(bc["value"]) and interior.sum() >= 1
    for law in LAWS:
        if ok_law:
            eps = laws.eps_max_given_b_noise(law, B[interior], lr[interior], bc["value"])
            pred = np.asarray(laws.law_lr(law, B[interior], eps, bc["value"]), dtype=np.float64)
            err = _rms(np.log(pred) - np.log(lr[interior]))
        else:
            eps = err = NAN
        fit[f"eps_max_{law}"] = eps
        fit[f"fit_err_{law}"] = err
    for r in a.loo:
        fit[f"loo_err_{r['law']}"] = r["err"]
    fit["loo_folds"] = int(a.loo_folds.size)
    fit["n_best_at_edge"] = sum(c in ("low", "high") for c in a.point.censored["further"])
    v = a.verdict
    fit["law_winner"] = v.get("winner")
    fit["law_separable"] = bool(v.get("separable"))
    fit["n_seeds_needed"] = v.get("n_seeds_needed")
    fit["law_verdict"] = v.get("text")
    reason = bc["reason"]
    if reason is None and a.loo_folds.size == 0:
        reason = v.get("text")
    fit["reason"] = reason
    return fit, {"best": a.best, "loo": a.loo, "b_crit": [bc], "falls": [a.fall]}


def fit_all(
    rows: Sequence[Mapping[str, Any]], **kw: Any
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """:func:`fit_target` for every target, descending: ``(fit rows, tables)``."""
    fits: list[dict[str, Any]] = []
    tables: dict[str, list[dict[str, Any]]] = {"best": [], "loo": [], "b_crit": [], "falls": []}
    for t in targets_of(rows):
        f, tab = fit_target(rows, t, **kw)
        fits.append(f)
        for k in tables:
            tables[k] += tab[k]
    return fits, tables


def primary_fit(fits: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The lowest target with a valid B_crit, else the lowest target (None if no targets)."""
    if not fits:
        return None
    valid = [f for f in fits if math.isfinite(f["b_crit"])]
    return min(valid or fits, key=lambda f: f["target"])


def summarise(rows: Sequence[Mapping[str, Any]], **kw: Any) -> dict[str, Any]:
    """Headline figures of a sweep (``summary.json``) plus its tables.

    Returns a dict with ``primary_target``, ``b_crit`` / ``b_crit_lo`` / ``b_crit_hi`` (alias
    ``b_noise*``), ``s_min``, ``eps_max_<law>``, ``fit_err_<law>``, ``loo_err_<law>`` (laws and
    baselines), ``loo_folds``, ``n_batch_sizes``, ``n_best_at_edge`` (at the primary target),
    ``best_lr`` (list of {batch_size, lr, lo, hi, censored}: the paper's rule there),
    ``b_crit_by_target`` (alias ``b_noise_by_target``: {target, b_crit, b_noise, lo, hi,
    n_batch_sizes, reason}), ``falls`` (one dict per target, descending: ``target, b_peak,
    b_last, factor, lo, hi, falls, censored, text``; the fall of the paper's-rule lr* past its
    peak, :func:`validate.optimum.analyse_target`), ``law_ranking`` (by leave-one-out error,
    best first),
    ``law_verdict`` (primary target) and ``law_verdicts`` (every target), ``reason``,
    ``n_points``, ``n_reached``, ``n_diverged``, and the tables ``fits``, ``best``,
    ``loo_table``, ``b_crit_table`` (for ``fits.csv``, ``best_lr.csv``, ``loo.csv``,
    ``b_crit.csv``).
    """
    fits, tables = fit_all(rows, **kw)
    p = primary_fit(fits)
    out: dict[str, Any] = {
        "n_points": len(rows),
        "n_reached": sum(optimum._flag(r.get("reached")) for r in rows),
        "n_diverged": sum(optimum._flag(r.get("diverged")) for r in rows),
        "targets": [f["target"] for f in fits],
        "primary_target": None if p is None else p["target"],
    }
    keys = [
        "b_crit",
        "b_crit_lo",
        "b_crit_hi",
        "b_noise",
        "b_noise_lo",
        "b_noise_hi",
        "s_min",
        "n_batch_sizes",
        "n_best_at_edge",
        *(f"{k}_{law}" for k in ("eps_max", "fit_err") for law in LAWS),
        *(f"loo_err_{law}" for law in (*LAWS, *BASELINES)),
        "loo_folds",
        "law_winner",
        "law_separable",
        "n_seeds_needed",
        "law_verdict",
        "reason",
    ]
    for k in keys:
        out[k] = None if p is None else p[k]
    if p is None:
        out["reason"] = "the table has no rows"
    out["best_lr"] = [
        {k: b[k] for k in ("batch_size", "lr", "lo", "hi", "censored")}
        for b in tables["best"]
        if p is not None
        and b["target"] == p["target"]
        and b["rule"] == "further"
        and math.isfinite(b["lr"])
    ]
    out["b_crit_by_target"] = [
        {
            "target": f["target"],
            "b_crit": f["b_crit"],
            "b_noise": f["b_crit"],
            "lo": f["b_crit_lo"],
            "hi": f["b_crit_hi"],
            "n_batch_sizes": f["n_batch_sizes"],
            "reason": f["reason"],
        }
        for f in fits
    ]
    out["b_noise_by_target"] = out["b_crit_by_target"]
    out["falls"] = tables["falls"]
    out["law_verdicts"] = [f["law_verdict"] for f in fits if f.get("law_verdict")]
    loo = {law: out[f"loo_err_{law}"] for law in (*LAWS, *BASELINES)}
    out["law_ranking"] = sorted(
        (k for k, v in loo.items() if v is not None and math.isfinite(v)), key=loo.get
    )
    out["fits"], out["best"] = fits, tables["best"]
    out["loo_table"], out["b_crit_table"] = tables["loo"], tables["b_crit"]
    return out
