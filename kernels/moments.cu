// moments.cu — fused Monte Carlo of m1 = E[Gᵀv], m2 = E[vᵀHv] for v = sign(G_est) or G_est.
//
// One pass per sample: draw (Philox4x32-10 + Box–Muller, philox.cuh) -> noise n = σ⊙z + Wζ ->
// update -> projections -> per-sample x1, x2 -> shifted sums. Nothing of size d × samples ever
// exists: a block holds one tile of noise in shared memory, partial sums are grid × NB × 5.
//
// Compile-time constants (injected as -D options by kernels/cuda_backend.py; geometry from
// kernels/launch.py):
//   SURGE_D   coordinates d             SURGE_R   rank r of U (H = diag(h) + U Uᵀ)
//   SURGE_K   rank k of W (Σ = diag(σ²) + W Wᵀ)      SURGE_NB  number of batch sizes
//   SURGE_BLOCK threads per block       SURGE_TILE coordinates per tile (4·SURGE_BLOCK)
//   SURGE_PPT (batch size, column) pairs per thread in the sign kernel
// Arrays are float64, row-major: U is d×r, W is d×k. sb[b] = 1/√B_b, sorted descending for the
// sign kernel (B ascending; any order for sgd). Both kernels need NB <= SURGE_BLOCK (one thread
// per batch size in the epilogue; kernels/cuda_backend.py splits larger grids). out is grid × NB × 5:
// Σd1, Σd2, Σd1², Σd2², Σd1d2 over the block's samples, d1 = x1 − k1s[b], d2 = x2 − k2s[b].
// Build with --fmad=false (the rounding discipline of philox.cuh; the accumulations below
// use fma() explicitly where a fused operation is wanted and exact).
#include "philox.cuh"

#ifndef SURGE_D
#error "define SURGE_D, SURGE_R, SURGE_K, SURGE_NB, SURGE_BLOCK, SURGE_TILE, SURGE_PPT"
#endif

#define SURGE_NP (SURGE_NB * (SURGE_R + 1))
#define SURGE_KS (SURGE_K > 0 ? SURGE_K : 1)
#define SURGE_RS (SURGE_R > 0 ? SURGE_R : 1)
#define SURGE_NC (SURGE_R + 3)
#define SURGE_NBLK ((SURGE_D + 3) / 4)

// ζ of one sample: coordinates d..d+k-1 of the same stream.
__device__ __forceinline__ void surge_draw_zeta(double* s_zeta, uint64_t sample, uint32_t k0,
                                                uint32_t k1) {
    for (int t = threadIdx.x; t < SURGE_K; t += SURGE_BLOCK) {
        const int c = SURGE_D + t;
        double z[4];
        surge_normal4((uint32_t)(c >> 2), sample, k0, k1, z);
        s_zeta[t] = z[c & 3];
    }
}

__device__ __forceinline__ void surge_accumulate(double* sums, double x1, double x2, double k1,
                                                 double k2) {
    const double d1 = x1 - k1, d2 = x2 - k2;
    sums[0] += d1;
    sums[1] += d2;
    sums[2] = fma(d1, d1, sums[2]);
    sums[3] = fma(d2, d2, sums[3]);
    sums[4] = fma(d1, d2, sums[4]);
}

__device__ __forceinline__ void surge_store(double* out, const double* sums) {
    double* o = out + ((unsigned long long)blockIdx.x * SURGE_NB + threadIdx.x) * 5;
#pragma unroll
    for (int j = 0; j < 5; ++j) o[j] = sums[j];
}

