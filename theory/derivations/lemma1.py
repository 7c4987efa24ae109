"""Lemma 1 (any random update V) and the SGD law of McCandlish et al. as its special case."""

from __future__ import annotations

import numpy as np
import sympy as sp

from theory import lemma1 as lemma1_num
from theory import sgd as sgd_num
from theory.derivations._base import (
    B,
    Builder,
    D,
    Derivation,
    Hm,
    eps,
    equal,
    h_symbols,
    h_values,
    lam,
    random_psd,
    rel_dev,
    symmetric,
)

G = sp.Matrix(sp.symbols(f"G1:{D + 1}", real=True))
m = sp.Matrix(sp.symbols(f"m1:{D + 1}", real=True))  # E[V]
C = symmetric("C")  # cov(V)


def _second_moment_identity(b: Builder) -> sp.Expr:
    """E[VᵀHV] = Σ_ij H_ij E[V_i V_j] = Σ_ij H_ij (C_ij + m_i m_j) = tr(HC) + mᵀHm."""
    lhs = sum(Hm[i, j] * (C[i, j] + m[i] * m[j]) for i in range(D) for j in range(D))
    rhs = (Hm * C).trace() + (m.T * Hm * m)[0, 0]
    b.step(
        "Second moment of the update, using E[V_i V_j] = cov(V)_ij + E[V_i]E[V_j]:",
        r"\mathbb{E}[V^\top H V] = \sum_{ij} H_{ij}\,\mathbb{E}[V_iV_j] = "
        r"\operatorname{tr}(H\,\mathrm{cov}\,V) + \mathbb{E}[V]^\top H\,\mathbb{E}[V]",
    )
    b.claim(f"E[V^T H V] = tr(H cov V) + E[V]^T H E[V] (expanded, d={D})", equal(lhs, rhs))
    return rhs


def lemma1() -> Derivation:
    """Lemma 1: maximise E[ΔL](ε) = ε GᵀE[V] − ½ε² E[VᵀHV] over ε (Eqs. 6-7)."""
    b = Builder()
    g, q = sp.symbols("g q", real=True)  # g = GᵀE[V], q = E[VᵀHV]
    b.step(
        "Quadratic model of one step with update V and learning rate ε:",
        r"\Delta L = L(\theta) - L(\theta - \varepsilon V) = \varepsilon G^\top V"
        r" - \tfrac12 \varepsilon^2 V^\top H V",
    )
    q_full = _second_moment_identity(b)
    gain = eps * g - sp.Rational(1, 2) * eps**2 * q
    b.step(
        "Take expectations (write g = GᵀE[V], q = E[VᵀHV]):",
        (sp.Symbol(r"\mathbb{E}[\Delta L]"), gain),
    )
    d1 = sp.diff(gain, eps)
    sols = sp.solve(sp.Eq(d1, 0), eps)
    b.claim("dE[ΔL]/dε = 0 has exactly one solution", len(sols) == 1)
    eps_opt = sols[0]
    b.step(
        "Stationary point, dE[ΔL]/dε = 0:",
        (d1, 0),
        r"\Rightarrow",
        (sp.Symbol(r"\varepsilon_{opt}"), eps_opt),
    )
    d2 = sp.diff(gain, eps, 2)
    b.step(
        "Second derivative (constant in ε):",
        (
            sp.Symbol(
                r"\partial_\varepsilon^2"
                r"\mathbb{E}[\Delta L]"
            ),
            d2,
        ),
    )
    b.claim("second derivative is −q: a maximum iff q > 0 (the side condition)", equal(d2, -q))
    dl_opt = sp.expand(gain.subs(eps, eps_opt))
    b.step(
        "Value at the optimum:",
        (sp.Symbol(r"\Delta L_{opt}"), dl_opt, r"\tfrac12\,g\,\varepsilon_{opt}"),
    )
    b.claim("ΔL_opt = ½ (GᵀE[V]) ε_opt", equal(dl_opt, sp.Rational(1, 2) * g * eps_opt))
    gm = (G.T * m)[0, 0]
    eps_full = gm / q_full
    dl_full = sp.Rational(1, 2) * gm * eps_full
    b.step(
        "With the second-moment identity:",
        (
            sp.Symbol(r"\varepsilon_{opt}"),
            r"\frac{G^\top \mathbb{E}[V]}{\operatorname{tr}(H\,\mathrm{cov}\,V) + "
            r"\mathbb{E}[V]^\top H\,\mathbb{E}[V]}",
        ),
    )

    args = [*G, *m, *h_symbols(C), *h_symbols(Hm)]
    f_eps, f_dl = lam(args, eps_full), lam(args, dl_full)

    def checker(rng: np.random.Generator) -> float:
        dev = 0.0
        for _ in range(20):
            gv, mv = rng.normal(size=D), rng.normal(size=D)
            cv, hv = random_psd(rng), random_psd(rng)
            x = [*gv, *mv, *h_values(cv), *h_values(hv)]
            dev = max(
                dev,
                rel_dev(f_eps(*x), lemma1_num.optimal_lr(gv, mv, cv, hv)),
                rel_dev(f_dl(*x), lemma1_num.optimal_gain(gv, mv, cv, hv)),
            )
        return dev

    return b.build(
        "lemma1",
        "Lemma 1: optimal learning rate for any update V",
        "Li+24 Eqs. 6-7",
        {"eps_opt": eps_opt, "dl_opt": dl_opt, "eps_opt_full": eps_full},
        checker,
    )


