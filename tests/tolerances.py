"""Every tolerance used by the tests, each with its reason (../shared/STYLE.md).

Use these names instead of bare literals.
"""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)

#: Monte Carlo: |mean - theory| <= MC_SIGMAS * SE. For a normal estimator a 5-SE miss has
#: probability ~6e-7 per comparison, so a suite of a few thousand comparisons fails spuriously
#: with probability < 1e-3 while a real bias of 5 SE is caught.
MC_SIGMAS = 5.0


def fp_tol(condition: float = 1.0, c: float = 64.0) -> float:
    """Floating point: ``c * eps * condition``; ``c`` covers the O(d) terms of a reduction."""
    return c * EPS * condition


def mc_close(estimate, theory, se, sigmas: float = MC_SIGMAS, floor: float = 0.0) -> bool:
    """True when every ``|estimate - theory| <= sigmas * se + floor`` (floor: known bias bound)."""
    estimate, theory, se = map(np.asarray, (estimate, theory, se))
    return bool(np.all(np.abs(estimate - theory) <= sigmas * se + floor))


#: A grid argmax locates a peak only to within half a grid cell on each side (in the grid's
#: own coordinate, e.g. log B): the tested ratio must lie within this many cells.
GRID_HALF_CELL = 0.5

#: Quadrature (scipy.integrate.quad, default epsabs=1.49e-8) against closed forms.
QUAD_TOL = 1e-7

#: Batched (vmapped) vs one-at-a-time torch.optim.Adam in float32: the same arithmetic up to
#: reassociation of reductions, O(10) float32 ulps per step compounded over a few hundred steps
#: of a well-conditioned problem; 1e-4 relative is ~1000 ulps (float32 eps 1.2e-7).
ADAM_REL_TOL = 1e-4

#: A bounded scalar optimiser (Brent, xatol 1e-10 in log B) on a smooth maximum: near the peak
#: f(x*(1+δ)) − f(x*) ∝ δ², so in float64 the location is resolvable only to ~√eps ≈ 1.5e-8
#: relative; 1e-6 leaves two decades of headroom (theory tests).
ARGMAX_RTOL = 1e-6

#: Log-log slope of a series truncation error against its predicted order p: the next term is
#: O(B) smaller than the leading one, and the fits use B ≤ 1e-2 of the regime bound, so the
#: local slope is within ~1e-2 of p; 0.05 absolute catches a wrong order (off by ≥ 0.5).
SLOPE_TOL = 0.05

#: Separation of the learning-rate laws (validate.fits): RMS error in natural-log learning
#: rate a WRONG law must exceed on exact data from another law. 0.1 ≈ a 10% lr miss, the
#: paper's grid step near its optima (1e-4 steps at lr ≤ 1e-3); on grids spanning a decade or
#: more either side of B_noise the three laws differ by ≥ 0.16 RMS (the closest pair is the
#: surge law and the α=0.5 form, which share the √B small-batch limit).
LAW_SEPARATION = 0.1


def kernel_rounding_tol(scale: float, n_terms: int) -> float:
    """Two float64 evaluations of the same Monte Carlo moment in different summation orders.

    Each per-sample value is a sum of ``d + k`` terms and the mean a sum over ``n`` samples;
    a sum of N terms reordered differs by ≤ 2γ_N Σ|terms| ≈ 2 N eps Σ|terms| (Higham, Thm 4.1).
    ``scale`` bounds Σ|terms| (squared sums counted as 4·(Σ|terms|)²); ``n_terms`` = d + k + n.
    """
    return fp_tol(condition=scale * n_terms, c=4.0)


def erf_linearisation_rel(z2_max: float) -> float:
    """Relative error of Theorem 3's linearisation ξ ≈ (2/√π) z at z² = z2_max.

    erf(z) = (2/√π)(z − z³/3 + …), so the relative error of each ξ_i is z_i²/3 to leading
    order. ε_opt depends on ξ linearly in the numerator and quadratically (ξ_iξ_j) in the
    denominator, so the peak location can move by up to twice that: 2·z²/3, with
    z² = B r_i²/2 at the peak B ≈ B_noise (simulate tests: Theorem 3 peak vs Monte Carlo).
    """
    return 2.0 * z2_max / 3.0


#: Nonlinear least squares (scipy.optimize.least_squares, default xtol = ftol = 1e-8) fitted to
#: noise-free points: parameters are recovered to a few times the solver's relative tolerance.
LSQ_RTOL = 1e-5

#: Two independent float64 evaluations of a bivariate normal cdf (Owen's T vs scipy's Genz
#: BVN): both are accurate to ~1e-15 absolute on values in [0, 1] (measured 2e-16); 1e-12
#: leaves three decades for the worst cases near |ρ| → 1.
CDF_TOL = 1e-12
