"""Direct estimation of the learning-rate laws at a checkpoint of a real network.

At fixed parameters θ we measure every quantity the theorems need, without any d×d matrix:

* per-parameter gradient statistics μ_i, σ_i² from per-example gradients (``torch.func``:
  ``vmap`` over ``grad`` of ``functional_call``, in chunks so memory is bounded); for language
  models one "example" is one sequence;
* Hessian quantities through Hessian-vector products (double backward on the eval-set loss):
  tr(H) and diag(H) by Hutchinson with Rademacher probes (diag ≈ mean z⊙Hz), with standard
  errors; exact quadratic forms rᵀHr (r = μ/σ), sᵀHs (s = sign μ), μᵀHμ and ξ_BᵀHξ_B
  (ξ_B = erf(√(B/2) μ/σ)) by one HVP each;
* from these the laws' predictions (Theorems 2-4 of Li et al. 2024, McCandlish's SGD law);
* a direct one-step measurement: for many independent mini-batches per batch size, the true
  loss change of one sign step (Adam with β1 = β2 = 0) and one SGD step over a learning-rate
  grid, on a fixed evaluation set, and the measured best learning rate with a bootstrap interval;
* two diagnostics that locate a miss: Lemma 1 with MEASURED moments, ε* = E[Gᵀv]/E[vᵀHv] over
  the same mini-batches (one HVP each; no Gaussian/independence assumption), and the full
  tr(HΣ) = E[(g_n − μ)ᵀH(g_n − μ)] from per-example HVPs (no diagonal-Σ approximation).

=============== =============================== =================================================
code            symbol                          meaning
=============== =============================== =================================================
``mu``          μ_i                             mean per-example gradient (train examples)
``var``         σ_i²                            per-example gradient variance (unbiased, n − 1)
``r``           r_i = μ_i/σ_i                   signal-to-noise per coordinate
``xi``          ξ_i(B) = erf(√(B/2) r_i)        E[sign G_est,i] (Eq. 8)
``tr_h``        tr H = Σ H_ii                   Hutchinson: mean over probes of zᵀHz
``diag_h``      H_ii                            Hutchinson: mean over probes of z_i (Hz)_i
``s_off``       S_off = rᵀHr − Σ r_i² H_ii      Σ_{i≠j} r_i r_j H_ij (Eq. 14)
``b_noise``     B_noise = π tr H / (2 S_off)    Theorem 3 (Eq. 14)
``eps_max``     ε_max = Σ μ²/σ / (2√(S_off trH)) Theorem 3 (after Eq. 13)
``denom``       D(B) = trH + ξᵀHξ − Σ ξ_i² H_ii Theorem 2's exact denominator (Eq. 9)
``lr_thm2``     ε_opt(B) = Σ ξ_i μ_i / D(B)     Theorem 2 (Eq. 9)
``lr_thm4``     Σ|μ_i| / sᵀHs                   Theorem 4 (Eq. 17), B → ∞
``g2``          |G|²                            debiased: |μ|² − Σσ²/n
``tr_h_sigma``  tr(HΣ) ≈ Σ H_ii σ_i²            diagonal-Σ approximation
``b_noise_sgd`` tr(HΣ)/GᵀHG                     McCandlish Eq. 2.7
``b_simple``    tr(Σ)/|G|²                      McCandlish Eq. 2.9
``bound``       π σ_i² / (2 μ_i²)               Theorems 3/4 regime bound per coordinate
=============== =============================== =================================================

Conventions (stated, because they change numbers):

* All measurements use the model in ``eval()`` mode (dropout off, batch norm on its running
  statistics), so that per-example gradients are defined and the loss being differentiated
  is the one whose change is measured. Training augmentation (``batch_transform``) is not
  applied: the statistics are those of the un-augmented loss.
* μ, σ come from ``n_examples`` training examples; the Hessian and the loss changes from the
  first ``n_eval`` examples of the fixed evaluation set (the "full loss" of the protocol).
* The plug-in μ̂ is noisy: E[μ̂_i²] = μ_i² + σ_i²/n, so a coordinate with no signal shows a
  regime bound π σ²/(2 μ̂²) of about π n/(2·0.455) ≈ 3.45 n at its median. Bounds larger than
  about n are not resolved; the summary reports this floor. |G|² and GᵀHG are debiased by
  their known excess (Σσ²/n, Σ H_ii σ_i²/n); the sign-law quantities are plug-in.

Reference: Li et al., "Surge Phenomenon in Optimal Learning Rate and Batch Size Scaling",
NeurIPS 2024, Eqs. 8-17; McCandlish et al. 2018, Eqs. 2.6-2.9; Hutchinson (1990).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import erf
from torch.func import functional_call, grad, vmap

from theory import sgd as sgd_law
from theory import sign as sign_law

Tensor = torch.Tensor
LossFn = Callable[[Tensor, Tensor], Tensor]
HVP = Callable[[Tensor], Tensor]

#: the median of a χ²₁ variable: a zero-signal coordinate's μ̂² is σ²/n times this at median.
CHI2_1_MEDIAN = 0.454936423119572


# ---------------------------------------------------------------------------------------------
# configuration and results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimateConfig:
    """What one checkpoint's estimate measures; stored with every result.

    Attributes:
      n_examples: training examples for μ, σ² (per-example gradients); the resolution limit.
      n_eval: evaluation examples for the Hessian and the measured loss changes.
      probes: Rademacher probes for Hutchinson's tr(H), diag(H); SE ∝ 1/√probes.
      batch_sizes: batch sizes B at which the laws are predicted and measured.
      n_batches: independent mini-batches per B for the one-step measurement.
      n_lrs: learning-rate grid points per B (auto grid: geometric around the prediction).
      lr_span: auto grid covers prediction ÷ √span … × √span (geometric).
      lrs: explicit sign-step grid (same for every B); overrides the auto grid.
      lrs_sgd: explicit SGD-step grid; overrides the auto grid.
      n_boot: bootstrap resamples of mini-batches for the measured-lr interval.
      ci: two-sided coverage of that interval.
      hist_bins: bins (log-spaced) of the regime-bound histogram.
      chunk_floats: memory budget (floats) of one vmap chunk of gradients: bounds memory.
      seed: all randomness (example choice, probes, mini-batches, bootstrap).
      measure: run the one-step measurement (False: predictions only).
      max_extend: times an auto grid is extended when the measured optimum is at its edge.
      noise_samples: per-example gradients whose uᵀHu give the full tr(HΣ) (one HVP each).
    """

    n_examples: int = 1024
    n_eval: int = 1024
    probes: int = 16
    batch_sizes: tuple[int, ...] = (4, 16, 64, 256)
    n_batches: int = 16
    n_lrs: int = 11
    lr_span: float = 64.0
    lrs: tuple[float, ...] | None = None
    lrs_sgd: tuple[float, ...] | None = None
    n_boot: int = 200
    ci: float = 0.9
    hist_bins: int = 40
    chunk_floats: int = 20_000_000
    seed: int = 0
    measure: bool = True
    max_extend: int = 3
    noise_samples: int = 64

    def __post_init__(self) -> None:
        for name in ("n_examples", "n_eval", "probes", "n_batches", "n_lrs", "n_boot",
                     "hist_bins", "chunk_floats", "noise_samples"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {name}={v!r}")
        if self.n_examples < 2:
            raise ValueError(f"n_examples must be >= 2 for a variance; got {self.n_examples}")
        if self.probes < 2:
            raise ValueError(f"probes must be >= 2 for a standard error; got {self.probes}")
        if not self.batch_sizes or any(int(b) != b or b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be positive integers; got {self.batch_sizes}")
        if not self.lr_span > 1:
            raise ValueError(f"lr_span must be > 1; got {self.lr_span}")
        if not 0 < self.ci < 1:
            raise ValueError(f"ci must lie in (0, 1); got {self.ci}")
        for name in ("lrs", "lrs_sgd"):
            g = getattr(self, name)
            if g is not None and (len(g) < 3 or any(not (x > 0) for x in g)):
                raise ValueError(f"{name} must hold >= 3 positive learning rates; got {g}")


@dataclass(frozen=True)
class GradStats:
    """Per-coordinate gradient statistics over ``n`` examples (float64, flattened parameters)."""

    mu: Tensor
    var: Tensor
    n: int

    @property
    def sigma(self) -> Tensor:
        return self.var.clamp_min(0).sqrt()


@dataclass(frozen=True)
class HessianStats:
    """Hessian quantities from HVPs; ``*_se`` are standard errors over Hutchinson probes.

    Quantities that need only exact HVPs (``r_h_r``, ``s_h_s``, ``mu_h_mu``, ``xi_h_xi``) carry
    no probe error; those that use the diag(H) estimate inherit its SE.
    """

    probes: int
    tr_h: float
    tr_h_se: float
    diag_h: Tensor
    diag_h_se: Tensor
    r_h_r: float
    sum_r2_hdiag: float
    sum_r2_hdiag_se: float
    s_h_s: float
    mu_h_mu: float
    tr_h_sigma: float
    tr_h_sigma_se: float
    tr_h_sigma_full: float
    tr_h_sigma_full_se: float
    batch_sizes: np.ndarray
    xi_h_xi: np.ndarray
    sum_xi2_hdiag: np.ndarray
    denom: np.ndarray
    denom_se: np.ndarray
    # per-probe samples (probes,) used for delta-method errors of ratios
    tr_samples: np.ndarray = field(repr=False)
    r2_samples: np.ndarray = field(repr=False)

    @property
    def s_off(self) -> float:
        """S_off = rᵀHr − Σ r_i² H_ii = Σ_{i≠j} r_i r_j H_ij."""
        return self.r_h_r - self.sum_r2_hdiag

    @property
    def s_off_se(self) -> float:
        return self.sum_r2_hdiag_se


# ---------------------------------------------------------------------------------------------
# parameters as one flat vector
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flat:
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]

    @property
    def d(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def flatten(self, tensors: dict[str, Tensor] | Sequence[Tensor], lead: int = 0) -> Tensor:
        seq = [tensors[n] for n in self.names] if isinstance(tensors, dict) else list(tensors)
        return torch.cat([t.reshape(*t.shape[:lead], -1) for t in seq], dim=lead)

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        """(…, d) → dict of (…, *shape), viewing ``vec``."""
        out, i = {}, 0
        lead = vec.shape[:-1]
        for n, s in zip(self.names, self.shapes):
            k = math.prod(s)
            out[n] = vec[..., i:i + k].reshape(*lead, *s)
            i += k
        return out


def _flat(model: torch.nn.Module) -> _Flat:
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(f"model {type(model).__name__} has no trainable parameters "
                         f"(requires_grad=True); nothing to estimate")
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    return _Flat(tuple(params), tuple(p.shape for p in params.values()), params, buffers)


def flat_params(model: torch.nn.Module) -> Tensor:
    """The trainable parameters as one detached flat vector θ ∈ R^d (model dtype)."""
    f = _flat(model)
    return f.flatten(f.params)


def _chunk(budget: int, per_item: int) -> int:
    return max(1, budget // max(per_item, 1))


class _EvalMode:
    """Context manager: model.eval() inside, previous mode restored after."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> torch.nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was)


