"""Per-example gradient statistics at fixed parameters: μ_i, σ_i², r_i = μ_i/σ_i, ξ_i(B).

Per-example gradients come from ``torch.func``: ``vmap`` over ``grad`` of ``functional_call``,
in chunks so memory is bounded; for a language model one "example" is one sequence. From
them: the mean μ and the unbiased variance σ² per coordinate (float64, shifted sums), the
signal-to-noise r = μ/σ, the expected sign ξ(B) = erf(√(B/2) r) (Eq. 8) and the regime bound
π σ²/(2 μ²) of Theorems 3-4 with its histogram.

=========== ============================ ============================================
code        symbol                       meaning
=========== ============================ ============================================
``mu``      μ_i                          mean per-example gradient
``var``     σ_i²                         per-example gradient variance (n − 1)
``r``       r_i = μ_i/σ_i                signal-to-noise per coordinate
``xi``      ξ_i(B) = erf(√(B/2) r_i)     E[sign G_est,i] (Eq. 8)
``bound``   π σ_i² / (2 μ_i²)            Theorems 3/4 regime bound per coordinate
=========== ============================ ============================================

The plug-in μ̂ is noisy: E[μ̂_i²] = μ_i² + σ_i²/n, so a coordinate with no signal shows a
regime bound of about π n/(2·0.455) ≈ 3.45 n at its median (:func:`regime_floor`).

Reference: Li et al., NeurIPS 2024, Eq. 8 and Theorems 3-4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import erf
from torch.func import functional_call, grad, vmap

from theory import sign as sign_law
from validate.flatparams import chunk_rows, eval_mode, flat_view

Tensor = torch.Tensor
LossFn = Callable[[Tensor, Tensor], Tensor]

#: the median of a χ²₁ variable: a zero-signal coordinate's μ̂² is σ²/n times this at median.
CHI2_1_MEDIAN = 0.454936423119572


@dataclass(frozen=True)
class GradStats:
    """Per-coordinate gradient statistics over ``n`` examples (float64, flattened parameters)."""

    mu: Tensor
    var: Tensor
    n: int

    @property
    def sigma(self) -> Tensor:
        return self.var.clamp_min(0).sqrt()


def group_grads(
    model: torch.nn.Module,
    loss: LossFn,
    x: Tensor,
    y: Tensor,
    chunk_floats: int = 20_000_000,
) -> Iterator[Tensor]:
    """Gradients of the mean loss of each group: ``x`` is (k, b, …), ``y`` (k, b, …).

    Yields flat (k_c, d) float64 blocks in order, k_c bounded so that k_c·d ≤ ``chunk_floats``.
    With b = 1 these are per-example gradients (for a language model, per sequence).
    ``vmap(grad(functional_call))``: one batched backward per chunk, no Python loop per group.
    """
    f = flat_view(model)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of groups; got {x.shape[0]} and {y.shape[0]}"
        )

    def group_loss(p: dict[str, Tensor], xg: Tensor, yg: Tensor) -> Tensor:
        return loss(functional_call(model, (p, f.buffers), (xg,)), yg)

    per = vmap(grad(group_loss), in_dims=(None, 0, 0))
    # per group: its gradient (d) plus activations, guessed as 32 floats per input float
    step = chunk_rows(chunk_floats, f.d + 32 * int(x[:1].numel()))
    with eval_mode(model):
        for i in range(0, x.shape[0], step):
            g = per(f.params, x[i : i + step], y[i : i + step])
            yield f.flatten(g, lead=1).to(torch.float64)


def per_example_grad_stats(
    model: torch.nn.Module,
    loss: LossFn,
    x: Tensor,
    y: Tensor,
    chunk_floats: int = 20_000_000,
) -> GradStats:
    """μ_i = mean_n g_n,i and σ_i² = Σ_n (g_n,i − μ_i)²/(n − 1) over the n examples given.

    Per-example gradients g_n = ∇_θ ℓ(f_θ(x_n), y_n) by ``vmap`` over ``grad``; sums are kept
    in float64 with a shifted (first-chunk mean) accumulator, so the variance is not lost to
    cancellation when |μ| ≫ σ.

    Args:
      model: the network (its trainable parameters define θ).
      loss: ``loss(outputs, targets)`` → scalar mean loss (the workload's loss).
      x, y: n examples (n ≥ 2) along dim 0.
      chunk_floats: memory budget of one vmap chunk.

    Returns:
      :class:`GradStats` with flat (d,) float64 tensors.
    """
    n = int(x.shape[0])
    if n < 2:
        raise ValueError(f"need at least 2 examples for a variance; got n={n}")
    shift = s1 = s2 = None
    for g in group_grads(model, loss, x[:, None], y[:, None], chunk_floats):
        if shift is None:
            shift = g.mean(0)
            s1 = torch.zeros_like(shift)
            s2 = torch.zeros_like(shift)
        c = g - shift
        s1 += c.sum(0)
        s2 += (c * c).sum(0)
    assert shift is not None and s1 is not None and s2 is not None
    mean_c = s1 / n
    var = (s2 - n * mean_c * mean_c) / (n - 1)
    return GradStats(mu=shift + mean_c, var=var.clamp_min(0), n=n)


def minibatch_grads(
    model: torch.nn.Module,
    loss: LossFn,
    x_train: Tensor,
    y_train: Tensor,
    batch_size: int,
    n_batches: int,
    gen: torch.Generator,
    chunk_floats: int = 20_000_000,
    *,
    replace: bool = False,
) -> Tensor:
    """Mean gradients g_b of ``n_batches`` independent mini-batches of ``batch_size`` examples.

    Each batch is drawn without replacement within itself (batches independent of each other);
    ``replace=True`` draws every example independently and uniformly (i.i.d. from the empirical
    distribution of the examples given: the population's own noise model, any B allowed).
    Returns (n_batches, d) float64.
    """
    n = int(x_train.shape[0])
    if replace:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1; got {batch_size}")
        idx = torch.randint(0, n, (n_batches, batch_size), generator=gen)
        idx = idx.to(x_train.device)
        return torch.cat(list(group_grads(model, loss, x_train[idx], y_train[idx], chunk_floats)))
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch size must be in [1, {n}] (training examples); got {batch_size}")
    idx = torch.stack([torch.randperm(n, generator=gen)[:batch_size] for _ in range(n_batches)])
    idx = idx.to(x_train.device)
    return torch.cat(list(group_grads(model, loss, x_train[idx], y_train[idx], chunk_floats)))


def signal_to_noise(stats: GradStats) -> Tensor:
    """r_i = μ_i/σ_i, with r_i = 0 where σ_i = 0 and μ_i = 0 (a parameter that never moves)
    and r_i = ±∞ clamped to ±1e12 where σ_i = 0 but μ_i ≠ 0 (deterministic sign)."""
    s = stats.sigma
    return torch.where(
        s > 0, stats.mu / torch.where(s > 0, s, torch.ones_like(s)), torch.sign(stats.mu) * 1e12
    )


def sum_mu2_over_sigma(stats: GradStats) -> float:
    """Σ_i μ_i²/σ_i over the coordinates with σ_i > 0 (Theorem 3's numerator statistic)."""
    sig = stats.sigma
    mu = stats.mu
    return float(torch.where(sig > 0, mu * mu / torch.where(sig > 0, sig, 1.0), 0.0).sum())


def expected_sign(stats: GradStats, batch_sizes: Sequence[float]) -> Tensor:
    """ξ_i(B) = erf(√(B/2) μ_i/σ_i) for each B: (len(B), d) float64 (Eq. 8)."""
    r = signal_to_noise(stats).cpu().numpy()
    b = np.asarray(batch_sizes, dtype=np.float64)
    xi = erf(np.sqrt(b[:, None] / 2.0) * r[None, :])
    return torch.as_tensor(xi, device=stats.mu.device)


def regime_bounds(stats: GradStats) -> np.ndarray:
    """π σ_i²/(2 μ̂_i²) for every coordinate with σ_i > 0 and μ̂_i ≠ 0 (others dropped)."""
    mu, var = stats.mu.cpu().numpy(), stats.var.cpu().numpy()
    keep = (var > 0) & (mu != 0)
    return np.asarray(sign_law.regime_bound(mu[keep], np.sqrt(var[keep])))


def regime_floor(n: int) -> float:
    """Median regime bound of a coordinate WITHOUT signal at n examples: π n / (2 · 0.455).

    Bounds of that size are not resolved by n examples (the plug-in μ̂² is noise).

    Examples:
      >>> round(regime_floor(1000))
      3453
    """
    return math.pi * n / (2 * CHI2_1_MEDIAN)


def histogram_rows(bounds: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Log-spaced histogram of the regime bound as tidy rows (bin_lo, bin_hi, count).

    Every finite positive value is counted: the outer edges are the minimum and maximum
    themselves (``10**log10(x)`` can round to either side of ``x``, and ``np.histogram``
    drops a value outside its edges).

    Examples:
      >>> rows = histogram_rows(np.array([1.0, 10.0, 100.0]), 2)
      >>> [(r["bin_lo"], r["bin_hi"], r["count"]) for r in rows]
      [(1.0, 10.0, 1), (10.0, 100.0, 2)]
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    b = np.asarray(bounds, dtype=np.float64)
    b = b[np.isfinite(b) & (b > 0)]
    if b.size == 0:
        return []
    bmin, bmax = float(b.min()), float(b.max())
    lo, hi = math.log10(bmin), math.log10(bmax)
    edges = np.logspace(lo, hi if hi > lo else lo + 1, bins + 1)
    # by construction: the first edge is <= the minimum and the last >= the maximum
    edges[0] = min(edges[0], bmin)
    edges[-1] = max(edges[-1], bmax)
    counts, _ = np.histogram(b, edges)
    return [
        {"bin_lo": float(a), "bin_hi": float(c), "count": int(k)}
        for a, c, k in zip(edges[:-1], edges[1:], counts)
    ]
