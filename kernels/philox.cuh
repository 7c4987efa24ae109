// philox.cuh — the random stream and per-element math of kernels/, as __host__ __device__ code.
//
// The same functions as kernels/philox.py (the numpy specification) and kernels/numba_backend.py;
// the tests build this header for the host with nvcc (kernels/philox_host.cu) and check it
// against numba bit for bit (Philox words) and to a few ulp (normals).
//
// Key / counter mapping (kernels/philox.py docstring):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (coordinate >> 2, sample & 0xffffffff, sample >> 32, 0)
//   4 uint32 -> 4 normals by Box–Muller: lanes (r01 cos, r01 sin, r23 cos, r23 sin),
//   coordinate c is lane c & 3 of block c >> 2.
//
// Rounding discipline: every float product/sum that must match numpy/numba goes through
// SURGE_MUL / SURGE_ADD, which on the device are __dmul_rn / __dadd_rn (never fused into an
// FMA); build host code with -ffp-contract=off. Only log() differs between platforms (<= 1 ulp).
#pragma once

#if defined(__CUDACC_RTC__)
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#else
#include <math.h>
#include <stdint.h>
#endif

#if defined(__CUDACC__)
#define SURGE_HD __host__ __device__ __forceinline__
#else
#define SURGE_HD static inline
#endif

#if defined(__CUDA_ARCH__)
#define SURGE_MUL(a, b) __dmul_rn((a), (b))
#define SURGE_ADD(a, b) __dadd_rn((a), (b))
#else
#define SURGE_MUL(a, b) ((a) * (b))
#define SURGE_ADD(a, b) ((a) + (b))
#endif

#define SURGE_PHILOX_M0 0xD2511F53u
#define SURGE_PHILOX_M1 0xCD9E8D57u
#define SURGE_PHILOX_W0 0x9E3779B9u
#define SURGE_PHILOX_W1 0xBB67AE85u

// Philox4x32-10 (Salmon et al. 2011), in place on c[4] with key (k0, k1).
SURGE_HD void surge_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = (uint64_t)SURGE_PHILOX_M0 * (uint64_t)c[0];
        const uint64_t p1 = (uint64_t)SURGE_PHILOX_M1 * (uint64_t)c[2];
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
        const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = (uint32_t)p1;
        c[2] = n2;
        c[3] = (uint32_t)p0;
        k0 += SURGE_PHILOX_W0;
        k1 += SURGE_PHILOX_W1;
    }
}

// The four Philox words of (coordinate block, sample) under key (k0, k1).
SURGE_HD void surge_raw_block(uint32_t block, uint64_t sample, uint32_t k0, uint32_t k1,
                              uint32_t out[4]) {
    out[0] = block;
    out[1] = (uint32_t)(sample & 0xffffffffull);
    out[2] = (uint32_t)(sample >> 32);
    out[3] = 0u;
    surge_philox4x32_10(out, k0, k1);
}

// (sin 2πu, cos 2πu) for u = (x + 0.5)·2^-32: exact octant reduction + Taylor polynomials on
// (0, π/4) (kernels/philox.py: sincos_turn). Coefficients (-1)^k/(2k+1)! and (-1)^k/(2k)!,
// written as the doubles Python's float(1/n!) gives (17 significant digits round-trip).
SURGE_HD void surge_sincos_turn(uint32_t x, double* s, double* c) {
    const uint32_t o = x >> 29;
    const double f = SURGE_MUL((double)(x & 0x1FFFFFFFu) + 0.5, 1.862645149230957e-09);  // 2^-29
    const bool odd = (o & 1u) != 0u;
    const double g = odd ? 1.0 - f : f;  // exact
    const double phi = SURGE_MUL(0.7853981633974483, g);  // π/4
    const double p2 = SURGE_MUL(phi, phi);
    double sp = 2.8114572543455206e-15;  // 1/17!
    sp = SURGE_ADD(SURGE_MUL(sp, p2), -7.647163731819816e-13);
    sp = SURGE_ADD(SURGE_MUL(sp, p2), 1.6059043836821613e-10);
    sp = SURGE_ADD(SURGE_MUL(sp, p2), -2.505210838544172e-08);
    sp = SURGE_ADD(SURGE_MUL(sp, p2), 2.7557319223985893e-06);
    sp = SURGE_ADD(SURGE_MUL(sp, p2), -0.0001984126984126984);
    sp = SURGE_ADD(SURGE_MUL(sp, p2), 0.008333333333333333);
    sp = SURGE_ADD(SURGE_MUL(sp, p2), -0.16666666666666666);
    sp = SURGE_ADD(SURGE_MUL(sp, p2), 1.0);
    sp = SURGE_MUL(sp, phi);
    double cp = -1.5619206968586225e-16;  // -1/18!
    cp = SURGE_ADD(SURGE_MUL(cp, p2), 4.779477332387385e-14);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), -1.1470745597729725e-11);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), 2.08767569878681e-09);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), -2.755731922398589e-07);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), 2.48015873015873e-05);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), -0.001388888888888889);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), 0.041666666666666664);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), -0.5);
    cp = SURGE_ADD(SURGE_MUL(cp, p2), 1.0);
    if (odd) sp = -sp;
    const uint32_t q = ((o + 1u) >> 1) & 3u;  // quarter turns: angle = q·π/2 ± φ
    if (q == 0u) { *s = sp;  *c = cp; }
    else if (q == 1u) { *s = cp;  *c = -sp; }
    else if (q == 2u) { *s = -sp; *c = -cp; }
    else { *s = -cp; *c = sp; }
}

