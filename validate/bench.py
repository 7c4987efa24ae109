"""Batched engine vs one model at a time: same workload, batch size and grid, same process.

:func:`bench` runs :func:`validate.engine.train_single` (a plain ``torch.optim.Adam`` loop per
model) and :func:`validate.engine.train_group` (every model in one vmapped program) on the same
(lr, seed) grid, after a short warm-up of each (first-call costs: allocator, kernels, vmap
tracing). With ``repeats`` > 1 the two are run alternately and the fastest wall time of each is
kept (on a shared machine the minimum is the least disturbed measurement). It reports wall
time, model-steps per second, the speed-up ratio, and whether both found the same
steps-to-target S (they should: same init, same batches, same Adam arithmetic).
``surgelab validate bench`` (the app layer) writes the result into a run folder.

On a GPU the times are also taken with CUDA events (``*_cuda_s``), and the summary has the
training FLOP/s reached: the FLOPs of one model's forward + backward per example (counted by
``torch.utils.flop_counter`` on the real model) × models × batch size × steps, over the
batched time (evaluations are left out: a lower bound), against the device's float32 peak
(:func:`fp32_peak_flops`, no tensor cores; None when the clock is not known).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from validate.engine import train_group, train_single
from validate.workload import get_workload


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def train_flops_per_example(workload: Any, data: Any, batch_size: int = 8) -> float:
    """FLOPs of one model's forward + backward per training example, counted by torch.

    Examples:
      >>> from validate.workload import get_workload
      >>> w = get_workload("synthetic-mlp")
      >>> f = train_flops_per_example(w, w.load_data(None, "cpu"))
      >>> # 3 matmuls of 2·in·out each: forward, weight gradient, and (not for the first
      >>> # layer, whose input needs none) input gradient
      >>> f == 2 * 2 * (16 * 32) + 3 * 2 * (32 * 32 + 32 * 10)
      True
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = workload.make_model()
    x = data.x_train[:batch_size].cpu()
    y = data.y_train[:batch_size].cpu()
    with FlopCounterMode(display=False) as counter:
        workload.loss(model(x), y).backward()
    return counter.get_total_flops() / batch_size


#: float32 lanes (FMA units) per SM by compute capability major.minor (no tensor cores)
FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128}


def fp32_peak_flops(device: str) -> float | None:
    """2 · SMs · float32 lanes per SM · clock: the GPU's float32 peak (None if unknown).

    Lanes: 64 per SM up to sm_80, 128 from sm_86 on (sm_90 H100/H200: 128).
    """
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    try:
        from kernels.cuda_backend import device_info

        info = device_info(torch.device(device).index)
    except Exception:  # no cupy: the clock is not known
        return None
    cc = tuple(info["compute_capability"])
    lanes = FP32_LANES.get(cc, 128 if cc >= (8, 6) else 64)
    return 2.0 * info["sm_count"] * lanes * info["clock_khz"] * 1e3


def _model_steps(rows: list[dict[str, Any]], n_targets: int) -> int:
    """Optimiser steps of the main runs (one ``final_step`` per model; rows are per target)."""
    return sum(int(r["final_step"]) for r in rows[::n_targets])


