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
