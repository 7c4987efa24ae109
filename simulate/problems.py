"""Quadratic problem family: named presets built from a seed, as frozen dataclasses.

A problem is the local quadratic model of THEORY.md: true gradient μ (d,), per-example gradient
noise Σ = diag(σ²) + W Wᵀ, and a Hessian in the kernel's structured form

    H = diag(h) + U Uᵀ,          U: (d, r), r may be 0.

Dense Hessians (given spectrum λ, random rotation Q) are stored *exactly* in this form: with
c = min λ, ``h = c·1`` and ``U = Q √(Λ − c)`` (r = d, one zero column) give
diag(h) + U Uᵀ = c I + Q (Λ − c I) Qᵀ = Q Λ Qᵀ. The kernel therefore handles dense H with no
approximation, at the cost of an O(d·r) = O(d²) product per sample.

Finite-dataset problems also carry the N per-example gradients ``examples`` (N, d); μ and σ are
then their population mean and standard deviation (ddof = 0), so that the CLT-based theory and the
exact without-replacement Monte Carlo describe the same population.

=============== ========= ======================================================
code            symbol    meaning
=============== ========= ======================================================
``mu``          μ = G     true gradient
``sigma``       σ_i       per-example noise std-dev of the *diagonal* part
``h``, ``U``    H         Hessian diag(h) + U Uᵀ
``W``           W         low-rank correlated noise, Σ = diag(σ²) + W Wᵀ
``examples``    g_n       per-example gradients of a finite dataset (N, d)
=============== ========= ======================================================

Presets (:data:`PRESETS`): ``surge`` (S_off > 0, B_noise well inside Theorem 3's regime),
``dense`` (dense rotated H whose top eigenvector is aligned with sign μ: surges),
``diagonal`` (diagonal H: must not surge), ``negative-soff`` (S_off < 0: no peak in the
small-batch regime), ``correlated`` (the surge problem plus rank-1 noise correlation along
sign μ: Theorem 2's independence assumption fails), ``finite`` (the surge problem's law realised
by N fixed per-example gradients, batches drawn without replacement).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from kernels.problem import QuadraticProblem
from theory import sgd, sign


@dataclass(frozen=True, eq=False)
class Problem(QuadraticProblem):
    """A named :class:`kernels.QuadraticProblem` with H ⪰ 0 and, optionally, a finite dataset.

    The arrays μ, σ, h, U, W and their checks are the kernel's problem (one class); this adds
    the preset's ``name`` and ``notes``, requires h ≥ 0 (so H = diag(h) + U Uᵀ is positive
    semi-definite, as training needs), and may carry the N per-example gradients ``examples``
    (N, d) of a finite dataset. Frozen, arrays read-only: a problem can be shared between runs.

    Examples:
      >>> p = Problem([1.0, -1.0], [2.0, 2.0], [1.0, 1.0], name="tiny")
      >>> p.d, p.rank, p.H.tolist()
      (2, 0, [[1.0, 0.0], [0.0, 1.0]])
    """

    name: str = ""
    examples: NDArray[np.float64] | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if np.any(self.h < 0):
            raise ValueError(
                f"h must be >= 0 (H = diag(h) + U U^T is PSD); got min {self.h.min()!r}"
            )
        if self.examples is not None:
            ex = np.array(self.examples, dtype=np.float64)
            if ex.ndim != 2 or ex.shape[1] != self.d or ex.shape[0] < 2:
                raise ValueError(f"examples must be (N >= 2, d={self.d}); got shape {ex.shape}")
            ex.setflags(write=False)
            object.__setattr__(self, "examples", ex)

    @property
    def H(self) -> NDArray[np.float64]:
        """Dense Hessian diag(h) + U Uᵀ (:meth:`hessian`)."""
        return self.hessian()

    @property
    def Sigma(self) -> NDArray[np.float64]:
        """Dense per-example noise covariance: diag(σ²) + W Wᵀ, or for a finite dataset the
        population covariance of the examples (ddof = 0; its diagonal is σ², and its O(1/√N)
        off-diagonal sample correlations are part of the finite-dataset effect)."""
        if self.examples is not None:
            c = self.examples - self.mu
            return (c.T @ c) / c.shape[0]
        return self.noise_cov()

    def hvp(self, x: NDArray) -> NDArray:
        """H x for x of shape (..., d), in O(d·r) per row: h ⊙ x + (x U) Uᵀ."""
        out = x * self.h
        if self.U.shape[1]:
            out = out + (x @ self.U) @ self.U.T
        return out

    def theory(self) -> dict[str, float]:
        """Headline closed forms at this point (Theorems 3-4, the SGD law, S_off).

        A diagonal problem (no U, no W, no examples) is computed from the sufficient statistics
        in O(d), so presets with d = 10⁴ (the NQM) never build a dense d × d matrix.
        """
        sm = self.marginal_std()
        if self.U.shape[1] == 0 and self.W.shape[1] == 0 and self.examples is None:
            mu, h = self.mu, self.h
            eps3, bn3 = sign.surge_params_from_stats(float(h.sum()), 0.0, float(np.sum(mu**2 / sm)))
            e_sgd, bn_sgd = sgd.params_from_stats(
                float(mu @ mu), float(mu @ (h * mu)), float(np.sum(h * sm**2))
            )
            s_off, b_simple = 0.0, sgd.b_simple_from_stats(float(np.sum(sm**2)), float(mu @ mu))
            s_h_s = float(h.sum())
        else:
            H = self.H
            eps3, bn3 = sign.surge_params(self.mu, sm, H)
            e_sgd, bn_sgd = sgd.params(self.mu, H, self.Sigma)
            s_off, b_simple = sign.s_off(self.mu, sm, H), sgd.b_simple(self.mu, self.Sigma)
            s = np.sign(self.mu)
            s_h_s = float(s @ H @ s)
        out = {
            "d": self.d,
            "s_off": s_off,
            "b_noise_theory": bn3,
            "eps_max_theory": eps3,
            "regime_min": float(np.min(sign.regime_bound(self.mu, sm))),
            "sgd_eps_max": e_sgd,
            "sgd_b_noise": bn_sgd,
            "b_simple": b_simple,
        }
        out["eps_large_batch"] = (
            sign.large_batch_lr_from_stats(float(np.abs(self.mu).sum()), s_h_s)
            if np.all(self.mu != 0)
            else math.nan
        )
        return out


def _check_d(d: int, lo: int = 2) -> int:
    if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < lo:
        raise ValueError(f"d must be an integer >= {lo}; got d={d!r}")
    return int(d)


def _signal(rng: np.random.Generator, d: int, r_lo: float, r_hi: float):
    """μ with random signs and signal-to-noise |μ_i|/σ_i drawn in [r_lo, r_hi]; σ in [2, 6]."""
    sigma = rng.uniform(2.0, 6.0, d)
    r = rng.uniform(r_lo, r_hi, d)
    s = rng.choice([-1.0, 1.0], d)
    return s * r * sigma, sigma, s


def surge(
    seed: int = 0,
    d: int = 64,
    coupling: float = 1.0,
    aligned: bool = True,
    h_min: float = 0.5,
    h_max: float = 1.5,
) -> Problem:
    """A problem that surges: H = diag(h) + u uᵀ, u aligned with sign(μ), h_i ∈ [0.5, 1.5].

    S_off = Σ_{i≠j} r_i r_j u_i u_j > 0 (r = μ/σ, all terms positive), so B_noise =
    π tr H / (2 S_off) is finite; at d = 64 it is ≈ 100, an order of magnitude below the
    smallest per-coordinate bound π σ_i²/(2 μ_i²): inside Theorem 3's regime.

    ``aligned=True`` (default): u = √coupling · sign(μ) ⊙ m with magnitudes m_i log-uniform in
    [1/2, 2] (mean square 1) and μ = 0.06 · sign(μ) ⊙ m, so μ ∝ u is (nearly) H's top
    eigenvector and multi-step training keeps its gradient along u (the surge persists along the
    trajectory), while the unequal m_i keep sign descent from reaching the minimum in one step.
    With ``aligned=False``, u = √coupling · sign(μ) and |μ_i|/σ_i ∈ [0.01, 0.03] independently;
    the start point H⁻¹μ then carries most of the loss in the diagonal directions.
    ``h_min``, ``h_max``: range of the diagonal curvatures h_i (log-uniform); a wide range makes
    multi-step training ill-conditioned (many steps even at large B).
    """
    d = _check_d(d)
    rng = np.random.default_rng([seed, 1])
    mu, sigma, s = _signal(rng, d, 0.01, 0.03)
    u = s.copy()
    if aligned:
        m = np.exp(rng.uniform(-math.log(2.0), math.log(2.0), d))
        m /= math.sqrt(np.mean(m**2))
        mu = 0.06 * s * m
        u = s * m
    h = np.exp(rng.uniform(math.log(h_min), math.log(h_max), d))
    U = (math.sqrt(coupling) * u)[:, None]
    return Problem(
        mu,
        sigma,
        h,
        U=U,
        name="surge",
        notes="diag(h) + u u^T, u = sqrt(coupling) sign(mu): S_off > 0",
    )


def diagonal(seed: int = 0, d: int = 64) -> Problem:
    """Diagonal H: S_off = 0, Theorem 2 says ε_opt is non-decreasing in B (no surge)."""
    d = _check_d(d)
    rng = np.random.default_rng([seed, 2])
    mu, sigma, _ = _signal(rng, d, 0.01, 0.03)
    return Problem(mu, sigma, rng.uniform(0.5, 1.5, d), name="diagonal", notes="H diagonal")


def negative_soff(seed: int = 0, d: int = 64, coupling: float = 1.0) -> Problem:
    """S_off < 0 by construction: u_i = sign(μ_i)·(+1 first half, −1 second half), |r| mirrored.

    With the second half's |μ_i/σ_i| a copy of the first's, Σ_i |r_i| s_i = 0 exactly and
    S_off = −(coupling) Σ r_i² < 0: Theorem 3 has no peak.
    """
    d = _check_d(d)
    if d % 2:
        raise ValueError(f"d must be even for negative-soff (mirrored halves); got d={d}")
    rng = np.random.default_rng([seed, 3])
    half = d // 2
    sigma = rng.uniform(2.0, 6.0, d)
    r = np.tile(rng.uniform(0.01, 0.03, half), 2)
    sg = rng.choice([-1.0, 1.0], d)
    mu = sg * r * sigma
    split = np.r_[np.ones(half), -np.ones(half)]
    U = (math.sqrt(coupling) * sg * split)[:, None]
    return Problem(
        mu,
        sigma,
        rng.uniform(0.5, 1.5, d),
        U=U,
        name="negative-soff",
        notes="u = sqrt(coupling) sign(mu) * (+1,...,-1,...): S_off < 0",
    )


def dense(
    seed: int = 0, d: int = 32, cond: float = 10.0, top: float | None = None, signal: float = 1.0
) -> Problem:
    """Dense H = Q Λ Qᵀ, Q a random rotation whose first column is sign(μ)/√d (top eigenvector).

    Λ: one top eigenvalue ``top`` (default 4d) on sign(μ), the rest log-uniform in [1, cond].
    Stored exactly as diag(h) + U Uᵀ with h = min λ, U = Q √(Λ − min λ) (r = d).
    ``signal`` multiplies μ (B_noise scales as 1/signal²). With ``cond=100`` training needs many
    steps at every batch size (the ``simulate train`` default).
    """
    d = _check_d(d)
    rng = np.random.default_rng([seed, 4])
    mu, sigma, s = _signal(rng, d, 0.01, 0.03)
    mu = mu * float(signal)
    A = rng.normal(size=(d, d))
    A[:, 0] = s
    Q, R = np.linalg.qr(A)
    Q = Q * np.sign(np.diag(R))
    lam = np.exp(rng.uniform(0.0, math.log(cond), d))
    lam[0] = 4.0 * d if top is None else float(top)
    c = float(lam.min())
    U = Q * np.sqrt(lam - c)
    return Problem(
        mu,
        sigma,
        np.full(d, c),
        U=U,
        name="dense",
        notes="dense H = Q diag(lam) Q^T stored exactly as c I + Q sqrt(lam - c)",
    )


def correlated(seed: int = 0, d: int = 64, rho: float = 0.3) -> Problem:
    """The surge problem plus correlated noise W = √(ρ/(1−ρ)) σ ⊙ sign(μ) (rank 1).

    Each pair of coordinates then has noise correlation ± ρ (sign(μ_iμ_j) ρ), the marginal
    variance is σ_i²/(1−ρ); Theorem 2 sees only the marginals.
    """
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1); got rho={rho!r}")
    base = surge(seed, d)
    s = np.sign(base.mu)
    W = (math.sqrt(rho / (1.0 - rho)) * base.sigma * s)[:, None]
    return replace(
        base,
        name="correlated",
        W=W,
        notes=f"surge + rank-1 noise correlation rho={rho} along sign(mu)",
    )


def finite(seed: int = 0, d: int = 64, n_examples: int = 1024) -> Problem:
    """The surge problem's law realised by N fixed per-example gradients g_n = μ + σ ⊙ z_n.

    The noise is recentred so that mean_n g_n = μ exactly; σ is then the population std-dev
    (ddof = 0). A batch is the mean of B distinct examples (no replacement); at B = N it is μ.
    """
    if not isinstance(n_examples, (int, np.integer)) or n_examples < 2:
        raise ValueError(f"n_examples must be an integer >= 2; got {n_examples!r}")
    base = surge(seed, d)
    rng = np.random.default_rng([seed, 6])
    z = rng.normal(size=(n_examples, base.d)) * base.sigma
    z -= z.mean(axis=0)
    g = base.mu + z
    return replace(
        base,
        name="finite",
        sigma=z.std(axis=0),
        examples=g,
        notes=f"N={n_examples} per-example gradients, batches without replacement",
    )


def isotropic_scaled(d: int = 256, b_noise: float = 64.0, h: float = 1.0) -> Problem:
    """H = h I with per-example noise variance σ_i² = b_noise·|G|²/d: B_simple = B_noise = b_noise.

    Used with position-scaled noise (:mod:`simulate.train`, ``noise="scaled"``) the noise scale
    stays constant along the whole trajectory: the problem where the S-E law's only
    approximation is the discreteness of steps (see tests/test_simulate_train.py).
    """
    d = _check_d(d)
    mu = np.full(d, 1.0 / math.sqrt(d))
    sigma = np.full(d, math.sqrt(b_noise / d))
    return Problem(
        mu,
        sigma,
        np.full(d, float(h)),
        name="isotropic-scaled",
        notes="H = hI, tr Sigma = b_noise |G|^2",
    )


def nqm(seed: int = 0, d: int = 10_000) -> Problem:
    """The noisy quadratic model of Zhang et al. (2019): h_i = 1/i, noise covariance H, x0 = 1
    (:func:`simulate.nqm.problem`)."""
    from simulate import nqm as _nqm

    return _nqm.problem(seed, d=_check_d(d, lo=1))


PRESETS: dict[str, Callable[..., Problem]] = {
    "surge": surge,
    "dense": dense,
    "diagonal": diagonal,
    "negative-soff": negative_soff,
    "correlated": correlated,
    "finite": finite,
    "nqm": nqm,
}


def make(name: str, seed: int = 0, **kw) -> Problem:
    """Build a preset by name (``surge``, ``dense``, ``diagonal``, ``negative-soff``,
    ``correlated``, ``finite``, ``nqm``)."""
    if name not in PRESETS:
        raise ValueError(f"problem must be one of {sorted(PRESETS)}; got problem={name!r}")
    return PRESETS[name](seed, **kw)
