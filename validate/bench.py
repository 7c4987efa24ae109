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
(:func:`fp32_peak_flops`, no tensor cores; None when the clock is not known). Likewise the
activation traffic: the bytes of every module's output per example
(:func:`activation_bytes_per_example`, from forward hooks) × :data:`ACTIVATION_TRAFFIC`
× models × examples per second, against the device's memory bandwidth peak
(:func:`memory_bandwidth_peak`, a table of known GPUs by name; None otherwise).
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


def activation_bytes_per_example(workload: Any, data: Any, batch_size: int = 8) -> float:
    """Bytes of the outputs of the model's leaf modules per example, from forward hooks.

    A lower bound of the activations a training step writes and keeps for the backward:
    functional ops inside a module's ``forward`` (an ``F.relu``, a reshape) are not modules
    and are not counted.

    Examples:
      >>> from validate.workload import get_workload
      >>> w = get_workload("synthetic-mlp")
      >>> # Linear 16→32, 32→32, 32→10 (the activations are functional): float32 outputs
      >>> activation_bytes_per_example(w, w.load_data(None, "cpu")) == 4 * (32 + 32 + 10)
      True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = workload.make_model()
    total = [0]

    def count(_mod: Any, _inp: Any, out: Any) -> None:
        outs = out if isinstance(out, (tuple, list)) else (out,)
        total[0] += sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(data.x_train[:batch_size].cpu())
    finally:
        for h in handles:
            h.remove()
    return total[0] / batch_size


#: Memory traffic of a training step per byte of forward activations: the forward writes
#: each output once, the backward reads it (saved for the gradient) and writes its gradient.
#: An estimate (fusion can save a pass, recomputation add one), stated with the result.
ACTIVATION_TRAFFIC = 3.0

#: Peak memory bandwidth in bytes/s of known GPUs, matched in order against the lower-cased
#: device name (``torch.cuda.get_device_name``): vendors' datasheet HBM/GDDR figures.
MEMORY_BANDWIDTH = (
    (("h200",), 4.8e12),
    (("h100", "pcie"), 2.0e12),
    (("h100", "nvl"), 3.9e12),
    (("h100",), 3.35e12),  # SXM5, HBM3
    (("gh200",), 4.0e12),
    (("a100", "80gb", "pcie"), 1.935e12),
    (("a100", "80gb"), 2.039e12),  # SXM4 80 GB
    (("a100",), 1.555e12),  # 40 GB, SXM4 and PCIe
    (("l40",), 0.864e12),  # L40 and L40S
    (("l4",), 0.3e12),
    (("a10g",), 0.6e12),
    (("a10",), 0.6e12),
    (("v100",), 0.9e12),
    (("t4",), 0.32e12),
    (("rtx 4090",), 1.008e12),
)


def memory_bandwidth_peak(name: str | None) -> float | None:
    """The datasheet memory bandwidth (bytes/s) of a GPU by its name; None if not known.

    Examples:
      >>> memory_bandwidth_peak("NVIDIA H200"), memory_bandwidth_peak("NVIDIA A100-SXM4-80GB")
      (4800000000000.0, 2039000000000.0)
      >>> memory_bandwidth_peak("NVIDIA H100 80GB HBM3"), memory_bandwidth_peak("cpu")
      (3350000000000.0, None)
    """
    low = (name or "").lower()
    for parts, bw in MEMORY_BANDWIDTH:
        if all(p in low for p in parts):
            return bw
    return None


def device_name(device: str) -> str | None:
    """``torch.cuda.get_device_name`` of a CUDA device; None for a CPU or without CUDA."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.device(device))


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
    capture: str = "none",
    on_progress: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Time both engines on one grid; return ``(summary, rows)`` (rows carry ``engine``).

    summary: ``single_s``, ``batched_s`` (fastest wall seconds over ``repeats``), ``ratio`` =
    single_s / batched_s (> 1: batching is faster), ``*_model_steps_per_s``, ``n_models``,
    ``same_steps`` (every (lr, seed, target) has equal S in both engines),
    ``max_abs_loss_diff`` at the targets, all wall times, and process CPU seconds
    (``*_cpu_s``, ``cpu_ratio``; on a shared CPU machine less noisy than wall time).
    ``torch_threads`` sets torch's intra-op threads for the measurement (restored after).
    ``on_progress(n)`` is called with the optimiser steps each engine takes. ``capture``: the
    batched engine's ``capture`` (:func:`validate.engine.train_group`); ``capture_used`` says
    which path ran (``"none"`` after a fall-back, with ``capture_note`` saying why). The
    warm-up run pays a capture's setup (compilation), so the timed runs do not.

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
        train_group(
            w, data, batch_size, lrs, seeds, model_chunk=model_chunk, capture=capture, **warm
        )
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
                        capture=capture,
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
        "capture": capture,
        "capture_used": batched[0]["engine"].partition("+")[2] or "none",
        "capture_note": batched[0].get("capture_note", ""),
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
    ape = activation_bytes_per_example(w, data)
    summary["activation_bytes_per_example"] = ape
    summary["activation_traffic_factor"] = ACTIVATION_TRAFFIC
    summary["batched_activation_bytes_per_s"] = (
        ACTIVATION_TRAFFIC * ape * summary["batched_model_examples_per_s"]
    )
    summary["device_name"] = device_name(device)
    bw = memory_bandwidth_peak(summary["device_name"])
    summary["memory_bandwidth_peak"] = bw
    summary["fraction_of_bandwidth_peak"] = (
        summary["batched_activation_bytes_per_s"] / bw if bw else None
    )
    return summary, single + batched
