"""``surgelab kernels info`` / ``surgelab kernels bench``: the Monte Carlo kernels' backends.

- ``info``: the backends usable here and why the others are not (writes nothing).
- ``bench``: each fast backend against the numpy reference first, then the timing sweep of
  :mod:`kernels.bench`; writes ``bench.json``, ``bench.csv`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from surgelab.cli import Command, Stage
from surgelab.config import Config, ConfigError, opt
from surgelab.limits import check_memory, check_work
from surgelab.rundir import RunDir

#: the most sample·coordinate·batch-size·column updates one timed case may ask of the CPU
#: backend (numba does ~10⁹ a second on two cores: ~15 minutes per call)
MAX_UPDATES_PER_CASE = 1e12


@dataclass(frozen=True)
class InfoConfig(Config):
    """No options: lists what this machine can run."""


@dataclass(frozen=True)
class BenchConfig(Config):
    preset: Literal["default", "issue", "smoke"] = opt(
        "default", "sweep: default (~1 min on 2 cores), issue (the issue's size), smoke (tests)"
    )
    backend: tuple[str, ...] = opt(
        (), "backends to time (default: numba, and cuda if usable)", choices=("numba", "cuda")
    )
    repeats: int = opt(3, "timed calls per point (the median is reported)", lo=1, hi=1000)
    ref_samples: int = opt(32, "samples the numpy reference is timed on (scaled per sample)", lo=1)
    torch_samples: int = opt(
        256, "samples the torch baseline is timed on (scaled per sample)", lo=1
    )
    d: int | None = opt(None, "override every case's d (coordinates)", lo=1)
    rank: int | None = opt(None, "override every case's rank r (columns of U)", lo=0)
    n_batch: int | None = opt(None, "override every case's number of batch sizes", lo=1)
    samples: int | None = opt(None, "override every case's Monte Carlo samples", lo=2, hi=2**62)
    seed: int = opt(0, "Philox seed and problem seed", lo=0, hi=2**63)

    def check(self) -> None:
        from kernels import _backend

        for name in self.backend:
            ok, why = _backend.numba_status() if name == "numba" else _backend.cuda_status()
            if not ok:
                raise ConfigError("backend", f"{name} is not usable here: {why}")
        for case in self.cases():
            _bound_case(case, self)

    def cases(self) -> list:
        """The preset's cases with the overrides applied."""
        from kernels.bench import PRESETS

        return [
            dataclasses.replace(
                c,
                d=self.d or c.d,
                rank=c.rank if self.rank is None else self.rank,
                n_batch=self.n_batch or c.n_batch,
                n_samples=self.samples or c.n_samples,
            )
            for c in PRESETS[self.preset]
        ]


def _bound_case(case, cfg: BenchConfig) -> None:
    """Refuse a case the machine cannot hold or finish (named by the flag that sets it)."""
    # the problem (d x (r + k + 3)), a reference chunk and the torch chunk: (nB, d) temporaries
    nbytes = 8.0 * case.d * (case.rank + case.noise_rank + 8 * case.n_batch + 8)
    nbytes += 16.0 * min(cfg.ref_samples, case.n_samples) * case.n_batch
    check_memory(nbytes, "d" if cfg.d else ("n_batch" if cfg.n_batch else "rank"), "a case")
    cols = case.rank + 1 if case.update == "sign" else case.rank + 3
    check_work(
        float(case.n_samples) * case.d * case.n_batch * cols,
        MAX_UPDATES_PER_CASE,
        "samples" if cfg.samples else ("d" if cfg.d else "n_batch"),
        f"updates in the d={case.d}, n_batch={case.n_batch} case",
    )


def run_info(cfg: InfoConfig, run: RunDir | None) -> int:
    from kernels import _backend

    for name, (ok, why) in _backend.available().items():
        print(f"{name:<10} {'yes' if ok else 'no ':<4} {why}")
    print(f"auto    -> {_backend.resolve('auto')}")
    return 0


def _reset_peak_rss() -> int | None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); return the current RSS in bytes, or None."""
    from kernels.bench import current_rss

    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return current_rss()


def _row_line(r: dict) -> str:
    extra = f" {r['fraction_of_peak']:.1%} of FP64 peak" if "fraction_of_peak" in r else ""
    return (
        f"d={r['d']:<6} r={r['rank']:<2} k={r['noise_rank']} nB={r['n_batch']:<3} "
        f"{r['update']:<4} {r['backend']:<9} n={r['n_samples_timed']:<8} "
        f"{r['seconds']:.4f}s {r['updates_per_s']:.3e} upd/s "
        f"x{r['speedup_vs_reference']:.1f} vs ref x{r['speedup_vs_torch']:.2f} vs torch{extra}"
    )


def run_bench(cfg: BenchConfig, run: RunDir | None) -> int:
    from kernels import bench
    from surgelab.progress import bar

    assert run is not None
    backends = bench.backends_here(list(cfg.backend) or None)
    cases = cfg.cases()
    device = None
    if "cuda" in backends:
        from kernels import cuda_backend

        device = cuda_backend.device_info()["name"]
    run.write_meta(device=device)
    plan = {
        "preset": cfg.preset,
        "cases": [dataclasses.asdict(c) for c in cases],
        "backends": backends,
        "gpu_sample_factor": bench.GPU_SAMPLE_FACTOR,
    }
    import numba
    import torch

    torch.set_num_threads(numba.get_num_threads())  # the same cores for both CPU contenders
    checks = bench.check_correctness(backends, seed=cfg.seed)
    for c in checks:
        print(
            f"check {c['update']:<4} {c['backend']:<6} max rel diff {c['max_rel_diff']:.2e} "
            f"{'ok' if c['ok'] else 'MISMATCH'}"
        )
    if not all(c["ok"] for c in checks):
        run.write_json("bench.json", {"config": plan, "correctness": checks, "rows": []})
        print(f"backends disagree with the reference; no timings. See {run.path}")
        return 1
    rows: list[dict] = []
    with bar(len(cases), "cases") as b:
        for case in cases:
            got = bench.run_case(
                case,
                backends,
                repeats=cfg.repeats,
                ref_samples=cfg.ref_samples,
                torch_samples=cfg.torch_samples,
                seed=cfg.seed,
                reset_peak_rss=_reset_peak_rss,
            )
            for r in got:
                print(_row_line(r))
            rows += got
            b.update(1)
    summary = {
        "threads": numba.get_num_threads(),
        "device": device or "cpu",
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "speedup_vs_reference": {
            f"{r['backend']} d={r['d']} r={r['rank']} nB={r['n_batch']} {r['update']}": r[
                "speedup_vs_reference"
            ]
            for r in rows
            if r["backend"] != "reference"
        },
        "note": "reference and torch are timed on fewer samples and scaled per sample "
        "(see n_samples_timed); cuda runs gpu_sample_factor x the samples",
    }
    run.write_json(
        "bench.json", {"config": plan, "correctness": checks, "rows": rows, "summary": summary}
    )
    run.write_table("bench.csv", rows)
    run.finish(summary)
    print(f"wrote {run.path}")
    return 0


STAGE = Stage(
    "kernels",
    "Monte Carlo kernels: backends usable here, correctness and throughput (info, bench)",
    {
        "info": Command(
            "info",
            "list the usable backends and why the others are not",
            InfoConfig,
            run_info,
            writes=False,
        ),
        "bench": Command(
            "bench",
            "correctness against the reference, then the timing sweep",
            BenchConfig,
            run_bench,
        ),
    },
)
