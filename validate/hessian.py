"""Hessian quantities of a network from Hessian-vector products (no d×d matrix).

H v by double backward on the evaluation-set loss (:func:`make_hvp`); from HVPs:

* tr(H) and diag(H) by Hutchinson with Rademacher probes (diag ≈ mean z⊙Hz), with standard
  errors; any weighted diagonal sum Σ w_i H_ii from the same probes (correlations kept);
* exact quadratic forms by one HVP each: rᵀHr (r = μ/σ), sᵀHs (s = sign μ), μᵀHμ and
  ξ_BᵀHξ_B (ξ_B = erf(√(B/2) μ/σ));
* the full tr(HΣ) = E[uᵀHu] over centred per-example gradients u (no diagonal-Σ
  approximation).

=============== =============================== =================================================
code            symbol                          meaning
=============== =============================== =================================================
``tr_h``        tr H = Σ H_ii                   Hutchinson: mean over probes of zᵀHz
``diag_h``      H_ii                            Hutchinson: mean over probes of z_i (Hz)_i
``s_off``       S_off = rᵀHr − Σ r_i² H_ii      Σ_{i≠j} r_i r_j H_ij (Eq. 14)
``denom``       D(B) = trH + ξᵀHξ − Σ ξ_i² H_ii Theorem 2's exact denominator (Eq. 9)
``tr_h_sigma``  tr(HΣ) ≈ Σ H_ii σ_i²            diagonal-Σ approximation
=============== =============================== =================================================

Reference: Hutchinson (1990); Li et al., NeurIPS 2024, Eqs. 9 and 14.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import functional_call

from validate.flatparams import eval_mode, flat_view
from validate.pergrad import GradStats, expected_sign, signal_to_noise

Tensor = torch.Tensor
LossFn = Callable[[Tensor, Tensor], Tensor]
HVP = Callable[[Tensor], Tensor]

#: Messages of the RuntimeError torch raises when vmap (here: ``is_grads_batched``, the
#: legacy vmap over the autograd engine) meets an op it cannot batch, not even by its slow
#: per-example fallback (aten/src/ATen/LegacyBatchedFallback.cpp, functorch/BatchedFallback.cpp):
#: "Batching rule not implemented for aten::X; the fallback path doesn't work on out= or view
#: ops." / "... We could not generate a fallback.", and the "vmap: ..." checks. torch has no
#: dedicated exception type for these, so they are recognised by message.
VMAP_UNSUPPORTED = (
    "Batching rule not implemented for",
    "We could not generate a fallback",
    "does not yet have a batching rule",
    "vmap: ",
)


def is_vmap_unsupported(exc: BaseException) -> bool:
    """True only for torch's "no batching rule" / vmap-unsupported error.

    Never for another error, in particular not for CUDA out-of-memory
    (``torch.OutOfMemoryError``, a subclass of RuntimeError): only a plain RuntimeError whose
    message is one of :data:`VMAP_UNSUPPORTED`.

    Examples:
      >>> is_vmap_unsupported(RuntimeError("Batching rule not implemented for aten::t; ..."))
      True
      >>> is_vmap_unsupported(RuntimeError("CUDA error: an illegal memory access"))
      False
    """
    return type(exc) is RuntimeError and any(s in str(exc) for s in VMAP_UNSUPPORTED)


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


def make_hvp(
    model: torch.nn.Module,
    loss: LossFn,
    x: Tensor,
    y: Tensor,
    chunk: int = 512,
    batched: bool | None = None,
) -> HVP:
    """H v for the mean loss over (x, y), by double backward; returns ``hvp(V)`` for V (k, d).

    L(θ) = Σ_c (m_c/N) ℓ_c(θ) over eval chunks c of size m_c, so H v = Σ_c (m_c/N) H_c v: memory
    is one chunk's graph. All k vectors reuse that chunk's first-order graph (one forward and
    one backward per chunk, then k second backwards). No d×d matrix is formed. Result float64.

    ``batched``: do the k second backwards as one vmapped backward (``is_grads_batched``).
    Default: yes, except for convolutional models on CPU, where the vmapped convolution
    double-backward measured ~1.4× slower than a loop (fmnist-cnn smoke, 1 thread). If torch
    reports an op without a batching rule (:func:`is_vmap_unsupported`), this ``hvp`` (only
    it: the state lives in the closure) switches to the loop; any other error propagates.
    """
    f = flat_view(model)
    if batched is None:
        conv = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
        batched = not (conv and x.device.type == "cpu")
    n = int(x.shape[0])
    if n < 1:
        raise ValueError("make_hvp needs at least one evaluation example")
    mode = {"batched": bool(batched)}

    def hvp(vecs: Tensor) -> Tensor:
        if vecs.ndim != 2 or vecs.shape[1] != f.d:
            raise ValueError(f"hvp expects (k, d={f.d}) vectors; got shape {tuple(vecs.shape)}")
        out = torch.zeros(vecs.shape, dtype=torch.float64, device=vecs.device)
        p = {k: v.detach().clone().requires_grad_(True) for k, v in f.params.items()}
        plist = [p[k] for k in f.names]
        with eval_mode(model):
            for i in range(0, n, chunk):
                xc, yc = x[i : i + chunk], y[i : i + chunk]
                w = xc.shape[0] / n
                lc = loss(functional_call(model, (p, f.buffers), (xc,)), yc) * w
                g = torch.autograd.grad(lc, plist, create_graph=True)
                gflat = torch.cat([t.reshape(-1) for t in g])
                v = vecs.to(gflat.dtype)
                if mode["batched"] and v.shape[0] > 1:
                    try:
                        out += second_backward(gflat, plist, v, batched=True)
                        continue
                    except RuntimeError as exc:
                        if not is_vmap_unsupported(exc):
                            raise
                        mode["batched"] = False
                out += second_backward(gflat, plist, v, batched=False)
        return out

    return hvp


def second_backward(gflat: Tensor, plist: list[Tensor], v: Tensor, batched: bool) -> Tensor:
    """Rows of V·∂g/∂θ = (H V)ᵀ for a symmetric H: (k, d) float64.

    ``batched``: all k vectors in one vmapped backward (``is_grads_batched``); else k
    backwards in a loop. Errors propagate (the caller decides on a fallback).
    """
    if batched:
        hv = torch.autograd.grad(
            gflat, plist, grad_outputs=v, retain_graph=True, is_grads_batched=True
        )
        return torch.cat([t.reshape(v.shape[0], -1) for t in hv], 1).to(torch.float64)
    rows = []
    for j in range(v.shape[0]):
        hv = torch.autograd.grad(gflat, plist, grad_outputs=v[j], retain_graph=True)
        rows.append(torch.cat([t.reshape(-1) for t in hv]).to(torch.float64))
    return torch.stack(rows)


def full_gradient(
    model: torch.nn.Module, loss: LossFn, x: Tensor, y: Tensor, chunk: int = 512
) -> Tensor:
    """∇L(θ) of the mean loss over (x, y) (the full eval-set gradient), flat float64 (d,)."""
    f = flat_view(model)
    n = int(x.shape[0])
    p = {k: v.detach().clone().requires_grad_(True) for k, v in f.params.items()}
    plist = [p[k] for k in f.names]
    out = torch.zeros(f.d, dtype=torch.float64, device=plist[0].device)
    with eval_mode(model):
        for i in range(0, n, chunk):
            xc, yc = x[i : i + chunk], y[i : i + chunk]
            lc = loss(functional_call(model, (p, f.buffers), (xc,)), yc) * (xc.shape[0] / n)
            out += torch.cat([t.reshape(-1) for t in torch.autograd.grad(lc, plist)]).double()
    return out


def _rademacher(n: int, d: int, gen: torch.Generator, device: torch.device) -> Tensor:
    z = torch.randint(0, 2, (n, d), generator=gen, dtype=torch.int8).to(torch.float64)
    return (2.0 * z - 1.0).to(device)


def _se(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / math.sqrt(x.shape[0]))


def hessian_stats(
    hvp: HVP,
    stats: GradStats,
    batch_sizes: Sequence[float],
    probes: int,
    seed: int = 0,
    *,
    exact_diag: Tensor | None = None,
    noise: Tensor | None = None,
    vec_chunk: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> HessianStats:
    """All Hessian quantities of the laws from ``probes + 3 + len(batch_sizes) + m`` HVPs.

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
      on_chunk: called as ``on_chunk(done, total)`` after each pass (progress).
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
    blocks = []
    for i in range(0, vecs.shape[0], step):
        blocks.append(hvp(vecs[i : i + step]))
        if on_chunk is not None:
            on_chunk(min(i + step, vecs.shape[0]), vecs.shape[0])
    hv = torch.cat(blocks, dim=0)
    hz = hv[:probes]
    zhz = z * hz  # (P, d): per-probe diag samples
    weights = torch.cat([(r * r)[None], stats.var[None], xi * xi], dim=0)  # (2 + nB, d)
    if exact_diag is None:
        q = (zhz @ weights.T).cpu().numpy()  # (P, 2 + nB)
        diag_h = zhz.mean(0)
        diag_se = zhz.std(0, unbiased=True) / math.sqrt(probes)
        t = zhz.sum(1).cpu().numpy()
    else:
        exact = exact_diag.to(torch.float64).to(dev)
        q = np.broadcast_to((weights @ exact).cpu().numpy(), (probes, weights.shape[0])).copy()
        diag_h, diag_se = exact, torch.zeros_like(exact)
        t = np.full(probes, float(diag_h.sum()))

    def quad(k: int) -> float:
        return float(vecs[probes + k] @ hv[probes + k])

    xi_h_xi = np.array([float(xi[k] @ hv[probes + 3 + k]) for k in range(b.size)])
    dsamp = t[:, None] + xi_h_xi[None, :] - q[:, 2:]
    u = vecs[probes + 3 + b.size :]
    uhu = (u * hv[probes + 3 + b.size :]).sum(1).cpu().numpy()
    return HessianStats(
        probes=probes,
        tr_h=float(t.mean()),
        tr_h_se=_se(t),
        diag_h=diag_h,
        diag_h_se=diag_se,
        r_h_r=quad(0),
        sum_r2_hdiag=float(q[:, 0].mean()),
        sum_r2_hdiag_se=_se(q[:, 0]),
        s_h_s=quad(1),
        mu_h_mu=quad(2),
        tr_h_sigma=float(q[:, 1].mean()),
        tr_h_sigma_se=_se(q[:, 1]),
        tr_h_sigma_full=float(uhu.mean()) if m_noise >= 1 else math.nan,
        tr_h_sigma_full_se=_se(uhu) if m_noise >= 2 else math.nan,
        batch_sizes=b,
        xi_h_xi=xi_h_xi,
        sum_xi2_hdiag=q[:, 2:].mean(0),
        denom=dsamp.mean(0),
        denom_se=np.std(dsamp, axis=0, ddof=1) / math.sqrt(probes),
        tr_samples=t,
        r2_samples=q[:, 0].copy(),
    )