# ---------------------------------------------------------------------------------------------
# gradients: per example and per mini-batch
# ---------------------------------------------------------------------------------------------


def group_grads(model: torch.nn.Module, loss: LossFn, x: Tensor, y: Tensor,
                chunk_floats: int = 20_000_000) -> Iterator[Tensor]:
    """Gradients of the mean loss of each group: ``x`` is (k, b, …), ``y`` (k, b, …).

    Yields flat (k_c, d) float64 blocks in order, k_c bounded so that k_c·d ≤ ``chunk_floats``.
    With b = 1 these are per-example gradients (for a language model, per sequence).
    ``vmap(grad(functional_call))``: one batched backward per chunk, no Python loop per group.
    """
    f = _flat(model)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of groups; got {x.shape[0]} "
                         f"and {y.shape[0]}")

    def group_loss(p: dict[str, Tensor], xg: Tensor, yg: Tensor) -> Tensor:
        return loss(functional_call(model, (p, f.buffers), (xg,)), yg)

    per = vmap(grad(group_loss), in_dims=(None, 0, 0))
    # per group: its gradient (d) plus activations, guessed as 32 floats per input float
    per_group = f.d + 32 * int(x[:1].numel())
    step = _chunk(chunk_floats, per_group)
    with _EvalMode(model):
        for i in range(0, x.shape[0], step):
            g = per(f.params, x[i:i + step], y[i:i + step])
            yield f.flatten(g, lead=1).to(torch.float64)


def per_example_grad_stats(model: torch.nn.Module, loss: LossFn, x: Tensor, y: Tensor,
                           chunk_floats: int = 20_000_000) -> GradStats:
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


# ---------------------------------------------------------------------------------------------
# Hessian-vector products
# ---------------------------------------------------------------------------------------------


