"""Does Adam with momentum surge on a *diagonal* Hessian?  Decided by multi-step simulation.

Two predictions disagree (THEORY.md, "Other derivations"):

* sign-update theory (Theorem 2): with diagonal H, ε_opt(B) is non-decreasing — no surge;
* Su's EMA analysis: Adam with β1 > 1/3 (and v̂ ≈ E[g²], i.e. β2 → 1) has, per coordinate,
  ε_opt ∝ √(1 + x)/(1 + c x) with x = B_simple/B and c = (1 − β1)/(1 + β1), which falls for
  B > (1 − β1)/(3β1 − 1) · B_simple (= B_simple/17 at β1 = 0.9).

:func:`run_momentum` trains each optimiser configuration on the same diagonal problem over a
(B, lr, seed) grid (:func:`simulate.train.run_grid`), takes the lr that minimises the mean steps
to the target at each B (refined by a parabola in log lr through the three grid points around the
grid minimum), and reports whether that best lr falls at large B.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from simulate.problems import Problem
from simulate.train import TrainConfig, per_cell, run_grid
from theory import sgd
from theory.stats import refined_argmax


def su_fall_threshold(beta1: float, b_simple: float) -> float:
    """B above which Su's EMA analysis predicts a falling ε_opt: (1−β1)/(3β1−1)·B_simple.

    ``inf`` when β1 ≤ 1/3 (no fall predicted).
    """
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"beta1 must be in [0, 1); got beta1={beta1!r}")
    return math.inf if beta1 <= 1.0 / 3.0 else (1.0 - beta1) / (3.0 * beta1 - 1.0) * b_simple


def refined_best_lr(lrs: np.ndarray, steps: np.ndarray) -> float:
    """argmin over lr of the mean steps, refined by a parabola in log lr (NaN if none reached).

    :func:`theory.stats.refined_argmax` of −steps (non-finite steps: not reached).

    Examples:
      >>> lrs = np.geomspace(1e-3, 1e-1, 5)
      >>> round(refined_best_lr(lrs, (np.log(lrs) - np.log(1e-2)) ** 2), 12)
      0.01
    """
    s = np.asarray(steps, dtype=np.float64)
    if not np.isfinite(s).any():
        return math.nan
    return float(refined_argmax(np.asarray(lrs, dtype=np.float64), -s).x)


def run_momentum(
    problem: Problem,
    batch_sizes: Sequence[float],
    lrs: Sequence[float],
    n_seeds: int,
    betas: Sequence[tuple[float, float]],
    *,
    target: float,
    max_steps: int,
    seed: int = 0,
    on_chunk: Callable[..., None] | None = None,
) -> tuple[list[dict], dict]:
    """Best learning rate per batch size for each Adam (β1, β2) on one problem.

    Args:
      problem: typically ``simulate.problems.diagonal``.  batch_sizes, lrs: the grid.
      n_seeds: replicates per cell.  betas: Adam configurations, e.g. ((0, 0), (0.9, 0.999));
      (0, 0) is sign-SGD.  target: loss fraction of L0 to reach.  max_steps: budget per run.
      on_chunk: called after each finished (configuration, batch size) chunk (progress).

    Returns:
      ``(rows, summary)``: one row per (β1, β2, B) with the grid-best and refined best lr and
      steps; the summary holds, per configuration, the refined best lr per B, the B where it
      peaks, the ratio of the last B's best lr to the peak, and ``falls`` (that ratio below
      1/√q, q the lr grid ratio: a fall larger than half a grid cell).
    """
    lr_arr = np.sort(np.asarray(list(lrs), dtype=np.float64))
    if lr_arr.size < 3:
        raise ValueError(f"lrs must have at least 3 values; got {lr_arr.tolist()}")
    q = float(np.exp(np.mean(np.diff(np.log(lr_arr)))))
    b_simple = sgd.b_simple(problem.mu, problem.Sigma)
    rows, per = [], {}
    for b1, b2 in betas:
        opt = "sign" if b1 == 0 and b2 == 0 else "adam"
        cfg = TrainConfig(
            optimizer=opt,
            targets=(target,),
            max_steps=max_steps,
            beta1=b1,
            beta2=b2,
            further_steps=0,
            keep_positions=False,
        )
        res = run_grid(problem, batch_sizes, lr_arr, n_seeds, cfg, seed, on_chunk=on_chunk)
        c = per_cell(res, 0)
        best = np.array([refined_best_lr(c["lr"], c["steps"][i]) for i in range(c["B"].size)])
        for i, bb in enumerate(c["B"]):
            s = c["steps"][i]
            j = int(np.nanargmin(s)) if np.isfinite(s).any() else -1
            rows.append(
                {
                    "beta1": b1,
                    "beta2": b2,
                    "B": float(bb),
                    "lr_grid_best": float(c["lr"][j]) if j >= 0 else None,
                    "lr_best": best[i],
                    "steps_best": float(s[j]) if j >= 0 else None,
                    "fraction_diverged": float(c["diverged"][i].mean()),
                    "su_fall_threshold": su_fall_threshold(b1, b_simple),
                }
            )
        ok = np.isfinite(best)
        key = f"beta1={b1:g},beta2={b2:g}"
        if ok.sum() >= 2:
            i_pk = int(np.nanargmax(best))
            last = int(np.nonzero(ok)[0][-1])
            ratio = float(best[last] / best[i_pk])
            per[key] = {
                "beta1": b1,
                "beta2": b2,
                "B": c["B"],
                "lr_best": best,
                "b_at_peak": float(c["B"][i_pk]),
                "lr_peak": float(best[i_pk]),
                "last_over_peak": ratio,
                "peak_interior": bool(0 < i_pk < last),
                "falls": bool(0 < i_pk < last and ratio < 1.0 / math.sqrt(q)),
                "su_fall_threshold": su_fall_threshold(b1, b_simple),
            }
        else:
            per[key] = {
                "beta1": b1,
                "beta2": b2,
                "falls": None,
                "note": "fewer than two batch sizes reached the target",
            }
    summary = {
        "problem": problem.name,
        "d": problem.d,
        "b_simple": b_simple,
        "target_frac": target,
        "lr_grid_ratio": q,
        "configs": per,
    }
    return rows, summary
