"""One-step laws: Monte Carlo optimal learning rate vs Theorems 2-4 and the SGD law.

For a problem and a batch-size grid the Monte Carlo moments m1 = E[Gᵀv], m2 = E[vᵀHv] of the
update v = sign(G_est) (and of v = G_est) give, by Lemma 1,

    ε_opt^MC = m1 / m2,      ΔL_opt^MC = m1² / (2 m2),

set beside Theorem 2's exact ε_opt (with the marginal σ_i = √Σ_ii: exact for independent
Gaussian coordinates), Theorem 3's curve (ξ linearised), Theorem 4's limit and the SGD law.

Standard errors of ε_opt and ΔL_opt are the delta-method ones of :class:`kernels.Moments`
(with the m1–m2 covariance of the means, via :func:`theory.stats.ratio_se`); the Monte Carlo
peak is :func:`theory.stats.refined_argmax` of ε_opt over the batch-size grid.

The correlated-Gaussian reference is :mod:`theory.correlated`. Moments come from
``kernels.update_moments`` (Gaussian noise; the kernel's contract), except for
finite-dataset problems, whose batches are means of B of the N fixed examples without
replacement: :func:`finite_moments` (numpy, here, because that is not the kernel's contract).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar

from kernels import Moments, update_moments
from simulate.problems import Problem
from theory import correlated, sgd, sign
from theory._checks import as_batch_sizes
from theory.stats import refined_argmax

#: the ``backend`` recorded in the Moments of a finite dataset (numpy, here)
FINITE = "finite-dataset"


def _check_samples(n_samples: int) -> int:
    if not isinstance(n_samples, (int, np.integer)) or isinstance(n_samples, bool) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2; got n_samples={n_samples!r}")
    return int(n_samples)


def _check_update(update: str) -> str:
    if update not in ("sign", "sgd"):
        raise ValueError(f"update must be 'sign' or 'sgd'; got update={update!r}")
    return update


def finite_moments(
    problem: Problem,
    batch_sizes: ArrayLike,
    n_samples: int,
    *,
    update: str = "sign",
    seed: int = 0,
    chunk: int = 0,
) -> Moments:
    """Moments of one update for a finite dataset (see :func:`finite_moments_pair`)."""
    _check_update(update)
    pair = finite_moments_pair(problem, batch_sizes, n_samples, seed=seed, chunk=chunk)
    return pair[0] if update == "sign" else pair[1]


def finite_moments_pair(
    problem: Problem, batch_sizes: ArrayLike, n_samples: int, *, seed: int = 0, chunk: int = 0
) -> tuple[Moments, Moments]:
    """Moments for batches of B of the N examples drawn *without* replacement.

    G_est = (1/B) Σ_{n ∈ batch} g_n; the true gradient is G = mean_n g_n = μ. Each sample draws
    one random permutation and takes its first B entries for every B on the grid (common random
    numbers, like the kernel). Exact SGD reference: cov(G_est) = Σ_pop/B · (1 − (B−1)/(N−1)).

    Args:
      problem: a problem with ``examples`` (N, d).  batch_sizes: integers in [1, N].
      n_samples: number of batches per B.  seed: RNG seed.
      chunk: samples per vectorised block (0: chosen to keep blocks ≈ 2·10⁶ numbers).

    Cost O(n_samples · nB · N · d) flops in BLAS.

    Returns:
      ``(sign_moments, sgd_moments)`` from the same batches.
    """
    if problem.examples is None:
        raise ValueError(
            f"problem {problem.name!r} has no examples (use a finite-dataset "
            f"problem, e.g. simulate.problems.finite)"
        )
    n = _check_samples(n_samples)
    b = np.atleast_1d(as_batch_sizes(batch_sizes, "batch_sizes"))
    g = problem.examples
    N = g.shape[0]
    if np.any(b != np.round(b)) or b.max() > N:
        raise ValueError(
            f"batch_sizes must be integers in [1, N={N}] for a finite dataset; got {b.tolist()}"
        )
    bi = b.astype(np.int64)
    mu = problem.mu
    H = problem.H
    rng = np.random.default_rng([seed, 7])
    # batch b of sample s = the examples whose uniform key is among the B_b smallest: the
    # first B_b entries of one random permutation (nested batches: common random numbers).
    # Summing through a 0/1 membership matrix turns the gather into one BLAS product.
    chunk = chunk or max(1, (1 << 21) // (b.size * N))
    x = np.empty((4, n, b.size))  # x1, x2 of sign; x1, x2 of SGD
    for s0 in range(0, n, chunk):
        s1 = min(n, s0 + chunk)
        keys = rng.random((s1 - s0, N))
        thr = np.sort(keys, axis=1)[:, bi - 1]  # (c, nB)
        member = (keys[:, None, :] <= thr[:, :, None]).astype(np.float64)
        ge = (member @ g) / b[None, :, None]  # (c, nB, d)
        for j, v in enumerate((np.sign(ge), ge)):
            x[2 * j, s0:s1] = v @ mu
            x[2 * j + 1, s0:s1] = np.sum((v @ H) * v, axis=-1)
    mean = x.mean(axis=1)
    se = x.std(axis=1, ddof=1) / math.sqrt(n)
    dev = x - mean[:, None, :]
    cov = [np.sum(dev[j] * dev[j + 1], axis=0) / ((n - 1) * n) for j in (0, 2)]
    n_ex = int(n)
    return (
        Moments(b, mean[0], mean[1], se[0], se[1], cov[0], n_ex, "sign", FINITE, seed),
        Moments(b, mean[2], mean[3], se[2], se[3], cov[1], n_ex, "sgd", FINITE, seed),
    )


def moments(
    problem: Problem,
    batch_sizes: ArrayLike,
    n_samples: int,
    *,
    update: str = "sign",
    seed: int = 0,
    backend: str = "auto",
) -> Moments:
    """Monte Carlo moments: the kernel for Gaussian noise, :func:`finite_moments` for datasets."""
    _check_samples(n_samples)
    _check_update(update)
    b = np.atleast_1d(as_batch_sizes(batch_sizes, "batch_sizes"))
    if problem.examples is not None:
        return finite_moments(problem, b, n_samples, update=update, seed=seed)
    return update_moments(problem, b, n_samples, update=update, seed=seed, backend=backend)


def exact_peak(mu: NDArray, sigma: NDArray, H: NDArray, lo: float, hi: float) -> float:
    """argmax over B ∈ [lo, hi] of Theorem 2's ε_opt(B) (bounded search in log B)."""
    f = lambda lb: -float(sign.optimal_lr_exact(mu, sigma, H, math.exp(lb)))  # noqa: E731
    grid = np.linspace(math.log(lo), math.log(hi), 64)
    vals = np.array([f(x) for x in grid])
    j = int(np.argmin(vals))
    a, c = grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]
    if a == c:
        return float(math.exp(grid[j]))
    r = minimize_scalar(f, bounds=(a, c), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(r.x))


