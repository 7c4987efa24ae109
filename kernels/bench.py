"""Benchmark of :func:`kernels.update_moments`: a declared sweep, correctness first, then timings.

Measures (one row per case × backend; ``python -m kernels bench`` writes them):

- ``seconds``: median wall time of ``repeats`` calls after one warm-up call (the warm-up pays
  numba's JIT / the CUDA compile); on the GPU the device time from ``cupyx.profiler.benchmark``.
- ``updates_per_s`` = n_samples · d · n_batch / seconds: sample·coordinate·batch-size updates.
- ``cpu_seconds``: median process CPU time of a call (all threads; on a shared machine the
  wall time depends on the other load, recorded as ``load_avg`` in the summary).
- ``speedup_vs_reference`` and ``speedup_vs_torch``: per-sample time ratios against the numpy
  reference and a straightforward torch implementation (:func:`torch_moments`: ``randn`` +
  sign + matmul, chunked) in the same run. Both are slow at large sizes, so they are timed on
  ``ref_samples`` / ``torch_samples`` samples and scaled per sample (cost is linear in the
  number of samples); the row records the samples actually timed.
- ``peak_rss_delta_bytes``: the rise of the process's peak resident set during the call
  (Linux: ``/proc/self/clear_refs`` resets VmHWM), beside ``samples_x_d_bytes`` = 8·n·d, the
  size a d × samples float64 array would have: flat in n for numba and cuda.
- On a GPU, ``fraction_of_peak``: the kernels are bound by float64 FMA throughput, so
  fraction = useful FP64 flops / seconds / peak, with useful flops 2·n·d·nB·(r+1) for sign (one
  FMA per sample, coordinate, batch size and column of [U | μ]) and 2·n·d·(r+3) for sgd, and
  peak = 2 · SMs · FP64 FMA units per SM (64 on sm_90, 32 on sm_60/70/80, else 2) · clock.
  ``normals_per_s`` = n·(d + k)/seconds is the Philox + Box–Muller rate achieved.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kernels import _backend
from kernels.moments import update_moments
from kernels.problem import QuadraticProblem, centring


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark point."""

    d: int  # coordinates
    rank: int  # r, columns of U
    n_batch: int  # batch sizes per call (geometric 1 .. 4096)
    n_samples: int  # Monte Carlo samples timed for numba / cuda
    update: str = "sign"
    noise_rank: int = 0  # k, columns of W


#: sweeps: ``default`` fits 2 CPU cores in about a minute; ``issue`` is the issue's target size
#: (d = 10⁴, r = 8, 16 batch sizes, 10⁴ samples); ``smoke`` is for tests.
PRESETS: dict[str, list[Case]] = {
    "smoke": [Case(64, 2, 4, 256), Case(64, 2, 4, 1024), Case(37, 1, 3, 256, "sgd", 2)],
    "default": [
        Case(1_000, 0, 16, 4_000),
        Case(1_000, 8, 16, 4_000),
        Case(10_000, 8, 16, 1_000),
        Case(10_000, 8, 16, 4_000),  # 4× the samples: memory must not grow
        Case(10_000, 8, 16, 1_000, "sgd"),
        Case(10_000, 8, 16, 1_000, "sign", 4),
    ],
    "issue": [Case(10_000, 8, 16, 10_000), Case(10_000, 8, 16, 10_000, "sgd")],
}
#: the GPU gets more samples: same cases, n_samples × this factor
GPU_SAMPLE_FACTOR = 100


def make_problem(case: Case, seed: int = 0) -> QuadraticProblem:
    """A reproducible problem of the case's shape (μ/σ spread so signs flip at every B)."""
    rng = np.random.default_rng(seed)
    d = case.d
    sigma = rng.uniform(0.5, 2.0, d)
    mu = rng.normal(size=d) * sigma * 0.05
    h = rng.uniform(0.5, 2.0, d)
    U = rng.normal(size=(d, case.rank)) / np.sqrt(d) if case.rank else None
    W = rng.normal(size=(d, case.noise_rank)) * 0.3 if case.noise_rank else None
    return QuadraticProblem(mu, sigma, h, U=U, W=W)