def make_hvp(model: torch.nn.Module, loss: LossFn, x: Tensor, y: Tensor,
             chunk: int = 512, batched: bool | None = None) -> HVP:
    """H v for the mean loss over (x, y), by double backward; returns ``hvp(V)`` for V (k, d).

    L(θ) = Σ_c (m_c/N) ℓ_c(θ) over eval chunks c of size m_c, so H v = Σ_c (m_c/N) H_c v: memory
    is one chunk's graph. All k vectors reuse that chunk's first-order graph (one forward and
    one backward per chunk, then k second backwards). No d×d matrix is formed. Result float64.

    ``batched``: do the k second backwards as one vmapped backward (``is_grads_batched``).
    Default: yes, except for convolutional models on CPU, where the vmapped convolution
    double-backward measured ~1.4× slower than a loop (fmnist-cnn smoke, 1 thread).
    """
    f = _flat(model)
    if batched is None:
        conv = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
        batched = not (conv and x.device.type == "cpu")
    n = int(x.shape[0])
    if n < 1:
        raise ValueError("make_hvp needs at least one evaluation example")

    def hvp(vecs: Tensor) -> Tensor:
        if vecs.ndim != 2 or vecs.shape[1] != f.d:
            raise ValueError(f"hvp expects (k, d={f.d}) vectors; got shape {tuple(vecs.shape)}")
        out = torch.zeros(vecs.shape, dtype=torch.float64, device=vecs.device)
        p = {k: v.detach().clone().requires_grad_(True) for k, v in f.params.items()}
        plist = [p[k] for k in f.names]
        with _EvalMode(model):
            for i in range(0, n, chunk):
                xc, yc = x[i:i + chunk], y[i:i + chunk]
                w = xc.shape[0] / n
                lc = loss(functional_call(model, (p, f.buffers), (xc,)), yc) * w
                g = torch.autograd.grad(lc, plist, create_graph=True)
                gflat = torch.cat([t.reshape(-1) for t in g])
                v = vecs.to(gflat.dtype)
                out += _second_backward(gflat, plist, v, batched)
        return out

    return hvp


_BATCHED_BACKWARD_OK = True


def _second_backward(gflat: Tensor, plist: list[Tensor], v: Tensor,
                     batched: bool = True) -> Tensor:
    """Rows of V·∂g/∂θ = (H V)ᵀ for a symmetric H: all k vectors in one batched backward
    (``is_grads_batched``, vmap over the backward graph) when every op supports it, else k
    backwards in a loop. Returns (k, d) float64."""
    global _BATCHED_BACKWARD_OK
    if batched and _BATCHED_BACKWARD_OK and v.shape[0] > 1:
        try:
            hv = torch.autograd.grad(gflat, plist, grad_outputs=v, retain_graph=True,
                                     is_grads_batched=True)
            return torch.cat([t.reshape(v.shape[0], -1) for t in hv], 1).to(torch.float64)
        except RuntimeError:  # an op without a batching rule: fall back for the session
            _BATCHED_BACKWARD_OK = False
    rows = []
    for j in range(v.shape[0]):
        hv = torch.autograd.grad(gflat, plist, grad_outputs=v[j], retain_graph=True)
        rows.append(torch.cat([t.reshape(-1) for t in hv]).to(torch.float64))
    return torch.stack(rows)


def hvp_gradient(model: torch.nn.Module, loss: LossFn, x: Tensor, y: Tensor,
                 chunk: int = 512) -> Tensor:
    """∇L(θ) of the mean loss over (x, y) (the full eval-set gradient), flat float64 (d,)."""
    f = _flat(model)
    n = int(x.shape[0])
    p = {k: v.detach().clone().requires_grad_(True) for k, v in f.params.items()}
    plist = [p[k] for k in f.names]
    out = torch.zeros(f.d, dtype=torch.float64, device=plist[0].device)
    with _EvalMode(model):
        for i in range(0, n, chunk):
            xc, yc = x[i:i + chunk], y[i:i + chunk]
            lc = loss(functional_call(model, (p, f.buffers), (xc,)), yc) * (xc.shape[0] / n)
            out += torch.cat([t.reshape(-1) for t in torch.autograd.grad(lc, plist)]).double()
    return out


def _rademacher(n: int, d: int, gen: torch.Generator, device: torch.device) -> Tensor:
    z = torch.randint(0, 2, (n, d), generator=gen, dtype=torch.int8).to(torch.float64)
    return (2.0 * z - 1.0).to(device)


def _se(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / math.sqrt(x.shape[0]))


def signal_to_noise(stats: GradStats) -> Tensor:
    """r_i = μ_i/σ_i, with r_i = 0 where σ_i = 0 and μ_i = 0 (a parameter that never moves)
    and r_i = ±∞ clamped to ±1e12 where σ_i = 0 but μ_i ≠ 0 (deterministic sign)."""
    s = stats.sigma
    r = torch.where(s > 0, stats.mu / torch.where(s > 0, s, torch.ones_like(s)),
                    torch.sign(stats.mu) * 1e12)
    return r


def expected_sign(stats: GradStats, batch_sizes: Sequence[float]) -> Tensor:
    """ξ_i(B) = erf(√(B/2) μ_i/σ_i) for each B: (len(B), d) float64 (Eq. 8)."""
    r = signal_to_noise(stats).cpu().numpy()
    b = np.asarray(batch_sizes, dtype=np.float64)
    xi = erf(np.sqrt(b[:, None] / 2.0) * r[None, :])
    return torch.as_tensor(xi, device=stats.mu.device)


