// philox_host.cu — philox.cuh built for the HOST, exported with C linkage for ctypes.
//
// Lets the tests (no GPU needed) check that the CUDA source's random stream and per-element math
// equal the numba backend's. Build:
//   nvcc -shared -Xcompiler -fPIC -Xcompiler -ffp-contract=off -o libsurge_host.so philox_host.cu
// Every function loops over flat arrays; shapes are the caller's.
#include "philox.cuh"

extern "C" {

// out[(a * n_blocks + b) * 4 + j]: Philox words j of (sample samples[a], block blocks[b]).
void surge_host_raw_blocks(uint64_t seed, const uint64_t* samples, int n_samples,
                           const uint32_t* blocks, int n_blocks, uint32_t* out) {
    const uint32_t k0 = (uint32_t)(seed & 0xffffffffull), k1 = (uint32_t)(seed >> 32);
    for (int a = 0; a < n_samples; ++a)
        for (int b = 0; b < n_blocks; ++b)
            surge_raw_block(blocks[b], samples[a], k0, k1, out + ((size_t)a * n_blocks + b) * 4);
}

// out[a * n_coords + c]: standard normal of coordinate c of sample samples[a].
void surge_host_normals(uint64_t seed, const uint64_t* samples, int n_samples, int n_coords,
                        double* out) {
    const uint32_t k0 = (uint32_t)(seed & 0xffffffffull), k1 = (uint32_t)(seed >> 32);
    for (int a = 0; a < n_samples; ++a)
        for (int c = 0; c < n_coords; c += 4) {
            double z[4];
            surge_normal4((uint32_t)(c >> 2), samples[a], k0, k1, z);
            for (int j = 0; j < 4 && c + j < n_coords; ++j) out[(size_t)a * n_coords + c + j] = z[j];
        }
}

// (sin 2πu, cos 2πu) of each word.
void surge_host_sincos_turn(const uint32_t* x, int n, double* s, double* c) {
    for (int i = 0; i < n; ++i) surge_sincos_turn(x[i], s + i, c + i);
}

// noise[i] = σ_i z_i + Σ_t W[i, t] ζ_t;  v[i * nb + b] = sign(μ_i + fl(noise_i s_b)).
void surge_host_sign_update(const double* mu, const double* sigma, const double* z,
                            const double* W, const double* zeta, int d, int k,
                            const double* sb, int nb, double* noise, double* v) {
    for (int i = 0; i < d; ++i) {
        noise[i] = surge_noise(sigma[i], z[i], W + (size_t)i * k, zeta, k);
        for (int b = 0; b < nb; ++b) v[(size_t)i * nb + b] = surge_sign_update(mu[i], noise[i], sb[b]);
    }
}

// t[i * 2 + 0], t[i * 2 + 1]: the thresholds of coordinate i (sb sorted descending).
void surge_host_sign_thresholds(const double* mu, const double* noise, int d, const double* sb,
                                int nb, int* t) {
    for (int i = 0; i < d; ++i) surge_sign_thresholds(mu[i], noise[i], sb, nb, t + 2 * i, t + 2 * i + 1);
}

}  // extern "C"