def optimal_lr_correlated(problem: Problem, B: ArrayLike) -> NDArray[np.float64]:
    """Exact Gaussian ε_opt for *correlated* noise: :func:`theory.correlated.optimal_lr_exact`
    with the problem's full Σ = diag(σ²) + W Wᵀ (pairwise orthant moments; equals Theorem 2 when
    Σ is diagonal). Cost O(nB·d²)."""
    b = np.atleast_1d(as_batch_sizes(B))
    return np.asarray(correlated.optimal_lr_exact(problem.mu, problem.Sigma, problem.H, b))


def fpc(B: NDArray, N: int) -> NDArray[np.float64]:
    """Finite-population correction 1 − (B−1)/(N−1): variance factor of a no-replacement mean."""
    return 1.0 - (B - 1.0) / (N - 1.0)


def _z(est, ref, se):
    """(est − ref)/SE with a rounding floor on the SE (deterministic points have SE = 0)."""
    est, ref, se = (np.asarray(a, dtype=np.float64) for a in (est, ref, se))
    return (est - ref) / (se + 1e-9 * np.abs(ref))


def run_surge(
    problem: Problem, batch_sizes: ArrayLike, n_samples: int, seed: int = 0, backend: str = "auto"
) -> tuple[list[dict], dict]:
    """Monte Carlo vs theory on one problem and batch-size grid.

    Returns:
      ``(rows, summary)``: one row per batch size (MC ε_opt, ΔL_opt with SEs; Theorem 2 exact;
      Theorem 3 curve; Theorem 4 limit; SGD law and SGD Monte Carlo; for finite datasets the
      FPC-corrected references) and a summary with ``b_noise_theory``, ``b_peak_exact``,
      ``b_peak_mc``, ``eps_max_theory``, ``eps_peak_mc``, ``max_rel_err_mc_vs_exact``,
      ``surge_detected`` and more.
    """
    b = np.atleast_1d(as_batch_sizes(batch_sizes, "batch_sizes"))
    if b.size < 3 or np.any(np.diff(b) <= 0):
        raise ValueError(
            f"batch_sizes must be strictly increasing with >= 3 entries; got {b.tolist()}"
        )
    mu, H, sm = problem.mu, problem.H, problem.marginal_std()
    if problem.examples is not None:
        ms, mg = finite_moments_pair(problem, b, n_samples, seed=seed)
    else:
        ms = moments(problem, b, n_samples, update="sign", seed=seed, backend=backend)
        mg = moments(problem, b, n_samples, update="sgd", seed=seed, backend=backend)
    lr_mc, lr_se = ms.optimal_lr(), ms.optimal_lr_se()
    gain_mc, gain_se = ms.optimal_gain(), ms.optimal_gain_se()
    lr_sgd_mc, lr_sgd_mc_se = mg.optimal_lr(), mg.optimal_lr_se()
    lr_ex = np.asarray(sign.optimal_lr_exact(mu, sm, H, b))
    gain_ex = np.asarray(sign.gain_exact(mu, sm, H, b))
    eps3, bn3 = sign.surge_params(mu, sm, H)
    lr_th3 = np.asarray(sign.small_batch_lr(mu, sm, H, b))
    dl5, _ = sign.gain_params(mu, sm, H)
    gain_th5 = (
        np.asarray(sign.gain_law(b, dl5, bn3)) if math.isfinite(bn3) else np.full(b.size, math.nan)
    )
    lr_inf = sign.large_batch_lr(mu, H) if np.all(mu != 0) else math.nan
    Sigma = problem.Sigma
    e_sgd, bn_sgd = sgd.params(mu, H, Sigma)
    lr_sgd = np.asarray(sgd.optimal_lr(b, e_sgd, bn_sgd))
    finite = problem.examples is not None
    if finite:
        N = problem.examples.shape[0]
        f = fpc(b, N)
        gHg = float(mu @ H @ mu)
        lr_sgd = float(mu @ mu) / (gHg + float(np.sum(H * Sigma)) * f / b)
        b_eff = np.where(f > 0, b / np.maximum(f, 1e-300), np.inf)
        lr_ex_fpc = np.array(
            [sign.optimal_lr_exact(mu, sm, H, be) if math.isfinite(be) else lr_inf for be in b_eff]
        )
    correlated = problem.W.shape[1] > 0
    lr_corr = optimal_lr_correlated(problem, b) if correlated else None

    rows = []
    for i, bb in enumerate(b):
        r = {
            "B": float(bb),
            "lr_mc": lr_mc[i],
            "lr_mc_se": lr_se[i],
            "gain_mc": gain_mc[i],
            "gain_mc_se": gain_se[i],
            "lr_exact": lr_ex[i],
            "gain_exact": gain_ex[i],
            "lr_theorem3": lr_th3[i],
            "lr_surge": (sign.surge_lr(bb, eps3, bn3) if math.isfinite(bn3) else math.nan),
            "gain_theorem5": gain_th5[i],
            "lr_large_batch": lr_inf,
            "lr_sgd_mc": lr_sgd_mc[i],
            "lr_sgd_mc_se": lr_sgd_mc_se[i],
            "lr_sgd": lr_sgd[i],
            "rel_err_mc_vs_exact": lr_mc[i] / lr_ex[i] - 1.0,
            "z_mc_vs_exact": _z(lr_mc[i], lr_ex[i], lr_se[i]),
        }
        if finite:
            r["lr_exact_fpc"] = lr_ex_fpc[i]
            r["rel_err_mc_vs_exact_fpc"] = lr_mc[i] / lr_ex_fpc[i] - 1.0
        if correlated:
            r["lr_exact_correlated"] = lr_corr[i]
            r["rel_err_mc_vs_correlated"] = lr_mc[i] / lr_corr[i] - 1.0
        rows.append(r)

    peak = refined_argmax(b, lr_mc)
    b_peak_mc, eps_peak_mc, interior = peak.x, peak.y, peak.interior
    i_max = int(np.argmax(lr_mc))
    # a surge: an interior maximum that stands 5 SE above the largest batch size's value
    drop = lr_mc[i_max] - lr_mc[-1]
    drop_se = math.hypot(lr_se[i_max], lr_se[-1])
    detected = bool(interior and drop > 5.0 * drop_se)
    summary = {
        "problem": problem.name,
        "d": problem.d,
        "n_samples": int(n_samples),
        "seed": int(seed),
        "s_off": sign.s_off(mu, sm, H),
        "b_noise_theory": bn3,
        "eps_max_theory": eps3,
        "b_peak_exact": exact_peak(mu, sm, H, float(b[0]), float(b[-1])),
        "b_peak_mc": b_peak_mc,
        "eps_peak_mc": eps_peak_mc,
        "peak_interior": interior,
        "eps_peak_exact": float(lr_ex.max()),
        "eps_max_adam_mc_grid_max": float(lr_mc.max()),
        "eps_peak_mc_over_exact": eps_peak_mc / float(lr_ex.max()),
        "eps_large_batch": lr_inf,
        "eps_peak_minus_last_over_se": drop / drop_se if drop_se > 0 else math.inf,
        "max_rel_err_mc_vs_exact": float(np.max(np.abs(lr_mc / lr_ex - 1.0))),
        "max_abs_z_mc_vs_exact": float(np.max(np.abs(_z(lr_mc, lr_ex, lr_se)))),
        "surge_detected": detected,
        "regime_min": float(np.min(sign.regime_bound(mu, sm))),
        "dl_max_theory": dl5,
        "gain_peak_mc": float(gain_mc.max()),
        "sgd_eps_max": e_sgd,
        "sgd_b_noise": bn_sgd,
        "b_simple": sgd.b_simple(mu, Sigma),
        "max_rel_err_sgd_mc_vs_law": float(np.max(np.abs(lr_sgd_mc / lr_sgd - 1.0))),
        "max_abs_z_sgd_mc_vs_law": float(np.max(np.abs(_z(lr_sgd_mc, lr_sgd, lr_sgd_mc_se)))),
    }
    if finite:
        summary["n_examples"] = int(problem.examples.shape[0])
        summary["max_rel_err_mc_vs_exact_fpc"] = float(np.max(np.abs(lr_mc / lr_ex_fpc - 1.0)))
        summary["max_abs_z_mc_vs_exact_fpc"] = float(np.max(np.abs(_z(lr_mc, lr_ex_fpc, lr_se))))
        summary["b_peak_exact_fpc"] = refined_argmax(b, lr_ex_fpc).x
        # B = 1 is exact by enumeration: v = sign(g_n) for a uniformly drawn example. Its
        # departure from Theorem 2 is the dataset's O(1/√N) sampling of sign(g), which is large
        # against the small ξ_i ≈ √(2/π) μ_i/σ_i of a noisy coordinate.
        vs = np.sign(problem.examples)
        lr_b1 = float(np.mean(vs @ mu) / np.mean(np.sum((vs @ H) * vs, axis=1)))
        summary["lr_exact_finite_b1"] = lr_b1
        summary["rel_err_theorem2_vs_exact_finite_b1"] = float(
            sign.optimal_lr_exact(mu, sm, H, 1.0) / lr_b1 - 1.0
        )
        # at the largest batch the finite-population effect is largest and the MC is tightest
        summary["rel_err_mc_vs_exact_at_b_max"] = float(lr_mc[-1] / lr_ex[-1] - 1.0)
        summary["rel_err_mc_vs_exact_fpc_at_b_max"] = float(lr_mc[-1] / lr_ex_fpc[-1] - 1.0)
    if correlated:
        summary["max_rel_err_mc_vs_correlated"] = float(np.max(np.abs(lr_mc / lr_corr - 1.0)))
        summary["max_abs_z_mc_vs_correlated"] = float(np.max(np.abs(_z(lr_mc, lr_corr, lr_se))))
    return rows, summary


def default_batch_sizes(lo: float = 1.0, hi: float = 4096.0, n: int = 25) -> NDArray[np.float64]:
    """Log-spaced integer batch sizes (duplicates removed)."""
    return np.unique(np.round(np.geomspace(lo, hi, n)))
