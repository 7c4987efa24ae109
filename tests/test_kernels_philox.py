"""The random stream: Philox4x32-10 known answers; numpy = numba = CUDA C (built for the host)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tolerances import EPS

from kernels import cuda_backend, launch, philox
from kernels import numba_backend as nb

KERNELS = Path(philox.__file__).resolve().parent
CU_FILES = sorted(KERNELS.glob("*.cu"))

#: Random123 kat_vectors: (counter, key, expected) for philox4x32 with 10 rounds
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]

#: normals are √(−2 ln u)·{cos, sin}: log differs by ≤ 1 ulp between libms, the polynomial and
#: sqrt round identically, so the products agree to a few ulp of |z| ≤ 6.8
NORMAL_ULPS = 8

SEEDS = [0, 1, 2**32 - 1, 2**32, 0xDEADBEEFCAFEF00D]
SAMPLES = np.array([0, 1, 2, 3, 1000, 2**32 - 1, 2**32, 2**32 + 7, 2**63 + 5], dtype=np.uint64)


@pytest.mark.parametrize(("ctr", "key", "want"), KAT)
def test_philox_known_answers(ctr, key, want):
    """numpy and numba Philox4x32-10 reproduce Random123's known-answer vectors exactly."""
    assert tuple(int(x) for x in philox.philox4x32_10(ctr, key)) == want
    got = nb.philox4x32_10(*(np.uint64(c) for c in ctr), *(np.uint64(k) for k in key))
    assert tuple(int(x) for x in got) == want


@pytest.mark.parametrize("seed", SEEDS)
def test_numba_stream_equals_numpy(seed):
    """Same integers bit for bit (64-bit seeds and sample indices) and normals to a few ulp."""
    blocks = np.array([0, 1, 2, 5, 2**20, 2**32 - 1], dtype=np.uint64)
    assert np.array_equal(
        nb.raw_blocks(seed, SAMPLES, blocks), philox.raw_block(seed, SAMPLES, blocks)
    )
    a = nb.normals(seed, SAMPLES, 23)
    b = philox.normals(seed, SAMPLES, 23)
    assert np.all(np.abs(a - b) <= NORMAL_ULPS * EPS * np.maximum(np.abs(b), 1.0))