def bench(
    workload_name: str,
    *,
    size: str = "smoke",
    batch_size: int = 32,
    lrs: Sequence[float] = (1e-3, 2e-3, 4e-3, 8e-3),
    seeds: Sequence[int] = (0, 1),
    betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    targets: Sequence[float] | None = None,
    max_steps: int = 200,
    eval_every: int | None = None,
    device: str = "cpu",
    data_dir: Any = None,
    download: bool = False,
    model_chunk: int | None = None,
    torch_threads: int | None = None,
    repeats: int = 1,
    on_progress: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Time both engines on one grid; return ``(summary, rows)`` (rows carry ``engine``).

    summary: ``single_s``, ``batched_s`` (fastest wall seconds over ``repeats``), ``ratio`` =
    single_s / batched_s (> 1: batching is faster), ``*_model_steps_per_s``, ``n_models``,
    ``same_steps`` (every (lr, seed, target) has equal S in both engines),
    ``max_abs_loss_diff`` at the targets, all wall times, and process CPU seconds
    (``*_cpu_s``, ``cpu_ratio``; on a shared CPU machine less noisy than wall time).
    ``torch_threads`` sets torch's intra-op threads for the measurement (restored after).
    ``on_progress(n)`` is called with the optimiser steps each engine takes.

    Examples:
      >>> s, rows = bench("synthetic-mlp", lrs=(1e-3,), seeds=(0,), max_steps=10)
      >>> (s["n_models"], s["same_steps"], len(rows) == 2 * 3)
      (1, True, True)
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size=}")
    if not lrs or not seeds:
        raise ValueError(f"lrs and seeds must be non-empty; got {lrs=} {seeds=}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats=}")
    before = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    try:
        w = get_workload(workload_name, size=size, data_dir=data_dir, download=download)
        data = w.load_data(data_dir, device)
        kw: dict[str, Any] = dict(
            betas=betas,
            adam_eps=adam_eps,
            targets=targets,
            max_steps=max_steps,
            eval_every=eval_every,
            device=device,
        )
        warm = dict(kw, max_steps=min(max_steps, eval_every or w.eval_every))
        train_single(w, data, batch_size, lrs[:1], seeds[:1], **warm)
        train_group(w, data, batch_size, lrs, seeds, model_chunk=model_chunk, **warm)
        walls: dict[str, list[float]] = {"single": [], "batched": []}
        cpus: dict[str, list[float]] = {"single": [], "batched": []}
        events: dict[str, list[float]] = {"single": [], "batched": []}
        cuda = device.startswith("cuda")
        for _ in range(repeats):
            for name in ("single", "batched"):
                _sync(device)
                if cuda:
                    start, end = (
                        torch.cuda.Event(enable_timing=True),
                        torch.cuda.Event(enable_timing=True),
                    )
                    start.record()
                t0, c0 = time.perf_counter(), time.process_time()
                if name == "single":
                    single = train_single(
                        w, data, batch_size, lrs, seeds, on_progress=on_progress, **kw
                    )
                else:
                    batched = train_group(
                        w,
                        data,
                        batch_size,
                        lrs,
                        seeds,
                        model_chunk=model_chunk,
                        on_progress=on_progress,
                        **kw,
                    )
                if cuda:
                    end.record()
                _sync(device)
                walls[name].append(time.perf_counter() - t0)
                cpus[name].append(time.process_time() - c0)
                if cuda:
                    events[name].append(start.elapsed_time(end) / 1e3)
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)

    n_targets = len(w.targets if targets is None else targets)
    ss, bs = min(walls["single"]), min(walls["batched"])
    ms_single, ms_batched = _model_steps(single, n_targets), _model_steps(batched, n_targets)
    diffs = [
        abs(a["loss_at_target"] - b["loss_at_target"])
        for a, b in zip(single, batched)
        if a["reached"] and b["reached"]
    ]
    summary = {
        "workload": workload_name,
        "size": size,
        "device": device,
        "batch_size": batch_size,
        "n_models": len(lrs) * len(seeds),
        "lrs": list(lrs),
        "seeds": list(seeds),
        "max_steps": max_steps,
        "torch_threads": threads,
        "repeats": repeats,
        "model_chunk": model_chunk,
        "single_s": ss,
        "batched_s": bs,
        "ratio": ss / bs if bs > 0 else float("inf"),
        "single_walls_s": walls["single"],
        "batched_walls_s": walls["batched"],
        # process CPU seconds: on a shared machine less disturbed by other processes than wall
        "single_cpu_s": min(cpus["single"]),
        "batched_cpu_s": min(cpus["batched"]),
        "cpu_ratio": min(cpus["single"]) / max(min(cpus["batched"]), 1e-12),
        "single_model_steps": ms_single,
        "batched_model_steps": ms_batched,
        "single_model_steps_per_s": ms_single / ss if ss > 0 else float("inf"),
        "batched_model_steps_per_s": ms_batched / bs if bs > 0 else float("inf"),
        "same_steps": [a["steps"] for a in single] == [b["steps"] for b in batched],
        "max_abs_loss_diff": max(diffs) if diffs else None,
        "n_reached": sum(bool(r["reached"]) for r in batched),
    }
    if cuda:
        summary["single_cuda_s"] = min(events["single"])
        summary["batched_cuda_s"] = min(events["batched"])
    fpe = train_flops_per_example(w, data)
    summary["train_flops_per_example"] = fpe
    summary["batched_model_examples_per_s"] = summary["batched_model_steps_per_s"] * batch_size
    summary["batched_train_flops_per_s"] = fpe * summary["batched_model_examples_per_s"]
    peak = fp32_peak_flops(device)
    summary["fp32_peak_flops"] = peak
    summary["fraction_of_fp32_peak"] = summary["batched_train_flops_per_s"] / peak if peak else None
    return summary, single + batched
