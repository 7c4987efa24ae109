"""The noisy quadratic model (NQM) of Zhang et al. (2019), exact and Monte Carlo.

Model. K coordinates with curvatures h_i = 1/i, loss L(x) = ½ Σ_i h_i x_i², and a mini-batch
gradient g = H x + ε with ε ~ N(0, H/B) (per-example noise covariance = H). The start has
E[x_i] = 0, E[x_i²] = 1. With a constant learning rate α, the optimisers are

* ``sgd``: x ← x − α g;
* ``precond``: x ← x − α H^(−p) g (p = ½: the "Adam-like" case);
* ``momentum``: heavy ball v ← β v + g, x ← x − α v (v₀ = 0);
* ``precond-momentum``: heavy ball on the preconditioned gradient, v ← β v + H^(−p) g.

Per coordinate, with a = α h^(−p) (the effective rate) and c = 1 + β − a h, every one of them is

    x_{t+1} = c x_t − β x_{t−1} − a ε_t,      x_{−1} = x_0,   Var ε_t = h/B,

so the second moments P_t = E[x_t²], Q_t = E[x_t x_{t−1}], R_t = P_{t−1} follow the exact
linear recursion (:func:`iterate_moments`)

    P_{t+1} = c² P_t − 2 c β Q_t + β² R_t + a² h/B,    Q_{t+1} = c P_t − β Q_t.

Closed form (:func:`expected_loss`). With S_t = E[(x_t, x_{t−1})(x_t, x_{t−1})ᵀ] and M the
2×2 companion matrix [[c, −β], [1, 0]], S_t − S_∞ = M^t (S_0 − S_∞) M^tᵀ. Cayley–Hamilton gives
the first row of M^t as (f_{t+1}, −β f_t) with f_n = (λ₁ⁿ − λ₂ⁿ)/(λ₁ − λ₂) (λ the roots of
λ² − c λ + β), hence

    P_t = P_∞ + (1 − P_∞)(f_{t+1}² + β² f_t²) − 2 β (1 − Q_∞) f_{t+1} f_t,
    P_∞ = a (1 + β) / ((1 − β) B (2 + 2β − a h)),      Q_∞ = c P_∞ / (1 + β),

stable iff 0 < a h < 2(1 + β). f_n is evaluated without cancellation: for real roots
λ₁ⁿ⁻¹ (1 − ρⁿ)/(1 − ρ) with ρ = λ₂/λ₁, for complex roots β^((n−1)/2) sin(nφ)/sin φ.

Steps to target (:func:`steps_to_target`, :func:`best_steps`): the first t with
E[L(x_t)] ≤ target. A run whose stationary loss L_∞ = ½ Σ h_i P_∞,i is not below the target
never reaches it (the issue's rule). Without momentum and with every P_∞,i ≤ 1 the loss falls
monotonically, so a bracket plus bisection finds the first crossing exactly; otherwise (momentum:
underdamped coordinates oscillate) the first ``dense`` steps are scanned one by one with the exact
recursion before the bracket search takes over.

Monte Carlo (:func:`monte_carlo`): the same dynamics with sampled x₀ ~ N(0, 1) and noise,
vectorised over (configuration, seed, coordinate).

=============== ========== ==================================================
code            symbol     meaning
=============== ========== ==================================================
``k``           K          number of coordinates (10⁴ in the paper)
``h``           h_i        curvature 1/i; per-example noise variance = h_i
``lr``          α          constant learning rate
``power``       p          preconditioner exponent, H^(−p)
``beta``        β          heavy-ball momentum
``B``           B          batch size
=============== ========== ==================================================

References:
  Zhang, Li, Nado, Martens, Sachdeva, Dahl, Shallue, Grosse, "Which Algorithmic Choices Matter
  at Which Batch Sizes? Insights From a Noisy Quadratic Model", NeurIPS 2019, Sec. 3 and
  App. A (the per-coordinate recursions); McCandlish et al. 2018 (the steps law); Li et al. 2024
  Eq. 22 (:func:`theory.efficiency.fit_b_noise`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "NQM",
    "OPTIMIZERS",
    "BestPoint",
    "McResult",
    "Optimizer",
    "ScalingFit",
    "best_steps",
    "expected_loss",
    "fit_scaling",
    "iterate_moments",
    "make_optimizer",
    "monte_carlo",
    "problem",
    "reachable",
    "scan_batch_sizes",
    "second_moments",
    "sgd_noise_scale",
    "stationary_loss",
    "steps_to_target",
]

OPTIMIZERS = ("sgd", "precond", "momentum", "precond-momentum")

#: chunk of (configuration × coordinate) elements evaluated at once (memory ≈ 10 arrays of it)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class NQM:
    """The noisy quadratic model: h_i = 1/i, per-example noise covariance H, E[x₀²] = 1.

    Examples:
      >>> m = NQM(k=3)
      >>> m.h.tolist(), round(m.initial_loss, 6)
      ([1.0, 0.5, 0.3333333333333333], 0.916667)
    """

    k: int = 10_000

    def __post_init__(self) -> None:
        if not isinstance(self.k, (int, np.integer)) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k (number of coordinates) must be an integer >= 1; got k={self.k!r}")

    @property
    def h(self) -> NDArray[np.float64]:
        """Curvatures h_i = 1/i, i = 1 … K."""
        return 1.0 / np.arange(1, self.k + 1, dtype=np.float64)

    @property
    def initial_loss(self) -> float:
        """E[L(x₀)] = ½ Σ h_i."""
        return 0.5 * float(np.sum(self.h))


@dataclass(frozen=True)
class Optimizer:
    """A constant-lr optimiser on the NQM: preconditioner H^(−power), heavy-ball ``beta``.

    Examples:
      >>> make_optimizer("precond-momentum")
      Optimizer(name='precond-momentum', power=0.5, beta=0.9)
    """

    name: str
    power: float = 0.0
    beta: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.power) and self.power >= 0):
            raise ValueError(f"power must be >= 0; got power={self.power!r}")
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got beta={self.beta!r}")


def make_optimizer(name: str, power: float = 0.5, momentum: float = 0.9) -> Optimizer:
    """The optimiser called ``name`` (one of :data:`OPTIMIZERS`) with the given p and β.

    Examples:
      >>> make_optimizer("sgd"), make_optimizer("momentum", momentum=0.5).beta
      (Optimizer(name='sgd', power=0.0, beta=0.0), 0.5)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    pre = name.startswith("precond")
    mom = name.endswith("momentum")
    return Optimizer(name, power if pre else 0.0, momentum if mom else 0.0)


