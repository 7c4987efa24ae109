"""Momentum and the batch size: Su's one-step optimum vs the long-horizon optimum, by simulation.

Su's EMA analysis (kexue.fm/archives/11301) takes Adam in its *steady state*: the gradient
statistics are stationary over the EMA's memory, β2 → 1 so v̂_i = E[g_i²] = μ_i² + σ_i²/B, and
m_i is stationary with mean μ_i and variance c σ_i²/B, c = (1 − β1)/(1 + β1). The one-step
optimum of the expected loss change is then

    ε₁(B) = Σ_i μ_i² / √v_i  /  Σ_i h_i (μ_i² + c σ_i²/B) / v_i          (diagonal H),

which, when every coordinate has the same σ_i/μ_i, is ∝ √(1 + x)/(1 + c x), x = B_simple/B, and
falls for B > B* = (1 − β1)/(3β1 − 1) · B_simple (B_simple/17 at β1 = 0.9): d ln ε₁/dx =
1/(2(1 + x)) − c/(1 + c x) = 0 at x* = (1 − 2c)/c, i.e. B* = B_simple · c/(1 − 2c). Momentum
averages the noise (c < 1) while v̂ still sees all of it. That is a statement about *one* step.

:func:`branch_losses` measures the optimum after K steps from that steady state: the EMAs are
warmed up with the position held at the branch point until stationary (:func:`warmup_steps`),
then every lr of a grid takes K steps from the same state with the same gradient noise (common
random numbers across lrs, batch sizes and configurations), and the expected loss change is
averaged over seeds. K = 1 reproduces Su; as K grows successive momentum noises are correlated
(the averaging Su credits to momentum is shared across steps), and the advantage fades. The
whole run (:func:`run_momentum`'s ``whole`` part: steps to a target from the start point) is the
long-horizon limit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from simulate.problems import Problem
from simulate.train import TrainConfig, per_cell, run_grid
from theory import sgd
from theory.stats import bootstrap_interval, refined_argmax

#: residual weight of the EMA's initial state after the warm-up (β1^n ≤ this)
WARM_TOL = 1e-4


def su_fall_threshold(beta1: float, b_simple: float) -> float:
    """B above which Su's EMA analysis predicts a falling ε_opt: (1−β1)/(3β1−1)·B_simple.

    ``inf`` when β1 ≤ 1/3 (no fall predicted).

    Examples:
      >>> round(su_fall_threshold(0.9, 17.0), 12)
      1.0
    """
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"beta1 must be in [0, 1); got beta1={beta1!r}")
    return math.inf if beta1 <= 1.0 / 3.0 else (1.0 - beta1) / (3.0 * beta1 - 1.0) * b_simple


def su_one_step_lr(problem: Problem, B: ArrayLike, beta1: float) -> NDArray[np.float64]:
    """Su's steady-state one-step optimum ε₁(B), one value per B (a 1-D array), β2 → 1.

    ε₁ = Σ μ_i²/√v_i / Σ h_i (μ_i² + c s_i²/B)/v_i, v_i = μ_i² + s_i²/B, c = (1−β1)/(1+β1),
    s_i² = Σ_ii (diagonal of the noise covariance). Off-diagonal H enters through Σ H_ij E[u_i u_j]
    with E[u_i u_j] = μ_iμ_j/√(v_i v_j) for i ≠ j (independent noise).

    Examples:
      >>> p = Problem([1.0, -1.0], [1.0, 1.0], [1.0, 1.0])
      >>> su_one_step_lr(p, [1e12], 0.9).round(9).tolist()  # B → ∞: u = sign μ, Σ|μ|/tr H
      [1.0]
    """
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"beta1 must be in [0, 1); got beta1={beta1!r}")
    b = np.atleast_1d(np.asarray(B, dtype=np.float64))
    if np.any(~np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(f"B must be positive and finite; got {B!r}")
    c = (1.0 - beta1) / (1.0 + beta1)
    mu, s2 = problem.mu, _noise_var(problem)
    v = mu**2 + s2 / b[:, None]
    eu = mu / np.sqrt(v)  # E[u_i]
    eu2 = (mu**2 + c * s2 / b[:, None]) / v  # E[u_i²]
    hd = problem.h + np.sum(problem.U**2, axis=1)
    off = (eu @ problem.U) ** 2 @ np.ones(problem.rank) - (eu**2) @ np.sum(problem.U**2, axis=1)
    return np.sum(mu * eu, axis=1) / (eu2 @ hd + off)


def warmup_steps(beta1: float, beta2: float, tol: float = WARM_TOL) -> int:
    """Warm-up steps after which the EMAs are stationary: β1^n ≤ tol.

    m starts at its stationary mean μ, v at its stationary mean E[g²]; after n steps at a fixed
    point m's variance is c(1 − β1^{2n}) s²/B, within tol² of stationary. v (β2 → 1) stays at
    E[g²] up to its own O(√(1 − β2)) fluctuation, which Su neglects too.

    Examples:
      >>> warmup_steps(0.9, 0.999), warmup_steps(0.0, 0.0)
      (88, 1)
    """
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and 0.0 < tol < 1.0):
        raise ValueError(f"need beta1, beta2 in [0, 1) and tol in (0, 1); got {beta1=}, {beta2=}")
    return 1 if beta1 == 0 else max(1, math.ceil(math.log(tol) / math.log(beta1)))


def _noise_var(p: Problem) -> NDArray[np.float64]:
    return p.sigma**2 + (np.sum(p.W**2, axis=1) if p.noise_rank else 0.0)


def branch_losses(
    problem: Problem,
    B: float,
    lrs: Sequence[float],
    beta1: float,
    beta2: float,
    horizons: Sequence[int],
    n_seeds: int,
    *,
    seed: int = 0,
    n_warm: int | None = None,
    chunk: int = 256,
) -> NDArray[np.float64]:
    """Loss change after K steps of Adam from its steady state, per (K, seed, lr).

    The EMAs are warmed up at the branch point (position held, ``n_warm`` draws, default
    :func:`warmup_steps`); then each lr takes max(horizons) steps with the same noise draws.
    Bias corrections are 1 (steady state). The loss change is exact on the quadratic:
    ΔL = μᵀδ + ½ δᵀHδ.

    Args:
      problem: the quadratic (μ, σ, H = diag(h) + UUᵀ, noise W).  B: batch size.
      lrs: learning rates.  beta1, beta2: Adam's EMA rates ((0, 0) is sign-SGD).
      horizons: the K at which the loss change is recorded (ascending, ≥ 1).
      n_seeds: independent branches.  seed: the noise stream (the same for every B, lr and
        configuration given ``n_warm``: common random numbers).

    Returns:
      (len(horizons), n_seeds, len(lrs)) loss changes (negative = the loss fell).

    Examples:
      >>> p = Problem([1.0], [1e-9], [1.0])  # noiseless: u = sign μ = 1, ΔL = −ε + ε²/2
      >>> branch_losses(p, 1.0, [0.5, 1.0], 0.9, 0.999, [1], 2)[0].round(6).tolist()
      [[-0.375, -0.5], [-0.375, -0.5]]
    """
    lr = np.asarray(list(lrs), dtype=np.float64)
    ks = [int(k) for k in horizons]
    if lr.ndim != 1 or lr.size == 0 or np.any(~np.isfinite(lr)) or np.any(lr <= 0):
        raise ValueError(f"lrs must be positive and finite; got {lrs!r}")
    if not ks or ks[0] < 1 or any(b <= a for a, b in itertools.pairwise(ks)):
        raise ValueError(f"horizons must be ascending integers >= 1; got {list(horizons)!r}")
    if not (math.isfinite(B) and B > 0):
        raise ValueError(f"B must be positive and finite; got {B!r}")
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be >= 1; got {n_seeds}")
    nw = warmup_steps(beta1, beta2) if n_warm is None else int(n_warm)
    p = problem
    mu, sig, W, U = p.mu, p.sigma, p.W, p.U
    sb = 1.0 / math.sqrt(B)
    rng = np.random.default_rng([seed, 11])
    out = np.empty((len(ks), n_seeds, lr.size))
    kmax = ks[-1]
    for s0 in range(0, n_seeds, chunk):
        n = min(chunk, n_seeds - s0)
        crng = np.random.default_rng(rng.integers(2**63))

        def noise(shape_pre: tuple[int, ...], crng=crng, n=n) -> NDArray:
            z = crng.standard_normal((n, p.d)) * sig
            if p.noise_rank:
                z = z + crng.standard_normal((n, p.noise_rank)) @ W.T
            return (z * sb).reshape((n, *shape_pre, p.d))

        m = np.broadcast_to(mu, (n, p.d)).copy()
        v = np.broadcast_to(mu**2 + _noise_var(p) / B, (n, p.d)).copy()
        for _ in range(nw):
            g = mu + noise(())
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
        m = np.repeat(m[:, None, :], lr.size, axis=1)
        v = np.repeat(v[:, None, :], lr.size, axis=1)
        delta = np.zeros((n, lr.size, p.d))
        grad = np.broadcast_to(mu, delta.shape)
        j = 0
        for k in range(1, kmax + 1):
            g = grad + noise((1,))
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            delta = delta - lr[:, None] * m / np.sqrt(np.maximum(v, 1e-300))
            hd = p.h * delta + ((delta @ U) @ U.T if p.rank else 0.0)
            grad = mu + hd
            if k == ks[j]:
                out[j, s0 : s0 + n] = delta @ mu + 0.5 * np.sum(delta * hd, axis=-1)
                j += 1
    return out


def best_lr(lrs: ArrayLike, dloss: ArrayLike) -> tuple[float, str]:
    """The lr of the largest mean loss fall, refined by a parabola in lr; censored at edges.

    For K = 1 the expected loss change is exactly quadratic in ε (the update does not depend on
    ε), so the parabola through the three grid points around the minimum is exact; for K > 1 it is
    a local approximation.

    Examples:
      >>> lrs = np.array([0.25, 0.5, 1.0, 2.0])
      >>> best_lr(lrs, -2 * 0.7 * lrs + lrs**2)
      (0.7, '')
      >>> best_lr(lrs, -lrs)
      (2.0, 'high')
    """
    pk = refined_argmax(np.asarray(lrs, dtype=np.float64), -np.asarray(dloss), log=False)
    return round(pk.x, 15), pk.censored


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


def fall(
    B: ArrayLike,
    lr: ArrayLike,
    censored: Sequence[str],
    min_factor: float,
    lo: ArrayLike | None = None,
    hi: ArrayLike | None = None,
) -> dict:
    """The largest fall of the best lr between any two batch sizes B_i < B_j.

    A fall anywhere counts (also one across the whole grid with no interior peak). Pairs whose
    fall a censored value could fake are skipped: the earlier at the grid's low edge (true lr may
    be lower) or the later at the high edge (true lr may be higher). With intervals (``lo``,
    ``hi``) a pair counts only if they are disjoint (lo_i > hi_j): a fall beyond the noise.

    Returns:
      ``{"factor", "b_from", "b_to", "falls"}``: factor = the largest lr_i/lr_j over the pairs
      that count (1 if none), ``falls`` = factor > ``min_factor``.

    Examples:
      >>> fall([1, 2, 4], [3.0, 2.0, 1.0], ["", "", ""], 1.2)["falls"]  # monotone: a fall
      True
      >>> fall([1, 2, 4], [1.0, 2.0, 3.0], ["", "", ""], 1.2)["factor"]
      1.0
      >>> fall([1, 2], [3.0, 1.0], ["", ""], 1.2, lo=[0.5, 0.5], hi=[4.0, 4.0])["falls"]
      False
    """
    b = np.asarray(B, dtype=np.float64)
    y = np.asarray(lr, dtype=np.float64)
    lo_ = np.full(b.size, np.inf) if lo is None else np.asarray(lo, dtype=np.float64)
    hi_ = np.full(b.size, -np.inf) if hi is None else np.asarray(hi, dtype=np.float64)
    best = {"factor": 1.0, "b_from": math.nan, "b_to": math.nan}
    for i in range(b.size):
        if not np.isfinite(y[i]) or censored[i] == "low":
            continue
        for j in range(i + 1, b.size):
            if not np.isfinite(y[j]) or censored[j] == "high":
                continue
            if not lo_[i] > hi_[j]:  # NaN interval: not separated
                continue
            if y[i] / y[j] > best["factor"]:
                best = {"factor": float(y[i] / y[j]), "b_from": float(b[i]), "b_to": float(b[j])}
    return {**best, "falls": bool(best["factor"] > min_factor)}


def best_lr_interval(
    lrs: NDArray, dloss: NDArray, *, n_boot: int = 200, level: float = 0.9, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval over seeds of :func:`best_lr` (``dloss``: (seeds, lrs)).

    Examples:
      >>> lrs = np.array([0.25, 0.5, 1.0, 2.0])
      >>> rng = np.random.default_rng(0)
      >>> d = -2 * (0.7 + 0.01 * rng.standard_normal((50, 1))) * lrs + lrs**2
      >>> lo, hi = best_lr_interval(lrs, d)
      >>> bool(lo < 0.7 < hi and hi - lo < 0.01)
      True
    """
    if dloss.shape[0] < 2:
        return math.nan, math.nan
    lo, hi, _ = bootstrap_interval(
        lambda i: best_lr(lrs, dloss[i].mean(axis=0))[0],
        dloss.shape[0],
        n_boot=n_boot,
        level=level,
        seed=seed,
    )
    return lo, hi


