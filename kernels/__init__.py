"""kernels: batched Monte Carlo of the moments of sign / SGD updates on quadratic problems.

Public API (../shared/DESIGN.md, "Kernel contract")::

    problem = kernels.QuadraticProblem(mu, sigma, h, U=None, W=None)
    m = kernels.update_moments(problem, batch_sizes, n_samples, update="sign", seed=0)
    m.m1, m.m2, m.m1_se, m.m2_se, m.optimal_lr(), m.expected_gain(lrs)

Backends: ``reference`` (numpy, the spec), ``numba`` (CPU, parallel), ``cuda`` (CUDA C via
cupy). All draw the same Philox4x32-10 stream (:mod:`kernels.philox`). ``python -m kernels
info`` lists what runs here; ``python -m kernels bench`` times them.
"""

from kernels._backend import available as available_backends
from kernels.moments import Moments, update_moments
from kernels.problem import QuadraticProblem

__all__ = ["Moments", "QuadraticProblem", "available_backends", "update_moments"]