# ---------------------------------------------------------------------------------------------
# per-coordinate coefficients


def _configs(lr: ArrayLike, B: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lr_a, b_a = np.broadcast_arrays(np.asarray(lr, dtype=np.float64), np.asarray(B, np.float64))
    lr_a, b_a = np.atleast_1d(lr_a).ravel(), np.atleast_1d(b_a).ravel()
    if not (np.all(np.isfinite(lr_a)) and np.all(lr_a > 0)):
        raise ValueError(f"learning rates must be finite and > 0; got {lr!r}")
    if not (np.all(np.isfinite(b_a)) and np.all(b_a > 0)):
        raise ValueError(f"batch sizes must be finite and > 0; got {B!r}")
    return lr_a, b_a


def _rate_scale(h: NDArray, opt: Optimizer) -> NDArray[np.float64]:
    """a/α = h^(−p) per coordinate."""
    return h ** (-opt.power) if opt.power else np.ones_like(h)


def _max_ah(nqm: NQM, opt: Optimizer, lr: NDArray) -> NDArray[np.float64]:
    """max_i a_i h_i = α max_i h_i^(1−p) (the stability-limiting coordinate)."""
    h = nqm.h
    return lr * float(np.max(h ** (1.0 - opt.power)))


def _stationary(a: NDArray, ah: NDArray, beta: float, B: NDArray) -> NDArray[np.float64]:
    """P_∞ = a (1+β) / ((1−β) B (2 + 2β − a h)); inf where unstable."""
    den = (1.0 - beta) * B * (2.0 + 2.0 * beta - ah)
    with np.errstate(divide="ignore"):
        out = a * (1.0 + beta) / den
    return np.where((ah > 0) & (ah < 2.0 * (1.0 + beta)), out, np.inf)


def stationary_loss(nqm: NQM, opt: Optimizer, lr: ArrayLike, B: ArrayLike) -> NDArray[np.float64]:
    """L_∞ = ½ Σ_i h_i P_∞,i for each (lr, B) pair (broadcast); ``inf`` when unstable.

    Without momentum P_∞ = a/(B(2 − a h)): the classic SGD noise floor.

    Examples:
      >>> m, o = NQM(k=1), make_optimizer("sgd")
      >>> float(stationary_loss(m, o, 1.0, 2.0)[0])   # ½ · 1 · 1/(2·(2 − 1))
      0.25
      >>> float(stationary_loss(m, o, 2.0, 2.0)[0])   # a h = 2: not stable
      inf
    """
    lr_a, b_a = _configs(lr, B)
    h = nqm.h
    out = np.empty(lr_a.size)
    scale = _rate_scale(h, opt)
    step = max(1, _CHUNK // h.size)
    for s in range(0, lr_a.size, step):
        a = lr_a[s : s + step, None] * scale[None, :]
        p = _stationary(a, a * h, opt.beta, b_a[s : s + step, None])
        out[s : s + step] = 0.5 * np.sum(h * p, axis=1)
    return out


def reachable(
    nqm: NQM, opt: Optimizer, lr: ArrayLike, B: ArrayLike, target: float
) -> NDArray[np.bool_]:
    """Whether E[L] ever falls to ``target``: stable, and L_∞ < target (or L₀ ≤ target).

    Examples:
      >>> m, o = NQM(k=1), make_optimizer("sgd")
      >>> reachable(m, o, [1.0, 0.01], 2.0, 0.1).tolist()   # L_∞ = 0.25 and ≈ 0.0013
      [False, True]
    """
    _check_target(target)
    return (stationary_loss(nqm, opt, lr, B) < target) | (nqm.initial_loss <= target)


def _check_target(target: float) -> None:
    if not (isinstance(target, (int, float, np.floating)) and math.isfinite(target) and target > 0):
        raise ValueError(f"target must be a finite loss > 0; got target={target!r}")


# ---------------------------------------------------------------------------------------------
# exact: closed form


@dataclass
class _Part:
    """Closed-form constants of a subset of (configuration, coordinate) elements, flattened."""

    cfg: NDArray[np.int64]  # configuration index of each element
    w: NDArray[np.float64]  # ½ h_i
    p_inf: NDArray[np.float64]
    d11: NDArray[np.float64]  # 1 − P_∞
    d12: NDArray[np.float64]  # 1 − Q_∞
    log_l1: NDArray[np.float64]  # log |λ₁| (real roots) or ½ log β (complex roots)
    sign: NDArray[np.float64]  # sign of λ₁ (real roots)
    log_rho: NDArray[np.float64]  # log(λ₂/λ₁) ≤ 0 (real roots)
    one_m_rho: NDArray[np.float64]  # 1 − λ₂/λ₁ (real roots)
    phi: NDArray[np.float64]  # arg λ₁ ∈ (0, π) (complex roots)
    sin_phi: NDArray[np.float64]


@dataclass
class _Prep:
    """The closed form of n_cfg configurations: real-root and complex-root parts."""

    real: _Part
    cplx: _Part
    beta: float
    n_cfg: int
    monotone: bool  # no momentum and every P_∞ ≤ 1: E[L] falls monotonically


def _prep(nqm: NQM, opt: Optimizer, lr: NDArray, B: NDArray) -> _Prep:
    h = nqm.h
    beta = opt.beta
    n_cfg, k = lr.size, h.size
    a = (lr[:, None] * _rate_scale(h, opt)[None, :]).ravel()
    hh = np.tile(h, n_cfg)
    cfg = np.repeat(np.arange(n_cfg), k)
    ah = a * hh
    c = 1.0 + beta - ah
    p_inf = _stationary(a, ah, beta, np.repeat(B, k))
    disc = c * c - 4.0 * beta
    real = disc >= 0
    all_real = bool(real.all())

    def part(m: NDArray[np.bool_] | None, cplx: bool) -> _Part:
        def sel(x):
            return x if m is None else x[m]

        cs, ds, ps = sel(c), sel(disc), sel(p_inf)
        sq = np.sqrt(np.abs(ds))
        z = np.zeros(0) if cs.size == 0 else np.zeros_like(cs)
        if cplx:
            log_l1 = np.full(cs.size, 0.5 * math.log(beta) if beta > 0 else 0.0)
            phi = np.arctan2(sq, cs)
            sin_phi = sq / (2.0 * math.sqrt(beta))
            sign = log_rho = one_m_rho = z
        else:
            phi = sin_phi = z
            l1 = 0.5 * (np.abs(cs) + sq)
            with np.errstate(divide="ignore", invalid="ignore"):
                one_m_rho = np.where(l1 > 0, sq / np.where(l1 > 0, l1, 1.0), 1.0)
                log_rho = np.log1p(-np.minimum(one_m_rho, 1.0))
                log_l1 = np.log(l1)
            sign = np.where(cs < 0, -1.0, 1.0)
        return _Part(
            cfg=sel(cfg),
            w=0.5 * sel(hh),
            p_inf=ps,
            d11=1.0 - ps,
            d12=1.0 - cs * ps / (1.0 + beta),
            log_l1=log_l1,
            sign=sign,
            log_rho=log_rho,
            one_m_rho=one_m_rho,
            phi=phi,
            sin_phi=sin_phi,
        )

    return _Prep(
        real=part(None if all_real else real, False),
        cplx=part(np.zeros(0, bool) if all_real else ~real, True)
        if not all_real
        else _empty_part(),
        beta=beta,
        n_cfg=n_cfg,
        monotone=beta == 0 and bool(np.all(p_inf <= 1.0)),
    )


def _empty_part() -> _Part:
    e = np.zeros(0)
    return _Part(np.zeros(0, np.int64), e, e, e, e, e, e, e, e, e, e)


def _f(pt: _Part, n: NDArray, cplx: bool) -> NDArray[np.float64]:
    """f_n = (λ₁ⁿ − λ₂ⁿ)/(λ₁ − λ₂) for integers n ≥ 0 (per element), without cancellation."""
    m = n - 1.0
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        mag = np.where(m == 0, 1.0, np.exp(m * pt.log_l1))
        if cplx:  # β^((n−1)/2) sin(nφ)/sin φ; sin φ = 0 only at a double root: n
            g = np.where(pt.sin_phi > 0, np.sin(n * pt.phi) / pt.sin_phi, n)
        else:  # λ₁ⁿ⁻¹ (1 − ρⁿ)/(1 − ρ); equal roots (ρ = 1): n
            g = np.where(pt.one_m_rho > 0, -np.expm1(n * pt.log_rho) / pt.one_m_rho, n)
            if np.any(pt.sign < 0):  # negative roots: (−1)^(n−1)
                g = g * np.where((pt.sign < 0) & (np.mod(m, 2.0) == 1.0), -1.0, 1.0)
        out = mag * g
    return np.where(n == 0, 0.0, out)


def _select(pr: _Prep, sub: NDArray[np.int64]) -> _Prep:
    """The closed form of the configurations ``sub`` only (renumbered 0 … len(sub) − 1)."""
    new = np.full(pr.n_cfg, -1, dtype=np.int64)
    new[sub] = np.arange(sub.size)

    def part(pt: _Part) -> _Part:
        m = new[pt.cfg] >= 0
        kw = {f: getattr(pt, f)[m] for f in pt.__dataclass_fields__}
        kw["cfg"] = new[pt.cfg[m]]
        return _Part(**kw)

    return _Prep(part(pr.real), part(pr.cplx), pr.beta, int(sub.size), pr.monotone)


def _no_crossing_before(pr: _Prep, T: int, target: float) -> NDArray[np.bool_]:
    """Configurations whose E[L(x_t)] > target for every t ≤ T, proved without scanning.

    Noise only adds to E[x_t²] (its contribution Σ_k (M^k n)_x² ≥ 0), so E[x_t²] ≥ x̄_t², the
    noise-free path from rest. Where both roots are real and positive, x̄_t =
    (λ₁^{t+1}(1−λ₂) − λ₂^{t+1}(1−λ₁))/(λ₁−λ₂) decreases monotonically to 0 (its decrement is
    (1−λ₁)(1−λ₂)(λ₁^{t+1} − λ₂^{t+1})/(λ₁−λ₂) > 0), so for t ≤ T, E[L(x_t)] ≥
    Σ_{such i} ½ h_i x̄_{i,T}².
    """
    pt = pr.real
    keep = pt.sign > 0
    if not keep.any():
        return np.zeros(pr.n_cfg, dtype=bool)
    sub = _Part(**{f: getattr(pt, f)[keep] for f in pt.__dataclass_fields__})
    n = np.full(sub.cfg.size, float(T))
    x = _f(sub, n + 1.0, False) - pr.beta * _f(sub, n, False)
    lb = np.bincount(sub.cfg, weights=sub.w * x * x, minlength=pr.n_cfg)
    return lb > target


def _loss(pr: _Prep, t: NDArray) -> NDArray[np.float64]:
    """E[L(x_t)] per configuration; ``t`` holds one integer step per configuration."""
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros(pr.n_cfg)
    b = pr.beta
    for pt, cplx in ((pr.real, False), (pr.cplx, True)):
        if pt.cfg.size == 0:
            continue
        tt = t[pt.cfg]
        if b == 0:  # P_t = P_∞ + (1 − P_∞) c^{2t}
            with np.errstate(invalid="ignore", under="ignore"):
                decay = np.where(tt == 0, 1.0, np.exp(2.0 * tt * pt.log_l1))
            p = pt.p_inf + pt.d11 * decay
        else:
            f1, f0 = _f(pt, tt + 1.0, cplx), _f(pt, tt, cplx)
            p = pt.p_inf + pt.d11 * (f1 * f1 + b * b * f0 * f0) - 2.0 * b * pt.d12 * f1 * f0
        out += np.bincount(pt.cfg, weights=pt.w * p, minlength=pr.n_cfg)
    return out


def expected_loss(
    nqm: NQM, opt: Optimizer, lr: ArrayLike, B: ArrayLike, steps: ArrayLike
) -> NDArray[np.float64]:
    """Exact E[L(x_t)] from the closed form, for (lr, B) pairs (broadcast) and steps t.

    Returns:
      (n_configurations, n_steps) array; ``inf`` growth for unstable configurations is not
      guarded (check :func:`stationary_loss` first).

    Examples:
      >>> m, o = NQM(k=1), make_optimizer("sgd")
      >>> # x_t² ← (1 − α)² x² + α²/B: from 1, α = ½, B = 1: ¼ + ¼ = ½, then ⅛ + ¼ = ⅜
      >>> (2 * expected_loss(m, o, 0.5, 1.0, [0, 1, 2])).round(12).tolist()
      [[1.0, 0.5, 0.375]]
    """
    lr_a, b_a = _configs(lr, B)
    st = np.atleast_1d(np.asarray(steps, dtype=np.float64))
    if st.ndim != 1 or np.any(st < 0) or np.any(st != np.round(st)):
        raise ValueError(f"steps must be non-negative integers; got {steps!r}")
    out = np.empty((lr_a.size, st.size))
    step = max(1, _CHUNK // nqm.k)
    for s in range(0, lr_a.size, step):
        pr = _prep(nqm, opt, lr_a[s : s + step], b_a[s : s + step])
        for j, t in enumerate(st):
            out[s : s + step, j] = _loss(pr, np.full(pr.n_cfg, t))
    return out


# ---------------------------------------------------------------------------------------------
# exact: iteration of the recursion


def iterate_moments(
    nqm: NQM, opt: Optimizer, lr: ArrayLike, B: ArrayLike, n_steps: int
) -> NDArray[np.float64]:
    """Exact E[L(x_t)], t = 0 … n_steps, by iterating the second-moment recursion step by step.

    P_{t+1} = c² P_t − 2cβ Q_t + β² R_t + a² h/B, Q_{t+1} = c P_t − β Q_t, R_{t+1} = P_t, from
    P₀ = Q₀ = R₀ = 1 (x₋₁ = x₀).

    Returns:
      (n_configurations, n_steps + 1) array.

    Examples:
      >>> m, o = NQM(k=1), make_optimizer("sgd")
      >>> (2 * iterate_moments(m, o, 0.5, 1.0, 2)).round(12).tolist()
      [[1.0, 0.5, 0.375]]
    """
    lr_a, b_a = _configs(lr, B)
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ValueError(f"n_steps must be an integer >= 0; got {n_steps!r}")
    h = nqm.h
    out = np.empty((lr_a.size, n_steps + 1))
    step = max(1, _CHUNK // nqm.k)
    for s in range(0, lr_a.size, step):
        a = lr_a[s : s + step, None] * _rate_scale(h, opt)[None, :]
        for t, loss in enumerate(_moment_steps(a, h, opt.beta, b_a[s : s + step, None], n_steps)):
            out[s : s + step, t] = loss
    return out


def _moment_steps(a: NDArray, h: NDArray, beta: float, B: NDArray, n_steps: int):
    """Yield E[L(x_t)] per row of ``a`` for t = 0 … n_steps (the exact recursion)."""
    c = 1.0 + beta - a * h
    c2, c2b, b2 = c * c, 2.0 * beta * c, beta * beta
    noise = a * a * h / B
    P = np.ones_like(a)
    Q = np.ones_like(a)
    R = np.ones_like(a)
    wh = 0.5 * h
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(n_steps + 1):
            yield P @ wh
            if t == n_steps:
                return
            P, Q, R = c2 * P - c2b * Q + b2 * R + noise, c * P - beta * Q, P


# ---------------------------------------------------------------------------------------------
# steps to target


def default_dense(beta: float) -> int:
    """Steps scanned one by one before the bracket search: until β^t < 10⁻¹² (0 without momentum).

    Oscillating (complex-root) modes of E[x_t²] decay as |λ|^{2t} = β^t; past this window they
    cannot carry the loss across the target and back.

    Examples:
      >>> default_dense(0.0), default_dense(0.9)
      (0, 263)
    """
    return 0 if beta == 0 else math.ceil(math.log(1e-12) / math.log(beta))


def steps_to_target(
    nqm: NQM,
    opt: Optimizer,
    lr: ArrayLike,
    B: ArrayLike,
    target: float,
    *,
    dense: int | None = None,
    max_steps: float = 1e15,
) -> NDArray[np.int64]:
    """First t with E[L(x_t)] ≤ target, for (lr, B) pairs (broadcast); −1 where never.

    Never: unstable, or L_∞ ≥ target (unless L₀ ≤ target), or beyond ``max_steps``.
    Steps 0 … ``dense`` are checked one by one with the exact recursion (default
    :func:`default_dense`; 0 when the loss is provably monotone: no momentum and every
    P_∞,i ≤ 1); past them the crossing is bracketed on a doubling grid and located by bisection
    in the closed form.

    Examples:
      >>> m, o = NQM(k=1), make_optimizer("sgd")
      >>> # deterministic limit: (1 − α)^{2t}/2 ≤ 0.01 with α = ½ needs 4^t ≥ 50: t = 3
      >>> steps_to_target(m, o, [0.5, 1.9, 2.5], 1e12, 0.01).tolist()
      [3, 19, -1]
    """
    _check_target(target)
    lr_a, b_a = _configs(lr, B)
    out = np.full(lr_a.size, -1, dtype=np.int64)
    idx = np.nonzero(reachable(nqm, opt, lr_a, b_a, target))[0]
    step = max(1, _CHUNK // nqm.k)
    for s in range(0, idx.size, step):
        sel = idx[s : s + step]
        pr = _prep(nqm, opt, lr_a[sel], b_a[sel])
        n_dense = (0 if pr.monotone else default_dense(opt.beta)) if dense is None else dense
        res = np.full(sel.size, -1, dtype=np.int64)
        scan = np.nonzero(~_no_crossing_before(pr, n_dense, target))[0] if n_dense else sel[:0]
        if scan.size:
            res[scan] = _scan(nqm, opt, lr_a[sel][scan], b_a[sel][scan], target, n_dense, False)
        todo = np.nonzero(res < 0)[0]
        if todo.size:
            sub = _prep(nqm, opt, lr_a[sel][todo], b_a[sel][todo])
            res[todo] = _bracket(sub, target, float(n_dense + 1), max_steps, prune=False)
        out[sel] = res
    return out


def _scan(nqm, opt, lr, B, target, n_dense, stop_at_first) -> NDArray[np.int64]:
    """First t ≤ n_dense with E[L(x_t)] ≤ target by the exact recursion (−1: none)."""
    res = np.full(lr.size, -1, dtype=np.int64)
    if n_dense <= 0 and not stop_at_first:
        n_dense = 0
    h = nqm.h
    a = lr[:, None] * _rate_scale(h, opt)[None, :]
    for t, loss in enumerate(_moment_steps(a, h, opt.beta, B[:, None], max(n_dense, 0))):
        hit = (res < 0) & (loss <= target)
        res[hit] = t
        if (stop_at_first and hit.any()) or np.all(res >= 0):
            break
    return res


def _bracket(pr: _Prep, target: float, t0: float, max_steps: float, prune: bool):
    """First t ≥ t0 with E[L] ≤ target, given E[L(t)] > target for t < t0 (monotone beyond).

    Doubling grid t0, 2t0, 4t0, … then bisection. ``prune``: stop the grid at the first point
    where any configuration crosses; the others get −2 (more steps than that point).
    """
    n = pr.n_cfg
    res = np.full(n, -1, dtype=np.int64)
    lo = np.full(n, t0 - 1.0)  # E[L(lo)] > target
    hi = np.full(n, np.nan)
    todo = np.ones(n, dtype=bool)
    t = max(t0, 1.0) if t0 > 0 else 0.0
    while todo.any() and t <= max_steps:
        below = todo & (_loss(pr, np.full(n, t)) <= target)
        hi[below] = t
        todo &= ~below
        lo[todo] = t
        if prune and below.any():
            res[todo] = -2
            todo[:] = False
        t = 1.0 if t == 0 else 2.0 * t
    sub = np.nonzero(np.isfinite(hi))[0]
    if prune and sub.size:
        # joint bisection on the smallest step count: at a midpoint where some candidates
        # cross, the others cross later and drop out
        lo_j, hi_j = float(lo[sub].max()), float(hi[sub].min())
        few = _select(pr, sub)
        while hi_j - lo_j > 1 and sub.size:
            mid = math.floor(0.5 * (lo_j + hi_j))
            below = _loss(few, np.full(sub.size, float(mid))) <= target
            if below.any():
                res[sub[~below]] = -2
                if not below.all():
                    few = _select(few, np.nonzero(below)[0])
                sub, hi_j = sub[below], float(mid)
            else:
                lo_j = float(mid)
        res[sub] = int(hi_j)
        return res
    lo_b, hi_b = lo[sub], hi[sub]
    few = _select(pr, sub) if sub.size < n else pr
    while sub.size and np.any(hi_b - lo_b > 1):
        mid = np.floor(0.5 * (lo_b + hi_b))
        below = _loss(few, mid) <= target
        hi_b = np.where(below, mid, hi_b)
        lo_b = np.where(below, lo_b, mid)
    res[sub] = hi_b.astype(np.int64)
    return res


@dataclass(frozen=True)
class BestPoint:
    """The best constant learning rate of one (optimiser, batch size) on an lr grid."""

    optimizer: str
    batch_size: float
    lr: float
    lr_index: int
    steps: int
    stationary_loss: float
    n_reachable: int
    censored: str  # "low" / "high": the best lr is the grid's first / last point


def best_steps(
    nqm: NQM,
    opt: Optimizer,
    B: float,
    lrs: ArrayLike,
    target: float,
    *,
    lower: int = 0,
    dense: int | None = None,
) -> BestPoint:
    """The lr on the grid ``lrs`` with the fewest steps to ``target`` at batch size ``B``.

    Every reachable lr is advanced together: one by one through the dense window (see
    :func:`steps_to_target`), then on a doubling grid from ``lower``; the first grid point where
    any lr crosses bounds the minimum, and only the lrs crossing there are bisected. Ties: the
    lr with the lower loss at that step.

    Args:
      lower: a known lower bound on the steps of every lr (e.g. the best steps at a larger
        batch size: the noise only adds to E[x_t²], so steps never fall as B falls).

    Raises:
      ValueError: no lr on the grid reaches the target at this batch size.

    Examples:
      >>> m, o = NQM(k=1), make_optimizer("sgd")
      >>> p = best_steps(m, o, 1e12, [0.5, 1.0, 1.5], 0.01)
      >>> p.lr, p.steps            # α = 1 reaches the minimum in one step
      (1.0, 1)
    """
    _check_target(target)
    grid = np.asarray(lrs, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"lrs must be a non-empty 1-D grid; got {lrs!r}")
    lr_a, b_a = _configs(grid, float(B))
    linf = stationary_loss(nqm, opt, lr_a, b_a)
    ok = (linf < target) | (nqm.initial_loss <= target)
    if not ok.any():
        raise ValueError(
            f"no learning rate in [{grid.min():.3g}, {grid.max():.3g}] reaches target "
            f"{target:g} with {opt.name} at B={B:g} (the smallest stationary loss is "
            f"{np.min(linf):.3g}); use smaller learning rates or a larger target"
        )
    idx = np.nonzero(ok)[0]
    pr = _prep(nqm, opt, lr_a[idx], b_a[idx])
    n_dense = (0 if pr.monotone else default_dense(opt.beta)) if dense is None else dense
    steps = np.full(idx.size, -2, dtype=np.int64)
    t0 = float(max(lower, 0))
    if n_dense > 0 and lower <= n_dense:
        # one by one through the window, for the lrs not proved to stay above the target
        scan = np.nonzero(~_no_crossing_before(pr, n_dense, target))[0]
        if scan.size:
            steps[scan] = _scan(nqm, opt, lr_a[idx][scan], b_a[idx][scan], target, n_dense, True)
            steps[steps < 0] = -2
        t0 = float(n_dense + 1)
    if not np.any(steps >= 0):
        steps = _bracket(pr, target, t0, 1e15, prune=True)
    if not np.any(steps >= 0):
        raise ValueError(f"no learning rate reaches target {target:g} within 1e15 steps")
    s_min = int(np.min(steps[steps >= 0]))
    tied = np.nonzero(steps == s_min)[0]
    if tied.size > 1:
        loss = _loss(pr, np.full(pr.n_cfg, float(s_min)))[tied]
        tied = tied[np.argsort(loss, kind="stable")]
    i = int(idx[tied[0]])
    return BestPoint(
        optimizer=opt.name,
        batch_size=float(B),
        lr=float(grid[i]),
        lr_index=i,
        steps=s_min,
        stationary_loss=float(linf[i]),
        n_reachable=int(idx.size),
        censored="low" if i == 0 else ("high" if i == grid.size - 1 else ""),
    )


def scan_batch_sizes(
    nqm: NQM,
    opt: Optimizer,
    batch_sizes: ArrayLike,
    lrs: ArrayLike,
    target: float,
    on_progress: Callable[[int], None] | None = None,
) -> list[BestPoint]:
    """:func:`best_steps` at each batch size (largest first, each bounding the next from below).

    Returns:
      one :class:`BestPoint` per batch size, in the given order.

    Examples:
      >>> # K = 1, α = 1 lands on the minimum in one step, then the noise leaves L_∞ = 1/(2B);
      >>> # at B = 20 that is 0.025 > 0.01, and α = ½ takes 5 steps (P_∞ = 1/60, decay ¼^t)
      >>> pts = scan_batch_sizes(NQM(k=1), make_optimizer("sgd"), [20, 1e6], [0.5, 1.0], 0.01)
      >>> [(p.lr, p.steps) for p in pts]
      [(0.5, 5), (1.0, 1)]
    """
    b = np.asarray(batch_sizes, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise ValueError(f"batch_sizes must be a non-empty 1-D list; got {batch_sizes!r}")
    out: dict[int, BestPoint] = {}
    lower = 0
    for j in np.argsort(-b, kind="stable"):
        p = best_steps(nqm, opt, float(b[j]), lrs, target, lower=lower)
        out[int(j)] = p
        lower = p.steps
        if on_progress is not None:
            on_progress(1)
    return [out[j] for j in range(b.size)]


# ---------------------------------------------------------------------------------------------
# Monte Carlo


@dataclass(frozen=True)
class McResult:
    """Monte Carlo loss at steps 0 … n_steps: mean over seeds and its standard error.

    ``mean``, ``se``: (n_configurations, n_steps + 1).
    """

    mean: NDArray[np.float64]
    se: NDArray[np.float64]
    n_seeds: int

    def first_below(self, target: float) -> NDArray[np.int64]:
        """Per configuration, the first step whose mean loss is ≤ target (−1: none simulated)."""
        below = self.mean <= target
        return np.where(below.any(axis=1), np.argmax(below, axis=1), -1).astype(np.int64)


def monte_carlo(
    nqm: NQM,
    opt: Optimizer,
    lr: ArrayLike,
    B: ArrayLike,
    n_steps: int,
    n_seeds: int,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> McResult:
    """Sampled dynamics: x₀ ~ N(0, I), ε_t ~ N(0, H/B), all (lr, B) pairs × seeds at once.

    The update is the heavy-ball form x_{t+1} = x_t − a(h x_t + ε_t) + β(x_t − x_{t−1}) with
    x₋₁ = x₀ (β = 0: (preconditioned) SGD). The loss ½ Σ h_i x_i² of each seed at each step
    gives the mean and standard error over the seeds, estimating E[L(x_t)].

    Examples:
      >>> m, o = NQM(k=100), make_optimizer("momentum")
      >>> r = monte_carlo(m, o, 0.5, 64.0, 5, 64, seed=1)
      >>> e = expected_loss(m, o, 0.5, 64.0, range(6))
      >>> bool(np.all(np.abs(r.mean - e) <= 5 * r.se))
      True
    """
    lr_a, b_a = _configs(lr, B)
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ValueError(f"n_steps must be an integer >= 0; got {n_steps!r}")
    if not isinstance(n_seeds, (int, np.integer)) or n_seeds < 2:
        raise ValueError(f"n_seeds must be an integer >= 2 (for a standard error); got {n_seeds!r}")
    rng = np.random.default_rng([int(seed), 13])
    h = nqm.h
    n, k = lr_a.size, h.size
    a = (lr_a[:, None] * _rate_scale(h, opt)[None, :])[:, None, :]  # (n, 1, K)
    c = 1.0 + opt.beta - a * h
    noise = a * np.sqrt(h / b_a[:, None])[:, None, :]  # a · std(ε)
    x = rng.standard_normal((n, n_seeds, k))
    x_prev = x
    per = np.empty((n, n_seeds, n_steps + 1))
    wh = 0.5 * h
    for t in range(n_steps + 1):
        per[:, :, t] = (x * x) @ wh
        if t == n_steps:
            break
        z = rng.standard_normal((n, n_seeds, k))
        x, x_prev = c * x - opt.beta * x_prev - noise * z, x
        if on_progress is not None:
            on_progress(1)
    mean = per.mean(axis=1)
    se = per.std(axis=1, ddof=1) / math.sqrt(n_seeds)
    return McResult(mean, se, int(n_seeds))


def sgd_noise_scale(nqm: NQM, opt: Optimizer, lr: float, B: float, t: int) -> tuple[float, float]:
    """McCandlish's ε_max and B_noise at the expected state after t steps.

    With G = H x and the state's second moments P_i = E[x_i²] (x has mean 0, so the law's
    quadratic forms are taken in expectation): ε_max = Σ h_i² P_i / Σ h_i³ P_i and
    B_noise = tr(HΣ) / Σ h_i³ P_i = Σ h_i² / Σ h_i³ P_i (Σ = H). These equal
    :func:`theory.sgd.params` at G_i = h_i √P_i.

    Examples:
      >>> m, o = NQM(k=3), make_optimizer("sgd")
      >>> e, b = sgd_noise_scale(m, o, 0.1, 1.0, 0)   # the start: P = 1
      >>> bool(round(e, 12) == round(b, 12) == round(sum(m.h**2) / sum(m.h**3), 12))
      True
    """
    p = second_moments(nqm, opt, lr, B, t)
    h = nqm.h
    ghg = float(np.sum(h**3 * p))
    return float(np.sum(h**2 * p)) / ghg, float(np.sum(h**2)) / ghg


def second_moments(nqm: NQM, opt: Optimizer, lr: float, B: float, t: int) -> NDArray[np.float64]:
    """E[x_{i,t}²] for one (lr, B) from the closed form, (K,).

    Examples:
      >>> second_moments(NQM(k=1), make_optimizer("sgd"), 0.5, 1.0, 2).tolist()
      [0.375]
    """
    pr = _prep(nqm, opt, *_configs(lr, B))
    out = np.empty(nqm.k)
    for pt, cplx in ((pr.real, False), (pr.cplx, True)):
        if pt.cfg.size == 0:
            continue
        n = np.full(pt.cfg.size, float(t))
        f1, f0 = _f(pt, n + 1.0, cplx), _f(pt, n, cplx)
        b = pr.beta
        p = pt.p_inf + pt.d11 * (f1 * f1 + b * b * f0 * f0) - 2.0 * b * pt.d12 * f1 * f0
        out[np.rint(0.5 / pt.w).astype(np.int64) - 1] = p
    return out


# ---------------------------------------------------------------------------------------------
# fits


@dataclass(frozen=True)
class ScalingFit:
    """S = S_min (1 + B_crit/B), fitted by least squares in log S."""

    s_min: float
    b_crit: float
    rms_log: float  # root-mean-square residual in log S


def fit_scaling(B: ArrayLike, S: ArrayLike) -> ScalingFit:
    """Least-squares fit of log S = log S_min + log(1 + B_crit/B) (both parameters > 0).

    Examples:
      >>> B = np.array([4.0, 16.0, 64.0, 256.0, 1024.0])
      >>> f = fit_scaling(B, 100 * (1 + 50 / B))
      >>> round(f.s_min, 6), round(f.b_crit, 6)
      (100.0, 50.0)
    """
    from scipy.optimize import least_squares

    b = np.asarray(B, dtype=np.float64)
    s = np.asarray(S, dtype=np.float64)
    if b.ndim != 1 or b.shape != s.shape or b.size < 2:
        raise ValueError(f"B and S must be 1-D of one length >= 2; got {b.shape}, {s.shape}")
    if np.any(b <= 0) or np.any(s <= 0) or not np.all(np.isfinite(b * s)):
        raise ValueError("B and S must be finite and > 0")
    ls = np.log(s)

    def resid(p):
        return p[0] + np.log1p(np.exp(p[1]) / b) - ls

    best = None
    for lb in np.log(b):  # a few starts for B_crit across the range
        x0 = np.array([float(np.min(ls)), lb])
        r = least_squares(resid, x0, method="lm", xtol=1e-14, ftol=1e-14, gtol=1e-14)
        if best is None or r.cost < best.cost:
            best = r
    s_min, b_crit = math.exp(best.x[0]), math.exp(best.x[1])
    return ScalingFit(s_min, b_crit, float(np.sqrt(np.mean(best.fun**2))))


# ---------------------------------------------------------------------------------------------
# the problem for ``simulate train``


def problem(seed: int = 0, d: int = 10_000):
    """The NQM as a :class:`simulate.problems.Problem` for ``simulate train --problem nqm``.

    ``simulate.train`` starts at x₀ = H⁻¹ μ with a deterministic x₀; choosing μ = H·1 = h gives
    x₀ = 1, whose second moments x₀,i² = 1 are the NQM's, so the expected loss curve is the
    same (it depends on E[x₀ x₀ᵀ] only). Per-example noise covariance H: σ_i = √h_i. ``seed`` is
    accepted for the presets' signature; the NQM has no random parameters.

    Examples:
      >>> p = problem(d=3)
      >>> p.mu.tolist() == p.h.tolist(), bool(np.allclose(p.sigma**2, p.h))
      (True, True)
    """
    from simulate.problems import Problem

    h = NQM(k=d).h
    return Problem(
        name="nqm",
        mu=h,
        sigma=np.sqrt(h),
        h=h,
        notes="Zhang et al. 2019 NQM: h_i = 1/i, noise covariance H, x0 = 1",
    )