def sgd_law() -> Derivation:
    """McCandlish's law: Lemma 1 with V = G_est, E[V] = G, cov V = Σ/B."""
    b = Builder()
    S = symmetric("Sigma")
    gHg = (G.T * Hm * G)[0, 0]
    g2 = (G.T * G)[0, 0]
    trHS = (Hm * S).trace()
    b.step(
        "SGD update V = G_est: E[V] = G and cov(V) = Σ/B; Lemma 1 gives",
        (
            sp.Symbol(r"\varepsilon_{opt}"),
            r"\frac{|G|^2}{G^\top H G + \operatorname{tr}(H\Sigma)/B}",
        ),
    )
    eps_opt = g2 / (trHS / B + gHg)
    # Lemma 1's general expression with the SGD moments substituted, as an exact check
    q = (Hm * (S / B)).trace() + gHg
    b.claim("Lemma 1's denominator with cov V = Σ/B is GᵀHG + tr(HΣ)/B", equal(q, trHS / B + gHg))
    emax, bn = g2 / gHg, trHS / gHg
    law = emax / (1 + bn / B)
    b.step(
        "Divide through by GᵀHG:",
        (
            sp.Symbol(r"\varepsilon_{opt}(B)"),
            sp.Symbol(r"\frac{\varepsilon_{max}}{1 + B_{noise}/B}"),
        ),
        r",\quad \varepsilon_{max} = \frac{|G|^2}{G^\top H G},\quad "
        r"B_{noise} = \frac{\operatorname{tr}(H\Sigma)}{G^\top H G}",
    )
    b.claim("ε_opt = ε_max/(1 + B_noise/B) exactly", equal(eps_opt, law))
    dl = sp.Rational(1, 2) * g2 * eps_opt
    dlmax = sp.Rational(1, 2) * g2**2 / gHg
    b.step(
        "Lemma 1's ΔL_opt = ½|G|²ε_opt:",
        (sp.Symbol(r"\Delta L_{opt}(B)"), sp.Symbol(r"\frac{\Delta L_{max}}{1+B_{noise}/B}")),
        r",\quad \Delta L_{max} = \frac{|G|^4}{2\,G^\top H G}",
    )
    b.claim("ΔL_opt = ΔL_max/(1 + B_noise/B), ΔL_max = ½|G|⁴/GᵀHG", equal(dl, dlmax / (1 + bn / B)))
    h = sp.Symbol("h", positive=True)
    iso = {Hm[i, j]: (h if i == j else 0) for i in range(D) for j in range(D)}
    bsimple = S.trace() / g2
    b.step(
        "With H = h·I the Hessian cancels:",
        (
            sp.Symbol("B_{noise}"),
            sp.Symbol(r"\frac{\operatorname{tr}\Sigma}{|G|^2}"),
            sp.Symbol("B_{simple}"),
        ),
    )
    b.claim("B_noise = B_simple when H ∝ I", equal(bn.subs(iso), bsimple))
    Bn_, Em_ = sp.symbols("B_noise varepsilon_max", positive=True)
    small = sp.series(Em_ / (1 + Bn_ / B), B, 0, 2).removeO()
    b.step("Small batch (series in B):", (sp.Symbol(r"\varepsilon_{opt}"), small + sp.O(B**2)))
    b.claim("small-B limit is linear: ε_max B / B_noise + O(B²)", equal(small, Em_ * B / Bn_))
    b.claim("B → ∞ limit is ε_max", sp.limit(Em_ / (1 + Bn_ / B), B, sp.oo) == Em_)

    args = [*G, *h_symbols(Hm), *h_symbols(S), B]
    f_eps, f_dl = lam(args, eps_opt), lam(args, dl)
    f_emax, f_bn, f_bs = lam(args, emax), lam(args, bn), lam(args, bsimple)

    def checker(rng: np.random.Generator) -> float:
        dev = 0.0
        for _ in range(20):
            gv, hv, sv = rng.normal(size=D), random_psd(rng), random_psd(rng)
            bs = np.exp(rng.uniform(0, np.log(1000.0), 5))
            x = [*gv, *h_values(hv), *h_values(sv)]
            e, n = sgd_num.params(gv, hv, sv)
            dev = max(
                dev,
                rel_dev(f_emax(*x, 1.0), e),
                rel_dev(f_bn(*x, 1.0), n),
                rel_dev(f_bs(*x, 1.0), sgd_num.b_simple(gv, sv)),
                rel_dev(f_eps(*x, bs), sgd_num.optimal_lr(bs, e, n)),
                rel_dev(f_eps(*x, bs), sgd_num.optimal_lr_exact(gv, hv, sv, bs)),
                rel_dev(f_dl(*x, bs), sgd_num.gain(bs, sgd_num.gain_max(gv, hv), n)),
            )
        return dev

    return b.build(
        "sgd_law",
        "SGD law (McCandlish): ε_max, B_noise, B_simple, ΔL_max",
        "McC18 Eqs. 2.6-2.9; Li+24 Eqs. 3-5",
        {"eps_opt": eps_opt, "eps_max": emax, "b_noise": bn, "b_simple": bsimple, "dl_max": dlmax},
        checker,
    )