def batch_grid(n_batch: int) -> np.ndarray:
    """n_batch batch sizes, geometric from 1 to 4096."""
    return np.geomspace(1.0, 4096.0, n_batch)


def torch_moments(
    problem: QuadraticProblem,
    batch_sizes: np.ndarray,
    n_samples: int,
    *,
    update: str = "sign",
    seed: int = 0,
    chunk_elements: int = 1 << 22,
    device: str = "cpu",
) -> tuple:
    """The straightforward torch version (torch.randn, sign, matmul; chunked over samples).

    Returns (m1, m2) per batch size, float64 numpy arrays; a different random stream from the
    kernels (torch's generator), so it agrees with them only statistically. Used as a speed
    baseline, on the CPU or (``device="cuda"``) on the GPU.
    """
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    t = {
        k: torch.from_numpy(np.array(getattr(problem, k))).to(device)  # writable copy
        for k in ("mu", "sigma", "h", "U", "W")
    }
    sb = torch.from_numpy(1.0 / np.sqrt(batch_sizes)).to(device)
    d, k, nb = problem.d, problem.noise_rank, batch_sizes.size
    chunk = max(1, chunk_elements // (nb * d))
    s1 = torch.zeros(nb, dtype=torch.float64, device=device)
    s2 = torch.zeros(nb, dtype=torch.float64, device=device)
    sum_h = t["h"].sum()
    f64 = dict(generator=gen, dtype=torch.float64, device=device)
    for start in range(0, n_samples, chunk):
        c = min(chunk, n_samples - start)
        n = t["sigma"] * torch.randn(c, d, **f64)
        if k:
            n = n + torch.randn(c, k, **f64) @ t["W"].T
        g = t["mu"] + n[:, None, :] * sb[None, :, None]
        if update == "sign":
            v = torch.sign(g)
            x2 = sum_h + ((v @ t["U"]) ** 2).sum(-1)
        else:
            v = g
            x2 = (v * v) @ t["h"] + ((v @ t["U"]) ** 2).sum(-1)
        s1 += (v @ t["mu"]).sum(0)
        s2 += x2.sum(0)
    return (s1 / n_samples).cpu().numpy(), (s2 / n_samples).cpu().numpy()


def current_rss() -> int | None:
    """The process's resident set now, in bytes (Linux ``/proc/self/status``), or None."""
    try:
        return _status_kib("VmRSS") * 1024
    except (OSError, ValueError):
        return None


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(field)


def _peak_rss_delta(before: int | None) -> int | None:
    if before is None:
        return None
    try:
        return max(0, _status_kib("VmHWM") * 1024 - before)
    except (OSError, ValueError):
        return None


def _time_cpu(
    fn: Callable[[], Any],
    repeats: int,
    reset_peak_rss: Callable[[], int | None] | None = None,
) -> tuple[float, list[float], float, int | None]:
    """(median wall s, all wall s, median process CPU s, peak-RSS rise) over ``repeats`` calls.

    ``reset_peak_rss`` resets the process's peak-RSS mark and returns the RSS now (the app
    layer passes one; resetting writes ``/proc/self/clear_refs``); without it the rise is None.
    """
    fn()  # warm-up: JIT compile, caches
    times, cpu = [], []
    before = reset_peak_rss() if reset_peak_rss is not None else None
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), times, statistics.median(cpu), _peak_rss_delta(before)