// sign: pair p = b·(r+1) + j accumulates P[b][j] = Σ_i U_ij v_ib (j < r) or Σ_i μ_i v_ib (j = r);
// then x1_b = P[b][r], x2_b = Σ h + Σ_j P[b][j]². The batch sizes arrive sorted ascending
// (sb descending), so the draw phase reduces each coordinate's nB signs to two thresholds
// (surge_sign_thresholds, exact) and the pair loop costs one select and one FMA per element.
extern "C" __global__ void __launch_bounds__(SURGE_BLOCK)
surge_sign_moments(const double* __restrict__ mu, const double* __restrict__ sigma,
                   const double* __restrict__ U, const double* __restrict__ W,
                   const double* __restrict__ sb, const double* __restrict__ k1s,
                   const double* __restrict__ k2s, double sum_h, unsigned long long n_samples,
                   unsigned long long first_sample, unsigned int k0, unsigned int k1,
                   double* __restrict__ out) {
    __shared__ double s_mu[SURGE_TILE];   // μ_i of the tile
    __shared__ double s_sn[SURGE_TILE];   // sign(n_i): v for b < t
    __shared__ double s_sm[SURGE_TILE];   // sign(μ_i): v for b >= t2
    __shared__ int s_t[SURGE_TILE];
    __shared__ int s_t2[SURGE_TILE];
    __shared__ double s_p[SURGE_NP];
    __shared__ double s_zeta[SURGE_KS];
    __shared__ double s_sb[SURGE_NB];
    const int tid = threadIdx.x;
    for (int b = tid; b < SURGE_NB; b += SURGE_BLOCK) s_sb[b] = sb[b];
    __syncthreads();
    double sums[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
    for (unsigned long long s = blockIdx.x; s < n_samples; s += gridDim.x) {
        const uint64_t sample = first_sample + s;
        if (SURGE_K > 0) {
            surge_draw_zeta(s_zeta, sample, k0, k1);
            __syncthreads();
        }
        double acc[SURGE_PPT];
#pragma unroll
        for (int q = 0; q < SURGE_PPT; ++q) acc[q] = 0.0;
        for (int tile0 = 0; tile0 < SURGE_D; tile0 += SURGE_TILE) {
            const int c0 = tile0 + 4 * tid;
            if (c0 < SURGE_D) {
                double z[4];
                surge_normal4((uint32_t)(c0 >> 2), sample, k0, k1, z);
#pragma unroll
                for (int lane = 0; lane < 4; ++lane) {
                    const int i = c0 + lane;
                    if (i < SURGE_D) {
                        const int e = 4 * tid + lane;
                        const double m = mu[i];
                        const double n = surge_noise(sigma[i], z[lane],
                                                     W + (unsigned long long)i * SURGE_K, s_zeta,
                                                     SURGE_K);
                        int t, t2;
                        surge_sign_thresholds(m, n, s_sb, SURGE_NB, &t, &t2);
                        s_mu[e] = m;
                        s_sn[e] = surge_sign(n);
                        s_sm[e] = surge_sign(m);
                        s_t[e] = t;
                        s_t2[e] = t2;
                    }
                }
            }
            __syncthreads();
            const int len = min(SURGE_TILE, SURGE_D - tile0);
#pragma unroll
            for (int q = 0; q < SURGE_PPT; ++q) {
                const int p = tid + q * SURGE_BLOCK;
                if (p < SURGE_NP) {
                    const int b = p / (SURGE_R + 1);
                    const int j = p - b * (SURGE_R + 1);
                    double a = acc[q];
                    // v ∈ {−1, 0, 1}: the fma's product is exact, one rounding per element
                    if (j == SURGE_R) {
                        for (int ii = 0; ii < len; ++ii) {
                            const double v = b < s_t[ii] ? s_sn[ii] : (b < s_t2[ii] ? 0.0 : s_sm[ii]);
                            a = fma(s_mu[ii], v, a);
                        }
                    } else {
                        const double* col = U + (unsigned long long)tile0 * SURGE_R + j;
                        for (int ii = 0; ii < len; ++ii) {
                            const double v = b < s_t[ii] ? s_sn[ii] : (b < s_t2[ii] ? 0.0 : s_sm[ii]);
                            a = fma(__ldg(col + (unsigned long long)ii * SURGE_R), v, a);
                        }
                    }
                    acc[q] = a;
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (int q = 0; q < SURGE_PPT; ++q) {
            const int p = tid + q * SURGE_BLOCK;
            if (p < SURGE_NP) s_p[p] = acc[q];
        }
        __syncthreads();
        if (tid < SURGE_NB) {
            const double* P = s_p + tid * (SURGE_R + 1);
            double q2 = 0.0;
            for (int j = 0; j < SURGE_R; ++j) q2 = SURGE_ADD(q2, SURGE_MUL(P[j], P[j]));
            surge_accumulate(sums, P[SURGE_R], sum_h + q2, k1s[tid], k2s[tid]);
        }
        // no barrier needed here: the next writes to s_p come after the next sample's barriers
    }
    if (tid < SURGE_NB) surge_store(out, sums);
}

// sgd: v = μ + n s_b is linear in s_b; per sample accumulate c = (μᵀn, Σhμn, Σhn², Uᵀn), then
// x1 = |μ|² + s_b μᵀn,  x2 = Σhμ² + 2 s_b Σhμn + s_b² Σhn² + |Uᵀμ + s_b Uᵀn|².
extern "C" __global__ void __launch_bounds__(SURGE_BLOCK)
surge_sgd_moments(const double* __restrict__ mu, const double* __restrict__ sigma,
                  const double* __restrict__ h, const double* __restrict__ U,
                  const double* __restrict__ W, const double* __restrict__ sb,
                  const double* __restrict__ k1s, const double* __restrict__ k2s,
                  const double* __restrict__ umu, double mu2, double hmu2,
                  unsigned long long n_samples, unsigned long long first_sample, unsigned int k0,
                  unsigned int k1, double* __restrict__ out) {
    __shared__ double s_red[SURGE_BLOCK / 32][SURGE_NC];
    __shared__ double s_col[SURGE_NC];
    __shared__ double s_zeta[SURGE_KS];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    double sums[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
    for (unsigned long long s = blockIdx.x; s < n_samples; s += gridDim.x) {
        const uint64_t sample = first_sample + s;
        if (SURGE_K > 0) {
            surge_draw_zeta(s_zeta, sample, k0, k1);
            __syncthreads();
        }
        double a[SURGE_NC];
#pragma unroll
        for (int c = 0; c < SURGE_NC; ++c) a[c] = 0.0;
        for (int blk = tid; blk < SURGE_NBLK; blk += SURGE_BLOCK) {
            double z[4];
            surge_normal4((uint32_t)blk, sample, k0, k1, z);
#pragma unroll
            for (int l = 0; l < 4; ++l) {
                const int i = 4 * blk + l;
                if (i < SURGE_D) {
                    const double n = surge_noise(sigma[i], z[l], W + (unsigned long long)i * SURGE_K, s_zeta,
                                                 SURGE_K);
                    const double hn = h[i] * n;
                    a[0] = fma(mu[i], n, a[0]);
                    a[1] = fma(hn, mu[i], a[1]);
                    a[2] = fma(hn, n, a[2]);
#pragma unroll
                    for (int j = 0; j < SURGE_R; ++j) a[3 + j] = fma(U[(unsigned long long)i * SURGE_R + j], n, a[3 + j]);
                }
            }
        }
#pragma unroll
        for (int c = 0; c < SURGE_NC; ++c) {
            double v = a[c];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
            if (lane == 0) s_red[warp][c] = v;
        }
        __syncthreads();
        for (int c = tid; c < SURGE_NC; c += SURGE_BLOCK) {
            double t = 0.0;
            for (int w = 0; w < SURGE_BLOCK / 32; ++w) t += s_red[w][c];
            s_col[c] = t;
        }
        __syncthreads();
        if (tid < SURGE_NB) {
            const double s_b = sb[tid];
            double q2 = 0.0;
            for (int j = 0; j < SURGE_R; ++j) {
                const double p = umu[j] + s_b * s_col[3 + j];
                q2 += p * p;
            }
            const double x1 = mu2 + s_b * s_col[0];
            const double x2 = hmu2 + 2.0 * s_b * s_col[1] + s_b * s_b * s_col[2] + q2;
            surge_accumulate(sums, x1, x2, k1s[tid], k2s[tid]);
        }
    }
    if (tid < SURGE_NB) surge_store(out, sums);
}
