"""Where Theorem 2's assumptions break: correlated noise and finite datasets.

Theorem 2 assumes independent Gaussian coordinates G_est,i ~ N(μ_i, σ_i²/B). Two departures:

* **correlated noise** Σ = diag(σ²) + W Wᵀ: the marginals are still Gaussian, so E[sign] (and
  m1) are right with the marginal σ_i = √Σ_ii, but E[s_i s_j] ≠ ξ_i ξ_j and m2 is wrong. The
  exact Gaussian answer uses the bivariate orthant moments
  (:func:`simulate.surge.optimal_lr_correlated`);
* **finite datasets**: batches are means of B of N fixed examples drawn without replacement, so
  the variance carries the finite-population factor 1 − (B−1)/(N−1) and the batch mean is only
  approximately Gaussian. The SGD law with that factor is exact; for sign updates the factor is
  applied as an effective batch size B/(1 − (B−1)/(N−1)). At B = 1 the exact answer is an
  average over the N examples, whose O(1/√N) sampling of sign(g) is large against the small
  E[sign] of noisy coordinates: Theorem 2 is off there by tens of percent for N ~ 10³.

:func:`run_assumptions` runs :func:`simulate.surge.run_surge` on each case and reports how far the
Monte Carlo optimum moves from Theorem 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from simulate import problems
from simulate.surge import default_batch_sizes, run_surge


def run_assumptions(
    rhos: Sequence[float],
    n_examples: Sequence[int],
    *,
    d: int,
    n_samples: int,
    n_samples_finite: int,
    seed: int,
    backend: str,
    b_max: float,
    n_batch: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict], dict]:
    """Monte Carlo vs Theorem 2 for correlated-noise and finite-dataset variants of ``surge``.

    Returns:
      ``(rows, summary)``: rows of :func:`run_surge` with a ``case`` column; per case the MC
      peak and its shift from Theorem 2's exact peak (``b_peak_mc / b_peak_exact``), the peak lr
      ratio, the largest relative error against Theorem 2 and against the corrected reference
      (exact correlated Gaussian, or finite-population-corrected).
    """
    cases: list[tuple[str, problems.Problem, int, np.ndarray]] = []
    for r in rhos:
        cases.append(
            (
                f"correlated rho={r:g}",
                problems.correlated(seed, d, rho=float(r)),
                n_samples,
                default_batch_sizes(1, b_max, n_batch),
            )
        )
    for n in n_examples:
        cases.append(
            (
                f"finite N={int(n)}",
                problems.finite(seed, d, n_examples=int(n)),
                n_samples_finite,
                default_batch_sizes(1, int(n), n_batch),
            )
        )
    rows, per = [], {}
    for name, prob, ns, b in cases:
        rr, s = run_surge(prob, b, ns, seed, backend)
        rows += [{"case": name, **r} for r in rr]
        out = {
            k: s[k]
            for k in (
                "b_noise_theory",
                "b_peak_exact",
                "b_peak_mc",
                "eps_peak_mc",
                "eps_peak_exact",
                "max_rel_err_mc_vs_exact",
                "surge_detected",
                "max_abs_z_mc_vs_exact",
            )
        }
        out["b_peak_shift"] = s["b_peak_mc"] / s["b_peak_exact"]
        out["eps_peak_ratio"] = s["eps_peak_mc"] / s["eps_peak_exact"]
        for k in (
            "max_rel_err_mc_vs_correlated",
            "max_abs_z_mc_vs_correlated",
            "b_peak_exact_fpc",
            "max_rel_err_mc_vs_exact_fpc",
            "max_abs_z_mc_vs_exact_fpc",
            "rel_err_mc_vs_exact_at_b_max",
            "rel_err_mc_vs_exact_fpc_at_b_max",
            "lr_exact_finite_b1",
            "rel_err_theorem2_vs_exact_finite_b1",
            "max_rel_err_sgd_mc_vs_law",
            "max_abs_z_sgd_mc_vs_law",
        ):
            if k in s:
                out[k] = s[k]
        per[name] = out
        if progress is not None:
            progress(1)
    return rows, {"d": d, "seed": seed, "cases": per}
