"""Correlated coordinates: the orthant formula for E[sign X sign Y] and exact m1, m2."""

from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.stats import multivariate_normal, norm

from theory import correlated as cor_num
from theory import sign as sign_num
from theory.derivations._base import (
    Builder,
    D,
    Derivation,
    Hm,
    equal,
    lam,
    random_psd,
    random_sign_problem,
    rel_dev,
)
from theory.derivations.sign import theorem2_parts


def correlated_signs() -> Derivation:
    """E[sign X sign Y] = 4Φ₂(a,b;ρ) − 2Φ(a) − 2Φ(b) + 1 and the pairwise form of E[vᵀHv]."""
    b = Builder()
    P2, Pa, Pb = sp.symbols("Phi_2 Phi_a Phi_b", positive=True)
    pp, pm, mp, mm = P2, Pa - P2, Pb - P2, 1 - Pa - Pb + P2
    b.step(
        "Orthants of (X, Y), X ~ N(a, 1), Y ~ N(b, 1), corr ρ: P(X>0, Y>0) = Φ₂(a, b; ρ) "
        "(reflect both coordinates), P(X>0) = Φ(a), and inclusion–exclusion:",
        r"P_{++} = \Phi_2,\; P_{+-} = \Phi(a) - \Phi_2,\; P_{-+} = \Phi(b) - \Phi_2,\; "
        r"P_{--} = 1 - \Phi(a) - \Phi(b) + \Phi_2",
    )
    b.claim("the four orthant probabilities sum to 1", equal(pp + pm + mp + mm, 1))
    e = pp + mm - pm - mp
    b.step("E[sign X sign Y] = P₊₊ + P₋₋ − P₊₋ − P₋₊:", (sp.Symbol(r"\mathbb{E}"), sp.expand(e)))
    b.claim("E[sign X sign Y] = 4Φ₂ − 2Φ(a) − 2Φ(b) + 1", equal(e, 4 * P2 - 2 * Pa - 2 * Pb + 1))
    a_, b_ = sp.symbols("a b", real=True)
    Phi = lambda t: (1 + sp.erf(t / sp.sqrt(2))) / 2  # noqa: E731  (the normal cdf)
    indep = e.subs({P2: Phi(a_) * Phi(b_), Pa: Phi(a_), Pb: Phi(b_)})
    b.claim(
        "at ρ = 0 (Φ₂ = Φ(a)Φ(b)) it factorises to erf(a/√2) erf(b/√2) = ξ_a ξ_b",
        equal(indep, sp.erf(a_ / sp.sqrt(2)) * sp.erf(b_ / sp.sqrt(2))),
    )
    rho, r = sp.Symbol("rho", real=True), sp.Symbol("r", real=True)
    h, k = sp.symbols("h k", real=True)
    phi2 = sp.exp(-(h**2 - 2 * r * h * k + k**2) / (2 * (1 - r**2))) / (
        2 * sp.pi * sp.sqrt(1 - r**2)
    )
    dens0 = phi2.subs({h: 0, k: 0})
    sheppard = sp.Rational(1, 4) + sp.integrate(dens0, (r, 0, rho))
    b.step(
        "Zero means: Plackett's identity ∂Φ₂/∂ρ = φ₂(h, k; ρ) at h = k = 0, from "
        "Φ₂(0, 0; 0) = 1/4:",
        (sp.Symbol(r"\Phi_{2}(0,0;\rho)"), sheppard),
    )
    b.claim(
        "Sheppard: Φ₂(0, 0; ρ) = 1/4 + arcsin(ρ)/(2π)",
        equal(sheppard, sp.Rational(1, 4) + sp.asin(rho) / (2 * sp.pi)),
    )
    zero = sp.expand(e.subs({P2: sheppard, Pa: sp.Rational(1, 2), Pb: sp.Rational(1, 2)}))
    b.step("Hence at a = b = 0:", (sp.Symbol(r"\mathbb{E}[\mathrm{sign}X\,\mathrm{sign}Y]"), zero))
    b.claim(
        "E[sign X sign Y] = (2/π) arcsin ρ at zero means", equal(zero, 2 * sp.asin(rho) / sp.pi)
    )
    v = sp.symbols(f"v1:{D + 1}", real=True)
    quad = sp.expand(sum(Hm[i, j] * v[i] * v[j] for i in range(D) for j in range(D)))
    quad1 = quad.subs({v[i] ** 2: 1 for i in range(D)})
    b.step(
        "vᵀHv only involves pairs, and v_i² = 1:",
        r"\mathbb{E}[v^\top H v] = \sum_i H_{ii} + \sum_{i\ne j} H_{ij}\,"
        r"\mathbb{E}[v_i v_j]",
    )
    e_ij = sp.symbols(f"e1:{D * D + 1}", real=True)
    pair = sum(Hm[i, i] for i in range(D)) + sum(
        Hm[i, j] * e_ij[D * min(i, j) + max(i, j)] for i in range(D) for j in range(D) if i != j
    )
    b.claim(
        "vᵀHv with v_i² = 1 is ΣH_ii + Σ_{i≠j} H_ij v_iv_j (d=3)",
        equal(
            quad1,
            pair.subs(
                {
                    e_ij[D * min(i, j) + max(i, j)]: v[i] * v[j]
                    for i in range(D)
                    for j in range(D)
                    if i != j
                }
            ),
        ),
    )
    xi = sp.symbols(f"x1:{D + 1}", real=True)
    _, _, den2 = theorem2_parts(xi)
    b.claim(
        "with independent coordinates (E[v_iv_j] = ξ_iξ_j) it is Theorem 2's denominator",
        equal(
            pair.subs(
                {
                    e_ij[D * min(i, j) + max(i, j)]: xi[i] * xi[j]
                    for i in range(D)
                    for j in range(D)
                    if i != j
                }
            ),
            den2,
        ),
    )
    f_zero = lam([rho], zero)
    f_orth = lam([P2, Pa, Pb], e)

    def checker(rng: np.random.Generator) -> float:
        rhos = rng.uniform(-0.999, 0.999, 30)
        dev = rel_dev(cor_num.sign_product_expectation(0.0, 0.0, rhos), f_zero(rhos))
        for _ in range(10):
            a, bb = rng.normal(scale=1.5, size=2)
            rr = rng.uniform(-0.95, 0.95)
            p2 = multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rr], [rr, 1.0]]).cdf([a, bb])
            dev = max(
                dev,
                abs(
                    float(cor_num.sign_product_expectation(a, bb, rr))
                    - f_orth(p2, norm.cdf(a), norm.cdf(bb))
                ),
            )
        for _ in range(10):
            mv, sv, hv, bs = random_sign_problem(rng)
            cov = random_psd(rng) + np.diag(sv**2)
            dev = max(
                dev,
                rel_dev(
                    cor_num.optimal_lr_exact(mv, np.diag(sv**2), hv, bs),
                    sign_num.optimal_lr_exact(mv, sv, hv, bs),
                ),
                rel_dev(
                    cor_num.sign_first_moment(mv, cov, bs),
                    sign_num.expected_sign(mv, np.sqrt(np.diag(cov)), bs) @ mv,
                ),
            )
        return dev

    # scipy's bivariate normal cdf is accurate to ~1e-15 (measured 2e-16); the orthant values
    # are O(1) so an absolute deviation is the right scale; 1e-10 leaves headroom
    return b.build(
        "correlated_signs",
        "Correlated coordinates: orthant formula, exact m1, m2",
        "THEORY.md §Correlated",
        {"sign_product": e, "zero_means": zero, "pairwise_m2": pair},
        checker,
        tol=1e-10,
    )
