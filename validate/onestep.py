"""The direct one-step measurement of the best learning rate at a checkpoint.

For many independent mini-batches at one batch size, the true loss change of one step
θ → θ − ε v_b on a fixed evaluation set, over a learning-rate grid: v_b = sign(g_b) (Adam with
β1 = β2 = 0 and no ε_Adam) or v_b = g_b (SGD). The measured best learning rate is the refined
argmax of the mean improvement (:func:`theory.stats.refined_argmax`) with a bootstrap interval
over mini-batches (:func:`theory.stats.bootstrap_interval`); an optimum at a grid edge is
censored and the grid extended.

A diagnostic locates a miss: Lemma 1 with MEASURED moments, ε* = E[Gᵀv]/E[vᵀHv] over the
same mini-batches (one HVP each; no Gaussian/independence assumption) — the optimum of the
local quadratic model with the true update distribution.

Reference: Li et al., NeurIPS 2024, Lemma 1 (Eq. 6).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap

from theory.stats import bootstrap_interval, ratio_se, ratio_se_paired, refined_argmax
from validate.flatparams import chunk_rows, eval_mode, flat_params, flat_view

Tensor = torch.Tensor
LossFn = Callable[[Tensor, Tensor], Tensor]
HVP = Callable[[Tensor], Tensor]


def eval_losses(
    model: torch.nn.Module,
    loss: LossFn,
    thetas: Tensor,
    x: Tensor,
    y: Tensor,
    chunk_floats: int = 20_000_000,
) -> Tensor:
    """L(θ_k) on the fixed evaluation set for each row θ_k of ``thetas`` (k, d): (k,) float64.

    ``vmap`` over parameter vectors (one batched forward for a chunk of learning rates).
    """
    f = flat_view(model)

    def one(theta: Tensor, xc: Tensor, yc: Tensor) -> Tensor:
        return loss(functional_call(model, (f.unflatten(theta), f.buffers), (xc,)), yc)

    many = vmap(one, in_dims=(0, None, None))
    n = int(x.shape[0])
    xchunk = 512
    # per θ row: the parameters (d) plus activations, guessed as 32 floats per input float
    rows = chunk_rows(chunk_floats, f.d + 32 * int(x[:1].numel()) * min(n, xchunk))
    out = torch.zeros(thetas.shape[0], dtype=torch.float64, device=thetas.device)
    with eval_mode(model), torch.no_grad():
        for i in range(0, thetas.shape[0], rows):
            th = thetas[i : i + rows].to(f.params[f.names[0]].dtype)
            for j in range(0, n, xchunk):
                xc, yc = x[j : j + xchunk], y[j : j + xchunk]
                out[i : i + rows] += many(th, xc, yc).to(torch.float64) * (xc.shape[0] / n)
    return out


def step_gains(
    model: torch.nn.Module,
    loss: LossFn,
    updates: Tensor,
    lrs: np.ndarray,
    x_eval: Tensor,
    y_eval: Tensor,
    chunk_floats: int = 20_000_000,
) -> np.ndarray:
    """ΔL_b(ε) = L(θ) − L(θ − ε v_b) on the fixed eval set: (n_updates, len(lrs)) float64.

    ``updates`` (n, d) are the step directions v_b; the learning rates of one direction are
    evaluated together by ``vmap``.
    """
    theta = flat_params(model).to(torch.float64)
    loss0 = float(eval_losses(model, loss, theta[None], x_eval, y_eval, chunk_floats)[0])
    e = torch.as_tensor(np.asarray(lrs), dtype=torch.float64, device=theta.device)
    out = [
        (
            loss0
            - eval_losses(
                model, loss, theta[None] - e[:, None] * v[None], x_eval, y_eval, chunk_floats
            )
        )
        .cpu()
        .numpy()
        for v in updates
    ]
    return np.array(out)


def best_lr(
    lrs: np.ndarray, gains: np.ndarray, n_boot: int = 200, ci: float = 0.9, seed: int = 0
) -> dict[str, Any]:
    """The measured best learning rate from per-batch loss improvements on a grid.

    ε̂ = the refined argmax (parabola in log ε through the argmax and its neighbours) of the
    mean improvement ΔL̄(ε) over mini-batches. The interval is the percentile bootstrap over
    mini-batches (rows resampled). A diverged step (non-finite gain) counts as the worst.

    Args:
      lrs: (L,) increasing learning rates, L ≥ 3.
      gains: (n_batches, L) loss improvements L(θ) − L(θ − ε v_b); n_batches ≥ 2.
      n_boot, ci, seed: bootstrap resamples (≥ 10), coverage, generator seed.

    Returns:
      ``{"lr", "lo", "hi", "edge", "censored"}``; ``censored`` is "low"/"high" when the mean's
      argmax is at that end of the grid (the optimum may lie beyond it), ``edge`` is its bool.

    Examples:
      >>> e = np.geomspace(0.1, 10.0, 5)
      >>> curve = -np.log(e / 0.5) ** 2               # a parabola in log ε, peak at 0.5
      >>> b = best_lr(e, np.stack([curve, curve + 0.1]), n_boot=20)
      >>> round(b["lr"], 6), b["edge"]
      (0.5, False)
    """
    e = np.asarray(lrs, dtype=np.float64)
    g = np.asarray(gains, dtype=np.float64)
    if e.ndim != 1 or e.size < 3 or np.any(np.diff(e) <= 0) or np.any(e <= 0):
        raise ValueError(f"lrs must be >= 3 increasing positive values; got {lrs!r}")
    if g.ndim != 2 or g.shape[1] != e.size or g.shape[0] < 2:
        raise ValueError(f"gains must be (n_batches >= 2, {e.size}); got shape {g.shape}")
    g = np.where(np.isfinite(g), g, -np.inf)  # a diverged step is the worst possible

    def peak(rows: np.ndarray) -> Any:
        m = rows.mean(0)
        return refined_argmax(e, m) if np.any(np.isfinite(m)) else None

    p = peak(g)
    if p is None:  # every learning rate diverged on some mini-batch
        return {"lr": math.nan, "lo": math.nan, "hi": math.nan, "edge": True, "censored": "high"}

    def stat(idx: np.ndarray) -> float:
        q = peak(g[idx])
        return math.nan if q is None else q.x

    lo, hi, _ = bootstrap_interval(stat, g.shape[0], n_boot=n_boot, level=ci, seed=seed)
    return {"lr": p.x, "lo": lo, "hi": hi, "edge": bool(p.censored), "censored": p.censored}


def lr_grid(center: float, n: int, span: float) -> np.ndarray:
    """Geometric grid of n points from center/√span to center·√span.

    Examples:
      >>> [float(v) for v in lr_grid(1.0, 3, 4.0)]
      [0.5, 1.0, 2.0]
    """
    if not (math.isfinite(center) and center > 0):
        raise ValueError(f"cannot centre a learning-rate grid on {center!r}; pass lrs explicitly")
    return center * np.geomspace(span**-0.5, span**0.5, n)


def quad_model_moments(
    g_eval: Tensor, updates: Tensor, h_updates: Tensor
) -> tuple[float, float, float, float]:
    """m1 = mean Gᵀv and m2 = mean vᵀHv over the sampled updates, with their SEs."""
    a = (updates @ g_eval).cpu().numpy()
    c = (updates * h_updates).sum(1).cpu().numpy()
    k = max(a.size, 2)
    se = lambda x: float(x.std(ddof=1) / math.sqrt(k)) if x.size > 1 else math.nan  # noqa: E731
    return float(a.mean()), se(a), float(c.mean()), se(c)


def quad_model_lr(g_eval: Tensor, updates: Tensor, h_updates: Tensor) -> tuple[float, float]:
    """Lemma 1 measured directly: ε* = E[Gᵀv]/E[vᵀHv] over the sampled updates, with SE.

    The optimum of the local quadratic model with the TRUE update distribution (no Gaussian /
    independence assumption): it separates the theorems' modelling error from the loss's
    departure from quadratic. SE by the delta method over updates (paired samples).
    """
    a = (updates @ g_eval).cpu().numpy()
    c = (updates * h_updates).sum(1).cpu().numpy()
    m1, m2 = float(a.mean()), float(c.mean())
    if not m2 > 0:
        return math.nan, math.nan
    if a.size < 2:
        return m1 / m2, math.nan
    return m1 / m2, ratio_se_paired(a, c)


def measure_update(
    model: torch.nn.Module,
    loss: LossFn,
    updates: Tensor,
    x_eval: Tensor,
    y_eval: Tensor,
    *,
    grid: np.ndarray | None,
    centre: float,
    n_lrs: int,
    lr_span: float,
    fallback: tuple[float, float],
    max_extend: int,
    n_boot: int,
    ci: float,
    seed: int,
    chunk_floats: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Loss improvements of ``updates`` over a grid, and the best learning rate on it.

    The grid is ``grid`` if given (fixed), else geometric around ``centre`` (``n_lrs`` points
    spanning ``lr_span``), or ``fallback = (lo, hi)`` with 2·n_lrs points when ``centre`` is not
    a positive number. An auto grid whose optimum is censored is extended geometrically past
    that end, at most ``max_extend`` times.

    Returns:
      ``(grid, gains, best)``: the final grid (L,), gains (n_updates, L), :func:`best_lr`.
    """
    fixed = grid is not None
    if fixed:
        lrs = np.sort(np.asarray(grid, dtype=np.float64))
    elif math.isfinite(centre) and centre > 0:
        lrs = lr_grid(centre, n_lrs, lr_span)
    else:  # neither theory nor Lemma 1 gave a positive value: a wide default grid
        lrs = np.geomspace(fallback[0], fallback[1], 2 * n_lrs)
    gains = step_gains(model, loss, updates, lrs, x_eval, y_eval, chunk_floats)
    best = best_lr(lrs, gains, n_boot, ci, seed=seed)
    ratio = lrs[1] / lrs[0]
    k = max(n_lrs // 2, 1)
    for _ in range(0 if fixed else max_extend):
        if not best["edge"]:
            break
        low_end = best["censored"] == "low"
        extra = (
            lrs[0] * ratio ** -np.arange(k, 0, -1)
            if low_end
            else lrs[-1] * ratio ** np.arange(1, k + 1)
        )
        more = step_gains(model, loss, updates, extra, x_eval, y_eval, chunk_floats)
        lrs = np.concatenate([extra, lrs] if low_end else [lrs, extra])
        gains = np.concatenate([more, gains] if low_end else [gains, more], axis=1)
        best = best_lr(lrs, gains, n_boot, ci, seed=seed)
    return lrs, gains, best


def log_width(best: dict[str, Any]) -> float:
    """ln(hi/lo) of a measured optimum's interval (∞ when undefined or censored)."""
    lo, hi = best.get("lo", math.nan), best.get("hi", math.nan)
    if best.get("edge") or not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return math.inf
    return math.log(hi / lo)


def measure_adaptive(
    gains_fn: Callable[[Tensor, np.ndarray], np.ndarray],
    draw: Callable[[int, int], Tensor],
    *,
    lrs: np.ndarray,
    fixed: bool,
    n_first: int,
    n_more: int,
    max_updates: int,
    max_log_width: float,
    max_extend: int,
    n_boot: int,
    ci: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The best learning rate, drawing more updates until its interval is narrow.

    Rule (stated because it decides what is reported): start with ``n_first`` updates; while
    the optimum is censored (at a grid edge) extend an auto grid past that edge (at most
    ``max_extend`` times in all, ``len(lrs)//2`` points each time); while the interval's
    log-width ln(hi/lo) exceeds ``max_log_width`` and fewer than ``max_updates`` updates are
    used, draw ``n_more`` more. The result is ``resolved`` when the final optimum is interior
    with log-width ≤ ``max_log_width``; otherwise it must be reported as unresolved.
    (Sequential stopping makes the interval's coverage approximate; the point estimate is the
    mean-curve optimum of all updates drawn.)

    Args:
      gains_fn: ``gains_fn(updates, lrs) -> (n, L)`` loss improvements.
      draw: ``draw(i, j) -> updates i..j-1`` (the same rows for the same indices).
      lrs: the starting grid (ascending, ≥ 3 points); ``fixed``: never extend it.
      n_first, n_more, max_updates: updates at the start, per extra round, at most.
      max_log_width, max_extend, n_boot, ci, seed: the rule's width, extensions, bootstrap.

    Returns:
      ``(grid, gains, best)``; ``best`` is :func:`best_lr`'s dict plus ``log_width``,
      ``n_batches`` and ``resolved``.

    Examples:
      >>> rng = np.random.default_rng(0)
      >>> e = np.geomspace(0.05, 5.0, 7)
      >>> def gains(u, lrs):                                  # peak at ε = 0.5, noisy rows
      ...     return -np.log(lrs / 0.5)[None] ** 2 + u.numpy()
      >>> noise = torch.as_tensor(rng.normal(size=(400, 1)) * 0.3)
      >>> g, _, b = measure_adaptive(gains, lambda i, j: noise[i:j], lrs=e, fixed=False,
      ...     n_first=4, n_more=4, max_updates=400, max_log_width=0.3, max_extend=2,
      ...     n_boot=50, ci=0.9, seed=0)
      >>> b["resolved"], abs(math.log(b["lr"] / 0.5)) < 0.2
      (True, True)
    """
    if n_first < 2 or n_more < 1:
        raise ValueError(f"need n_first >= 2 and n_more >= 1; got {n_first}, {n_more}")
    lrs = np.sort(np.asarray(lrs, dtype=np.float64))
    n = n_first
    gains = gains_fn(draw(0, n), lrs)
    best = best_lr(lrs, gains, n_boot, ci, seed=seed)
    ratio = lrs[1] / lrs[0]
    k = max(lrs.size // 2, 1)
    extended = 0
    while True:
        while best["edge"] and not fixed and extended < max_extend and math.isfinite(best["lr"]):
            low_end = best["censored"] == "low"
            extra = (
                lrs[0] * ratio ** -np.arange(k, 0, -1)
                if low_end
                else lrs[-1] * ratio ** np.arange(1, k + 1)
            )
            more = gains_fn(draw(0, n), extra)
            lrs = np.concatenate([extra, lrs] if low_end else [lrs, extra])
            gains = np.concatenate([more, gains] if low_end else [gains, more], axis=1)
            best = best_lr(lrs, gains, n_boot, ci, seed=seed)
            extended += 1
        w = log_width(best)
        if w <= max_log_width or n >= max_updates:
            break
        m = min(n_more, max_updates - n)
        gains = np.concatenate([gains, gains_fn(draw(n, n + m), lrs)], axis=0)
        n += m
        best = best_lr(lrs, gains, n_boot, ci, seed=seed)
    w = log_width(best)
    return lrs, gains, {**best, "log_width": w, "n_batches": n, "resolved": w <= max_log_width}


def shuffled_control(
    updates: Tensor, hvp: HVP, g_eval: Tensor, gen: torch.Generator, vec_chunk: int | None = None
) -> dict[str, float]:
    """E[vᵀHv] of the sampled updates and of the same updates with coordinates decoupled.

    The control permutes each coordinate's column independently across the n draws: every
    coordinate keeps its exact empirical marginal (so E[Gᵀv] is unchanged, to rounding), and
    the dependence between coordinates is destroyed. For independent coordinates
    E[vᵀHv] = Σ_ij H_ij E[v_i]E[v_j] + Σ_i H_ii Var v_i — Theorem 2's denominator with the TRUE
    marginals. So measured/shuffled isolates the correlation between coordinates; shuffled vs
    Theorem 2's D(B) isolates the (non-)Gaussian marginals ξ_i = erf(√(B/2) μ_i/σ_i).

    Args:
      updates: (n, d) sampled updates v_b (n ≥ 2).
      hvp: V (k, d) ↦ HV (k, d).
      g_eval: (d,) the gradient G of the population.
      gen: generator of the permutations.
      vec_chunk: HVPs per pass.

    Returns:
      ``{"gv", "gv_se", "vhv", "vhv_se", "vhv_shuf", "vhv_shuf_se", "corr_ratio",
      "corr_ratio_se"}``; ``corr_ratio`` = vhv / vhv_shuf with a delta-method SE treating the
      two means as independent (the shuffled rows are a re-pairing of the same entries, so
      this is conservative-ish rather than exact).

    Examples:
      >>> h = torch.eye(3, dtype=torch.float64)
      >>> v = torch.tensor([[1.0, 1, 1], [-1, -1, -1]], dtype=torch.float64)
      >>> out = shuffled_control(v, lambda x: x @ h, torch.ones(3, dtype=torch.float64),
      ...                        torch.Generator().manual_seed(0))
      >>> out["vhv"], out["vhv_shuf"]                     # H = I: vᵀv = d either way
      (3.0, 3.0)
    """
    n, d = updates.shape
    if n < 2:
        raise ValueError(f"need >= 2 updates for the shuffled control; got {n}")
    perm = torch.argsort(torch.rand(n, d, generator=gen), dim=0).to(updates.device)
    shuf = torch.gather(updates, 0, perm)
    step = vec_chunk or n

    def quad(v: Tensor) -> np.ndarray:
        hv = torch.cat([hvp(v[i : i + step]) for i in range(0, n, step)])
        return (v * hv).sum(1).cpu().numpy()

    c, cs = quad(updates), quad(shuf)
    a = (updates @ g_eval.to(updates)).cpu().numpy()
    se = lambda x: float(x.std(ddof=1) / math.sqrt(x.size))  # noqa: E731
    m, ms = float(c.mean()), float(cs.mean())
    r = m / ms if ms != 0 else math.nan
    r_se = float(ratio_se(m, ms, se(c), se(cs))) if ms != 0 else math.nan
    return {
        "gv": float(a.mean()),
        "gv_se": se(a),
        "vhv": m,
        "vhv_se": se(c),
        "vhv_shuf": ms,
        "vhv_shuf_se": se(cs),
        "corr_ratio": r,
        "corr_ratio_se": r_se,
    }


def one_step_rows(lrs: np.ndarray, gains: np.ndarray, **keys: Any) -> list[dict[str, Any]]:
    """Tidy rows, one per learning rate: mean loss improvement ± SE over mini-batches."""
    out = []
    for j, lr in enumerate(lrs):
        col = gains[:, j][np.isfinite(gains[:, j])]
        out.append(
            {
                **keys,
                "lr": float(lr),
                "gain_mean": float(col.mean()) if col.size else math.nan,
                "gain_se": float(col.std(ddof=1) / math.sqrt(col.size))
                if col.size > 1
                else math.nan,
                "n_batches": int(gains.shape[0]),
                "n_diverged": int(gains.shape[0] - col.size),
            }
        )
    return out
