"""The numba CPU backend: parallel over samples, O(nB (r + 1)) memory a thread, never d × samples.

Same random stream as :mod:`kernels.philox` (Philox4x32-10 + Box–Muller, scalar code here).
Per sample it walks the coordinates once, drawing the normals a tile of :data:`TILE_BLOCKS`
Philox calls (4 coordinates each) at a time into O(tile) scratch (:func:`_normals_tile`,
written so LLVM vectorises it), and folds each coordinate into small per-sample accumulators:

- sign: with s_b = 1/√B sorted descending and sign(n_i) ≠ sign(μ_i), v_ib = sign(μ_i + fl(n_i s_b))
  equals sign(n_i) when fl(|n_i| s_b) > |μ_i| and sign(μ_i) when it is smaller (0 on a tie);
  with equal signs (or n_i = 0) it is sign(μ_i) for every B. A rounded sum has the sign of its
  larger operand, so this threshold test is *exactly* the reference's sign. The b with
  v_ib ≠ sign(μ_i) form a prefix 0..t_i−1 (t_i counted branch-free), so coordinate i adds its row
  (μ_i, U_i·) × (v − sign μ_i) to one bucket E[t_i] and the per-B sums are
  P_b = Σ_i sign(μ_i) (μ_i, U_i·) + Σ_{t > b} E[t]: O(r) work per coordinate instead of
  O(nB r). Then x1_b = P_b[0] = μᵀv and x2_b = Σ h_i + |P_b[1:]|² = vᵀHv.
- sgd: v = μ + n/√B is linear in s_b, so x1 = |μ|² + s_b μᵀn and
  x2 = Σh_iμ_i² + 2 s_b Σh_iμ_in_i + s_b² Σh_in_i² + |Uᵀμ + s_b Uᵀn|²: one pass over the
  coordinates accumulates μᵀn, Σhμn, Σhn² and Uᵀn (r + 3 numbers), then every B is O(r).

Samples are grouped into fixed chunks of :data:`CHUNK_SAMPLES`, dealt round-robin to at most
:data:`MAX_LANES` lanes (the parallel loop runs over lanes); each lane returns the shifted sums
Σd1, Σd2, Σd1², Σd2², Σd1d2 with d = x − K (see :func:`kernels.problem.centring`). Neither
depends on the thread count, so results are bitwise reproducible on any machine, and the
partial sums take at most MAX_LANES · nB · 5 doubles whatever the number of samples.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from kernels import philox as _spec
from kernels.problem import QuadraticProblem

#: samples per chunk and the most lanes: fixed so the summation order never depends on the
#: thread count; 256 lanes keep 16+ threads busy and bound the partial sums' memory
CHUNK_SAMPLES = 64
MAX_LANES = 256

_M0 = np.uint64(_spec.PHILOX_M0)
_M1 = np.uint64(_spec.PHILOX_M1)
_W0 = np.uint64(_spec.PHILOX_W0)
_W1 = np.uint64(_spec.PHILOX_W1)
_MASK = np.uint64(_spec.MASK32)
_S32 = np.uint64(32)
_ZERO = np.uint64(0)
_TWO_M32 = _spec.TWO_M32
_TWO_M29 = _spec.TWO_M29
_PI_4 = _spec.PI_4
_S0, _S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8 = _spec.SIN_COEF
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9 = _spec.COS_COEF
_LOW29 = np.uint64(0x1FFFFFFF)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_S29 = np.uint64(29)


@njit(cache=True, inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64-held 32-bit words (as :func:`kernels.philox.philox4x32_10`)."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@njit(cache=True, inline="always")
def _uniform(x):
    return (np.float64(x) + 0.5) * _TWO_M32


@njit(cache=True, inline="always")
def sincos_turn(x):
    """(sin 2πu, cos 2πu), u = (x + 0.5)·2⁻³² (x uint64): :func:`kernels.philox.sincos_turn`."""
    # selects, not branches, so that LLVM vectorises the loops that call this (_normals_tile)
    o = x >> _S29
    f = (np.float64(x & _LOW29) + 0.5) * _TWO_M29
    odd = (o & _U1) == _U1
    g = (1.0 - f) if odd else f
    phi = _PI_4 * g
    p2 = phi * phi
    sp = (
        (
            ((((((_S0 * p2 + _S1) * p2 + _S2) * p2 + _S3) * p2 + _S4) * p2 + _S5) * p2 + _S6) * p2
            + _S7
        )
        * p2
        + _S8
    ) * phi
    cp = (
        (
            ((((((_C0 * p2 + _C1) * p2 + _C2) * p2 + _C3) * p2 + _C4) * p2 + _C5) * p2 + _C6) * p2
            + _C7
        )
        * p2
        + _C8
    ) * p2 + _C9
    sp = -sp if odd else sp
    q = ((o + _U1) >> _U1) & _U3  # quarter turns: angle = q·π/2 ± φ
    swap = (q & _U1) == _U1  # q = 1, 3: sin ↔ cos
    s = cp if swap else sp
    c = sp if swap else cp
    s = -s if q >= _U2 else s  # q = 2, 3: sin negated
    c = -c if (q == _U1 or q == _U2) else c  # q = 1, 2: cos negated
    return s, c


@njit(cache=True, inline="always")
def normal4(block, sample, k0, k1):
    """The four normals of coordinate block ``block`` (uint64) of sample ``sample`` (uint64)."""
    x0, x1, x2, x3 = philox4x32_10(block, sample & _MASK, sample >> _S32, _ZERO, k0, k1)
    r01 = math.sqrt(-2.0 * math.log(_uniform(x0)))
    r23 = math.sqrt(-2.0 * math.log(_uniform(x2)))
    s01, c01 = sincos_turn(x1)
    s23, c23 = sincos_turn(x3)
    return r01 * c01, r01 * s01, r23 * c23, r23 * s23


#: Philox blocks (4 coordinates each) drawn per tile: the scratch is O(tile), never O(d)
TILE_BLOCKS = 256


@njit(cache=True, inline="always")
def _normals_tile(blk0, nblk, sample, k0, k1, x0, x1, x2, x3, z):
    """Normals of coordinate blocks blk0 .. blk0+nblk-1 into z[0 .. 4·nblk), = :func:`normal4`.

    Three loops (Philox words, radii, angles) instead of one so that the first and last
    vectorise (libm's log in the middle does not): about twice the scalar rate, same bits.
    """
    slo = sample & _MASK
    shi = sample >> _S32
    for b in range(nblk):
        x0[b], x1[b], x2[b], x3[b] = philox4x32_10(np.uint64(blk0 + b), slo, shi, _ZERO, k0, k1)
    for b in range(nblk):
        z[4 * b] = math.sqrt(-2.0 * math.log(_uniform(x0[b])))
        z[4 * b + 2] = math.sqrt(-2.0 * math.log(_uniform(x2[b])))
    for b in range(nblk):
        s, c = sincos_turn(x1[b])
        r = z[4 * b]
        z[4 * b] = r * c
        z[4 * b + 1] = r * s
        s, c = sincos_turn(x3[b])
        r = z[4 * b + 2]
        z[4 * b + 2] = r * c
        z[4 * b + 3] = r * s


@njit(cache=True)
def _raw_blocks(k0, k1, samples, blocks):
    out = np.empty((samples.size, blocks.size, 4), np.uint32)
    for a in range(samples.size):
        s = np.uint64(samples[a])
        for b in range(blocks.size):
            x = philox4x32_10(np.uint64(blocks[b]), s & _MASK, s >> _S32, _ZERO, k0, k1)
            for j in range(4):
                out[a, b, j] = np.uint32(x[j])
    return out


@njit(cache=True)
def _normals(k0, k1, samples, n_coords):
    nblk = (n_coords + 3) // 4
    out = np.empty((samples.size, 4 * nblk))
    for a in range(samples.size):
        s = np.uint64(samples[a])
        for b in range(nblk):
            z = normal4(np.uint64(b), s, k0, k1)
            for j in range(4):
                out[a, 4 * b + j] = z[j]
    return out[:, :n_coords]


def raw_blocks(seed: int, samples: NDArray, blocks: NDArray) -> NDArray[np.uint32]:
    """numba twin of :func:`kernels.philox.raw_block`: (n_samples, n_blocks, 4) uint32."""
    k0, k1 = _spec.split_seed(seed)
    return _raw_blocks(
        np.uint64(k0), np.uint64(k1), np.asarray(samples, np.uint64), np.asarray(blocks, np.uint64)
    )


def normals(seed: int, samples: NDArray, n_coords: int) -> NDArray[np.float64]:
    """numba twin of :func:`kernels.philox.normals`: (n_samples, n_coords) float64."""
    k0, k1 = _spec.split_seed(seed)
    return _normals(np.uint64(k0), np.uint64(k1), np.asarray(samples, np.uint64), int(n_coords))


@njit(cache=True, inline="always")
def _draw_zeta(zeta, d, k, sample, k0, k1):
    for t in range(k):
        c = d + t
        z = normal4(np.uint64(c >> 2), sample, k0, k1)
        zeta[t] = z[c & 3]


@njit(cache=True, inline="always")
def _noise(i, zi, sigma, W, zeta, k):
    n = sigma[i] * zi
    for t in range(k):
        n += W[i, t] * zeta[t]
    return n


@njit(cache=True, inline="always")
def _accumulate(out, c, b, x1, x2, k1, k2):
    d1 = x1 - k1
    d2 = x2 - k2
    out[c, b, 0] += d1
    out[c, b, 1] += d2
    out[c, b, 2] += d1 * d1
    out[c, b, 3] += d2 * d2
    out[c, b, 4] += d1 * d2


@njit(cache=True, parallel=True)
def _sign_sums(mu, sigma, U, W, sum_h, sb, k1s, k2s, n_samples, first_sample, k0, k1, chunk):
    d = mu.size
    r = U.shape[1]
    k = W.shape[1]
    nb = sb.size
    nchunks = (n_samples + chunk - 1) // chunk
    nlanes = min(nchunks, MAX_LANES)
    out = np.zeros((nlanes, nb, 5))
    base = np.zeros(r + 1)  # Σ_i sign(μ_i) (μ_i, U_i·)
    for i in range(d):
        sm = np.sign(mu[i])
        base[0] += sm * mu[i]
        for j in range(r):
            base[1 + j] += sm * U[i, j]
    nblk = (d + 3) // 4
    for c in prange(nlanes):
        E = np.empty((nb + 1, r + 1))
        P = np.empty(r + 1)
        zeta = np.empty(k)
        wx0 = np.empty(TILE_BLOCKS, np.uint64)
        wx1 = np.empty(TILE_BLOCKS, np.uint64)
        wx2 = np.empty(TILE_BLOCKS, np.uint64)
        wx3 = np.empty(TILE_BLOCKS, np.uint64)
        zt = np.empty(4 * TILE_BLOCKS)
        for ch in range(c, nchunks, nlanes):  # this lane's chunks
            for s in range(ch * chunk, min(n_samples, (ch + 1) * chunk)):
                sample = first_sample + np.uint64(s)  # uint64 + uint64: no float
                E[:, :] = 0.0
                _draw_zeta(zeta, d, k, sample, k0, k1)
                for tb in range(0, nblk, TILE_BLOCKS):
                    nt = min(TILE_BLOCKS, nblk - tb)
                    _normals_tile(tb, nt, sample, k0, k1, wx0, wx1, wx2, wx3, zt)
                    for ic in range(min(4 * nt, d - 4 * tb)):
                        i = 4 * tb + ic
                        n = _noise(i, zt[ic], sigma, W, zeta, k)
                        mui = mu[i]
                        sm = np.sign(mui)
                        sn = np.sign(n)
                        # branch-free (signs are coin flips, mispredictions cost more than the
                        # arithmetic): dl = 0 when sign(n) = sign(μ) or n = 0, i.e. v_ib = sign(μ_i)
                        # for every B, and then the row added below is 0
                        dl = (sn - sm) * (sn != 0.0)
                        a = abs(mui)
                        an = abs(n)
                        t = 0  # t = #{b : fl(|n| s_b) > |μ|}, a prefix
                        for b in range(nb):
                            t += an * sb[b] > a
                        # E[0] is never read: t = 0 (no B flips) lands there harmlessly
                        E[t, 0] += dl * mui
                        for j in range(r):
                            E[t, 1 + j] += dl * U[i, j]
                        t2 = t  # ties fl(|n| s_b) == |μ| give v = 0
                        while t2 < nb and an * sb[t2] == a:
                            t2 += 1
                        if t2 > t and dl != 0.0:
                            dl = -sm
                            E[t2, 0] += dl * mui
                            E[t, 0] -= dl * mui
                            for j in range(r):
                                E[t2, 1 + j] += dl * U[i, j]
                                E[t, 1 + j] -= dl * U[i, j]
                for j in range(r + 1):
                    P[j] = base[j]
                for b in range(nb - 1, -1, -1):
                    for j in range(r + 1):
                        P[j] += E[b + 1, j]
                    q = 0.0
                    for j in range(r):
                        q += P[1 + j] * P[1 + j]
                    _accumulate(out, c, b, P[0], sum_h + q, k1s[b], k2s[b])
    return out


@njit(cache=True, parallel=True)
def _sgd_sums(mu, sigma, h, U, W, sb, k1s, k2s, n_samples, first_sample, k0, k1, chunk):
    d = mu.size
    r = U.shape[1]
    k = W.shape[1]
    nb = sb.size
    nchunks = (n_samples + chunk - 1) // chunk
    nlanes = min(nchunks, MAX_LANES)
    out = np.zeros((nlanes, nb, 5))
    mu2 = 0.0
    hmu2 = 0.0
    umu = np.zeros(r)
    for i in range(d):
        mu2 += mu[i] * mu[i]
        hmu2 += h[i] * mu[i] * mu[i]
        for j in range(r):
            umu[j] += U[i, j] * mu[i]
    nblk = (d + 3) // 4
    for c in prange(nlanes):
        un = np.empty(r)
        zeta = np.empty(k)
        wx0 = np.empty(TILE_BLOCKS, np.uint64)
        wx1 = np.empty(TILE_BLOCKS, np.uint64)
        wx2 = np.empty(TILE_BLOCKS, np.uint64)
        wx3 = np.empty(TILE_BLOCKS, np.uint64)
        zt = np.empty(4 * TILE_BLOCKS)
        for ch in range(c, nchunks, nlanes):  # this lane's chunks
            for s in range(ch * chunk, min(n_samples, (ch + 1) * chunk)):
                sample = first_sample + np.uint64(s)  # uint64 + uint64: no float
                _draw_zeta(zeta, d, k, sample, k0, k1)
                a = 0.0  # μᵀn
                cc = 0.0  # Σ h μ n
                e = 0.0  # Σ h n²
                un[:] = 0.0  # Uᵀn
                for tb in range(0, nblk, TILE_BLOCKS):
                    nt = min(TILE_BLOCKS, nblk - tb)
                    _normals_tile(tb, nt, sample, k0, k1, wx0, wx1, wx2, wx3, zt)
                    for ic in range(min(4 * nt, d - 4 * tb)):
                        i = 4 * tb + ic
                        n = _noise(i, zt[ic], sigma, W, zeta, k)
                        a += mu[i] * n
                        hn = h[i] * n
                        cc += hn * mu[i]
                        e += hn * n
                        for j in range(r):
                            un[j] += U[i, j] * n
                for b in range(nb):
                    s_b = sb[b]
                    q = 0.0
                    for j in range(r):
                        p = umu[j] + s_b * un[j]
                        q += p * p
                    x1 = mu2 + s_b * a
                    x2 = hmu2 + 2.0 * s_b * cc + s_b * s_b * e + q
                    _accumulate(out, c, b, x1, x2, k1s[b], k2s[b])
    return out


def shifted_sums(
    problem: QuadraticProblem,
    batch_sizes: NDArray[np.float64],
    n_samples: int,
    update: str,
    seed: int,
    k1s: NDArray[np.float64],
    k2s: NDArray[np.float64],
    first_sample: int = 0,
) -> NDArray[np.float64]:
    """Σd1, Σd2, Σd1², Σd2², Σd1d2 over all samples, d = x − K: (nB, 5) float64.

    Args:
      problem: a :class:`kernels.QuadraticProblem`.  batch_sizes: (nB,) > 0.
      n_samples, first_sample: the sample indices drawn.  update: "sign" | "sgd".
      seed: Philox seed.  k1s, k2s: (nB,) shifts.
    """
    order = np.argsort(batch_sizes, kind="stable")  # B ascending ⇔ s_b descending
    sb = np.ascontiguousarray(1.0 / np.sqrt(batch_sizes[order]))
    k0, k1 = (np.uint64(w) for w in _spec.split_seed(seed))
    args = (
        sb,
        np.ascontiguousarray(k1s[order]),
        np.ascontiguousarray(k2s[order]),
        int(n_samples),
        np.uint64(first_sample),
        k0,
        k1,
        CHUNK_SAMPLES,
    )
    p = problem
    if update == "sign":
        parts = _sign_sums(p.mu, p.sigma, p.U, p.W, float(np.sum(p.h)), *args)
    else:
        parts = _sgd_sums(p.mu, p.sigma, p.h, p.U, p.W, *args)
    sums = np.empty((batch_sizes.size, 5))
    sums[order] = parts.sum(axis=0)
    return sums


def threads() -> int:
    """Number of threads numba's parallel loops use."""
    return int(numba.get_num_threads())