def hessian_stats(hvp: HVP, stats: GradStats, batch_sizes: Sequence[float], probes: int,
                  seed: int = 0, *, exact_diag: Tensor | None = None,
                  noise: Tensor | None = None, vec_chunk: int | None = None) -> HessianStats:
    """All Hessian quantities of the laws from ``probes + 3 + len(batch_sizes)`` HVPs.

    Hutchinson (Rademacher z, E[zzᵀ] = I): tr H = E[zᵀHz], H_ii = E[z_i (Hz)_i]; for any
    weights w, Σ w_i H_ii = E[Σ_i w_i z_i (Hz)_i]. Each weighted sum is estimated from the
    same probes, so its SE is the probe standard deviation / √probes, and differences such as
    D(B) = trH + ξᵀHξ − Σ ξ_i² H_ii are estimated probe-by-probe (correlations included).

    Args:
      hvp: V (k, d) ↦ HV (k, d).
      stats: μ, σ² at this checkpoint.
      batch_sizes: the B of Theorem 2's denominators.
      probes: Hutchinson probes (≥ 2).
      seed: probe generator seed.
      exact_diag: if given, the true diag(H) is used instead of the estimate (SE 0): for tests
        and tiny models.
      noise: (m, d) centred per-example gradients u_n = g_n − μ̂ (m ≥ 2) for the FULL
        tr(HΣ) = E[uᵀHu] (no diagonal-Σ approximation); the caller scales for the n/(n−1)
        of a centred sample. None: reported as NaN.
      vec_chunk: HVPs per pass (memory: vec_chunk·d float64); default all at once.
    """
    if probes < 2:
        raise ValueError(f"probes must be >= 2 for a standard error; got {probes}")
    mu = stats.mu
    d, dev = mu.shape[0], mu.device
    b = np.asarray(batch_sizes, dtype=np.float64)
    r = signal_to_noise(stats)
    s = torch.sign(mu)
    xi = expected_sign(stats, b)
    gen = torch.Generator().manual_seed(int(seed))
    z = _rademacher(probes, d, gen, dev)
    m_noise = 0 if noise is None else int(noise.shape[0])
    parts = [z, r[None], s[None], mu[None], xi] + ([] if noise is None else [noise.to(z)])
    vecs = torch.cat(parts, dim=0)
    step = vec_chunk or vecs.shape[0]
    hv = torch.cat([hvp(vecs[i:i + step]) for i in range(0, vecs.shape[0], step)], dim=0)
    hz = hv[:probes]
    zhz = z * hz                                            # (P, d): per-probe diag samples
    weights = torch.cat([(r * r)[None], stats.var[None], xi * xi], dim=0)   # (2 + nB, d)
    if exact_diag is None:
        q = (zhz @ weights.T).cpu().numpy()                 # (P, 2 + nB)
        diag_h = zhz.mean(0)
        diag_se = zhz.std(0, unbiased=True) / math.sqrt(probes)
    else:
        exact = exact_diag.to(torch.float64).to(dev)
        q = np.broadcast_to((weights @ exact).cpu().numpy(), (probes, weights.shape[0])).copy()
        diag_h, diag_se = exact, torch.zeros_like(exact)
    t = zhz.sum(1).cpu().numpy() if exact_diag is None else np.full(probes, float(diag_h.sum()))

    def quad(k: int) -> float:
        return float(vecs[probes + k] @ hv[probes + k])

    xi_h_xi = np.array([float(xi[k] @ hv[probes + 3 + k]) for k in range(b.size)])
    dsamp = t[:, None] + xi_h_xi[None, :] - q[:, 2:]
    u = vecs[probes + 3 + b.size:]
    uhu = (u * hv[probes + 3 + b.size:]).sum(1).cpu().numpy()
    thsf = float(uhu.mean()) if m_noise >= 1 else math.nan
    thsf_se = _se(uhu) if m_noise >= 2 else math.nan
    return HessianStats(
        probes=probes, tr_h=float(t.mean()), tr_h_se=_se(t),
        diag_h=diag_h, diag_h_se=diag_se,
        r_h_r=quad(0), sum_r2_hdiag=float(q[:, 0].mean()), sum_r2_hdiag_se=_se(q[:, 0]),
        s_h_s=quad(1), mu_h_mu=quad(2),
        tr_h_sigma=float(q[:, 1].mean()), tr_h_sigma_se=_se(q[:, 1]),
        tr_h_sigma_full=thsf, tr_h_sigma_full_se=thsf_se,
        batch_sizes=b, xi_h_xi=xi_h_xi, sum_xi2_hdiag=q[:, 2:].mean(0),
        denom=dsamp.mean(0), denom_se=np.std(dsamp, axis=0, ddof=1) / math.sqrt(probes),
        tr_samples=t, r2_samples=q[:, 0].copy(),
    )


# ---------------------------------------------------------------------------------------------
# the laws, written in terms of HVP quantities (equal to theory.sign / theory.sgd on dense H)
# ---------------------------------------------------------------------------------------------


def thm3_params(tr_h: float, s_off: float, sum_mu2_over_sigma: float) -> tuple[float, float]:
    """Theorem 3 from scalars: ``(eps_max, b_noise)``.

    B_noise = π trH / (2 S_off),  ε_max = Σ μ_i²/σ_i / (2 √(S_off trH)).
    Same as :func:`theory.sign.surge_params` (which takes a dense H); ``(inf, inf)`` when
    S_off ≤ 0 (no peak in the small-batch regime).
    """
    if not tr_h > 0:
        raise ValueError(f"tr(H) must be > 0 for Theorem 3; got tr_h={tr_h:.3g}")
    if not s_off > 0:
        return math.inf, math.inf
    return (sum_mu2_over_sigma / (2.0 * math.sqrt(s_off * tr_h)),
            math.pi * tr_h / (2.0 * s_off))


def thm2_lr(mu: Tensor, xi: Tensor, denom: np.ndarray) -> np.ndarray:
    """Theorem 2 (Eq. 9) per B: ε_opt(B) = Σ ξ_i(B) μ_i / D(B); NaN where D(B) ≤ 0."""
    numer = (xi @ mu).cpu().numpy()
    d = np.asarray(denom, dtype=np.float64)
    return np.where(d > 0, numer / np.where(d > 0, d, 1.0), np.nan)


def thm4_lr(mu: Tensor, s_h_s: float) -> float:
    """Theorem 4 (Eq. 17): Σ|μ_i| / sᵀHs (NaN if sᵀHs ≤ 0)."""
    return float(mu.abs().sum()) / s_h_s if s_h_s > 0 else math.nan


def sgd_params(g2: float, g_h_g: float, tr_h_sigma: float) -> tuple[float, float]:
    """McCandlish: ``(eps_max, b_noise)`` = (|G|²/GᵀHG, tr(HΣ)/GᵀHG); NaN when GᵀHG ≤ 0."""
    if not g_h_g > 0:
        return math.nan, math.nan
    return g2 / g_h_g, tr_h_sigma / g_h_g


def _ratio_se(num: np.ndarray, den: np.ndarray, num_off: float = 0.0,
              den_off: float = 0.0) -> float:
    """Delta-method SE of (num_off + mean num)/(den_off − mean den) from paired probe samples."""
    a, c = num_off + num.mean(), den_off - den.mean()
    if c == 0:
        return math.inf
    ga, gc = 1.0 / c, a / c**2                  # ∂/∂mean(num), ∂/∂mean(den) (sign absorbed)
    cov = np.cov(np.vstack([num, den]), ddof=1) / num.shape[0]
    return float(math.sqrt(max(ga**2 * cov[0, 0] + gc**2 * cov[1, 1] + 2 * ga * gc * cov[0, 1],
                               0.0)))