def two_batch() -> Derivation:
    """Unbiasedness of the two-batch estimators of |G|² and tr(Σ) (McCandlish App. A.1)."""
    b = Builder()
    g2 = sp.Symbol("|G|^2", positive=True)
    trS = sp.Symbol(r"\operatorname{tr}\Sigma", positive=True)
    Bs, Bb = sp.symbols("B_small B_big", positive=True)
    Gs = sp.Symbol("|G_{small}|^2", positive=True)
    Gb = sp.Symbol("|G_{big}|^2", positive=True)
    S = symmetric("Sigma")
    # E|G_B|² = Σ_i E[G_B,i²] = Σ_i (var_i + mean_i²) with mean G and covariance Σ/B
    lhs = sum((S[i, i] / B + G[i] ** 2) for i in range(D))
    b.step(
        "The batch mean G_B has E[G_B] = G and cov(G_B) = Σ/B; summing E[G_B,i²] = "
        "var + mean² over coordinates:",
        r"\mathbb{E}|G_B|^2 = |G|^2 + \operatorname{tr}(\Sigma)/B",
    )
    b.claim(
        f"E|G_B|² = |G|² + tr Σ/B (Lemma 1's second-moment identity with H = I, d={D})",
        equal(lhs, S.trace() / B + (G.T * G)[0, 0]),
    )
    est_g2 = (Bb * Gb - Bs * Gs) / (Bb - Bs)
    est_tr = (Gs - Gb) / (1 / Bs - 1 / Bb)
    b.step(
        "Estimators:",
        (sp.Symbol(r"\widehat{|G|^2}"), est_g2),
        r",\quad",
        (sp.Symbol(r"\widehat{\operatorname{tr}\Sigma}"), est_tr),
    )
    expect = {Gs: g2 + trS / Bs, Gb: g2 + trS / Bb}
    e_g2, e_tr = sp.cancel(est_g2.subs(expect)), sp.cancel(est_tr.subs(expect))
    b.step(
        "They are linear in |G_small|², |G_big|²; substitute the expectations:",
        (sp.Symbol(r"\mathbb{E}\,\widehat{|G|^2}"), e_g2),
        r",\quad",
        (sp.Symbol(r"\mathbb{E}\,\widehat{\operatorname{tr}\Sigma}"), e_tr),
    )
    b.claim("E[|G|² estimate] = |G|² (unbiased)", equal(e_g2, g2))
    b.claim("E[tr Σ estimate] = tr Σ (unbiased)", equal(e_tr, trS))
    ratio_bias = sp.Symbol("x", positive=True)
    b.step(
        "Their ratio is not unbiased for B_simple (E[X/Y] ≠ E[X]/E[Y]): keep separate "
        "averages and divide last.",
        r"\mathbb{E}[X/Y] \ne \mathbb{E}[X]/\mathbb{E}[Y]",
    )
    # Jensen: 1/y convex, so a mean-preserving spread of y raises E[1/y]
    b.claim(
        "1/Y is strictly convex (second derivative > 0), so E[X/Y] ≠ E[X]/E[Y] in general",
        bool(sp.diff(1 / ratio_bias, ratio_bias, 2).is_positive),
    )

    args = [Gs, Gb, Bs, Bb]
    f_g2, f_tr = lam(args, est_g2), lam(args, est_tr)
    f_e = lam([g2, trS, Bs, Bb], sp.Matrix([e_g2, e_tr]))

    def checker(rng: np.random.Generator) -> float:
        dev = 0.0
        for _ in range(20):
            g, t = rng.uniform(0.1, 10.0), rng.uniform(0.1, 100.0)
            bs = rng.uniform(1.0, 50.0)
            bb = bs * rng.uniform(1.5, 20.0)
            s, l = g + t / bs, g + t / bb
            ng, nt = sgd_num.two_batch_estimates(s, l, bs, bb)
            ev = f_e(g, t, bs, bb).ravel()
            dev = max(
                dev,
                rel_dev(f_g2(s, l, bs, bb), ng),
                rel_dev(f_tr(s, l, bs, bb), nt),
                rel_dev(ng, ev[0]),
                rel_dev(nt, ev[1]),
                rel_dev(ev, [g, t]),
            )
        return dev

    # the estimate at the expectation is exact, but B_big·x − B_small·y cancels digits:
    # condition ≈ B_big/(B_big − B_small) · (1 + trΣ/(B|G|²)) ≲ 1e3 at the drawn points
    return b.build(
        "two_batch",
        "Two-batch unbiased estimators of |G|² and tr(Σ)",
        "McC18 App. A.1",
        {"g2": est_g2, "trace_sigma": est_tr},
        checker,
        tol=1e-9,
    )
