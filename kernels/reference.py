"""The numpy reference backend: the specification of :func:`kernels.update_moments`, plainly.

For each sample s (the same normals for every batch size: common random numbers)::

    z, ζ   = philox normals of coordinates 0..d-1 and d..d+k-1       (kernels.philox)
    n      = σ ⊙ z + W ζ                                              per-example noise
    G_est  = μ + n · (1/√B)                                           (the product rounded first)
    v      = sign(G_est)  or  G_est                                   (update = sign | sgd)
    x1     = μᵀ v                                                     Gᵀv
    x2     = Σ_i h_i + |Uᵀv|²   (sign, v_i² = 1)   or   Σ_i h_i v_i² + |Uᵀv|²   (sgd)

It materialises (chunk, nB, d) arrays, so it is for small problems and for checking.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from kernels.philox import normals
from kernels.problem import QuadraticProblem

#: samples per chunk; bounds the (chunk, nB, d) temporaries at a few MB for d ~ 10³
CHUNK_ELEMENTS = 1 << 21


def per_sample(
    problem: QuadraticProblem,
    batch_sizes: NDArray[np.float64],
    n_samples: int,
    update: str,
    seed: int,
    first_sample: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-sample x1 = Gᵀv and x2 = vᵀHv, each (n_samples, nB), for samples
    ``first_sample .. first_sample + n_samples - 1``."""
    d, k = problem.d, problem.noise_rank
    mu, sigma, h, U, W = problem.mu, problem.sigma, problem.h, problem.U, problem.W
    inv_sqrt_b = 1.0 / np.sqrt(batch_sizes)
    nb = batch_sizes.size
    chunk = max(1, CHUNK_ELEMENTS // max(1, nb * d))
    x1 = np.empty((n_samples, nb))
    x2 = np.empty((n_samples, nb))
    for start in range(0, n_samples, chunk):
        stop = min(n_samples, start + chunk)
        z = normals(
            seed, np.arange(first_sample + start, first_sample + stop, dtype=np.uint64), d + k
        )
        n = sigma * z[:, :d]
        if k:
            n = n + z[:, d:] @ W.T
        g = mu + n[:, None, :] * inv_sqrt_b[None, :, None]  # (c, nB, d)
        if update == "sign":
            v = np.sign(g)
            x2[start:stop] = np.sum(h) + np.sum((v @ U) ** 2, axis=-1)
        else:
            v = g
            x2[start:stop] = v**2 @ h + np.sum((v @ U) ** 2, axis=-1)
        x1[start:stop] = v @ mu
    return x1, x2