def laws(stats: GradStats, hs: HessianStats) -> dict[str, Any]:
    """Every law's prediction from the gradient and Hessian statistics (pure).

    Returns a dict of scalars (``b_noise_thm3``, ``eps_max_thm3``, ``lr_thm4``, ``b_simple``,
    ``b_noise_sgd`` (diagonal Σ), ``b_noise_sgd_full`` (full tr(HΣ) from per-example HVPs),
    ``eps_max_sgd``, …, with ``*_se`` from the probes) and per-B arrays ``lr_thm2``,
    ``lr_thm3``, ``lr_sgd``, ``lr_sgd_full``.
    """
    mu, var, n = stats.mu, stats.var, stats.n
    sig = stats.sigma
    mu2_sig = float(torch.where(sig > 0, mu * mu / torch.where(sig > 0, sig, 1.0), 0.0).sum())
    # a Hutchinson tr(H) ≤ 0 (non-convex point, or too few probes) leaves Theorem 3 undefined
    eps3, bn3 = thm3_params(hs.tr_h, hs.s_off, mu2_sig) if hs.tr_h > 0 else (math.nan, math.nan)
    bn3_se = (math.pi / 2) * _ratio_se(hs.tr_samples, hs.r2_samples, den_off=hs.r_h_r) \
        if math.isfinite(bn3) else math.nan
    b = hs.batch_sizes
    xi = expected_sign(stats, b)
    lr2 = thm2_lr(mu, xi, hs.denom)
    lr3 = (np.asarray(sign_law.surge_lr(b, eps3, bn3), dtype=np.float64)
           if math.isfinite(bn3) else np.full(b.shape, np.nan))
    tr_sigma = float(var.sum())
    mu2 = float(mu @ mu)
    g2 = mu2 - tr_sigma / n                      # E|μ̂|² = |G|² + trΣ/n
    g_h_g = hs.mu_h_mu - hs.tr_h_sigma / n       # E μ̂ᵀHμ̂ = GᵀHG + tr(HΣ)/n
    eps_sgd, bn_sgd = sgd_params(g2, g_h_g, hs.tr_h_sigma)
    g_h_g_full = hs.mu_h_mu - hs.tr_h_sigma_full / n
    eps_full, bn_full = sgd_params(g2, g_h_g_full, hs.tr_h_sigma_full)

    def sgd_curve(e: float, bn: float) -> np.ndarray:
        ok = math.isfinite(e) and e > 0 and math.isfinite(bn) and bn >= 0
        return (np.asarray(sgd_law.optimal_lr(b, e, bn), dtype=np.float64) if ok
                else np.full(b.shape, np.nan))

    return {
        "n_examples": n, "probes": hs.probes, "d": int(mu.shape[0]),
        "tr_h": hs.tr_h, "tr_h_se": hs.tr_h_se,
        "s_off": hs.s_off, "s_off_se": hs.s_off_se, "r_h_r": hs.r_h_r,
        "sum_mu2_over_sigma": mu2_sig,
        "b_noise_thm3": bn3, "b_noise_thm3_se": bn3_se, "eps_max_thm3": eps3,
        "s_h_s": hs.s_h_s, "lr_thm4": thm4_lr(mu, hs.s_h_s),
        "g2": g2, "g2_plugin": mu2, "tr_sigma": tr_sigma,
        "b_simple": tr_sigma / g2 if g2 > 0 else math.inf,
        "mu_h_mu": hs.mu_h_mu, "g_h_g": g_h_g,
        "tr_h_sigma": hs.tr_h_sigma, "tr_h_sigma_se": hs.tr_h_sigma_se,
        "b_noise_sgd": bn_sgd, "eps_max_sgd": eps_sgd,
        "tr_h_sigma_full": hs.tr_h_sigma_full, "tr_h_sigma_full_se": hs.tr_h_sigma_full_se,
        "b_noise_sgd_full": bn_full, "eps_max_sgd_full": eps_full, "g_h_g_full": g_h_g_full,
        "batch_sizes": b, "lr_thm2": lr2, "lr_thm3": lr3, "lr_sgd": sgd_curve(eps_sgd, bn_sgd),
        "numer": (xi @ mu).cpu().numpy(),
        "lr_sgd_full": sgd_curve(eps_full, bn_full),
        "denom": hs.denom, "denom_se": hs.denom_se,
    }


def regime_bounds(stats: GradStats) -> np.ndarray:
    """π σ_i²/(2 μ̂_i²) for every coordinate with σ_i > 0 and μ̂_i ≠ 0 (others dropped)."""
    mu, var = stats.mu.cpu().numpy(), stats.var.cpu().numpy()
    keep = (var > 0) & (mu != 0)
    return np.asarray(sign_law.regime_bound(mu[keep], np.sqrt(var[keep])))