def default_batch_sizes(problem: Problem, lo: int = -8, hi: int = 3) -> NDArray[np.float64]:
    """B_simple · 2^k for k = lo…hi: spans Su's threshold B_simple/17 (β1 = 0.9) both ways.

    Examples:
      >>> p = Problem([1.0, -1.0], [4.0, 4.0], [1.0, 1.0])  # B_simple = 16
      >>> default_batch_sizes(p, -1, 1).tolist()
      [8.0, 16.0, 32.0]
    """
    return sgd.b_simple(problem.mu, problem.Sigma) * 2.0 ** np.arange(lo, hi + 1)


def run_momentum(
    problem: Problem,
    batch_sizes: Sequence[float],
    lrs: Sequence[float],
    n_seeds: int,
    betas: Sequence[tuple[float, float]],
    *,
    target: float,
    max_steps: int,
    horizons: Sequence[int] = (1, 10, 30, 100),
    branch_seeds: int = 256,
    whole: bool = True,
    n_boot: int = 200,
    seed: int = 0,
    on_chunk: Callable[..., None] | None = None,
) -> tuple[list[dict], dict]:
    """Best lr vs B after K steps from Adam's steady state, and over a whole run, per (β1, β2).

    Args:
      problem: the quadratic (typically ``diagonal``).  batch_sizes, lrs: the grids (ascending).
      n_seeds: replicates per whole-run cell.  betas: Adam (β1, β2) pairs; (0, 0) is sign-SGD.
      target, max_steps: the whole run's target (fraction of L0) and step budget.
      horizons: the K of the steady-state branches.  branch_seeds: branches per (B, config).
      whole: also run the whole-run grid (steps to target from the start point).
      n_boot: bootstrap resamples (over branch seeds) of each best lr's 90% interval.
      on_chunk: called after each (configuration, batch size) of either part.

    Returns:
      ``(rows, summary)``: one row per (β1, β2, horizon, B) with ``lr_best``, ``censored``
      (``low``/``high``: the optimum is at that grid edge) and Su's one-step ``su_lr``; horizon
      is ``"1"``, ``"10"``, … or ``"whole"``. The summary holds per configuration and horizon the
      largest fall (:func:`fall`), Su's curve and its peak, and the K = 1 vs Su agreement.
    """
    lr_arr = np.asarray(list(lrs), dtype=np.float64)
    b_arr = np.asarray(list(batch_sizes), dtype=np.float64)
    if lr_arr.size < 3 or np.any(np.diff(lr_arr) <= 0):
        raise ValueError(f"lrs must be ascending with at least 3 values; got {lr_arr.tolist()}")
    if b_arr.size < 2 or np.any(np.diff(b_arr) <= 0) or np.any(b_arr <= 0):
        raise ValueError(f"batch_sizes must be positive, ascending, >= 2; got {b_arr.tolist()}")
    q = float(np.exp(np.mean(np.diff(np.log(lr_arr)))))
    b_simple = sgd.b_simple(problem.mu, problem.Sigma)
    n_warm = max(warmup_steps(b1, b2) for b1, b2 in betas)  # one noise stream for all
    hs = [int(k) for k in horizons]
    rows, per = [], {}
    i_ref = int(np.argmin(np.abs(np.log(b_arr / b_simple))))  # the ratio's batch size
    ref: dict[tuple[float, float], NDArray] = {}
    for b1, b2 in betas:
        su = su_one_step_lr(problem, b_arr, b1)
        thr = su_fall_threshold(b1, b_simple)
        curves: dict[str, dict] = {}
        for k in hs:
            curves[str(k)] = {k2: [] for k2 in ("lr_best", "lo", "hi", "censored", "dloss")}
            curves[str(k)]["dloss_se"] = []
        for ib, bb in enumerate(b_arr):
            dl = branch_losses(
                problem, float(bb), lr_arr, b1, b2, hs, branch_seeds, seed=seed, n_warm=n_warm
            )
            if ib == i_ref:
                ref[(b1, b2)] = dl
            mean = dl.mean(axis=1)
            se = dl.std(axis=1, ddof=1) / math.sqrt(branch_seeds)
            for j, k in enumerate(hs):
                x, cens = best_lr(lr_arr, mean[j])
                lo, hi = best_lr_interval(lr_arr, dl[j], n_boot=n_boot, seed=seed)
                i = int(np.argmin(mean[j]))
                c = curves[str(k)]
                c["lr_best"].append(x)
                c["lo"].append(lo)
                c["hi"].append(hi)
                c["censored"].append(cens)
                c["dloss"].append(float(mean[j, i]))
                c["dloss_se"].append(float(se[j, i]))
            if on_chunk is not None:
                on_chunk()
        if whole:
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
            res = run_grid(problem, b_arr, lr_arr, n_seeds, cfg, seed, on_chunk=on_chunk)
            cell = per_cell(res, 0)
            w = {"lr_best": [], "lo": [], "hi": [], "censored": [], "steps": [], "steps_se": []}
            for i in range(cell["B"].size):
                s = cell["steps"][i]
                if np.isfinite(s).any():
                    pk = refined_argmax(lr_arr, -s)
                    j = pk.index
                    w["lr_best"].append(pk.x)
                    w["lo"].append(math.nan)
                    w["hi"].append(math.nan)
                    w["censored"].append(pk.censored)
                    w["steps"].append(float(s[j]))
                    w["steps_se"].append(float(cell["steps_se"][i, j]))
                else:
                    w["lr_best"].append(math.nan)
                    w["lo"].append(math.nan)
                    w["hi"].append(math.nan)
                    w["censored"].append("")
                    w["steps"].append(math.nan)
                    w["steps_se"].append(math.nan)
            curves["whole"] = w
        key = f"beta1={b1:g},beta2={b2:g}"
        entry: dict = {"beta1": b1, "beta2": b2, "su_fall_threshold": thr, "B": b_arr}
        entry["su_lr"] = su
        pk_su = refined_argmax(b_arr, su)
        entry["su_peak_b"] = pk_su.x if pk_su.interior else math.nan
        for h, c in curves.items():
            y = np.asarray(c["lr_best"], dtype=np.float64)
            lo_, hi_ = np.asarray(c["lo"]), np.asarray(c["hi"])
            f = fall(
                b_arr,
                y,
                c["censored"],
                math.sqrt(q),
                None if h == "whole" else lo_,
                None if h == "whole" else hi_,
            )
            n_cens = sum(bool(x) for x in c["censored"])
            entry[f"horizon={h}"] = {
                "lr_best": y,
                "lo": lo_,
                "hi": hi_,
                "censored": c["censored"],
                "n_censored": n_cens,
            }
            entry[f"horizon={h}"].update(f)
            for i, bb in enumerate(b_arr):
                row = {
                    "beta1": b1,
                    "beta2": b2,
                    "horizon": h,
                    "B": float(bb),
                    "lr_best": float(y[i]),
                    "lo": float(lo_[i]),
                    "hi": float(hi_[i]),
                    "censored": c["censored"][i],
                    "su_lr": float(su[i]),
                    "su_fall_threshold": thr,
                }
                if h == "whole":
                    row["steps_best"] = c["steps"][i]
                    row["steps_best_se"] = c["steps_se"][i]
                else:
                    row["dloss_best"] = c["dloss"][i]
                    row["dloss_best_se"] = c["dloss_se"][i]
                rows.append(row)
        if "1" in curves:
            y1 = np.asarray(curves["1"]["lr_best"])
            ok = np.array([not x for x in curves["1"]["censored"]])
            entry["k1_max_rel_dev_from_su"] = (
                float(np.max(np.abs(y1[ok] / su[ok] - 1.0))) if ok.any() else math.nan
            )
            lo1, hi1 = np.asarray(curves["1"]["lo"]), np.asarray(curves["1"]["hi"])
            entry["k1_su_inside_interval"] = int(np.sum((lo1 <= su) & (su <= hi1)))
            pk1 = refined_argmax(b_arr, y1)
            entry["k1_peak_b"] = pk1.x if pk1.interior else math.nan
        per[key] = entry
    ratio = _ratio_vs_beta0(per, ref, lr_arr, hs, b_arr[i_ref], n_boot, seed)
    summary = {
        "problem": problem.name,
        "d": problem.d,
        "b_simple": b_simple,
        "target_frac": target,
        "lr_grid_ratio": q,
        "horizons": hs,
        "branch_seeds": branch_seeds,
        "warmup_steps": n_warm,
        "warm_tol": WARM_TOL,
        "configs": per,
        "ratio_momentum_over_beta0": ratio,
    }
    return rows, summary


