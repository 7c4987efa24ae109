"""cuda backend on a GPU (``gpu`` marker: skipped without cupy + a device).

cuda and numba draw the same Philox stream; they differ only in summation order (and ≤ 1 ulp
in log inside Box–Muller), so moments agree to rounding; SEs to rounding too.
"""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import kernel_rounding_tol, mc_close

import kernels
from theory import sign

pytestmark = pytest.mark.gpu

SHAPES = [  # (d, r, k, nB, n_samples): block-size multiples and not
    (1, 0, 0, 1, 100),
    (5, 2, 0, 3, 333),
    (17, 3, 2, 4, 1000),
    (256, 1, 0, 16, 517),
    (641, 8, 1, 16, 2049),  # d > one tile (640 coordinates at 160 threads)
    (1000, 15, 0, 16, 64),  # 256 pairs: exactly one per thread
    (300, 31, 3, 20, 300),  # 640 pairs: 3 pairs per thread, the last partial
]


def _problem(d, r, k, seed=0):
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 2.0, d)
    return kernels.QuadraticProblem(
        rng.normal(size=d) * sigma * 0.3,
        sigma,
        rng.uniform(0.1, 2.0, d),
        rng.normal(size=(d, r)) if r else None,
        rng.normal(size=(d, k)) * 0.5 if k else None,
    )


def _scales(p, B, update):
    v = (
        np.ones(p.d)
        if update == "sign"
        else (np.abs(p.mu) + 7.0 * (p.sigma + np.abs(p.W).sum(1)) / np.sqrt(np.min(B)))
    )
    return (
        float(np.abs(p.mu) @ v),
        float(np.abs(p.h) @ v**2 + 4.0 * np.sum((np.abs(p.U).T @ v) ** 2)),
    )


@pytest.mark.parametrize("update", ["sign", "sgd"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "d{}-r{}-k{}-nb{}-n{}".format(*s))
def test_cuda_equals_numba(update, shape):
    """Same seed, same numbers up to rounding, on shapes that are and are not block multiples."""
    d, r, k, nb, n = shape
    p = _problem(d, r, k, seed=d)
    B = np.geomspace(1.0, 5000.0, nb)[::-1].copy()
    a = kernels.update_moments(p, B, n, update=update, seed=2024, backend="numba")
    c = kernels.update_moments(p, B, n, update=update, seed=2024, backend="cuda")
    assert c.backend == "cuda"
    s1, s2 = _scales(p, B, update)
    assert np.allclose(a.m1, c.m1, rtol=0, atol=kernel_rounding_tol(s1, d + k + n))
    assert np.allclose(a.m2, c.m2, rtol=0, atol=kernel_rounding_tol(s2, d + k + n))
    assert np.allclose(a.m1_se, c.m1_se, rtol=1e-6, atol=kernel_rounding_tol(s1, d + k + n))
    assert np.allclose(a.m2_se, c.m2_se, rtol=1e-6, atol=kernel_rounding_tol(s2, d + k + n))


def test_cuda_first_sample_offset_and_64bit_indices():
    """Sample ranges beyond 2³² (the counter's high word) agree with numba too."""
    p = _problem(50, 2, 1)
    B = np.array([1.0, 30.0])
    for first in (0, 2**32 - 10, 2**40):
        a = kernels.update_moments(p, B, 64, seed=7, backend="numba", first_sample=first)
        c = kernels.update_moments(p, B, 64, seed=7, backend="cuda", first_sample=first)
        s1, s2 = _scales(p, B, "sign")
        assert np.allclose(a.m1, c.m1, rtol=0, atol=kernel_rounding_tol(s1, 200))
        assert np.allclose(a.m2, c.m2, rtol=0, atol=kernel_rounding_tol(s2, 200))


def test_cuda_large_d_matches_theorem2():
    """d = 2·10⁵, r = 4, 16 batch sizes, 4096 samples: within 5 SE of Theorem 2's exact m1, m2
    (independent noise), and equal to numba on a sub-range of samples."""
    d, r = 200_000, 4
    p = _problem(d, r, 0, seed=1)
    B = np.geomspace(1.0, 4096.0, 16)
    m = kernels.update_moments(p, B, 4096, update="sign", seed=3, backend="cuda")
    # tr H + ξᵀHξ − Σ ξ_i² H_ii with H = diag(h) + UUᵀ (the h terms of the last two cancel):
    # Σh + Σ|U_i|² + |Uᵀξ|² − Σ ξ_i²|U_i|², in O(d r) instead of a dense d × d H
    xi = sign.expected_sign(p.mu, p.sigma, B)
    m1 = xi @ p.mu
    u2 = np.sum(p.U**2, axis=1)
    m2 = np.sum(p.h) + np.sum(u2) + np.sum((xi @ p.U) ** 2, axis=1) - (xi**2) @ u2
    assert mc_close(m.m1, m1, m.m1_se)
    assert mc_close(m.m2, m2, m.m2_se)
    a = kernels.update_moments(p, B, 64, update="sign", seed=3, backend="numba")
    c = kernels.update_moments(p, B, 64, update="sign", seed=3, backend="cuda")
    s1, s2 = _scales(p, B, "sign")
    assert np.allclose(a.m1, c.m1, rtol=0, atol=kernel_rounding_tol(s1, d + 64))
    assert np.allclose(a.m2, c.m2, rtol=0, atol=kernel_rounding_tol(s2, d + 64))


def test_auto_picks_cuda():
    p = _problem(8, 1, 0)
    assert kernels.update_moments(p, [1.0], 16, seed=0).backend == "cuda"
