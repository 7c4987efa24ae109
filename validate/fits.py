"""The paper's analysis of a sweep table: best learning rates, B_noise, ε_max, law fits.

Pure functions on the tidy points table (one dict per (batch_size, lr, seed, target), the
fields of :func:`validate.engine.train_group`). Per target loss:

1. **Usable run.** A run is *usable* at a target when it reached the target, its further-steps
   copy did not diverge, and its ``loss_reduction`` is finite.
2. **Best lr per batch size** (the paper's definition): among learning rates where at least
   ``min_ok_frac`` of the seeds are usable, the one with the largest mean ``loss_reduction``
   over its usable seeds. (Requiring most seeds to be usable keeps an lr where a lucky few
   runs survived from winning on a biased mean.) A batch size with no such lr has no best lr.
3. **S and E** at a batch size: S = mean over that (B, best lr)'s seeds that reached the target
   of the steps to reach it (resolution ``eval_every``), E = B·S.
4. **B_noise, S_min** by :func:`theory.efficiency.fit_b_noise` on the (S, E) points of the
   batch sizes that have a best lr (Eq. 22, 1/S = −B_noise/E + 1/S_min).
5. **ε_max** for the three theory laws of :mod:`theory.laws` from the best lrs and that
   B_noise: Adam's surge law (Eq. 23), SGD's (Eq. 24, α = 1) and the square-root form
   (Eq. 24, α = 0.5), :func:`theory.laws.eps_max_given_b_noise`.
6. **Goodness of fit** of each theory law: ``fit_err_<law>`` = RMS over batch sizes of
   log(predicted lr) − log(best lr) (natural log). ``loo_err_<law>`` = the same for
   leave-one-batch-size-out predictions: for each batch size, B_noise is REFIT from the other
   batch sizes' (S, E) points and ε_max from their best lrs, and that batch size's best lr is
   predicted (the held-out batch size contributes nothing to its own prediction; folds whose
   refit B_noise is not positive are skipped and counted in ``loo_folds``). Only computed
   when the full fit is valid: when it is not, a fold of a subset that happens to slope the
   right way would rank the laws on noise, so the ``loo_err_*`` are NaN too. The
   practitioners' baselines of :mod:`theory.laws` (``constant``, ``sqrt_rule``,
   ``linear_rule``: the best lr of the nearest other batch size, kept or scaled) get a
   ``loo_err_<baseline>`` on the same folds, so a law earns its place only by beating them;
   they have no ``fit_err`` (they pass through every point by construction).
7. **Bootstrap over seeds** for B_noise (:func:`theory.stats.bootstrap_interval`): seeds are
   resampled with replacement (the same draw for every grid point, as they share the seed's
   data stream), steps 2–4 repeated; the 2.5% and 97.5% quantiles of the valid refits are
   ``b_noise_lo`` / ``b_noise_hi``. NaN with fewer than :data:`MIN_BOOT_SEEDS` seeds (the
   resamples are too few to mean much) or when fewer than half the resamples give a valid
   B_noise (an interval of the lucky resamples only would be too narrow).

Degenerate cases never raise: the fields that cannot be computed are NaN and ``reason`` says
why (fewer than 2 batch sizes with a best lr, a non-positive fitted B_noise, ...).

The **primary target** of a summary is the lowest target whose B_noise fit is valid (the
furthest point into training the sweep resolves; B_noise grows as the loss falls), or the
lowest target when none is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from theory import laws
from theory.efficiency import fit_b_noise
from theory.stats import bootstrap_interval

NAN = float("nan")

#: Fewest seeds for the seed bootstrap. With 2 seeds a resample takes only 3 distinct values
#: (both seeds, or either one twice), so its "interval" has the estimate itself as an end;
#: with 5 there are 126 distinct resamples.
MIN_BOOT_SEEDS = 5

#: The theory laws fitted (ε_max, fit and leave-one-out errors, predictions) and the baselines
#: scored alongside them (leave-one-out errors only), from :mod:`theory.laws`.
LAWS: tuple[str, ...] = laws.THEORY
BASELINES: tuple[str, ...] = laws.BASELINES

#: Coverage of the seed-bootstrap interval of B_noise.
BOOT_LEVEL = 0.95


class Cube:
    """One target's points as dense arrays over (batch size, lr, seed); NaN where absent."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], target: float) -> None:
        rows = [r for r in rows if float(r["target"]) == target]
        self.target = float(target)
        self.B = np.array(sorted({int(r["batch_size"]) for r in rows}), dtype=np.float64)
        self.lrs = np.array(sorted({float(r["lr"]) for r in rows}), dtype=np.float64)
        self.seeds = np.array(sorted({int(r["seed"]) for r in rows}), dtype=np.int64)
        bi = {int(b): i for i, b in enumerate(self.B)}
        li = {float(v): i for i, v in enumerate(self.lrs)}
        si = {int(v): i for i, v in enumerate(self.seeds)}
        shape = (self.B.size, self.lrs.size, self.seeds.size)
        self.present = np.zeros(shape, dtype=bool)
        self.usable = np.zeros(shape, dtype=bool)
        self.reached = np.zeros(shape, dtype=bool)
        self.reduction = np.full(shape, np.nan)
        self.steps = np.full(shape, np.nan)
        for r in rows:
            k = (bi[int(r["batch_size"])], li[float(r["lr"])], si[int(r["seed"])])
            self.present[k] = True
            red = _num(r.get("loss_reduction"))
            reached = bool(r.get("reached")) and _num(r.get("steps")) == _num(r.get("steps"))
            self.reached[k] = reached
            if reached:
                self.steps[k] = _num(r["steps"])
            if reached and math.isfinite(red) and not bool(r.get("further_diverged")):
                self.usable[k] = True
                self.reduction[k] = red