def histogram_rows(bounds: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Log-spaced histogram of the regime bound as tidy rows (bin_lo, bin_hi, count)."""
    if bounds.size == 0:
        return []
    lo, hi = np.log10(bounds.min()), np.log10(bounds.max())
    edges = np.logspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts, _ = np.histogram(bounds, edges)
    return [{"bin_lo": float(a), "bin_hi": float(c), "count": int(k)}
            for a, c, k in zip(edges[:-1], edges[1:], counts)]


# ---------------------------------------------------------------------------------------------
# direct one-step measurement
# ---------------------------------------------------------------------------------------------


def eval_losses(model: torch.nn.Module, loss: LossFn, thetas: Tensor, x: Tensor, y: Tensor,
                chunk_floats: int = 20_000_000) -> Tensor:
    """L(θ_k) on the fixed evaluation set for each row θ_k of ``thetas`` (k, d): (k,) float64.

    ``vmap`` over parameter vectors (one batched forward for a chunk of learning rates).
    """
    f = _flat(model)

    def one(theta: Tensor, xc: Tensor, yc: Tensor) -> Tensor:
        p = f.unflatten(theta)
        return loss(functional_call(model, (p, f.buffers), (xc,)), yc)

    many = vmap(one, in_dims=(0, None, None))
    n = int(x.shape[0])
    xchunk = 512
    # per θ row: the parameters (d) plus activations, guessed as 32 floats per input float
    rows = _chunk(chunk_floats, f.d + 32 * int(x[:1].numel()) * min(n, xchunk))
    out = torch.zeros(thetas.shape[0], dtype=torch.float64, device=thetas.device)
    with _EvalMode(model), torch.no_grad():
        for i in range(0, thetas.shape[0], rows):
            th = thetas[i:i + rows].to(f.params[f.names[0]].dtype)
            for j in range(0, n, xchunk):
                xc, yc = x[j:j + xchunk], y[j:j + xchunk]
                out[i:i + rows] += many(th, xc, yc).to(torch.float64) * (xc.shape[0] / n)
    return out


def best_lr(lrs: np.ndarray, gains: np.ndarray, n_boot: int = 200, ci: float = 0.9,
            seed: int = 0) -> dict[str, float | bool]:
    """The measured best learning rate from per-batch loss improvements on a grid.

    ε̂ = argmax over the grid of the mean improvement ΔL̄(ε) (mean over mini-batches),
    refined by the vertex of the parabola through the argmax and its two neighbours in log ε.
    The interval is the bootstrap percentile interval over mini-batches (rows resampled).

    Args:
      lrs: (L,) increasing learning rates, L ≥ 3.
      gains: (n_batches, L) loss improvements L(θ) − L(θ − ε v_b).
      n_boot, ci, seed: bootstrap resamples, coverage, generator seed.

    Returns:
      ``{"lr", "lo", "hi", "edge"}``; ``edge`` is True when the mean's argmax is at either end
      of the grid (the optimum may lie outside: widen the grid).
    """
    e = np.asarray(lrs, dtype=np.float64)
    g = np.asarray(gains, dtype=np.float64)
    if e.ndim != 1 or e.size < 3 or np.any(np.diff(e) <= 0) or np.any(e <= 0):
        raise ValueError(f"lrs must be >= 3 increasing positive values; got {lrs!r}")
    if g.ndim != 2 or g.shape[1] != e.size or g.shape[0] < 1:
        raise ValueError(f"gains must be (n_batches, {e.size}); got shape {g.shape}")
    g = np.where(np.isfinite(g), g, -np.inf)     # a diverged step is the worst possible

    def refine(m: np.ndarray) -> tuple[float, bool]:
        k = int(np.argmax(m))
        if k == 0 or k == e.size - 1 or not np.all(np.isfinite(m[k - 1:k + 2])):
            return float(e[k]), k in (0, e.size - 1)
        x = np.log(e[k - 1:k + 2])
        a, b_, _ = np.polyfit(x, m[k - 1:k + 2], 2)
        v = -b_ / (2 * a) if a < 0 else x[1]
        return float(np.exp(np.clip(v, x[0], x[2]))), False

    lr, edge = refine(g.mean(0))
    rng = np.random.default_rng(seed)
    boots = np.array([refine(g[rng.integers(0, g.shape[0], g.shape[0])].mean(0))[0]
                      for _ in range(n_boot)])
    a = (1 - ci) / 2
    return {"lr": lr, "lo": float(np.quantile(boots, a)), "hi": float(np.quantile(boots, 1 - a)),
            "edge": bool(edge)}


def lr_grid(center: float, n: int, span: float) -> np.ndarray:
    """Geometric grid of n points from center/√span to center·√span."""
    if not (math.isfinite(center) and center > 0):
        raise ValueError(f"cannot centre a learning-rate grid on {center!r}; pass lrs explicitly")
    return center * np.geomspace(span**-0.5, span**0.5, n)


def minibatch_grads(model: torch.nn.Module, loss: LossFn, x_train: Tensor, y_train: Tensor,
                    batch_size: int, n_batches: int, gen: torch.Generator,
                    chunk_floats: int = 20_000_000) -> Tensor:
    """Mean gradients g_b of ``n_batches`` independent mini-batches of ``batch_size`` examples.

    Each batch is drawn without replacement within itself (batches independent of each other).
    Returns (n_batches, d) float64.
    """
    n = int(x_train.shape[0])
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch size must be in [1, {n}] (training examples); got {batch_size}")
    idx = torch.stack([torch.randperm(n, generator=gen)[:batch_size] for _ in range(n_batches)])
    idx = idx.to(x_train.device)
    return torch.cat(list(group_grads(model, loss, x_train[idx], y_train[idx], chunk_floats)))


def step_gains(model: torch.nn.Module, loss: LossFn, updates: Tensor, lrs: np.ndarray,
               x_eval: Tensor, y_eval: Tensor, chunk_floats: int = 20_000_000) -> np.ndarray:
    """ΔL_b(ε) = L(θ) − L(θ − ε v_b) on the fixed eval set: (n_updates, len(lrs)) float64.

    ``updates`` (n, d) are the step directions v_b (sign(g_b) for Adam with β1 = β2 = 0 and no
    ε_Adam, or g_b for SGD); the learning rates are evaluated together by ``vmap``.
    """
    theta = flat_params(model).to(torch.float64)
    loss0 = float(eval_losses(model, loss, theta[None], x_eval, y_eval, chunk_floats)[0])
    e = torch.as_tensor(np.asarray(lrs), dtype=torch.float64, device=theta.device)
    out = [(loss0 - eval_losses(model, loss, theta[None] - e[:, None] * v[None], x_eval, y_eval,
                                chunk_floats)).cpu().numpy() for v in updates]
    return np.array(out)


def quad_model_moments(g_eval: Tensor, updates: Tensor,
                       h_updates: Tensor) -> tuple[float, float, float, float]:
    """m1 = mean Gᵀv and m2 = mean vᵀHv over the sampled updates, with their SEs."""
    a = (updates @ g_eval).cpu().numpy()
    c = (updates * h_updates).sum(1).cpu().numpy()
    k = max(a.size, 2)
    return (float(a.mean()), float(a.std(ddof=1) / math.sqrt(k)) if a.size > 1 else math.nan,
            float(c.mean()), float(c.std(ddof=1) / math.sqrt(k)) if c.size > 1 else math.nan)


def quad_model_lr(g_eval: Tensor, updates: Tensor, h_updates: Tensor) -> tuple[float, float]:
    """Lemma 1 measured directly: ε* = E[Gᵀv]/E[vᵀHv] over the sampled updates, with SE.

    The optimum of the local quadratic model with the TRUE update distribution (no Gaussian /
    independence assumption): it separates the theorems' modelling error from the loss's
    departure from quadratic. SE by the delta method over updates.
    """
    a = (updates @ g_eval).cpu().numpy()
    c = (updates * h_updates).sum(1).cpu().numpy()
    m1, m2 = a.mean(), c.mean()
    if not m2 > 0:
        return math.nan, math.nan
    n = a.size
    if n < 2:
        return float(m1 / m2), math.nan
    cov = np.cov(np.vstack([a, c]), ddof=1) / n
    var = cov[0, 0] / m2**2 + m1**2 * cov[1, 1] / m2**4 - 2 * m1 * cov[0, 1] / m2**3
    return float(m1 / m2), float(math.sqrt(max(var, 0.0)))


# ---------------------------------------------------------------------------------------------
# one checkpoint, end to end
# ---------------------------------------------------------------------------------------------


def _finite_or_nan(x: float) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else math.nan


def estimate_at_checkpoint(model: torch.nn.Module, workload: Any, data: Any,
                           cfg: EstimateConfig | None = None, step: int | None = None,
                           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Estimate every law's parameters at the model's current weights and measure one step.

    Args:
      model: the network at the checkpoint (left unchanged; mode restored).
      workload: a :class:`validate.workload.Workload` (its ``loss`` is used).
      data: a :class:`validate.workload.Data` on the model's device.
      cfg: what to measure (default :class:`EstimateConfig`).
      step: training step of this checkpoint, copied into the rows.
      progress: optional ``progress(message)`` callback (the library never prints).

    Returns:
      ``{"summary": {...scalars}, "per_batch": [rows], "one_step": [rows],
      "histogram": [rows], "bounds": ndarray}``: the summary holds ``loss``,
      ``b_noise_thm3``, ``eps_max_thm3``, ``b_simple``, ``b_noise_sgd``, ``lr_thm4``,
      ``regime_bound_median``, ``regime_bound_floor``…; each per-batch row holds
      ``batch_size``, ``lr_pred_sign`` (Theorem 2), ``lr_thm3``, ``lr_meas_sign`` with
      ``lr_meas_sign_lo/hi``, ``lr_pred_sgd``, ``lr_meas_sgd`` with its interval, and the ratios.
    """
    cfg = cfg or EstimateConfig()
    say = progress or (lambda _m: None)
    loss = workload.loss
    gen = torch.Generator().manual_seed(cfg.seed)
    n_train = int(data.x_train.shape[0])
    if cfg.measure and max(cfg.batch_sizes) > n_train:
        raise ValueError(f"batch sizes {list(cfg.batch_sizes)} exceed the {n_train} training "
                         f"examples")
    n_ex = min(cfg.n_examples, n_train)
    pick = torch.randperm(n_train, generator=gen)[:n_ex].to(data.x_train.device)
    n_eval = min(cfg.n_eval, int(data.x_eval.shape[0]))
    xe, ye = data.x_eval[:n_eval], data.y_eval[:n_eval]
    xs, ys = data.x_train[pick], data.y_train[pick]
    say(f"per-example gradients over {n_ex} examples")
    stats = per_example_grad_stats(model, loss, xs, ys, cfg.chunk_floats)
    d = int(stats.mu.shape[0])
    # centred per-example gradients for the full tr(HΣ); √(n/(n−1)) undoes the centring bias
    # per-example uᵀHu is heavy-tailed (a few examples dominate), so use more samples than probes
    m = min(max(cfg.noise_samples, 2), n_ex)
    # all m rows: group_grads may split them into several chunks (small d, large inputs)
    noise = (torch.cat(list(group_grads(model, loss, xs[:m, None], ys[:m, None],
                                        max(cfg.chunk_floats, 10 * m * d))))
             - stats.mu) * math.sqrt(n_ex / (n_ex - 1))
    n_vec = cfg.probes + 3 + len(cfg.batch_sizes) + m
    vec_chunk = max(1, min(n_vec, cfg.chunk_floats // d))
    say(f"Hessian: {cfg.probes} Hutchinson probes + {n_vec - cfg.probes} exact HVPs "
        f"on {n_eval} eval examples")
    hvp = make_hvp(model, loss, xe, ye)
    hs = hessian_stats(hvp, stats, cfg.batch_sizes, cfg.probes, seed=cfg.seed + 1,
                       noise=noise, vec_chunk=vec_chunk)
    pred = laws(stats, hs)
    bounds = regime_bounds(stats)
    theta = flat_params(model).to(torch.float64)
    loss0 = float(eval_losses(model, loss, theta[None], xe, ye, cfg.chunk_floats)[0])
    summary: dict[str, Any] = {
        "step": step, "loss": loss0, "n_eval": n_eval,
        **{k: v for k, v in pred.items() if np.ndim(v) == 0},
        "regime_bound_median": float(np.median(bounds)) if bounds.size else math.nan,
        "regime_bound_q10": float(np.quantile(bounds, 0.1)) if bounds.size else math.nan,
        "regime_bound_q90": float(np.quantile(bounds, 0.9)) if bounds.size else math.nan,
        "regime_bound_floor": math.pi * n_ex / (2 * CHI2_1_MEDIAN),
        "n_coords_dead": int(d - bounds.size),
    }
    g_eval = hvp_gradient(model, loss, xe, ye) if cfg.measure else None
    rows, one_step = [], []
    for k, b in enumerate(cfg.batch_sizes):
        b = int(b)
        row: dict[str, Any] = {
            "step": step, "loss": loss0, "batch_size": b,
            "lr_pred_sign": _finite_or_nan(pred["lr_thm2"][k]),
            "lr_thm3": _finite_or_nan(pred["lr_thm3"][k]),
            "lr_pred_sgd": _finite_or_nan(pred["lr_sgd"][k]),
            "lr_pred_sgd_full": _finite_or_nan(pred["lr_sgd_full"][k]),
            "denom": float(pred["denom"][k]), "denom_se": float(pred["denom_se"][k]),
        }
        if cfg.measure:
            assert g_eval is not None
            say(f"one-step measurement at B={b}: {cfg.n_batches} mini-batches")
            gb = minibatch_grads(model, loss, data.x_train, data.y_train, b, cfg.n_batches, gen,
                                 cfg.chunk_floats)
            for upd, explicit in (("sign", cfg.lrs), ("sgd", cfg.lrs_sgd)):
                v = torch.sign(gb) if upd == "sign" else gb
                hv = torch.cat([hvp(v[i:i + vec_chunk]) for i in range(0, v.shape[0], vec_chunk)])
                lq, lq_se = quad_model_lr(g_eval, v, hv)
                row[f"lr_quad_{upd}"], row[f"lr_quad_{upd}_se"] = lq, lq_se
                m1, _, m2, _ = quad_model_moments(g_eval, v, hv)
                # Lemma 1's two moments, measured and as the theory predicts them: shows whether
                # a miss is in the numerator (signal) or the denominator (curvature of v)
                row[f"m1_{upd}_meas"], row[f"m2_{upd}_meas"] = m1, m2
                row[f"m1_{upd}_pred"], row[f"m2_{upd}_pred"] = (
                    (pred["numer"][k], float(pred["denom"][k])) if upd == "sign" else
                    (pred["g2"], pred["g_h_g_full"] + pred["tr_h_sigma_full"] / b))
                centre = next((c for c in (lq, row[f"lr_pred_{upd}"]) if c > 0), math.nan)
                if explicit is not None:
                    grid = np.sort(np.asarray(explicit, dtype=np.float64))
                elif math.isfinite(centre):
                    grid = lr_grid(centre, cfg.n_lrs, cfg.lr_span)
                else:   # neither theory nor Lemma 1 gave a positive value: a wide default grid
                    grid = np.geomspace(*((1e-6, 1e-1) if upd == "sign" else (1e-5, 10.0)),
                                        2 * cfg.n_lrs)
                gains = step_gains(model, loss, v, grid, xe, ye, cfg.chunk_floats)
                best = best_lr(grid, gains, cfg.n_boot, cfg.ci, seed=cfg.seed + 7 * k)
                ratio = grid[1] / grid[0]
                for _ in range(cfg.max_extend if explicit is None else 0):
                    if not best["edge"]:
                        break
                    # the optimum is off the grid: extend it geometrically past that end
                    lo_end = best["lr"] <= grid[0]
                    extra = (grid[0] * ratio ** -np.arange(cfg.n_lrs // 2, 0, -1) if lo_end
                             else grid[-1] * ratio ** np.arange(1, cfg.n_lrs // 2 + 1))
                    more = step_gains(model, loss, v, extra, xe, ye, cfg.chunk_floats)
                    grid = np.concatenate([extra, grid] if lo_end else [grid, extra])
                    gains = np.concatenate([more, gains] if lo_end else [gains, more], axis=1)
                    best = best_lr(grid, gains, cfg.n_boot, cfg.ci, seed=cfg.seed + 7 * k)
                row[f"lr_meas_{upd}"] = best["lr"]
                row[f"lr_meas_{upd}_lo"] = best["lo"]
                row[f"lr_meas_{upd}_hi"] = best["hi"]
                row[f"lr_meas_{upd}_edge"] = best["edge"]
                row[f"ratio_{upd}"] = row[f"lr_pred_{upd}"] / best["lr"]
                row[f"ratio_quad_{upd}"] = lq / best["lr"]
                for j, lr in enumerate(grid):
                    col = gains[:, j][np.isfinite(gains[:, j])]
                    one_step.append({
                        "step": step, "update": upd, "batch_size": b, "lr": float(lr),
                        "gain_mean": float(col.mean()) if col.size else math.nan,
                        "gain_se": (float(col.std(ddof=1) / math.sqrt(col.size))
                                    if col.size > 1 else math.nan),
                        "n_batches": int(gains.shape[0]),
                        "n_diverged": int(gains.shape[0] - col.size),
                    })
        rows.append(row)
    if cfg.measure:
        for key in ("ratio_sign", "ratio_sgd", "ratio_quad_sign", "ratio_quad_sgd"):
            r = np.array([row[key] for row in rows], dtype=np.float64)
            ok = np.isfinite(r) & (r > 0)
            summary[f"{key}_geomean"] = (float(np.exp(np.mean(np.log(r[ok]))))
                                         if ok.any() else math.nan)
        r = np.array([row["lr_pred_sgd_full"] / row["lr_meas_sgd"] for row in rows])
        ok = np.isfinite(r) & (r > 0)
        summary["ratio_sgd_full_geomean"] = (float(np.exp(np.mean(np.log(r[ok]))))
                                             if ok.any() else math.nan)
    summary["notes"] = _notes(summary, rows)
    hist = [{"step": step, **h} for h in histogram_rows(bounds, cfg.hist_bins)]
    return {"summary": summary, "per_batch": rows, "one_step": one_step, "histogram": hist,
            "bounds": bounds}


def _notes(s: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Plain-language caveats for the report: what was not resolved, and why."""
    n = s["n_examples"]
    out = []
    if not s["g2"] > 0:
        out.append(f"|G|^2 not resolved by {n} examples (debiased |mu|^2 - tr(Sigma)/n <= 0): "
                   f"B_simple is inf; raise n_examples")
    if not s["g_h_g_full"] > 0:
        out.append(f"G^T H G not resolved by {n} examples (debiased <= 0): the full-tr(H Sigma) "
                   f"SGD law is undefined; raise n_examples")
    if s["regime_bound_median"] > 0.5 * s["regime_bound_floor"]:
        out.append("most coordinates' mu_i is below the n-example resolution: the regime-bound "
                   "histogram is floor-limited and the sign-law predictions are plug-in biased")
    if not s["tr_h"] > 0:
        out.append(f"tr(H) estimate {s['tr_h']:.3g} <= 0: Theorem 3 undefined here")
    elif not s["s_off"] > 0:
        out.append("S_off <= 0: Theorem 3 predicts no peak")
    if s["tr_h_se"] > 0.3 * abs(s["tr_h"]):
        out.append(f"tr(H) is poorly resolved ({s['tr_h']:.3g} +- {s['tr_h_se']:.3g}): "
                   f"raise probes")
    edges = [r["batch_size"] for r in rows for u in ("sign", "sgd") if r.get(f"lr_meas_{u}_edge")]
    if edges:
        out.append(f"measured optimum at the edge of the learning-rate grid for B in "
                   f"{sorted(set(edges))}: widen the grid")
    return out


# ---------------------------------------------------------------------------------------------
# checkpoints along training
# ---------------------------------------------------------------------------------------------


def train_checkpoints(workload: Any, data: Any, steps: Sequence[int] = (),
                      losses: Sequence[float] = (), *, lr: float = 1e-3, batch_size: int = 64,
                      betas: tuple[float, float] = (0.9, 0.999), seed: int = 0,
                      device: str | torch.device = "cpu",
                      model: torch.nn.Module | None = None,
                      ) -> Iterator[tuple[int, float | None, torch.nn.Module]]:
    """Train the workload with Adam at fixed (lr, batch size) and yield snapshots.

    Yields ``(step, target, model)`` at each requested step (``target`` None) and the first
    evaluation at which the eval loss is ≤ each requested loss level (``target`` = level).
    The model is the live one: use it before advancing the iterator. Stops after the last
    request or at ``workload.max_steps`` (levels not reached are not yielded).
    """
    if any(int(s) != s or s < 0 for s in steps):
        raise ValueError(f"checkpoint steps must be non-negative integers; got {list(steps)}")
    if any(not (v > 0) for v in losses):
        raise ValueError(f"checkpoint loss levels must be positive; got {list(losses)}")
    if not steps and not losses:
        raise ValueError("give at least one checkpoint step or loss level")
    torch.manual_seed(seed)
    net = (model if model is not None else workload.make_model()).to(device)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr, betas=betas)
    gen = torch.Generator().manual_seed(seed + 1)
    want_steps = sorted({int(s) for s in steps})
    want_losses = sorted(set(losses), reverse=True)
    last = max(want_steps, default=0)
    limit = max(last, workload.max_steps if want_losses else 0)
    n = data.n_train
    step = 0
    while True:
        while want_steps and want_steps[0] == step:
            want_steps.pop(0)
            yield step, None, net
        if want_losses and step % workload.eval_every == 0:
            with _EvalMode(net), torch.no_grad():
                cur = float(workload.loss(net(data.x_eval[:1024]), data.y_eval[:1024]))
            while want_losses and cur <= want_losses[0]:
                yield step, want_losses.pop(0), net
        if (not want_steps and not want_losses) or step >= limit:
            return
        idx = torch.randint(0, n, (batch_size,), generator=gen).to(data.x_train.device)
        xb = data.x_train[idx]
        if workload.batch_transform is not None:
            xb = workload.batch_transform(xb, gen)
        net.train()
        opt.zero_grad(set_to_none=True)
        workload.loss(net(xb), data.y_train[idx]).backward()
        opt.step()
        step += 1


def run_estimate(workload: Any, data: Any, cfg: EstimateConfig | None = None,
                 steps: Sequence[int] = (0,), losses: Sequence[float] = (), *,
                 train_lr: float = 1e-3, train_batch_size: int = 64, seed: int = 0,
                 device: str | torch.device = "cpu",
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:func:`estimate_at_checkpoint` at several checkpoints of one Adam training run.

    Returns ``{"config": {...}, "checkpoints": [summary + per_batch], "per_batch": rows,
    "one_step": rows, "histogram": rows, "checkpoint_rows": rows}`` (tables tidy, with a
    ``step`` column), ready for :mod:`validate.estimate_cli` to write.
    """
    cfg = cfg or EstimateConfig()
    say = progress or (lambda _m: None)
    out: dict[str, Any] = {"config": {**asdict(cfg), "train_lr": train_lr,
                                      "train_batch_size": train_batch_size, "seed": seed},
                           "checkpoints": [], "per_batch": [], "one_step": [],
                           "histogram": [], "checkpoint_rows": []}
    for step, level, net in train_checkpoints(workload, data, steps, losses, lr=train_lr,
                                              batch_size=train_batch_size, seed=seed,
                                              device=device):
        say(f"checkpoint at step {step}" + (f" (loss level {level})" if level else ""))
        res = estimate_at_checkpoint(net, workload, data, cfg, step=step, progress=say)
        s = {**res["summary"], "target_loss": level}
        out["checkpoints"].append({**s, "per_batch": res["per_batch"]})
        out["checkpoint_rows"].append(s)
        out["per_batch"] += res["per_batch"]
        out["one_step"] += res["one_step"]
        out["histogram"] += res["histogram"]
    return out
