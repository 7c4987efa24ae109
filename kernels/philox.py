"""The random stream of every backend: Philox4x32-10 + Box–Muller keyed by (seed, sample, coord).

This module is the specification (vectorised numpy). The numba backend
(:mod:`kernels.numba_backend`) and the CUDA header ``kernels/philox.cuh`` implement the same
functions scalar by scalar; the tests check that all three give the same 32-bit integers bit
for bit and the same normals to a few ulp.

Key / counter mapping
---------------------
For a 64-bit ``seed``, a 64-bit sample index ``s`` and a coordinate ``c`` (0 ≤ c < d + k, where
coordinates ``0..d-1`` are the per-coordinate noise ``z`` and ``d..d+k-1`` are the factor ``ζ``
of the correlated noise ``W ζ``)::

    key     = (seed & 0xffffffff, seed >> 32)                        # (k0, k1)
    counter = (c >> 2, s & 0xffffffff, s >> 32, 0)                  # (c0, c1, c2, c3)
    x0, x1, x2, x3 = philox4x32_10(counter, key)                    # 4 uint32
    u_j = (x_j + 0.5) · 2⁻³²                                        # exact in float64, in (0, 1)
    z[4b+0] = √(−2 ln u0) cos(2π u1)     z[4b+1] = √(−2 ln u0) sin(2π u1)
    z[4b+2] = √(−2 ln u2) cos(2π u3)     z[4b+3] = √(−2 ln u2) sin(2π u3)

The angle is reduced exactly with integer arithmetic (:func:`sincos_turn`): the top three bits
of x give the octant o, the low 29 bits the fraction f ∈ (0, 1) (exact), so
2π u = (π/4)(o + f) = Q·π/2 ± (π/4) g with g = f or 1 − f ∈ (0, 1); sin and cos of
φ = (π/4) g ∈ (0, π/4) are Taylor polynomials through φ¹⁷ / φ¹⁸ (truncation < 1e-19, i.e.
below half an ulp) evaluated by Horner in plain multiply-then-add (no fused multiply-add, so
numpy, numba and CUDA built with ``--fmad=false`` round identically); the quarter turns Q
are exact sign/swap operations. Only ``log`` comes from each platform's math library (≤ 1 ulp
apart), and ``sqrt`` is correctly rounded everywhere.

so coordinate ``c`` is lane ``c & 3`` of block ``c >> 2``: one Philox call gives four
standard normals for four consecutive coordinates of one sample. The fourth counter word is
reserved (always 0) for a future independent stream. All float work is IEEE float64.

Exactness: Box–Muller maps two independent uniforms to two independent standard normals
exactly; the only approximation is the 32-bit grid of ``u``, which truncates |z| at
√(−2 ln 2⁻³³) ≈ 6.76 (a tail mass of about 1.4e-11) and is far below Monte Carlo error.

Reference: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011 (Philox);
known-answer vectors from Random123's ``kat_vectors``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Philox4x32 multipliers and Weyl key increments (Salmon et al. 2011, Random123).
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF
#: 2⁻³² as float64 (exact).
TWO_M32 = 2.0**-32

_U = np.uint64


def split_seed(seed: int) -> tuple[int, int]:
    """The Philox key ``(k0, k1)`` of a seed in ``[0, 2**64)``: its low and high 32-bit words."""
    seed = int(seed)
    return seed & MASK32, (seed >> 32) & MASK32


def philox4x32_10(ctr: ArrayLike, key: ArrayLike) -> NDArray[np.uint32]:
    """Philox4x32-10 on arrays: ``ctr`` (..., 4) and ``key`` (..., 2) words → (..., 4) uint32.

    Each round: (hi0, lo0) = M0·c0, (hi1, lo1) = M1·c2 (64-bit products),
    c ← (hi1 ⊕ c1 ⊕ k0, lo1, hi0 ⊕ c3 ⊕ k1, lo0); then k ← (k0 + W0, k1 + W1) mod 2³².

    Args:
      ctr: counters, last axis of length 4, values in [0, 2³²).
      key: keys, last axis of length 2, broadcast against ``ctr``.

    Returns:
      The four output words, uint32, shape of the broadcast leading axes + (4,).

    Examples:
      >>> [hex(int(x)) for x in philox4x32_10([0, 0, 0, 0], [0, 0])]
      ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    c = np.asarray(ctr, dtype=np.uint64)
    k = np.asarray(key, dtype=np.uint64)
    c0, c1, c2, c3 = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    k0, k1 = k[..., 0], k[..., 1]
    out = _rounds(c0, c1, c2, c3, k0, k1)
    return np.stack(np.broadcast_arrays(*out), axis=-1).astype(np.uint32)