def _ratio_vs_beta0(
    per: dict, ref: dict, lrs: NDArray, hs: list[int], b: float, n_boot: int, seed: int
) -> dict:
    """Best lr of β1 = 0.9 over β1 = 0 (same β2) per horizon at B ≈ B_simple, with a paired
    bootstrap interval (both configurations see the same noise draws: resample seeds jointly).
    The whole run's ratio is a point value (few seeds, no interval)."""
    m = [c for c in per.values() if c["beta1"] == 0.9]
    z = [c for c in per.values() if c["beta1"] == 0.0 and m and c["beta2"] == m[0]["beta2"]]
    if not (m and z):
        return {}
    dm, dz = ref[(0.9, m[0]["beta2"])], ref[(0.0, z[0]["beta2"])]
    i = int(np.argmin(np.abs(np.asarray(m[0]["B"]) - b)))
    su = float(m[0]["su_lr"][i] / z[0]["su_lr"][i])
    out: dict = {"B": float(b), "su_one_step": su}
    for j, k in enumerate(hs):

        def stat(idx, j=j):
            return best_lr(lrs, dm[j][idx].mean(0))[0] / best_lr(lrs, dz[j][idx].mean(0))[0]

        lo, hi, _ = bootstrap_interval(stat, dm.shape[1], n_boot=n_boot, seed=seed)
        out[str(k)] = {"value": stat(np.arange(dm.shape[1])), "lo": lo, "hi": hi}
    if "horizon=whole" in m[0]:
        v = m[0]["horizon=whole"]["lr_best"][i] / z[0]["horizon=whole"]["lr_best"][i]
        out["whole"] = {"value": float(v), "lo": math.nan, "hi": math.nan}
    return out
