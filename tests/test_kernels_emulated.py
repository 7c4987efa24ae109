"""moments.cu run on the HOST: every CUDA thread a std::thread, __syncthreads a std::barrier.

No GPU is needed: the kernels' source is compiled by g++ with a small shim (below) that maps
__shared__ to ``static`` (one block runs at a time, so a static array is the block's shared
memory), threadIdx/blockIdx to thread-locals and __shfl_down_sync to an exchange through a
block-wide buffer. The Python glue (kernels.cuda_backend.shifted_sums: sorting, batch-size
groups, launch geometry, argument order) runs unchanged with an emulating launcher. This checks
the kernels' indexing, barriers, thresholds and reductions against numba to rounding; what it
cannot check is the GPU itself (warp scheduling, NVRTC, cupy) — the ``gpu`` tests do that.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tolerances import kernel_rounding_tol

import kernels
from kernels import cuda_backend
from kernels.moments import from_shifted_sums
from kernels.problem import centring

SHIM = r"""
#include <barrier>
#include <thread>
#include <vector>
struct surge_dim3 { unsigned x = 0, y = 0, z = 0; };
thread_local surge_dim3 threadIdx, blockIdx;
surge_dim3 gridDim, blockDim;
static std::barrier<>* g_bar = nullptr;
static inline void __syncthreads() { g_bar->arrive_and_wait(); }
#define __global__
#define __device__
#define __host__
#define __forceinline__
#define __launch_bounds__(x)
#define __shared__ static
#define __restrict__
static double g_xchg[1024];
static inline double __shfl_down_sync(unsigned, double v, int off) {
    g_xchg[threadIdx.x] = v;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const double r = lane + off < 32 ? g_xchg[threadIdx.x + off] : v;
    __syncthreads();
    return r;
}
static inline double __ldg(const double* p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
"""

DRIVER = r"""
#include "shim.h"
#include "moments.cu"

template <class F>
static void run_blocks(unsigned grid, F body) {
    gridDim.x = grid;
    blockDim.x = SURGE_BLOCK;
    for (unsigned bx = 0; bx < grid; ++bx) {
        std::barrier<> bar(SURGE_BLOCK);
        g_bar = &bar;
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < SURGE_BLOCK; ++t)
            ts.emplace_back([&body, t, bx] { threadIdx.x = t; blockIdx.x = bx; body(); });
        for (auto& th : ts) th.join();
    }
}

extern "C" void emu_sign(unsigned grid, const double* mu, const double* sigma, const double* U,
                         const double* W, const double* sb, const double* k1s, const double* k2s,
                         double sum_h, unsigned long long n, unsigned long long first,
                         unsigned k0, unsigned k1, double* out) {
    run_blocks(grid, [&] { surge_sign_moments(mu, sigma, U, W, sb, k1s, k2s, sum_h, n, first,
                                              k0, k1, out); });
}

extern "C" void emu_sgd(unsigned grid, const double* mu, const double* sigma, const double* h,
                        const double* U, const double* W, const double* sb, const double* k1s,
                        const double* k2s, const double* umu, double mu2, double hmu2,
                        unsigned long long n, unsigned long long first, unsigned k0, unsigned k1,
                        double* out) {
    run_blocks(grid, [&] { surge_sgd_moments(mu, sigma, h, U, W, sb, k1s, k2s, umu, mu2, hmu2,
                                             n, first, k0, k1, out); });
}
"""


class EmulatedLauncher:
    """cuda_backend's launcher interface, running moments.cu built for the host."""

    sm_count = 2                    # a small grid: several blocks, each looping over samples
    max_threads_per_sm = 512

    def __init__(self, workdir: Path, cxx: str) -> None:
        self.workdir, self.cxx, self.libs = workdir, cxx, {}
        (workdir / "shim.h").write_text(SHIM)
        (workdir / "driver.cpp").write_text(DRIVER)

    to_device = staticmethod(np.ascontiguousarray)
    to_host = staticmethod(np.asarray)

    @staticmethod
    def zeros(shape):
        return np.zeros(shape)

    def _lib(self, options: tuple[str, ...]) -> ctypes.CDLL:
        if options not in self.libs:
            out = self.workdir / f"emu{len(self.libs)}.so"
            flags = [o for o in options if o.startswith(("-D", "-I"))]
            cmd = [self.cxx, "-std=c++20", "-O0", "-pthread", "-shared", "-fPIC",
                   "-ffp-contract=off", *flags, "-o", str(out), str(self.workdir / "driver.cpp")]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, res.stderr
            self.libs[options] = ctypes.CDLL(str(out))
        return self.libs[options]

    def launch(self, name, options, geom, args) -> None:
        fn = getattr(self._lib(options), "emu_sign" if name == "surge_sign_moments" else "emu_sgd")
        conv = [ctypes.c_uint(geom.grid)]
        for a in args:
            if isinstance(a, np.ndarray):
                conv.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.float64):
                conv.append(ctypes.c_double(a))
            elif isinstance(a, np.uint64):
                conv.append(ctypes.c_ulonglong(int(a)))
            elif isinstance(a, np.uint32):
                conv.append(ctypes.c_uint(int(a)))
            else:
                raise TypeError(f"unexpected kernel argument {a!r}")
        fn(*conv)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ not found (needed to build the host emulation of moments.cu)")
    work = tmp_path_factory.mktemp("emu")
    probe = work / "probe.cpp"
    probe.write_text("#include <barrier>\n"
                     "int main() { std::barrier<> b(1); b.arrive_and_wait(); }\n")
    res = subprocess.run([cxx, "-std=c++20", "-pthread", "-o", str(work / "probe"), str(probe)],
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        pytest.skip(f"{cxx} cannot build C++20 <barrier> code: {res.stderr[:200]}")
    return EmulatedLauncher(work, cxx)


def _problem(d, r, k, seed):
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 2.0, d)
    mu = rng.normal(size=d) * sigma * 0.3
    mu[0] = 0.0                                      # a μ_i = 0 coordinate: v = sign(n_i)
    return kernels.QuadraticProblem(mu, sigma, rng.uniform(0.1, 2.0, d),
                                    rng.normal(size=(d, r)) if r else None,
                                    rng.normal(size=(d, k)) * 0.5 if k else None)