SURGE_HD double surge_uniform(uint32_t x) {
    return SURGE_MUL((double)x + 0.5, 2.3283064365386963e-10);  // 2^-32, exact
}

// Box–Muller: four words -> four standard normals (lane order of the mapping above).
SURGE_HD void surge_box_muller(const uint32_t x[4], double z[4]) {
    const double r01 = sqrt(SURGE_MUL(-2.0, log(surge_uniform(x[0]))));
    const double r23 = sqrt(SURGE_MUL(-2.0, log(surge_uniform(x[2]))));
    double s01, c01, s23, c23;
    surge_sincos_turn(x[1], &s01, &c01);
    surge_sincos_turn(x[3], &s23, &c23);
    z[0] = SURGE_MUL(r01, c01);
    z[1] = SURGE_MUL(r01, s01);
    z[2] = SURGE_MUL(r23, c23);
    z[3] = SURGE_MUL(r23, s23);
}

// The four normals of coordinates 4·block .. 4·block+3 of one sample.
SURGE_HD void surge_normal4(uint32_t block, uint64_t sample, uint32_t k0, uint32_t k1,
                            double z[4]) {
    uint32_t x[4];
    surge_raw_block(block, sample, k0, k1, x);
    surge_box_muller(x, z);
}

// Per-example noise of coordinate i: n_i = σ_i z_i + Σ_t W[i, t] ζ_t (W row-major, k columns),
// summed left to right like the numba backend.
SURGE_HD double surge_noise(double sigma_i, double z_i, const double* w_row, const double* zeta,
                            int k) {
    double n = SURGE_MUL(sigma_i, z_i);
    for (int t = 0; t < k; ++t) n = SURGE_ADD(n, SURGE_MUL(w_row[t], zeta[t]));
    return n;
}

SURGE_HD double surge_sign(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0); }

// sign(G_est,i) for G_est,i = μ_i + fl(n_i · s_b), s_b = 1/√B; sign(0) = 0 (numpy's np.sign).
SURGE_HD double surge_sign_update(double mu_i, double n_i, double s_b) {
    return surge_sign(SURGE_ADD(mu_i, SURGE_MUL(n_i, s_b)));
}

// The same signs for all batch sizes at once, as two thresholds. With s_b sorted DESCENDING
// (B ascending) and x_b = fl(|n_i| s_b) = |fl(n_i s_b)|: a rounded sum has the sign of its
// larger-magnitude operand and is 0 only when they cancel exactly, so
//   v_ib = sign(n_i) for b < t,   0 for t <= b < t2,   sign(μ_i) for b >= t2,
// with t = #{b : x_b > |μ_i|}, t2 = #{b : x_b >= |μ_i|} when sign(n_i) != sign(μ_i) and n_i != 0,
// and t = t2 = 0 otherwise (then v_ib = sign(μ_i) for every b). Exact, not an approximation.
SURGE_HD void surge_sign_thresholds(double mu_i, double n_i, const double* sb, int nb, int* t,
                                    int* t2) {
    const double a = fabs(mu_i), an = fabs(n_i);
    int lo = 0, le = 0;
    if (n_i != 0.0 && surge_sign(n_i) != surge_sign(mu_i)) {
        for (int b = 0; b < nb; ++b) {
            const double x = SURGE_MUL(an, sb[b]);
            lo += x > a;
            le += x >= a;
        }
    }
    *t = lo;
    *t2 = le;
}
