"""The derivation record, shared symbols and the helpers every derivation uses.

A derivation is a pure function returning a :class:`Derivation`: the derived sympy
expressions, the steps as (description, LaTeX) pairs, the symbolic claims established on the
way (each a bool computed by sympy, never asserted by hand), and a numeric checker that
evaluates the derived expressions (lambdified) against the numeric API at seeded random
points and returns the largest relative deviation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

#: Vector quantities are derived for a concrete small dimension: exact, fast, and general
#: enough (every term type -- diagonal, off-diagonal, mixed signs -- occurs at d = 3).
D = 3

#: Floating-point tolerance for "lambdified expression == numeric function" at O(1)
#: condition: both sides are a few dozen flops in float64 (64·eps ≈ 1.4e-14, with headroom
#: for erf and square roots).
FP_TOL = 1e-11


@dataclass(frozen=True)
class Derivation:
    """One derived result: expressions, steps, symbolic claims and a numeric checker."""

    name: str
    title: str
    equation: str
    exprs: Mapping[str, sp.Expr]
    steps: tuple[tuple[str, str], ...]
    claims: tuple[tuple[str, bool], ...]
    checker: Callable[[np.random.Generator], float] = field(repr=False)
    tol: float = FP_TOL


@dataclass(frozen=True)
class CheckResult:
    """The outcome of re-deriving one result and checking it numerically."""

    name: str
    equation: str
    claims_ok: bool
    failed_claims: tuple[str, ...]
    max_deviation: float
    tol: float

    @property
    def ok(self) -> bool:
        return (
            self.claims_ok
            and bool(np.isfinite(self.max_deviation))
            and self.max_deviation <= self.tol
        )


def run_check(der: Derivation, seed: int = 0) -> CheckResult:
    """Evaluate a derivation's claims and numeric checker (seeded)."""
    failed = tuple(desc for desc, ok in der.claims if not bool(ok))
    dev = float(der.checker(np.random.default_rng(seed)))
    return CheckResult(der.name, der.equation, not failed, failed, dev, der.tol)


class Builder:
    """Collects the steps and claims of one derivation while it is being carried out."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []
        self.claims: list[tuple[str, bool]] = []

    def step(self, description: str, *parts: sp.Basic | str | tuple) -> None:
        """Record a step; ``parts`` are expressions, (lhs, rhs) pairs or raw LaTeX strings."""
        self.steps.append((description, " ".join(_latex(p) for p in parts)))

    def claim(self, description: str, holds: bool) -> bool:
        self.claims.append((description, bool(holds)))
        return bool(holds)

    def build(
        self,
        name: str,
        title: str,
        equation: str,
        exprs: Mapping[str, sp.Expr],
        checker: Callable[[np.random.Generator], float],
        tol: float = FP_TOL,
    ) -> Derivation:
        return Derivation(
            name, title, equation, dict(exprs), tuple(self.steps), tuple(self.claims), checker, tol
        )


def _latex(p: sp.Basic | str | tuple) -> str:
    if isinstance(p, str):
        return p
    if isinstance(p, tuple):
        return " = ".join(_latex(q) for q in p)
    return sp.latex(p, inv_trig_style="full")


def is_zero(expr: sp.Expr) -> bool:
    """Exact zero test by targeted rewriting, cheapest first.

    1. over a common denominator, expand the numerator (rational functions: exact and fast);
    2. otherwise rewrite special functions (erfc → 1 − erf), expand and cancel.
    """
    e = sp.sympify(expr)
    num, _ = sp.fraction(sp.together(e))
    if sp.expand(num) == 0:
        return True
    e = sp.expand(sp.expand_func(e))
    if e == 0:
        return True
    return sp.cancel(sp.together(e)) == 0


def equal(a: sp.Expr, b: sp.Expr) -> bool:
    return is_zero(a - b)


# ---- shared symbols -------------------------------------------------------------------------

B = sp.Symbol("B", positive=True)
eps = sp.Symbol("varepsilon", positive=True)
mu = sp.symbols(f"mu1:{D + 1}", real=True, nonzero=True)
sigma = sp.symbols(f"sigma1:{D + 1}", positive=True)


def symmetric(name: str, d: int = D) -> sp.Matrix:
    """A symmetric d×d matrix of real symbols name_ij (i ≤ j)."""
    s = {
        (i, j): sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True)
        for i in range(d)
        for j in range(i, d)
    }
    return sp.Matrix(d, d, lambda i, j: s[(min(i, j), max(i, j))])


Hm = symmetric("H")


def h_symbols(h: sp.Matrix) -> list[sp.Symbol]:
    d = h.shape[0]
    return [h[i, j] for i in range(d) for j in range(i, d)]


def h_values(h: np.ndarray) -> list[float]:
    d = h.shape[0]
    return [float(h[i, j]) for i in range(d) for j in range(i, d)]


# ---- numeric helpers for the checkers -------------------------------------------------------


def rel_dev(a, b) -> float:
    """max |a − b| / max(|b|, tiny), elementwise over broadcast arrays."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))


def random_psd(
    rng: np.random.Generator, d: int = D, lo: float = 0.2, hi: float = 5.0
) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    q = q * np.sign(np.diag(r))
    h = (q * rng.uniform(lo, hi, d)) @ q.T
    return (h + h.T) / 2


def random_sign_problem(rng: np.random.Generator, d: int = D):
    """μ with |μ_i| ∈ [0.1, 2] and random signs, σ ∈ [0.5, 3], H PSD, a batch-size grid."""
    m = rng.uniform(0.1, 2.0, d) * rng.choice([-1.0, 1.0], d)
    s = rng.uniform(0.5, 3.0, d)
    return m, s, random_psd(rng, d), np.exp(rng.uniform(np.log(0.5), np.log(500.0), 7))


def surge_problem(rng: np.random.Generator, d: int = D):
    """A problem with S_off > 0: H = diag + c·u uᵀ with u = sign(μ)."""
    m = rng.uniform(0.1, 1.0, d) * rng.choice([-1.0, 1.0], d)
    s = rng.uniform(1.0, 4.0, d)
    h = np.diag(rng.uniform(0.5, 2.0, d)) + rng.uniform(2.0, 10.0) * np.outer(
        np.sign(m), np.sign(m)
    )
    return m, s, h


def lam(args, expr):
    """Lambdify with scipy special functions (erf) and numpy."""
    return sp.lambdify(args, expr, modules=["scipy", "numpy"])