@pytest.mark.parametrize("update", ["sign", "sgd"])
@pytest.mark.parametrize("shape", [
    (1, 0, 0, 1, 5),          # one coordinate, one batch size
    (17, 3, 2, 4, 11),        # partial Philox block, ζ sharing a block, grid-stride samples
    (300, 2, 1, 6, 4),        # d above one tile (256 at 64 threads)
], ids=lambda s: "d{}-r{}-k{}-nb{}-n{}".format(*s))
def test_emulated_cuda_equals_numba(emulator, update, shape):
    """moments.cu (host-emulated) gives numba's moments to rounding, unsorted batch sizes."""
    d, r, k, nb, n = shape
    p = _problem(d, r, k, seed=d + r)
    B = np.geomspace(1.0, 3000.0, nb)[::-1].copy()
    k1, k2 = centring(p, B, update)
    sums = cuda_backend.shifted_sums(p, B, n, update, 77, k1, k2, first_sample=2**32 - 2,
                                     launcher=emulator)
    m1, m2, se1, se2, _ = from_shifted_sums(sums, k1, k2, n)
    ref = kernels.update_moments(p, B, n, update=update, seed=77, backend="numba",
                                 first_sample=2**32 - 2)
    v = np.ones(d) if update == "sign" else (
        np.abs(p.mu) + 7.0 * (p.sigma + np.abs(p.W).sum(1)))
    s1 = float(np.abs(p.mu) @ v)
    s2 = float(np.abs(p.h) @ v**2 + 4.0 * np.sum((np.abs(p.U).T @ v) ** 2))
    assert np.allclose(m1, ref.m1, rtol=0, atol=kernel_rounding_tol(s1, d + k + n))
    assert np.allclose(m2, ref.m2, rtol=0, atol=kernel_rounding_tol(s2, d + k + n))
    assert np.allclose(se1, ref.m1_se, rtol=1e-6, atol=kernel_rounding_tol(s1, d + k + n))
    assert np.allclose(se2, ref.m2_se, rtol=1e-6, atol=kernel_rounding_tol(s2, d + k + n))


def test_emulated_cuda_splits_many_batch_sizes(emulator):
    """300 batch sizes (> 256 threads) run as two launches and still equal numba."""
    p = _problem(9, 0, 0, seed=1)
    B = np.geomspace(1.0, 1e4, 300)
    k1, k2 = centring(p, B, "sign")
    sums = cuda_backend.shifted_sums(p, B, 3, "sign", 5, k1, k2, launcher=emulator)
    m1, m2, *_ = from_shifted_sums(sums, k1, k2, 3)
    ref = kernels.update_moments(p, B, 3, seed=5, backend="numba")
    assert np.allclose(m1, ref.m1, rtol=0, atol=kernel_rounding_tol(np.abs(p.mu).sum(), 20))
    assert np.allclose(m2, ref.m2, rtol=0, atol=kernel_rounding_tol(np.abs(p.h).sum(), 20))