def _time_gpu(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    from cupyx.profiler import benchmark

    res = benchmark(fn, n_repeat=repeats, n_warmup=1)
    gpu = [float(x) for x in np.asarray(res.gpu_times).ravel()]
    return statistics.median(gpu), gpu


def fp64_peak_flops(info: dict) -> float:
    """2 · SMs · FP64 FMA units per SM · clock (Hz): the device's float64 FMA peak."""
    units = {9: 64, 8: 32, 7: 32, 6: 32}.get(info["compute_capability"][0], 2)
    if info["compute_capability"] in ((8, 6), (8, 7), (8, 9), (6, 1), (6, 2)):
        units = 2  # consumer parts: 1/64-rate FP64
    return 2.0 * info["sm_count"] * units * info["clock_khz"] * 1e3


def useful_flops(case: Case, n_samples: int) -> float:
    """The FMAs the fused kernel must do, × 2: sign 2·n·d·nB·(r+1), sgd 2·n·d·(r+3)."""
    per = case.n_batch * (case.rank + 1) if case.update == "sign" else case.rank + 3
    return 2.0 * n_samples * case.d * per


def check_correctness(backends: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """Each backend against the reference on small cases: max |Δ| relative to the scale.

    The case has d not a multiple of 4, r > 0 and a correlated-noise factor, so every code path
    (partial Philox block, ζ sharing a block with coordinates, projection) is exercised.
    """
    rows = []
    for update in ("sign", "sgd"):
        case = Case(37, 3, 5, 300, update, 2)
        p = make_problem(case, seed)
        B = batch_grid(case.n_batch)
        ref = update_moments(p, B, case.n_samples, update=update, seed=seed, backend="reference")
        for name in backends:
            m = update_moments(p, B, case.n_samples, update=update, seed=seed, backend=name)
            err = max(
                float(np.max(np.abs(m.m1 - ref.m1) / np.maximum(np.abs(ref.m1), 1.0))),
                float(np.max(np.abs(m.m2 - ref.m2) / np.maximum(np.abs(ref.m2), 1.0))),
            )
            # 1e-9 relative: rounding gives ~1e-14; one flipped sign gives ≥ 1/n ≈ 3e-3
            rows.append(
                {"update": update, "backend": name, "max_rel_diff": err, "ok": bool(err <= 1e-9)}
            )
    return rows


def run_case(
    case: Case,
    backends: list[str],
    *,
    repeats: int,
    ref_samples: int,
    torch_samples: int,
    seed: int = 0,
    reset_peak_rss: Callable[[], int | None] | None = None,
) -> list[dict[str, Any]]:
    """Time one case on every backend plus the torch baseline; rows with the derived ratios.

    ``reset_peak_rss``: see :func:`_time_cpu` (None: ``peak_rss_delta_bytes`` is None).
    """
    p = make_problem(case, seed)
    B = batch_grid(case.n_batch)
    base = {
        "d": case.d,
        "rank": case.rank,
        "noise_rank": case.noise_rank,
        "n_batch": case.n_batch,
        "update": case.update,
    }
    rows: list[dict[str, Any]] = []

    def cpu_row(name: str, n: int, fn: Callable[[], Any]) -> dict[str, Any]:
        med, times, cpu, mem = _time_cpu(fn, repeats, reset_peak_rss)
        return {
            **base,
            "backend": name,
            "n_samples_timed": n,
            "seconds": med,
            "seconds_all": times,
            "cpu_seconds": cpu,
            "per_sample_s": med / n,
            "updates_per_s": n * case.d * case.n_batch / med,
            "normals_per_s": n * (case.d + case.noise_rank) / med,
            "peak_rss_delta_bytes": mem,
            "samples_x_d_bytes": 8 * n * case.d,
        }

    n_ref = min(ref_samples, case.n_samples)
    rows.append(
        cpu_row(
            "reference",
            n_ref,
            lambda: update_moments(p, B, n_ref, update=case.update, seed=seed, backend="reference"),
        )
    )
    n_t = min(torch_samples, case.n_samples)
    rows.append(
        cpu_row("torch", n_t, lambda: torch_moments(p, B, n_t, update=case.update, seed=seed))
    )
    for name in backends:
        if name == "cuda":
            from kernels import cuda_backend

            n = case.n_samples * GPU_SAMPLE_FACTOR
            k1, k2 = centring(p, B, case.update)
            med, times = _time_gpu(
                functools.partial(cuda_backend.shifted_sums, p, B, n, case.update, seed, k1, k2),
                repeats,
            )
            info = cuda_backend.device_info()
            import cupy

            pool = cupy.get_default_memory_pool()
            row = {
                **base,
                "backend": "cuda",
                "n_samples_timed": n,
                "seconds": med,
                "seconds_all": times,
                "per_sample_s": med / n,
                "updates_per_s": n * case.d * case.n_batch / med,
                "normals_per_s": n * (case.d + case.noise_rank) / med,
                "gpu_pool_bytes": int(pool.total_bytes()),
                "samples_x_d_bytes": 8 * n * case.d,
                "device": info["name"],
                "bound": "FP64 FMA throughput",
                "fraction_of_peak": useful_flops(case, n) / med / fp64_peak_flops(info),
            }
            rows.append(row)
        else:
            rows.append(
                cpu_row(
                    name,
                    case.n_samples,
                    lambda name=name: update_moments(
                        p, B, case.n_samples, update=case.update, seed=seed, backend=name
                    ),
                )
            )
    ref_ps = rows[0]["per_sample_s"]
    torch_ps = rows[1]["per_sample_s"]
    for r in rows:
        r["speedup_vs_reference"] = ref_ps / r["per_sample_s"]
        r["speedup_vs_torch"] = torch_ps / r["per_sample_s"]
        r["scaled_per_sample"] = r["n_samples_timed"] != case.n_samples
    return rows


def backends_here(requested: list[str] | None = None) -> list[str]:
    """The fast backends to time: those requested, else numba and (if usable) cuda."""
    if requested:
        for name in requested:
            _backend.resolve(name)
        return [b for b in requested if b != "reference"]
    out = ["numba"] if _backend.has_numba() else []
    return out + (["cuda"] if _backend.has_cuda() else [])


# ----------------------------------------------------------------------------- the GPU case

#: The issue's GPU benchmark: d = 10⁶ coordinates, r = 16, 32 batch sizes, 10⁴ samples.
GPU_CASE = Case(1_000_000, 16, 32, 10_000)
#: Its CPU stand-in for tests and ``--preset tiny`` (seconds on two cores).
TINY_CASE = Case(2_000, 4, 8, 2_000)


def _time_torch_cuda(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median and all device times (s) of ``repeats`` calls after one warm-up, by CUDA events."""
    import torch

    fn()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times), times


def max_rel_diff(a: Any, b: Any) -> float:
    """``max |a − b| / max(|b|, 1)`` over both moments of two :class:`kernels.Moments`."""
    return max(
        float(np.max(np.abs(a.m1 - b.m1) / np.maximum(np.abs(b.m1), 1.0))),
        float(np.max(np.abs(a.m2 - b.m2) / np.maximum(np.abs(b.m2), 1.0))),
    )


def gpu_case(
    case: Case = GPU_CASE,
    *,
    repeats: int = 3,
    torch_samples: int = 256,
    numba_samples: int = 8,
    seed: int = 0,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The cuda kernel at one shape against torch on the same GPU and numba: correctness, then
    CUDA-event timings.

    Correctness first: cuda and numba draw the same Philox stream, so on ``numba_samples``
    samples of this very shape their moments agree to rounding (``max_rel_diff`` ≤ 1e-9; one
    flipped sign would give ≥ 1e-7 here). Then: cuda on ``case.n_samples`` samples
    (``cupyx.profiler.benchmark``: CUDA events), :func:`torch_moments` on the GPU on
    ``torch_samples`` samples (CUDA events) and numba on ``numba_samples`` (wall clock), each
    scaled per sample (cost is linear in the samples). ``stop()`` true: the stages not yet
    started are left out (recorded in ``skipped``).

    Returns:
      ``{"case", "device", "correctness", "rows", "skipped"}``; rows carry ``per_sample_s``,
      ``speedup_vs_torch``, and for cuda ``fraction_of_peak`` (FP64 FMA bound,
      :func:`fp64_peak_flops`) and ``achieved_flops``.
    """
    from kernels import cuda_backend

    stop = stop or (lambda: False)
    p = make_problem(case, seed)
    B = batch_grid(case.n_batch)
    info = cuda_backend.device_info()
    base = {
        "d": case.d,
        "rank": case.rank,
        "noise_rank": case.noise_rank,
        "n_batch": case.n_batch,
        "update": case.update,
    }
    out: dict[str, Any] = {
        "case": dataclasses.asdict(case),
        "device": {k: v for k, v in info.items()},
        "fp64_peak_flops": fp64_peak_flops(info),
        "correctness": [],
        "rows": [],
        "skipped": [],
    }
    n_chk = max(2, numba_samples)
    t0 = time.perf_counter()
    a = update_moments(p, B, n_chk, update=case.update, seed=seed, backend="numba")
    numba_s = time.perf_counter() - t0  # includes the JIT on a fresh machine
    c = update_moments(p, B, n_chk, update=case.update, seed=seed, backend="cuda")
    err = max_rel_diff(c, a)
    out["correctness"].append(
        {
            "check": f"cuda vs numba at this shape, {n_chk} samples, same Philox stream",
            "max_rel_diff": err,
            "ok": bool(err <= 1e-9),
        }
    )
    k1, k2 = centring(p, B, case.update)
    n = case.n_samples
    flops = useful_flops(case, n)
    stages = ["cuda", "torch", "numba"]
    for stage in stages:
        if stop():
            out["skipped"] = stages[stages.index(stage) :]
            break
        if stage == "cuda":
            fn = functools.partial(cuda_backend.shifted_sums, p, B, n, case.update, seed, k1, k2)
            med, times = _time_gpu(fn, repeats)
            row = {
                "backend": "cuda",
                "timer": "CUDA events (cupyx.profiler.benchmark)",
                "n_samples_timed": n,
                "seconds": med,
                "seconds_all": times,
                "achieved_flops": flops / med,
                "fraction_of_peak": flops / med / out["fp64_peak_flops"],
                "bound": "FP64 FMA throughput",
            }
        elif stage == "torch":
            nt = min(torch_samples, n)
            med, times = _time_torch_cuda(
                lambda nt=nt: torch_moments(
                    p, B, nt, update=case.update, seed=seed, chunk_elements=1 << 26, device="cuda"
                ),
                repeats,
            )
            row = {
                "backend": "torch-cuda",
                "timer": "CUDA events (torch.cuda.Event)",
                "n_samples_timed": nt,
                "seconds": med,
                "seconds_all": times,
            }
        else:
            t0 = time.perf_counter()
            update_moments(p, B, numba_samples, update=case.update, seed=seed, backend="numba")
            wall = time.perf_counter() - t0
            row = {
                "backend": "numba",
                "timer": "wall clock (after a warm-up call)",
                "n_samples_timed": numba_samples,
                "seconds": wall,
                "seconds_all": [wall],
                "first_call_s": numba_s,
            }
        row.update(base)
        row["per_sample_s"] = row["seconds"] / row["n_samples_timed"]
        row["updates_per_s"] = case.d * case.n_batch / row["per_sample_s"]
        out["rows"].append(row)
    by = {r["backend"]: r["per_sample_s"] for r in out["rows"]}
    for r in out["rows"]:
        if "torch-cuda" in by:
            r["speedup_vs_torch"] = by["torch-cuda"] / r["per_sample_s"]
        if "numba" in by:
            r["speedup_vs_numba"] = by["numba"] / r["per_sample_s"]
    return out
