"""The steps-examples trade-off (Eqs. 20-22) and the ε_max estimators (Eqs. 23-24)."""

from __future__ import annotations

import numpy as np
import sympy as sp

from theory import efficiency as eff_num
from theory import sign as sign_num
from theory.derivations._base import B, Builder, Derivation, equal, lam, rel_dev


def tradeoff() -> Derivation:
    """(S/S_min − 1)(E/E_min − 1) = 1 and its linear form 1/S = −B_noise/E + 1/S_min."""
    b = Builder()
    Smin, Bn, Emax, Smin2, alpha = sp.symbols(
        "S_min B_noise varepsilon_max S_2 alpha", positive=True
    )
    E_ = sp.Symbol("E", positive=True)
    S = Smin * (1 + Bn / B)
    b.step(
        "Each step at B gains ΔL_max/(1 + B_noise/B) (SGD law; Theorem 5 for sign updates), "
        "so reaching a fixed loss takes",
        (sp.Symbol("S"), S),
    )
    E = sp.expand(B * S)
    Emin = sp.limit(E, B, 0)
    b.step(
        "Examples E = B·S; the fewest examples as B → 0:",
        (sp.Symbol("E"), E),
        r",\quad",
        (sp.Symbol("E_{min}"), Emin),
    )
    b.claim("E_min = S_min B_noise, so B_crit = E_min/S_min = B_noise", equal(Emin / Smin, Bn))
    prod = (S / Smin - 1) * (E / Emin - 1)
    b.step("The trade-off (Eq. 20):", (prod, sp.cancel(prod)))
    b.claim("(S/S_min − 1)(E/E_min − 1) = 1 for every B", equal(prod, 1))
    lin = -Bn / E + 1 / Smin
    b.step("Linear form used for fitting (Eq. 22):", (1 / sp.Symbol("S"), lin))
    b.claim("1/S = −B_noise (1/E) + 1/S_min along the curve", equal(lin, 1 / S))
    s_of_e = sp.solve(sp.Eq((Smin2 / Smin - 1) * (E_ / Emin - 1), 1), Smin2)
    b.claim(
        "Eq. 20 solved for S has one root, S = S_min E/(E − E_min)",
        len(s_of_e) == 1 and equal(s_of_e[0], Smin * E_ / (E_ - Emin)),
    )
    surge = Emax / (sp.Rational(1, 2) * (sp.sqrt(Bn / B) + sp.sqrt(B / Bn)))
    est23 = surge * sp.Rational(1, 2) * (sp.sqrt(Bn / B) + sp.sqrt(B / Bn))
    b.step(
        "ε_max estimator for Adam (Eq. 23): each grid point's ε_opt times "
        r"½(√(B_noise/B) + √(B/B_noise)); on the Eq. 13 curve every term is",
        est23,
    )
    b.claim("Eq. 23 recovers ε_max exactly on the Eq. 13 curve", equal(est23, Emax))
    sgdf = Emax / (1 + Bn / B) ** alpha
    b.step(
        "SGD-style baselines (Eq. 24): ε_opt (1 + B_noise/B)^α inverts ε_max/(1+B_noise/B)^α",
        (sgdf * (1 + Bn / B) ** alpha, Emax),
    )
    b.claim(
        "Eq. 24 recovers ε_max exactly on its own curve", equal(sgdf * (1 + Bn / B) ** alpha, Emax)
    )
    f_s = lam([B, Smin, Bn], S)
    f_se = lam([E_, Smin, Bn], Smin * E_ / (E_ - Smin * Bn))

    def checker(rng: np.random.Generator) -> float:
        dev = 0.0
        for _ in range(20):
            bn, sm, em = rng.uniform(5, 500), rng.uniform(10, 1e4), rng.uniform(1e-4, 1e-2)
            bs = np.exp(np.linspace(np.log(bn / 20), np.log(bn * 20), 9))
            s = f_s(bs, sm, bn)
            fb, fs = eff_num.fit_b_noise(s, bs * s)
            dev = max(
                dev,
                rel_dev(s, eff_num.steps_for_batch(bs, sm, bn)),
                rel_dev(f_se(bs * s, sm, bn), eff_num.steps_for_examples(bs * s, sm, sm * bn)),
                rel_dev([fb, fs], [bn, sm]),
                rel_dev(eff_num.eps_max_adam(bs, sign_num.surge_lr(bs, em, bn), bn), em),
                rel_dev(eff_num.eps_max_sgd(bs, eff_num.sgd_form_lr(bs, em, bn, 0.5), bn, 0.5), em),
            )
        return dev

    # np.polyfit on exact points: conditioning of the 1/E design (spanning 400×) costs ~1e3 ulp
    return b.build(
        "tradeoff",
        "Steps–examples trade-off, Eq. 22 fit, ε_max estimators",
        "Li+24 Eqs. 20-24",
        {"steps": S, "examples": E, "linear": lin},
        checker,
        tol=1e-9,
    )
