"""Speed of the vectorised multi-step grid against a per-run Python loop (same process).

The grid (default 10 learning rates × 12 batch sizes × 10 seeds on a d = 1000 quadratic) runs as
one (R, d) array program (:func:`simulate.train.run_runs`). The per-run loop runs the same code
one run at a time (R = 1) on a random subset of the runs; its time is scaled by
(all runs / subset) — an estimate, stated as such in the output.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from simulate import problems
from simulate.train import TrainConfig, grid_runs, run_runs


def bench_grid(
    *,
    d: int,
    n_lr: int,
    n_batch: int,
    n_seeds: int,
    loop_subset: int,
    optimizer: str,
    max_steps: int,
    seed: int,
    dtype: str,
) -> dict:
    """Time the vectorised grid and (a subset of) the per-run loop; return the numbers.

    The grid is ``n_lr`` learning rates in [1e-4, 3e-3] × ``n_batch`` batch sizes 1, 2, 4, …
    × ``n_seeds`` seeds on ``problems.surge(seed, d)`` (target 0.3·L0, 10 further steps); the
    loop times ``loop_subset`` of those runs one at a time. Warm-up: one short vectorised call
    first (page faults, BLAS threads).
    """
    # coupling 64/d keeps H's top eigenvalue (1 + 64) and B_noise (~55) as in the d = 64 preset
    prob = problems.surge(seed, d, coupling=64.0 / d)
    B = 2.0 ** np.arange(n_batch)
    lrs = np.geomspace(1e-4, 3e-3, n_lr)
    cfg = TrainConfig(
        optimizer=optimizer,
        targets=(0.3,),
        max_steps=max_steps,
        further_steps=10,
        keep_positions=False,
        dtype=dtype,
    )
    Bs, Es, Ss = grid_runs(B, lrs, n_seeds)
    run_runs(
        prob,
        Bs[:8],
        Es[:8],
        Ss[:8],
        TrainConfig(optimizer=optimizer, targets=(0.3,), max_steps=5),
        [seed, 99],
    )
    t0 = time.perf_counter()
    res = run_runs(prob, Bs, Es, Ss, cfg, [seed, 0])
    t_vec = time.perf_counter() - t0
    rng = np.random.default_rng([seed, 5])
    idx = rng.choice(Bs.size, size=min(loop_subset, Bs.size), replace=False)
    t0 = time.perf_counter()
    loop_steps = 0
    for i in idx:
        r1 = run_runs(prob, Bs[i : i + 1], Es[i : i + 1], Ss[i : i + 1], cfg, [seed, 1000 + int(i)])
        loop_steps += int(r1.steps_run[0])
    t_sub = time.perf_counter() - t0
    t_loop = t_sub * Bs.size / idx.size
    run_steps = int(res.steps_run.sum())
    return {
        "d": d,
        "n_lr": n_lr,
        "n_batch": n_batch,
        "n_seeds": n_seeds,
        "n_runs": int(Bs.size),
        "optimizer": optimizer,
        "max_steps": max_steps,
        "dtype": dtype,
        "cpu_count": os.cpu_count(),
        "vectorised_s": t_vec,
        "vectorised_run_steps": run_steps,
        "vectorised_coord_updates_per_s": run_steps * d / t_vec,
        "reached_target": int((res.steps[:, 0] >= 0).sum()),
        "diverged": int(res.diverged.sum()),
        "loop_subset_runs": int(idx.size),
        "loop_subset_s": t_sub,
        "loop_subset_run_steps": loop_steps,
        "loop_estimated_full_s": t_loop,
        "loop_estimate_note": "per-run loop timed on a random subset and scaled by "
        "n_runs / subset (an estimate, not a full measurement)",
        "speedup_vs_loop": t_loop / t_vec if t_vec > 0 else math.inf,
        "under_one_minute": bool(t_vec < 60.0),
    }
