"""Su's mean-field derivation: β, β_noise, B_noise, B_noise-2 and the EMA threshold."""

from __future__ import annotations

import numpy as np
import sympy as sp

from theory import su as su_num
from theory.derivations._base import (
    B,
    Builder,
    D,
    Derivation,
    equal,
    lam,
    random_psd,
    rel_dev,
)


def su_mean_field() -> Derivation:
    """Mean-field ξ_i = sign(μ_i) β: the surge in β, B_noise-2 and 1/B_noise-2 − 1/B_noise."""
    b = Builder()
    k2, M, T, S2, bn_ = sp.symbols("kappa^2 M T S_sign beta_noise", positive=True)
    bt = sp.Symbol("beta", positive=True)
    r = 1 / sp.sqrt(k2)  # |μ_i|/σ_i = 1/κ for every i
    paper = r / sp.sqrt(sp.pi / (2 * B) + r**2)
    beta_B = (1 + sp.pi * k2 / (2 * B)) ** sp.Rational(-1, 2)
    b.step(
        "Rational approximation of |ξ_i| with σ_i/|μ_i| = κ for every i:",
        (r"|\xi_i|", paper, beta_B),
    )
    b.claim(
        "β = (1 + πκ²/(2B))^(−1/2) is the rational erf form at |μ|/σ = 1/κ",
        equal(paper**2, beta_B**2),
    )
    eps_beta = bt * M / (T + bt**2 * S2)
    b.step(
        "Theorem 2 with ξ_i = sign(μ_i) β (M = Σ|μ_i|, S_sign = Σ_{i≠j} sign(μ_iμ_j)H_ij):",
        (sp.Symbol(r"\varepsilon_{opt}"), eps_beta),
    )
    sols = sp.solve(sp.Eq(sp.diff(eps_beta, bt), 0), bt)
    b.claim(
        "dε/dβ = 0 has one positive root, β = √(Σ H_ii / S_sign) = β_noise",
        len(sols) == 1 and equal(sols[0], sp.sqrt(T / S2)),
    )
    emax = sp.radsimp(eps_beta.subs(bt, sp.sqrt(T / S2)))
    b.step(
        "Peak:",
        (sp.Symbol(r"\beta_{noise}"), sp.sqrt(T / S2)),
        r",\quad",
        (sp.Symbol(r"\varepsilon_{max}"), emax),
    )
    b.claim("ε_max = M / (2 √(Σ H_ii · S_sign))", equal(emax, M / (2 * sp.sqrt(T * S2))))
    curve = emax / (sp.Rational(1, 2) * (bn_ / bt + bt / bn_))
    b.step("Surge law in β:", (sp.Symbol(r"\varepsilon_{opt}"), curve))
    b.claim(
        "ε_opt = ε_max / (½(β_noise/β + β/β_noise))",
        equal(sp.powsimp(curve.subs(bn_, sp.sqrt(T / S2)) / eps_beta), 1),
    )
    bsol = sp.solve(sp.Eq(beta_B**2, bn_**2), B)
    bnoise = sp.pi * k2 * bn_**2 / (2 * (1 - bn_**2))
    b.step(
        "β(B) = β_noise at",
        (sp.Symbol("B_{noise}"), bnoise),
        r"\quad(\text{needs } \beta_{noise} < 1 \text{ since } \beta < 1)",
    )
    b.claim(
        "β(B) = β_noise ⇔ B = πκ²β_noise²/(2(1 − β_noise²))",
        len(bsol) == 1 and equal(bsol[0], bnoise),
    )
    gain = sp.Rational(1, 2) * (beta_B * M) ** 2 / (T + beta_B**2 * S2)
    bn2 = sp.pi * k2 * bn_**2 / (2 * (1 + bn_**2))
    dlmax2 = M**2 / (2 * (T + S2))
    law = dlmax2 / (1 + bn2.subs(bn_, sp.sqrt(T / S2)) / B)
    b.step(
        "Loss drop, ½(βM)²/(ΣH_ii + β²S_sign), with 1/β² = 1 + πκ²/(2B):",
        (sp.Symbol(r"\Delta L_{opt}"), sp.Symbol(r"\frac{\Delta L_{max}}{1 + B_{noise-2}/B}")),
        r",\quad",
        (sp.Symbol("B_{noise-2}"), bn2),
    )
    b.claim("ΔL_opt = ΔL_max2/(1 + B_noise-2/B), B_noise-2 = πκ²β_n²/(2(1+β_n²))", equal(gain, law))
    ident = 1 / bn2 - 1 / bnoise
    b.step(
        "The two noise scales:",
        (1 / sp.Symbol("B_{noise-2}") - 1 / sp.Symbol("B_{noise}"), sp.cancel(ident)),
    )
    b.claim("1/B_noise-2 − 1/B_noise = 4/(πκ²)", equal(ident, 4 / (sp.pi * k2)))
    # comparison with Theorem 3 when every |μ_i|/σ_i = 1/κ: A = M/κ, S_off = S_sign/κ²
    c = sp.sqrt(2 * B / sp.pi)
    t3 = c * (M / sp.sqrt(k2)) / (T + c**2 * S2 / k2)
    beta_lin = (
        sp.series(
            beta_B.subs(B, sp.Symbol("t", positive=True) ** 2), sp.Symbol("t", positive=True), 0, 2
        )
        .removeO()
        .subs(sp.Symbol("t", positive=True), sp.sqrt(B))
    )
    b.step(
        "Small B: β ≈ √(2B/(πκ²)), and Su's law becomes Theorem 3's linearised law:",
        (sp.Symbol(r"\beta"), beta_lin + sp.O(B ** sp.Rational(3, 2))),
    )
    b.claim("β = √(2B/(πκ²)) + O(B^{3/2})", equal(beta_lin, c / sp.sqrt(k2)))
    b.claim(
        "with β linearised, Su's ε_opt equals Theorem 3's ε_opt (equal |μ_i|/σ_i)",
        equal(sp.powsimp(eps_beta.subs(bt, beta_lin) / t3), 1),
    )
    t3_bn = sp.pi * k2 * bn_**2 / 2  # Theorem 3: π ΣH_ii / (2 S_off) = πκ²T/(2 S_sign)
    ser = sp.series(bnoise, bn_, 0, 5).removeO()
    b.claim(
        "Su's B_noise = Theorem 3's B_noise · (1 + β_noise² + …): equal as β_noise → 0",
        equal(ser, t3_bn * (1 + bn_**2)),
    )
    b1 = sp.Symbol("beta_1", positive=True)
    thr = (1 - b1) / (3 * b1 - 1)
    b.step(
        "Su's EMA-momentum threshold (archives/11301; quoted, not re-derived here: it needs "
        "the multi-step EMA analysis), as a multiple of B_simple — its stated properties:",
        thr,
    )
    b.claim("factor is 1/17 at β1 = 0.9", thr.subs(b1, sp.Rational(9, 10)) == sp.Rational(1, 17))
    b.claim(
        "factor is positive exactly for 1/3 < β1 < 1",
        sp.solve_univariate_inequality(thr > 0, b1, relational=False)
        == sp.Interval.open(sp.Rational(1, 3), 1),
    )

    args_b = [B, k2, M, T, S2]
    f_eps = lam(args_b, eps_beta.subs(bt, beta_B))
    f_gain = lam(args_b, gain)
    f_bn = lam([k2, bn_], bnoise)
    f_bn2 = lam([k2, bn_], bn2)
    f_thr = lam([b1], thr)

    def checker(rng: np.random.Generator) -> float:
        dev = 0.0
        for _ in range(20):
            mv = rng.uniform(0.1, 2.0, D) * rng.choice([-1.0, 1.0], D)
            sg = np.sign(mv)
            hv = random_psd(rng) + rng.uniform(1.0, 5.0) * np.outer(sg, sg)
            k = rng.uniform(1.0, 100.0)
            bs = np.exp(rng.uniform(np.log(0.5), np.log(1e4), 7))
            t, s2 = float(np.trace(hv)), su_num.s_sign(mv, hv)
            mm = float(np.sum(np.abs(mv)))
            e, n = su_num.params(mv, hv)
            dl2, b2 = su_num.gain_params(mv, hv, k)
            beta1 = rng.uniform(0.34, 0.999)
            dev = max(
                dev,
                rel_dev(f_eps(bs, k, mm, t, s2), su_num.optimal_lr(bs, mv, hv, k)),
                rel_dev(
                    su_num.surge_lr(su_num.beta(bs, k), e, n), su_num.optimal_lr(bs, mv, hv, k)
                ),
                rel_dev(f_gain(bs, k, mm, t, s2), su_num.gain(bs, mv, hv, k)),
                rel_dev(dl2 / (1 + b2 / bs), su_num.gain(bs, mv, hv, k)),
                rel_dev(f_bn2(k, n), b2),
                rel_dev(f_bn(k, n), su_num.b_noise(k, n)) if n < 1 else 0.0,
                rel_dev(f_thr(beta1), su_num.ema_surge_threshold(beta1, 1.0)),
            )
        return dev

    return b.build(
        "su_mean_field",
        "Su's mean-field law: β_noise, B_noise-2, EMA threshold",
        "Su 10542, 11301",
        {
            "beta": beta_B,
            "eps_opt": eps_beta,
            "b_noise": bnoise,
            "b_noise2": bn2,
            "ema_threshold": thr,
        },
        checker,
    )
