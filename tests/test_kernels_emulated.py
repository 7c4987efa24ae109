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

    sm_count = 2  # a small grid: several blocks, each looping over samples
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
            cmd = [
                self.cxx,
                "-std=c++20",
                "-O0",
                "-pthread",
                "-shared",
                "-fPIC",
                "-ffp-contract=off",
                *flags,
                "-o",
                str(out),
                str(self.workdir / "driver.cpp"),
            ]
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
    probe.write_text(
        "#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n"
    )
    res = subprocess.run(
        [cxx, "-std=c++20", "-pthread", "-o", str(work / "probe"), str(probe)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0:
        pytest.skip(f"{cxx} cannot build C++20 <barrier> code: {res.stderr[:200]}")
    return EmulatedLauncher(work, cxx)


def _problem(d, r, k, seed):
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 2.0, d)
    mu = rng.normal(size=d) * sigma * 0.3
    mu[0] = 0.0  # a μ_i = 0 coordinate: v = sign(n_i)
    return kernels.QuadraticProblem(
        mu,
        sigma,
        rng.uniform(0.1, 2.0, d),
        rng.normal(size=(d, r)) if r else None,
        rng.normal(size=(d, k)) * 0.5 if k else None,
    )


@pytest.mark.parametrize("update", ["sign", "sgd"])
@pytest.mark.parametrize(
    "shape",
    [
        (1, 0, 0, 1, 5),  # one coordinate, one batch size
        (17, 3, 2, 4, 11),  # partial Philox block, ζ sharing a block, grid-stride samples
        (300, 2, 1, 6, 4),  # d above one tile (256 at 64 threads)
    ],
    ids=lambda s: "d{}-r{}-k{}-nb{}-n{}".format(*s),
)
def test_emulated_cuda_equals_numba(emulator, update, shape):
    """moments.cu (host-emulated) gives numba's moments to rounding, unsorted batch sizes."""
    d, r, k, nb, n = shape
    p = _problem(d, r, k, seed=d + r)
    B = np.geomspace(1.0, 3000.0, nb)[::-1].copy()
    k1, k2 = centring(p, B, update)
    sums = cuda_backend.shifted_sums(
        p, B, n, update, 77, k1, k2, first_sample=2**32 - 2, launcher=emulator
    )
    m1, m2, se1, se2, _ = from_shifted_sums(sums, k1, k2, n)
    ref = kernels.update_moments(
        p, B, n, update=update, seed=77, backend="numba", first_sample=2**32 - 2
    )
    v = np.ones(d) if update == "sign" else (np.abs(p.mu) + 7.0 * (p.sigma + np.abs(p.W).sum(1)))
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


@pytest.mark.parametrize(
    ("d", "r", "k", "nb", "n", "update"),
    [
        (65, 0, 3, 1, 1, "sign"),  # d = 64-thread block + 1, one sample, rank 0 with ζ
        (1025, 33, 0, 8, 2, "sign"),  # d = 1024-coordinate tile + 1; 272 pairs: 2 a thread, partial
        (40, 31, 1, 2, 3, "sign"),  # 64 pairs: exactly the 64-thread block, with ζ
        (40, 32, 0, 2, 3, "sign"),  # 66 pairs: a 96-thread block, the last warp mostly idle
        (5, 31, 0, 64, 2, "sign"),  # 2048 pairs overflow shared memory: two launches of 32
        (7, 1, 2, 300, 1, "sgd"),  # 300 batch sizes > 256 threads: two sgd launches, n = 1
    ],
    ids=lambda v: str(v),
)
def test_emulated_edge_shapes_equal_numba_sums(emulator, d, r, k, nb, n, update):
    """The raw shifted sums (n = 1 allowed here) equal numba's on shapes at the edges of the
    launch geometry: one past a block or a tile, pair counts at and just past a warp multiple,
    several pairs a thread, batch-size grids split across launches."""
    from kernels import numba_backend

    p = _problem(d, r, k, seed=d + r)
    B = np.geomspace(1.0, 3000.0, nb)[::-1].copy()
    k1, k2 = centring(p, B, update)
    got = cuda_backend.shifted_sums(p, B, n, update, 77, k1, k2, first_sample=5, launcher=emulator)
    want = numba_backend.shifted_sums(p, B, n, update, 77, k1, k2, first_sample=5)
    v = np.ones(d) if update == "sign" else (np.abs(p.mu) + 7.0 * (p.sigma + np.abs(p.W).sum(1)))
    s1 = float(np.abs(p.mu) @ v)
    s2 = float(np.abs(p.h) @ v**2 + 4.0 * np.sum((np.abs(p.U).T @ v) ** 2))
    tol = kernel_rounding_tol(max(s1, s2, 1.0), d + k + n)
    # Σd and Σd² of values up to ~2 s: a per-sample rounding error e moves Σd² by ~4 s e
    scale = np.array([1.0, 1.0, 4.0 * s1, 4.0 * s2, 2.0 * (s1 + s2)]) * n
    assert np.all(np.abs(got - want) <= tol * np.maximum(scale, 1.0)[None, :])


TSAN_MAIN = r"""
#include <cstdio>
#include <vector>
extern "C" void emu_sign(unsigned, const double*, const double*, const double*, const double*,
                         const double*, const double*, const double*, double, unsigned long long,
                         unsigned long long, unsigned, unsigned, double*);
extern "C" void emu_sgd(unsigned, const double*, const double*, const double*, const double*,
                        const double*, const double*, const double*, const double*, const double*,
                        double, double, unsigned long long, unsigned long long, unsigned,
                        unsigned, double*);
int main() {
    const int d = SURGE_D, r = SURGE_R > 0 ? SURGE_R : 1, k = SURGE_K > 0 ? SURGE_K : 1;
    const int nb = SURGE_NB, grid = 3;
    std::vector<double> mu(d), sigma(d, 1.0), h(d, 1.0), U(d * r, 0.1), W(d * k, 0.2), sb(nb),
        k1(nb, 0.0), k2(nb, 0.0), umu(r, 0.0), out(grid * nb * 5);
    for (int i = 0; i < d; ++i) mu[i] = 0.1 * ((i % 7) - 3);
    for (int b = 0; b < nb; ++b) sb[b] = 1.0 / (1.0 + b);
    emu_sign(grid, mu.data(), sigma.data(), U.data(), W.data(), sb.data(), k1.data(), k2.data(),
             1.0, 7, 0, 1, 2, out.data());
    emu_sgd(grid, mu.data(), sigma.data(), h.data(), U.data(), W.data(), sb.data(), k1.data(),
            k2.data(), umu.data(), 1.0, 1.0, 7, 0, 1, 2, out.data());
    std::printf("ok %d\n", (int)out.size());
}
"""


def test_emulated_kernels_have_no_shared_memory_races(emulator):
    """ThreadSanitizer over the host emulation: a write to a __shared__ array that is not
    separated by a __syncthreads from another thread's access is reported as a data race (a
    removed barrier is caught). Two tiles of a 64-thread block, ζ, 3 blocks striding 7 samples;
    the sgd kernel runs at the same block size (its warp-shuffle reduction over 2 warps)."""
    from kernels import launch

    d, r, k, nb = 300, 3, 2, 4
    geom = launch.geometry(d, 7, nb, r, noise_rank=k)
    assert d > geom.tile and geom.block == 64
    work = emulator.workdir
    (work / "tsan_main.cpp").write_text(TSAN_MAIN)
    flags = [o for o in cuda_backend.compile_options(d, r, k, nb, geom) if o.startswith("-D")]
    exe = work / "tsan_emu"
    res = subprocess.run(
        [
            emulator.cxx,
            "-std=c++20",
            "-O1",
            "-g",
            "-pthread",
            "-fsanitize=thread",
            "-ffp-contract=off",
            f"-I{cuda_backend.HERE}",
            f"-I{work}",
            *flags,
            "-o",
            str(exe),
            str(work / "driver.cpp"),
            str(work / "tsan_main.cpp"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode != 0:
        pytest.skip(f"no ThreadSanitizer build here: {res.stderr[:200]}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    if "FATAL: ThreadSanitizer" in run.stderr:
        pytest.skip(f"ThreadSanitizer cannot run here: {run.stderr[:200]}")
    assert "ThreadSanitizer" not in run.stderr, run.stderr[:4000]
    assert run.returncode == 0 and run.stdout.startswith("ok")
