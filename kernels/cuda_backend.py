"""The cuda backend: kernels/moments.cu loaded with cupy.RawModule, one compile per shape, cached.

Imported only when ``backend="cuda"`` (or ``auto`` on a GPU) runs; :mod:`kernels._backend` has
already checked that cupy sees a device. The problem's shape (d, r, k, nB) and the launch
geometry (:mod:`kernels.launch`) are compile-time constants (``-D`` options), so each new shape
compiles once (NVRTC, then cupy's on-disk cache) and is kept in :func:`module`'s cache.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels import launch
from kernels import philox as _spec
from kernels.problem import QuadraticProblem

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "moments.cu"
#: --fmad=false: the draw and the sign test must round exactly like numpy/numba (philox.cuh)
BASE_OPTIONS = ("--std=c++17", "--fmad=false")


def compile_options(
    d: int, rank: int, noise_rank: int, n_batch: int, geom: launch.Geometry
) -> tuple[str, ...]:
    """NVRTC / nvcc options for one shape: the include path and every ``-D`` constant."""
    defines = {
        "SURGE_D": d,
        "SURGE_R": rank,
        "SURGE_K": noise_rank,
        "SURGE_NB": n_batch,
        **geom.defines(),
    }
    return (*BASE_OPTIONS, f"-I{HERE}", *(f"-D{k}={v}" for k, v in defines.items()))


HEADER = HERE / "philox.cuh"
_INCLUDE = '#include "philox.cuh"'


def source() -> str:
    """moments.cu with philox.cuh pasted in place of its ``#include``: what NVRTC compiles.

    cupy's on-disk kernel cache is keyed by the source *string* and the options, not by the
    files an ``#include`` pulls in; with the header left as an include, an edited philox.cuh
    would keep loading the stale cubin compiled from the old one. Inlined, any change to
    either file changes the key.
    """
    text = SOURCE.read_text()
    if text.count(_INCLUDE) != 1:
        raise RuntimeError(f"{SOURCE.name} must contain exactly one line {_INCLUDE}")
    return text.replace(_INCLUDE, HEADER.read_text())


@functools.lru_cache(maxsize=64)
def module(options: tuple[str, ...]) -> Any:
    """The compiled ``cupy.RawModule`` for these options (compiled once per process)."""
    import cupy

    return cupy.RawModule(code=source(), options=options)


def supports(problem: QuadraticProblem, update: str) -> bool:
    """Whether the cuda kernels can take this problem at all (one batch size per launch).

    Large ranks r (sign: the (r + 1)-column pair sums; sgd: r + 3 shared partials) or noise
    ranks k need more static shared memory per block than a launch has
    (:func:`kernels.launch.geometry`); ``backend="auto"`` then runs numba instead.
    """
    try:
        launch.geometry(problem.d, 1, 1, problem.rank, update=update, noise_rank=problem.noise_rank)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8)
def device_info(device: int | None = None) -> dict[str, Any]:
    """Name, SM count, clock (kHz) and compute capability of the current (or given) device."""
    import cupy

    dev = cupy.cuda.Device() if device is None else cupy.cuda.Device(device)
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(dev.id)
    name = props["name"]
    clock = props.get("clockRate") or rt.deviceGetAttribute(13, dev.id)  # cudaDevAttrClockRate
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "sm_count": int(props["multiProcessorCount"]),
        "clock_khz": int(clock),
        "max_threads_per_sm": int(props["maxThreadsPerMultiProcessor"]),
        "compute_capability": (int(props["major"]), int(props["minor"])),
        "total_memory": int(props["totalGlobalMem"]),
    }


class CupyLauncher:
    """Runs moments.cu on the current CUDA device through cupy (the production launcher).

    The launcher interface — ``sm_count``, ``max_threads_per_sm``, ``to_device(ndarray)``,
    ``zeros(shape)``, ``launch(name, options, geometry, args)``, ``to_host(array)`` — is all
    :func:`shifted_sums` needs; the tests drive the same glue with a host emulation of the
    kernels (tests/test_kernels_emulated.py).
    """

    def __init__(self) -> None:
        info = device_info()
        self.sm_count = info["sm_count"]
        self.max_threads_per_sm = info["max_threads_per_sm"]

    @staticmethod
    def to_device(a: NDArray[np.float64]) -> Any:
        import cupy

        return cupy.asarray(a)

    @staticmethod
    def zeros(shape: tuple[int, ...]) -> Any:
        import cupy

        return cupy.zeros(shape, dtype=cupy.float64)

    @staticmethod
    def launch(name: str, options: tuple[str, ...], geom: launch.Geometry, args: tuple) -> None:
        module(options).get_function(name)((geom.grid,), (geom.block,), args)

    @staticmethod
    def to_host(a: Any) -> NDArray[np.float64]:
        import cupy

        return cupy.asnumpy(a)


def kernel_name(update: str) -> str:
    """The moments.cu entry point of an update."""
    return "surge_sign_moments" if update == "sign" else "surge_sgd_moments"


def launch_args(
    problem: QuadraticProblem,
    batch_sizes: NDArray[np.float64],
    n_samples: int,
    update: str,
    seed: int,
    k1s: NDArray[np.float64],
    k2s: NDArray[np.float64],
    first_sample: int,
    out: Any,
    to_device: Any,
) -> tuple:
    """Device arrays and scalars in the kernel's parameter order (see moments.cu).

    ``batch_sizes`` must already be sorted ascending for the sign kernel.
    """

    def dev(a):
        a = np.ascontiguousarray(a, dtype=np.float64)
        return to_device(a if a.size else np.zeros(1))  # a 0-size W/U still needs a pointer

    p = problem
    k0, k1 = (np.uint32(w) for w in _spec.split_seed(seed))
    common_tail = (np.uint64(n_samples), np.uint64(first_sample), k0, k1, out)
    sb = dev(1.0 / np.sqrt(batch_sizes))
    if update == "sign":
        return (
            dev(p.mu),
            dev(p.sigma),
            dev(p.U),
            dev(p.W),
            sb,
            dev(k1s),
            dev(k2s),
            np.float64(np.sum(p.h)),
            *common_tail,
        )
    umu = p.U.T @ p.mu
    return (
        dev(p.mu),
        dev(p.sigma),
        dev(p.h),
        dev(p.U),
        dev(p.W),
        sb,
        dev(k1s),
        dev(k2s),
        dev(umu),
        np.float64(p.mu @ p.mu),
        np.float64(np.sum(p.h * p.mu**2)),
        *common_tail,
    )


def batch_groups(
    problem: QuadraticProblem, n_batch: int, n_samples: int, update: str
) -> list[slice]:
    """Consecutive groups of the (sorted) batch sizes, each small enough for one launch.

    A launch takes at most ``block`` batch sizes and 48 KiB of shared memory
    (:func:`kernels.launch.geometry`); larger grids run as several launches over the same
    samples, which changes nothing in the result (the stream is keyed by sample and
    coordinate, not by batch size).
    """
    groups, start = [], 0
    while start < n_batch:
        g = min(n_batch - start, 256)
        while True:
            try:
                launch.geometry(
                    problem.d,
                    n_samples,
                    g,
                    problem.rank,
                    update=update,
                    noise_rank=problem.noise_rank,
                )
                break
            except ValueError:
                if g == 1:
                    raise
                g = max(1, g // 2)
        groups.append(slice(start, start + g))
        start += g
    return groups


def shifted_sums(
    problem: QuadraticProblem,
    batch_sizes: NDArray[np.float64],
    n_samples: int,
    update: str,
    seed: int,
    k1s: NDArray[np.float64],
    k2s: NDArray[np.float64],
    first_sample: int = 0,
    *,
    launcher: Any = None,
) -> NDArray[np.float64]:
    """Σd1, Σd2, Σd1², Σd2², Σd1d2 over all samples (d = x − K): (nB, 5), as the numba backend.

    The batch sizes are sorted ascending (the sign kernel's thresholds need s_b descending)
    and split into launch-sized groups (:func:`batch_groups`); the result is in the caller's
    order. ``launcher`` defaults to :class:`CupyLauncher`.
    """
    run = CupyLauncher() if launcher is None else launcher
    order = np.argsort(batch_sizes, kind="stable")
    bs, k1o, k2o = batch_sizes[order], k1s[order], k2s[order]
    sums = np.empty((batch_sizes.size, 5))
    for g in batch_groups(problem, bs.size, n_samples, update):
        geom = launch.geometry(
            problem.d,
            n_samples,
            bs[g].size,
            problem.rank,
            update=update,
            noise_rank=problem.noise_rank,
            sm_count=run.sm_count,
            max_threads_per_sm=run.max_threads_per_sm,
        )
        opts = compile_options(problem.d, problem.rank, problem.noise_rank, bs[g].size, geom)
        out = run.zeros((geom.grid, bs[g].size, 5))
        args = launch_args(
            problem,
            bs[g],
            n_samples,
            update,
            seed,
            k1o[g],
            k2o[g],
            first_sample,
            out,
            run.to_device,
        )
        run.launch(kernel_name(update), opts, geom, args)
        sums[order[g]] = run.to_host(out).sum(axis=0)
    return sums
