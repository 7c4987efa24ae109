"""``python -m kernels {info,bench}`` (also ``surgelab kernels ...``).

- ``info``: the backends usable here and why the others are not.
- ``bench``: correctness against the reference, then the timing sweep of :mod:`kernels.bench`;
  writes ``bench.json``, ``bench.csv`` and ``summary.json`` into a run folder
  (``runs/kernels/bench/<UTC>/`` or ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from kernels import _backend
from theory.rundir import out_dir_arg


def _info() -> int:
    for name, (ok, why) in _backend.available().items():
        print(f"{name:<10} {'yes' if ok else 'no ':<4} {why}")
    print(f"auto    -> {_backend.resolve('auto')}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from kernels import bench
    from theory import rundir

    try:
        backends = bench.backends_here(args.backend)
    except RuntimeError as exc:                      # e.g. --backend cuda without a GPU
        print(f"python -m kernels bench: error: --backend: {exc}", file=sys.stderr)
        return 2
    cases = bench.PRESETS[args.preset]
    if args.d or args.rank is not None or args.n_batch or args.samples:
        cases = [dataclasses.replace(c, d=args.d or c.d,
                                     rank=c.rank if args.rank is None else args.rank,
                                     n_batch=args.n_batch or c.n_batch,
                                     n_samples=args.samples or c.n_samples) for c in cases]
    config = {"preset": args.preset, "cases": [dataclasses.asdict(c) for c in cases],
              "backends": backends, "repeats": args.repeats, "ref_samples": args.ref_samples,
              "torch_samples": args.torch_samples, "seed": args.seed,
              "gpu_sample_factor": bench.GPU_SAMPLE_FACTOR}
    device = None
    if "cuda" in backends:
        from kernels import cuda_backend

        device = cuda_backend.device_info()["name"]
    out = rundir.start_run("kernels", "bench", config, out=args.out, device=device)
    import numba
    import torch

    torch.set_num_threads(numba.get_num_threads())   # the same cores for both CPU contenders
    checks = bench.check_correctness(backends, seed=args.seed)
    for c in checks:
        print(f"check {c['update']:<4} {c['backend']:<6} max rel diff {c['max_rel_diff']:.2e} "
              f"{'ok' if c['ok'] else 'MISMATCH'}")
    if not all(c["ok"] for c in checks):
        rundir.write_json(out / "bench.json", {"config": config, "correctness": checks,
                                               "rows": []})
        print(f"backends disagree with the reference; no timings. See {out}", file=sys.stderr)
        return 1
    rows = []
    for case in cases:
        got = bench.run_case(case, backends, repeats=args.repeats, ref_samples=args.ref_samples,
                             torch_samples=args.torch_samples, seed=args.seed)
        for r in got:
            extra = (f" {r['fraction_of_peak']:.1%} of FP64 peak"
                     if "fraction_of_peak" in r else "")
            print(f"d={r['d']:<6} r={r['rank']:<2} k={r['noise_rank']} nB={r['n_batch']:<3} "
                  f"{r['update']:<4} {r['backend']:<9} n={r['n_samples_timed']:<8} "
                  f"{r['seconds']:.4f}s {r['updates_per_s']:.3e} upd/s "
                  f"x{r['speedup_vs_reference']:.1f} vs ref x{r['speedup_vs_torch']:.2f} vs torch"
                  f"{extra}")
        rows += got
    summary = {"threads": numba.get_num_threads(), "device": device or "cpu",
               "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               "speedup_vs_reference": {f"{r['backend']} d={r['d']} r={r['rank']} "
                                        f"nB={r['n_batch']} {r['update']}":
                                        r["speedup_vs_reference"]
                                        for r in rows if r["backend"] not in ("reference",)},
               "note": "reference and torch are timed on fewer samples and scaled per sample "
                       "(see n_samples_timed); cuda runs gpu_sample_factor x the samples"}
    rundir.write_json(out / "bench.json", {"config": config, "correctness": checks,
                                           "rows": rows, "summary": summary})
    rundir.write_table(out / "bench.csv", rows)
    rundir.write_json(out / "summary.json", summary)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m kernels info`` / ``python -m kernels bench [--preset ...]``."""
    from kernels import bench

    ap = argparse.ArgumentParser(prog="python -m kernels", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="list the usable backends")
    b = sub.add_parser("bench", help="correctness check, then the timing sweep")
    b.add_argument("--preset", choices=sorted(bench.PRESETS), default="default",
                   help="sweep: default (~1 min on 2 cores), issue (the issue's size), smoke")
    b.add_argument("--backend", action="append", choices=["numba", "cuda"],
                   help="backend(s) to time (repeatable); default: numba and cuda if usable")
    b.add_argument("--repeats", type=int, default=3, help="timed calls per point (median)")
    b.add_argument("--ref-samples", type=int, default=32,
                   help="samples the numpy reference is timed on (scaled per sample)")
    b.add_argument("--torch-samples", type=int, default=256,
                   help="samples the torch baseline is timed on (scaled per sample)")
    b.add_argument("--d", type=int, help="override every case's d")
    b.add_argument("--rank", type=int, help="override every case's rank")
    b.add_argument("--n-batch", type=int, help="override every case's number of batch sizes")
    b.add_argument("--samples", type=int, help="override every case's n_samples")
    b.add_argument("--seed", type=int, default=0, help="Philox seed and problem seed")
    b.add_argument("--out", type=out_dir_arg,
                   help="run folder (default runs/kernels/bench/<UTC time>)")
    args = ap.parse_args(argv)
    if args.cmd == "info":
        return _info()
    # (flag, smallest allowed value); the overrides are checked only when given
    for name, lo in (("repeats", 1), ("ref_samples", 1), ("torch_samples", 1), ("d", 1),
                     ("rank", 0), ("n_batch", 1), ("samples", 2), ("seed", 0)):
        v = getattr(args, name)
        if v is not None and v < lo:
            b.error(f"argument --{name.replace('_', '-')}: must be >= {lo}; got {v}")
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