def _rounds(c0, c1, c2, c3, k0, k1):
    m0, m1, w0, w1, mask = _U(PHILOX_M0), _U(PHILOX_M1), _U(PHILOX_W0), _U(PHILOX_W1), _U(MASK32)
    s32 = _U(32)
    for _ in range(PHILOX_ROUNDS):
        p0 = m0 * c0  # < 2⁶⁴: exact in uint64
        p1 = m1 * c2
        c0, c1, c2, c3 = (p1 >> s32) ^ c1 ^ k0, p1 & mask, (p0 >> s32) ^ c3 ^ k1, p0 & mask
        k0 = (k0 + w0) & mask
        k1 = (k1 + w1) & mask
    return c0, c1, c2, c3


#: Taylor coefficients (−1)ᵏ/(2k+1)! and (−1)ᵏ/(2k)!, highest first (Horner order)
SIN_COEF = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(8, -1, -1))
COS_COEF = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(9, -1, -1))
PI_4 = math.pi / 4.0
TWO_M29 = 2.0**-29


def sincos_turn(x: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(sin 2πu, cos 2πu) for u = (x + 0.5)·2⁻³², x uint32, by exact octant reduction.

    Args:
      x: uint32 words (any shape).

    Returns:
      (sin, cos), float64 arrays of x's shape, each within ~2 ulp of the true value.

    Examples:
      >>> s, c = sincos_turn(np.array([0x40000000 - 1], np.uint32))   # u just below 1/4
      >>> bool(abs(s[0] - 1.0) < 1e-15 and abs(c[0]) < 1e-8)
      True
    """
    x = np.asarray(x, dtype=np.uint64)
    o = x >> _U(29)  # octant 0..7
    f = ((x & _U(0x1FFFFFFF)).astype(np.float64) + 0.5) * TWO_M29
    odd = (o & _U(1)) == _U(1)
    g = np.where(odd, 1.0 - f, f)  # exact
    phi = PI_4 * g
    p2 = phi * phi
    sp = np.full(phi.shape, SIN_COEF[0])
    for cf in SIN_COEF[1:]:
        sp = sp * p2 + cf
    sp = sp * phi
    cp = np.full(phi.shape, COS_COEF[0])
    for cf in COS_COEF[1:]:
        cp = cp * p2 + cf
    sp = np.where(odd, -sp, sp)  # angle = Q·π/2 ± φ
    q = ((o + _U(1)) >> _U(1)) & _U(3)  # quarter turns mod 4
    sin = np.select([q == 0, q == 1, q == 2], [sp, cp, -sp], -cp)
    cos = np.select([q == 0, q == 1, q == 2], [cp, -sp, -cp], sp)
    return sin, cos


def box_muller(x: NDArray[np.uint32]) -> NDArray[np.float64]:
    """Four uint32 (last axis) → four standard normals (the lane order of the module docstring)."""
    xf = np.asarray(x, dtype=np.float64)
    r01 = np.sqrt(-2.0 * np.log((xf[..., 0] + 0.5) * TWO_M32))
    r23 = np.sqrt(-2.0 * np.log((xf[..., 2] + 0.5) * TWO_M32))
    s01, c01 = sincos_turn(np.asarray(x)[..., 1])
    s23, c23 = sincos_turn(np.asarray(x)[..., 3])
    return np.stack([r01 * c01, r01 * s01, r23 * c23, r23 * s23], axis=-1)


def raw_block(seed: int, samples: ArrayLike, blocks: ArrayLike) -> NDArray[np.uint32]:
    """The Philox words of (sample, coordinate block) pairs: (n_samples, n_blocks, 4) uint32.

    Args:
      seed: in [0, 2⁶⁴).  samples: (n,) sample indices.  blocks: (m,) coordinate blocks (c >> 2).
    """
    s = np.asarray(samples, dtype=np.uint64)[:, None]
    b = np.asarray(blocks, dtype=np.uint64)[None, :]
    k0, k1 = split_seed(seed)
    mask = _U(MASK32)
    zero = np.zeros((), np.uint64)
    out = _rounds(b, s & mask, s >> _U(32), zero, _U(k0), _U(k1))
    return np.stack(np.broadcast_arrays(*out), axis=-1).astype(np.uint32)


def normals(seed: int, samples: ArrayLike, n_coords: int) -> NDArray[np.float64]:
    """Standard normals z[s, c] for the given samples and coordinates ``0..n_coords-1``.

    Args:
      seed: in [0, 2⁶⁴).  samples: (n,) sample indices in [0, 2⁶⁴).  n_coords: d + k.

    Returns:
      (n, n_coords) float64 — the exact stream every backend draws.

    Examples:
      >>> z = normals(0, [0, 1], 6)
      >>> z.shape
      (2, 6)
    """
    n_blocks = (int(n_coords) + 3) // 4
    x = raw_block(seed, samples, np.arange(n_blocks))
    z = box_muller(x).reshape(x.shape[0], 4 * n_blocks)
    return z[:, :n_coords]