def _num(v: Any) -> float:
    if v is None or v == "":
        return NAN
    try:
        return float(v)
    except (TypeError, ValueError):
        return NAN


def _best(
    cube: Cube, seed_idx: NDArray[np.int64] | None, min_ok_frac: float
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per batch size: best lr index (−1 if none), its mean reduction, and S (NaN if none)."""
    sl = (slice(None), slice(None), seed_idx) if seed_idx is not None else (Ellipsis,)
    present, usable = cube.present[sl], cube.usable[sl]
    red, steps, reached = cube.reduction[sl], cube.steps[sl], cube.reached[sl]
    n_present = present.sum(-1)
    n_ok = usable.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_present > 0, n_ok / np.maximum(n_present, 1), 0.0)
        mean_red = np.where(
            n_ok > 0, np.where(usable, red, 0.0).sum(-1) / np.maximum(n_ok, 1), -np.inf
        )
    eligible = (frac >= min_ok_frac) & (n_ok > 0)
    score = np.where(eligible, mean_red, -np.inf)
    idx = np.where(eligible.any(-1), score.argmax(-1), -1)
    best_red = np.full(cube.B.size, np.nan)
    S = np.full(cube.B.size, np.nan)
    for i, j in enumerate(idx):
        if j < 0:
            continue
        best_red[i] = score[i, j]
        n_r = reached[i, j].sum()
        if n_r > 0:
            S[i] = np.where(reached[i, j], steps[i, j], 0.0).sum() / n_r
    return idx, best_red, S


def _fit(B: NDArray[np.float64], S: NDArray[np.float64]) -> tuple[float, float, str | None]:
    """(b_noise, s_min, reason): NaN with a reason instead of raising."""
    ok = np.isfinite(S) & (S > 0)
    if ok.sum() < 2:
        return NAN, NAN, f"only {int(ok.sum())} batch size(s) with a best lr reach the target"
    b, s = B[ok], S[ok]
    try:
        b_noise, s_min = fit_b_noise(s, b * s)
    except ValueError as e:
        return NAN, NAN, f"S-E fit failed: {e}"
    # A slope within rounding of zero (S the same at every batch size) is not a B_noise.
    x, y = 1.0 / (b * s), 1.0 / s
    zero = 1024 * np.finfo(np.float64).eps * float(np.max(y)) / float(np.ptp(x))
    if math.isfinite(b_noise) and abs(b_noise) <= zero:
        return (
            NAN,
            s_min,
            (
                f"fitted B_noise = {b_noise:.3g} is zero to rounding (steps to "
                "the target do not change with batch size)"
            ),
        )
    if not (b_noise > 0 and math.isfinite(b_noise)):
        return (
            NAN,
            s_min,
            (
                f"fitted B_noise = {b_noise:.4g} is not positive (steps to the "
                "target do not fall with batch size)"
            ),
        )
    return b_noise, s_min, None


def _rms(x: Sequence[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(a**2))) if a.size else NAN


def fit_target(
    rows: Iterable[Mapping[str, Any]],
    target: float,
    *,
    min_ok_frac: float = 0.5,
    n_boot: int = 200,
    seed: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit one target: returns ``(fit row, best-lr rows)`` (module docstring, steps 1–7).

    Args:
      rows: the points table.
      target: the target loss to analyse (rows with other targets are ignored).
      min_ok_frac: fraction of an lr's seeds that must be usable for it to compete.
      n_boot: bootstrap resamples of seeds: 0 (none) or >= 10; an interval needs
        ≥ ``MIN_BOOT_SEEDS`` seeds.
      seed: seed of the bootstrap's ``np.random.Generator``.

    Returns:
      The fit row has ``target``, ``n_batch_sizes`` (with a best lr), ``b_noise``, ``s_min``,
      ``eps_max_<law>``, ``fit_err_<law>``, ``loo_err_<law>``, ``loo_folds``,
      ``b_noise_lo``/``b_noise_hi``/``n_boot_valid``, ``n_best_at_edge`` (batch sizes of the
      fit whose best lr is the smallest or largest lr tried there: censored, widen the grid),
      and ``reason`` (None when everything was computed). One best row per batch size:
      ``target``, ``batch_size``, ``best_lr`` (NaN if none), ``mean_reduction``, ``at_edge``,
      ``n_usable``, ``n_seeds``, ``S``, ``E`` and ``pred_<law>``.
    """
    if not 0 < min_ok_frac <= 1:
        raise ValueError(f"min_ok_frac must lie in (0, 1]; got {min_ok_frac=}")
    if not (n_boot == 0 or n_boot >= 10):
        raise ValueError(f"n_boot must be 0 (no interval) or >= 10; got {n_boot=}")
    cube = Cube(rows, target)
    idx, best_red, S = _best(cube, None, min_ok_frac)
    best_lr = np.where(idx >= 0, cube.lrs[np.maximum(idx, 0)] if cube.lrs.size else NAN, NAN)
    has = np.isfinite(best_lr) & np.isfinite(S) & (S > 0)
    fit: dict[str, Any] = {"target": cube.target, "n_batch_sizes": int(has.sum())}
    b_noise, s_min, reason = _fit(cube.B[has], S[has])
    fit.update(b_noise=b_noise, s_min=s_min)
    preds: dict[str, NDArray[np.float64]] = {}
    for law in LAWS:
        if reason is None:
            eps = laws.eps_max_given_b_noise(law, cube.B[has], best_lr[has], b_noise)
            preds[law] = np.asarray(laws.law_lr(law, cube.B, eps, b_noise), dtype=np.float64)
            err = _rms(np.log(preds[law][has]) - np.log(best_lr[has]))
        else:
            eps, err = NAN, NAN
            preds[law] = np.full(cube.B.size, np.nan)
        fit[f"eps_max_{law}"] = eps
        fit[f"fit_err_{law}"] = err
    if reason is None:
        loo, folds, loo_reason = _loo(cube.B[has], S[has], best_lr[has])
    else:  # no valid full fit: refits of subsets would rank the laws on noise
        loo, folds, loo_reason = {law: NAN for law in (*LAWS, *BASELINES)}, 0, None
    fit.update({f"loo_err_{law}": loo[law] for law in (*LAWS, *BASELINES)})
    fit["loo_folds"] = folds
    lo, hi, n_valid = _bootstrap(cube, min_ok_frac, n_boot, seed)
    fit.update(b_noise_lo=lo, b_noise_hi=hi, n_boot_valid=n_valid)
    fit["reason"] = reason or loo_reason
    # a best lr at the end of the grid tried at its batch size is censored: the optimum may
    # lie beyond it, and the laws are then fitted to a bound, not to an optimum
    at_edge = np.zeros(cube.B.size, dtype=bool)
    for i in range(cube.B.size):
        tried = np.flatnonzero(cube.present[i].any(-1))
        at_edge[i] = idx[i] >= 0 and idx[i] in (tried.min(), tried.max())
    fit["n_best_at_edge"] = int((at_edge & has).sum())
    best_rows = []
    for i, b in enumerate(cube.B):
        best_rows.append(
            {
                "target": cube.target,
                "batch_size": int(b),
                "best_lr": float(best_lr[i]),
                "mean_reduction": float(best_red[i]),
                "at_edge": bool(at_edge[i]),
                "n_usable": int(cube.usable[i, idx[i]].sum()) if idx[i] >= 0 else 0,
                "n_seeds": int(cube.present[i].any(0).sum()),
                "S": float(S[i]) if has[i] else NAN,
                "E": float(b * S[i]) if has[i] else NAN,
                **{f"pred_{law}": float(preds[law][i]) for law in LAWS},
            }
        )
    return fit, best_rows


def _loo(
    B: NDArray[np.float64], S: NDArray[np.float64], lr: NDArray[np.float64]
) -> tuple[dict[str, float], int, str | None]:
    names = (*LAWS, *BASELINES)
    if B.size < 3:
        return (
            {law: NAN for law in names},
            0,
            (f"leave-one-out needs >= 3 batch sizes with a best lr; have {B.size}"),
        )
    errs: dict[str, list[float]] = {law: [] for law in names}
    for i in range(B.size):
        keep = np.arange(B.size) != i
        b_noise, _, why = _fit(B[keep], S[keep])
        if why is not None:
            continue
        for law in LAWS:
            eps = laws.eps_max_given_b_noise(law, B[keep], lr[keep], b_noise)
            pred = float(laws.law_lr(law, B[i], eps, b_noise))
            errs[law].append(math.log(pred) - math.log(lr[i]))
        for law in BASELINES:  # on the same folds, so the errors compare
            pred = float(laws.baseline_lr(law, B[i], B[keep], lr[keep]))
            errs[law].append(math.log(pred) - math.log(lr[i]))
    folds = len(errs["adam"])
    reason = None if folds else "no leave-one-out fold gave a positive B_noise"
    return {law: _rms(e) for law, e in errs.items()}, folds, reason


def _bootstrap(cube: Cube, min_ok_frac: float, n_boot: int, seed: int) -> tuple[float, float, int]:
    """Seed-bootstrap interval of B_noise: ``(lo, hi, n_valid)`` (module docstring, step 7)."""
    if n_boot <= 0 or cube.seeds.size < MIN_BOOT_SEEDS:
        return NAN, NAN, 0

    def b_noise_of(idx: NDArray[np.int64]) -> float:
        j, _, S = _best(cube, idx, min_ok_frac)
        has = (j >= 0) & np.isfinite(S) & (S > 0)
        b_noise, _, why = _fit(cube.B[has], S[has])
        return b_noise if why is None else NAN

    return bootstrap_interval(
        b_noise_of, int(cube.seeds.size), n_boot=n_boot, level=BOOT_LEVEL, seed=seed
    )


def targets_of(rows: Iterable[Mapping[str, Any]]) -> list[float]:
    """The distinct targets in the table, descending (training order)."""
    return sorted({float(r["target"]) for r in rows}, reverse=True)


def fit_all(
    rows: Sequence[Mapping[str, Any]], **kw: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`fit_target` for every target: ``(fit rows, best-lr rows)``, targets descending."""
    fits, best = [], []
    for t in targets_of(rows):
        f, b = fit_target(rows, t, **kw)
        fits.append(f)
        best += b
    return fits, best


def primary_fit(fits: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The lowest target with a valid B_noise, else the lowest target (None if no targets)."""
    if not fits:
        return None
    valid = [f for f in fits if math.isfinite(f["b_noise"])]
    return min(valid or fits, key=lambda f: f["target"])


def summarise(rows: Sequence[Mapping[str, Any]], **kw: Any) -> dict[str, Any]:
    """Headline figures of a sweep (``summary.json``) plus the fit and best-lr tables.

    Returns a dict with ``primary_target``, ``b_noise``, ``s_min``, ``b_noise_lo``/``_hi``,
    ``eps_max_<law>``, ``fit_err_<law>``, ``loo_err_<law>``, ``n_best_at_edge`` (at the
    primary target), ``best_lr`` (list of {batch_size, lr} there), ``b_noise_by_target``
    (list of {target, b_noise, lo, hi, n_batch_sizes, reason}), ``law_ranking`` (laws by
    leave-one-out error, best first), ``reason``, ``n_points``, ``n_reached``,
    ``n_diverged``, and ``fits`` / ``best`` (the two tables, for ``fits.csv`` /
    ``best_lr.csv``).
    """
    fits, best = fit_all(rows, **kw)
    p = primary_fit(fits)
    out: dict[str, Any] = {
        "n_points": len(rows),
        "n_reached": sum(bool(r.get("reached")) for r in rows),
        "n_diverged": sum(bool(r.get("diverged")) for r in rows),
        "targets": [f["target"] for f in fits],
        "primary_target": None if p is None else p["target"],
    }
    keys = [
        "b_noise",
        "s_min",
        "b_noise_lo",
        "b_noise_hi",
        "n_batch_sizes",
        "n_best_at_edge",
        *(f"{k}_{law}" for k in ("eps_max", "fit_err", "loo_err") for law in LAWS),
        "loo_folds",
        "reason",
    ]
    for k in keys:
        out[k] = None if p is None else p[k]
    if p is None:
        out["reason"] = "the table has no rows"
    out["best_lr"] = [
        {"batch_size": b["batch_size"], "lr": b["best_lr"]}
        for b in best
        if p is not None and b["target"] == p["target"] and math.isfinite(b["best_lr"])
    ]
    out["b_noise_by_target"] = [
        {
            "target": f["target"],
            "b_noise": f["b_noise"],
            "lo": f["b_noise_lo"],
            "hi": f["b_noise_hi"],
            "n_batch_sizes": f["n_batch_sizes"],
            "reason": f["reason"],
        }
        for f in fits
    ]
    out.update({f"loo_err_{law}": None if p is None else p[f"loo_err_{law}"] for law in BASELINES})
    loo = {law: out[f"loo_err_{law}"] for law in (*LAWS, *BASELINES)}
    out["law_ranking"] = sorted(
        (k for k, v in loo.items() if v is not None and math.isfinite(v)), key=loo.get
    )
    out["fits"], out["best"] = fits, best
    return out