def test_numba_sincos_equals_numpy_bitwise():
    """The branch-free numba sin/cos is the numpy specification bit for bit, in every octant."""
    x = np.concatenate(
        [
            np.arange(0, 2**32, 2**32 // 4099, dtype=np.uint64),
            np.array([0, 2**29 - 1, 2**29, 2**30, 2**31, 2**32 - 1], np.uint64),
        ]
    )
    got = np.array([nb.sincos_turn(np.uint64(v)) for v in x])
    s, c = philox.sincos_turn(x)
    assert np.array_equal(got[:, 0], s) and np.array_equal(got[:, 1], c)


def test_sincos_turn_accuracy():
    """The exactly-reduced polynomial sin/cos of 2πu is within 4 ulp (absolute, |·| ≤ 1) of
    numpy's libm on 2πu — itself off by the rounding of 2πu (≤ 1 ulp of 2π)."""
    x = np.concatenate(
        [
            np.arange(0, 2**32, 65537, dtype=np.uint64),
            np.array([0, 2**29 - 1, 2**29, 2**30, 2**31, 2**32 - 1], np.uint64),
        ]
    )
    s, c = philox.sincos_turn(x)
    t = 2.0 * np.pi * (x.astype(np.float64) + 0.5) * 2.0**-32
    tol = 4 * EPS + 2 * np.pi * EPS  # polynomial + the angle's own rounding
    assert np.max(np.abs(s - np.sin(t))) <= tol and np.max(np.abs(c - np.cos(t))) <= tol
    assert np.allclose(s**2 + c**2, 1.0, rtol=0, atol=8 * EPS)


def test_normals_are_standard():
    """Moments of 4·10⁵ draws: mean 0, variance 1, kurtosis 3 within 5 SE; lanes uncorrelated."""
    z = philox.normals(2024, np.arange(25_000), 16).ravel()
    n = z.size
    assert abs(z.mean()) <= 5 / np.sqrt(n)
    assert abs(z.var() - 1.0) <= 5 * np.sqrt(2.0 / n)
    assert abs(np.mean(z**4) - 3.0) <= 5 * np.sqrt(96.0 / n)
    lanes = z.reshape(-1, 4)
    c = np.corrcoef(lanes.T)[np.triu_indices(4, 1)]
    assert np.all(np.abs(c) <= 5 / np.sqrt(lanes.shape[0]))
    assert np.abs(z).max() < 6.8  # the 32-bit uniform grid bounds |z| by 6.76


@pytest.mark.parametrize("path", CU_FILES, ids=lambda p: p.name)
def test_every_cu_file_compiles_for_sm90(nvcc, path, tmp_path):
    """nvcc -arch=sm_90 compiles every .cu file (moments.cu with the #defines of two shapes)."""
    shapes = [(10_000, 8, 0, 16), (13, 0, 3, 5)] if path.name == "moments.cu" else [None]
    for shape in shapes:
        opts: tuple[str, ...] = (f"-I{KERNELS}",)
        if shape is not None:
            d, r, k, nb_ = shape
            geom = launch.geometry(d, 1000, nb_, r, noise_rank=k)
            opts = cuda_backend.compile_options(d, r, k, nb_, geom)
        cmd = [
            nvcc,
            "-arch=sm_90",
            "--ptx",
            *(o for o in opts if o != "--std=c++17"),
            "-std=c++17",
            "-o",
            str(tmp_path / "out.ptx"),
            str(path),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr


def test_runtime_source_inlines_the_header():
    """cupy keys its on-disk kernel cache by the source string and options only, not by the
    files an #include reads: the code handed to RawModule must carry philox.cuh itself, or an
    edited header would keep running the stale cached cubin."""
    src = cuda_backend.source()
    assert '#include "philox.cuh"' not in src
    assert (KERNELS / "philox.cuh").read_text() in src
    body = (KERNELS / "moments.cu").read_text().split('#include "philox.cuh"')[1]
    assert src.endswith(body)


def _find_nvrtc() -> str | None:
    """libnvrtc: $SURGELAB_NVRTC, the nvidia-cuda-nvrtc wheel, or the loader's search path."""
    if os.environ.get("SURGELAB_NVRTC"):
        return os.environ["SURGELAB_NVRTC"]
    try:
        import nvidia.cuda_nvrtc as pkg  # pip install nvidia-cuda-nvrtc-cu12

        libs = sorted(Path(next(iter(pkg.__path__))).glob("lib/libnvrtc.so*"))
        if libs:
            return str(libs[0])
    except ImportError:
        pass
    return ctypes.util.find_library("nvrtc")


@pytest.mark.parametrize("update", ["sign", "sgd"])
@pytest.mark.parametrize("shape", [(10_000, 8, 0, 16), (13, 0, 3, 5), (1, 0, 0, 1)])
def test_moments_cu_compiles_with_nvrtc(shape, update):
    """The exact source + options cupy.RawModule will use compile under NVRTC (the runtime
    compiler: no system headers, __CUDACC_RTC__ defined). Skips without libnvrtc."""
    path = _find_nvrtc()
    if path is None:
        pytest.skip("libnvrtc not found (set SURGELAB_NVRTC or pip install nvidia-cuda-nvrtc-cu12)")
    lib = ctypes.CDLL(path)
    d, r, k, nb_ = shape
    geom = launch.geometry(d, 1000, nb_, r, noise_rank=k, update=update)
    opts = [*cuda_backend.compile_options(d, r, k, nb_, geom), "-arch=compute_90"]
    prog = ctypes.c_void_p()
    assert (
        lib.nvrtcCreateProgram(
            ctypes.byref(prog), cuda_backend.source().encode(), b"moments.cu", 0, None, None
        )
        == 0
    )
    arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    assert rc == 0, log.value.decode()


@pytest.fixture(scope="module")
def host_lib(nvcc, tmp_path_factory):
    """kernels/philox_host.cu (philox.cuh's __host__ __device__ code) built for the host."""
    out = tmp_path_factory.mktemp("cuda_host") / "libsurge_host.so"
    cmd = [
        nvcc,
        "-shared",
        "-Xcompiler",
        "-fPIC",
        "-Xcompiler",
        "-ffp-contract=off",
        f"-I{KERNELS}",
        "-o",
        str(out),
        str(KERNELS / "philox_host.cu"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        pytest.fail(f"host build of philox_host.cu failed:\n{res.stderr}")
    lib = ctypes.CDLL(str(out))
    p = np.ctypeslib.ndpointer
    lib.surge_host_raw_blocks.argtypes = [
        ctypes.c_uint64,
        p(np.uint64),
        ctypes.c_int,
        p(np.uint32),
        ctypes.c_int,
        p(np.uint32),
    ]
    lib.surge_host_normals.argtypes = [
        ctypes.c_uint64,
        p(np.uint64),
        ctypes.c_int,
        ctypes.c_int,
        p(np.float64),
    ]
    lib.surge_host_sincos_turn.argtypes = [p(np.uint32), ctypes.c_int, p(np.float64), p(np.float64)]
    lib.surge_host_sign_update.argtypes = (
        [p(np.float64)] * 5
        + [ctypes.c_int] * 2
        + [p(np.float64), ctypes.c_int, p(np.float64), p(np.float64)]
    )
    lib.surge_host_sign_thresholds.argtypes = [
        p(np.float64),
        p(np.float64),
        ctypes.c_int,
        p(np.float64),
        ctypes.c_int,
        p(np.int32),
    ]
    return lib


@pytest.mark.parametrize("seed", SEEDS)
def test_cuda_source_stream_equals_numba(host_lib, seed):
    """philox.cuh built for the host: the same Philox words as numba bit for bit, normals within
    a few ulp, and the exactly reduced sin/cos bit for bit (same polynomial, no FMA)."""
    blocks = np.array([0, 1, 7, 2**31 + 3], dtype=np.uint32)
    out = np.empty((SAMPLES.size, blocks.size, 4), np.uint32)
    host_lib.surge_host_raw_blocks(seed, SAMPLES, SAMPLES.size, blocks, blocks.size, out)
    assert np.array_equal(out, nb.raw_blocks(seed, SAMPLES, blocks.astype(np.uint64)))
    z = np.empty((SAMPLES.size, 21))
    host_lib.surge_host_normals(seed, SAMPLES, SAMPLES.size, 21, z)
    ref = nb.normals(seed, SAMPLES, 21)
    assert np.all(np.abs(z - ref) <= NORMAL_ULPS * EPS * np.maximum(np.abs(ref), 1.0))
    x = out.ravel().copy()
    s, c = np.empty(x.size), np.empty(x.size)
    host_lib.surge_host_sincos_turn(x, x.size, s, c)
    ps, pc = philox.sincos_turn(x)
    assert np.array_equal(s, ps) and np.array_equal(c, pc)


def test_cuda_source_sign_update_equals_reference(host_lib):
    """CUDA per-element math (noise σz + Wζ, sign(μ + fl(n·s_b)), sign(0) = 0) equals numpy's."""
    rng = np.random.default_rng(0)
    d, k, nbs = 40, 3, 6
    mu = rng.normal(size=d)
    mu[:3] = 0.0
    sigma, z = rng.uniform(0.5, 2, d), rng.normal(size=d)
    W, zeta = rng.normal(size=(d, k)), rng.normal(size=k)
    sb = 1.0 / np.sqrt(np.array([1.0, 2.0, 10.0, 1e3, 1e6, 1e12]))
    z[3] = 0.0  # n = 0 with k = 0 below: v = sign(μ)
    noise, v = np.empty(d), np.empty((d, nbs))
    host_lib.surge_host_sign_update(mu, sigma, z, W, zeta, d, k, sb, nbs, noise, v)
    want = sigma * z
    for t in range(k):  # left to right, as the numba backend
        want = want + W[:, t] * zeta[t]
    assert np.array_equal(noise, want)
    assert np.array_equal(v, np.sign(mu[:, None] + want[:, None] * sb[None, :]))
    # exact ties: μ = −n·s_b gives G = 0, sign 0
    mu2, z2 = np.array([-0.5, 0.0, 0.25]), np.array([0.5, 0.0, -0.25])
    noise2, v2 = np.empty(3), np.empty((3, 1))
    host_lib.surge_host_sign_update(
        mu2, np.ones(3), z2, np.zeros(1), np.zeros(1), 3, 0, np.ones(1), 1, noise2, v2
    )
    assert np.array_equal(v2[:, 0], [0.0, 0.0, 0.0])


def _signs_from_thresholds(t, t2, sn, sm, nb):
    b = np.arange(nb)[None, :]
    return np.where(b < t[:, None], sn[:, None], np.where(b < t2[:, None], 0.0, sm[:, None]))


def test_cuda_sign_thresholds_equal_direct_signs(host_lib):
    """surge_sign_thresholds (what the sign kernel uses) reproduces sign(μ + fl(n·s_b)) for
    every B exactly — random values, μ = 0, n = 0, equal signs and exact ties."""
    rng = np.random.default_rng(5)
    d = 4000
    mu = rng.normal(size=d) * rng.choice([1e-3, 1.0, 30.0], d)
    noise = rng.normal(size=d) * rng.choice([0.1, 1.0, 10.0], d)
    mu[:5] = 0.0
    noise[5:10] = 0.0
    B = np.sort(np.concatenate([np.geomspace(1.0, 1e6, 29), [4.0]]))  # ascending
    sb = 1.0 / np.sqrt(B)  # descending
    mu[10:20] = -(noise[10:20] * sb[7])  # exact ties at b = 7
    t = np.empty((d, 2), np.int32)
    host_lib.surge_host_sign_thresholds(mu, noise, d, sb, sb.size, t)
    got = _signs_from_thresholds(t[:, 0], t[:, 1], np.sign(noise), np.sign(mu), sb.size)
    want = np.sign(mu[:, None] + noise[:, None] * sb[None, :])
    assert np.array_equal(got, want)
    assert np.any(want[10:20, 7] == 0.0)  # ties did occur
