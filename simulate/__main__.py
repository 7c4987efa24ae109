"""``python -m simulate <command>`` (or ``surgelab simulate <command>``).

Commands (each writes a run folder: config.json, meta.json, tidy CSV tables, summary.json,
figures drawn from the tables):

  surge        one-step Monte Carlo ε_opt vs Theorems 2-4 and the SGD law      (surge.csv)
  assumptions  correlated noise and finite datasets: how far the MC optimum moves (assumptions.csv)
  train        multi-step SGD / sign / Adam grid on the quadratic; S-E fits, heatmap (runs.csv ...)
  momentum     Adam β1 = 0.9 vs β1 = 0 on a diagonal Hessian: does the best lr fall? (momentum.csv)
  bench        vectorised multi-step grid vs a per-run Python loop                 (bench.json)

Defaults are small (each finishes in about a minute or less on 2 CPU cores); flags scale up.
``train`` is resumable: rerun with the same ``--out`` and finished batch sizes are skipped.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from theory import rundir
from theory.rundir import out_dir_arg


def _floats(s: str) -> list[float]:
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from exc


def _ints(s: str) -> list[int]:
    return [int(v) for v in _floats(s)]




def _cfg(args) -> dict:
    """The resolved configuration: every parsed flag except the dispatch function."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def _tqdm(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)


def _kw(s: str) -> dict[str, float | int]:
    """``"cond=100,signal=4"`` → {"cond": 100, "signal": 4} (preset keyword arguments)."""
    out: dict[str, float | int] = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        k, sep, v = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value pairs, got {part!r}")
        f = float(v)
        out[k.strip().replace("-", "_")] = int(f) if f.is_integer() and "." not in v else f
    return out


def _problem(args, defaults: dict[str, dict] | None = None) -> object:
    """The preset named by --problem; ``defaults`` are a command's preset keywords, used when
    --problem-kw is not given."""
    from simulate import problems

    kw = dict(args.problem_kw if args.problem_kw is not None
              else (defaults or {}).get(args.problem, {}))
    if args.d is not None:
        kw["d"] = args.d
    try:
        return problems.make(args.problem, args.seed, **kw)
    except TypeError as exc:
        raise ValueError(f"--problem-kw {kw} does not fit preset {args.problem!r}: {exc}") from exc


#: the kernel backends --backend accepts (kernels._backend.BACKENDS; not imported: numba is slow)
BACKENDS = ("auto", "reference", "numba", "cuda")


def _check_args(args) -> str | None:
    """Flag-level checks before any run folder is made or any compute starts: the first
    problem as ``"--flag ...: fix"``, or None. The library re-checks what it receives."""

    def finite(v: float) -> bool:
        return bool(np.isfinite(v))

    checks: list[tuple[bool, str]] = [
        (args.seed >= 0, f"--seed must be a non-negative integer; got {args.seed}"),
        (args.d is None or args.d >= 2, f"--d must be an integer >= 2; got {args.d}"),
    ]
    # surge / assumptions fit a peak (>= 3 batch sizes); train's heatmap needs >= 2 lrs and
    # momentum's best lr needs neighbours (>= 3)
    n_lr_lo = {"train": 2, "momentum": 3}.get(args.command, 1)
    for name, lo in (("n_samples", 2), ("n_samples_finite", 2), ("n_batch", 3), ("n_lr", n_lr_lo),
                     ("seeds", 1), ("max_steps", 1), ("n_batch_sizes", 1), ("loop_subset", 1)):
        v = getattr(args, name, None)
        if v is not None:
            checks.append((v >= lo, f"--{name.replace('_', '-')} must be >= {lo}; got {v}"))
    for name in ("b_min", "b_max"):       # the grid is rounded to integer batch sizes
        v = getattr(args, name, None)
        if v is not None:
            checks.append((finite(v) and v >= 1,
                           f"--{name.replace('_', '-')} must be a batch size >= 1; got {v}"))
    for name in ("lr_min", "lr_max"):
        v = getattr(args, name, None)
        if v is not None:
            checks.append((finite(v) and v > 0,
                           f"--{name.replace('_', '-')} must be a positive number; got {v}"))
    if getattr(args, "b_min", None) is not None:
        checks.append((args.b_min <= args.b_max,
                       f"--b-min ({args.b_min:g}) must not exceed --b-max ({args.b_max:g})"))
    if getattr(args, "lr_min", None) is not None:
        ok = args.lr_min < args.lr_max or (args.lr_min == args.lr_max and args.n_lr == 1)
        checks.append((ok, f"--lr-min ({args.lr_min:g}) must be below --lr-max "
                           f"({args.lr_max:g})"))
    batch = getattr(args, "batch", None)
    if batch is not None:
        checks.append((len(batch) >= 2, f"--batch needs at least two batch sizes, e.g. "
                                         f"8,32,128; got {batch}"))
        checks.append((all(finite(b) and b > 0 for b in batch),
                       f"--batch sizes must be positive numbers; got {batch}"))
        checks.append((all(a < b for a, b in itertools.pairwise(batch)),
                       f"--batch sizes must be strictly ascending, without repeats; got {batch}"))
    if args.command == "assumptions":
        checks.append((len(args.rhos) + len(args.n_examples) > 0,
                       "--rhos and --n-examples are both empty: give at least one case"))
        checks.append((all(0 <= r < 1 for r in args.rhos),
                       f"--rhos must lie in [0, 1); got {args.rhos}"))
        checks.append((all(n >= 3 for n in args.n_examples),
                       f"--n-examples must be integers >= 3 (batch sizes 1 … N); "
                       f"got {args.n_examples}"))
    if args.command == "momentum":
        betas = args.betas
        checks.append((len(betas) > 0 and len(betas) % 2 == 0,
                       f"--betas must be a flat list of (beta1, beta2) pairs, e.g. "
                       f"0,0,0.9,0.999; got {betas}"))
        checks.append((all(0 <= b < 1 for b in betas), f"--betas must lie in [0, 1); got {betas}"))
        checks.append((0 < args.target < 1,
                       f"--target must be a fraction of L0 in (0, 1); got {args.target}"))
    if getattr(args, "backend", None) == "cuda":
        from kernels import _backend

        ok, why = _backend.cuda_status()
        checks.append((ok, f"--backend cuda is not usable here: {why}; use --backend auto"))
    return next((msg for ok, msg in checks if not ok), None)


#: train: dense H with condition number 100 needs many steps to each target at every batch size
TRAIN_PRESET_KW = {"dense": {"cond": 100.0, "signal": 4.0}}


def cmd_surge(args) -> Path:
    from simulate import plots
    from simulate.surge import default_batch_sizes, run_surge

    prob = _problem(args)
    b_max = args.b_max
    if prob.examples is not None:
        b_max = min(b_max, prob.examples.shape[0])
    b = default_batch_sizes(args.b_min, b_max, args.n_batch)
    if b.size < 3:
        raise ValueError(f"--b-min {args.b_min:g} … --b-max {b_max:g} with --n-batch "
                         f"{args.n_batch} gives {b.size} distinct batch size(s); the peak needs "
                         f">= 3: widen --b-min … --b-max")
    cfg = {**_cfg(args), "batch_sizes": b, "problem_notes": prob.notes}
    out = rundir.start_run("simulate", "surge", cfg, args.out)
    rows, summary = run_surge(prob, b, args.n_samples, args.seed, args.backend)
    rundir.write_table(out / "surge.csv", rows)
    rundir.write_json(out / "summary.json", summary)
    table = rundir.read_table(out / "surge.csv")
    plots.save(plots.plot_surge(table), out / "surge.png")
    return out


def cmd_assumptions(args) -> Path:
    from simulate import plots
    from simulate.assumptions import run_assumptions

    out = rundir.start_run("simulate", "assumptions", _cfg(args), args.out)
    bar = _tqdm(len(args.rhos) + len(args.n_examples), "cases")
    rows, summary = run_assumptions(args.rhos, args.n_examples, d=args.d or 64,
                                    n_samples=args.n_samples,
                                    n_samples_finite=args.n_samples_finite, seed=args.seed,
                                    backend=args.backend, b_max=args.b_max,
                                    n_batch=args.n_batch, progress=bar.update)
    bar.close()
    rundir.write_table(out / "assumptions.csv", rows)
    rundir.write_json(out / "summary.json", summary)
    table = rundir.read_table(out / "assumptions.csv")
    plots.save(plots.plot_assumptions(table), out / "assumptions.png")
    for case in dict.fromkeys(r["case"] for r in table):
        sub = [r for r in table if r["case"] == case]
        name = case.replace(" ", "_").replace("=", "")
        plots.save(plots.plot_surge(sub), out / f"surge_{name}.png")
    return out


def _train_config(args):
    from simulate.train import TrainConfig

    return TrainConfig(optimizer=args.optimizer, beta1=args.beta1, beta2=args.beta2,
                       adam_eps=args.adam_eps, targets=tuple(args.targets),
                       further_steps=args.further_steps, max_steps=args.max_steps,
                       noise=args.noise, dtype=args.dtype, start_scale=args.start_scale)


def cmd_train(args) -> Path:
    from dataclasses import asdict

    from simulate import plots
    from simulate.io import ChunkStore
    from simulate.train import analyse, run_grid

    prob = _problem(args, TRAIN_PRESET_KW)
    cfg = _train_config(args)
    lrs = np.geomspace(args.lr_min, args.lr_max, args.n_lr)
    spec = {"problem": args.problem, "problem_kw": args.problem_kw, "d": prob.d,
            "problem_mu": prob.mu,
            "seed": args.seed, "batch_sizes": args.batch, "lrs": lrs, "n_seeds": args.seeds,
            "train": asdict(cfg)}
    out = rundir.start_run("simulate", "train", {**_cfg(args), "lrs": lrs}, args.out)
    store = ChunkStore(out, spec)
    done = store.finished(asdict(cfg))
    bar = _tqdm(len(args.batch), "batch sizes")
    bar.update(len(done))

    def on_chunk(j, res):
        store.save(j, res)
        bar.update(1)

    try:
        res = run_grid(prob, args.batch, lrs, args.seeds, cfg, args.seed, done=done,
                       on_chunk=on_chunk)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: finished chunks are in {store.dir}; rerun with --out {out} "
              f"to resume", file=sys.stderr)
        raise
    bar.close()
    cells, best, fits, summary = analyse(prob, res, cfg)
    summary["chunks_reused"] = sorted(done)
    rundir.write_table(out / "runs.csv", res.rows())
    rundir.write_table(out / "cells.csv", cells)
    rundir.write_table(out / "best.csv", best)
    rundir.write_table(out / "fits.csv", fits)
    rundir.write_json(out / "summary.json", summary)
    c, b, f = (rundir.read_table(out / n) for n in ("cells.csv", "best.csv", "fits.csv"))
    plots.save(plots.plot_heatmap(c, b, 0, "reduction_mean"), out / "heatmap.png")
    plots.save(plots.plot_heatmap(c, b, 0, "steps_mean"), out / "heatmap_steps.png")
    plots.save(plots.plot_se_fit(b, f), out / "se_fit.png")
    plots.save(plots.plot_bnoise_targets(f), out / "bnoise_targets.png")
    return out


def cmd_momentum(args) -> Path:
    from simulate import plots
    from simulate.momentum import run_momentum

    prob = _problem(args)
    betas = [tuple(b) for b in np.asarray(args.betas, dtype=float).reshape(-1, 2)]
    lrs = np.geomspace(args.lr_min, args.lr_max, args.n_lr)
    out = rundir.start_run("simulate", "momentum", {**_cfg(args), "lrs": lrs}, args.out)
    bar = _tqdm(len(betas) * len(args.batch), "batch sizes")

    rows, summary = run_momentum(prob, args.batch, lrs, args.seeds, betas, target=args.target,
                                 max_steps=args.max_steps, seed=args.seed,
                                 on_chunk=lambda *_: bar.update(1))
    bar.close()
    rundir.write_table(out / "momentum.csv", rows)
    rundir.write_json(out / "summary.json", summary)
    plots.save(plots.plot_momentum(rundir.read_table(out / "momentum.csv")),
               out / "momentum.png")
    return out


def cmd_bench(args) -> Path:
    from simulate.bench import bench_grid

    out = rundir.start_run("simulate", "bench", _cfg(args), args.out)
    res = bench_grid(d=args.d or 1000, n_lr=args.n_lr, n_batch=args.n_batch_sizes,
                     n_seeds=args.seeds, loop_subset=args.loop_subset,
                     optimizer=args.optimizer, max_steps=args.max_steps, seed=args.seed,
                     dtype=args.dtype)
    rundir.write_json(out / "bench.json", res)
    rundir.write_json(out / "summary.json", res)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="surgelab simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(s, problem="surge", d=None):
        s.add_argument("--problem", default=problem,
                       help="preset: surge, dense, diagonal, negative-soff, correlated, finite")
        s.add_argument("--problem-kw", type=_kw, default=None,
                       help="preset keyword arguments, e.g. 'cond=100,signal=4'")
        s.add_argument("--d", type=int, default=d, help="dimension (preset default if unset)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--out", type=out_dir_arg, default=None,
                       help="run folder (default runs/simulate/<cmd>/<UTC>)")

    s = sub.add_parser("surge", help="one-step MC vs Theorems 2-4 and the SGD law")
    common(s)
    s.add_argument("--n-samples", type=int, default=20000)
    s.add_argument("--b-min", type=float, default=1.0)
    s.add_argument("--b-max", type=float, default=8192.0)
    s.add_argument("--n-batch", type=int, default=25)
    s.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="kernel backend: auto, numba, reference, cuda")
    s.set_defaults(func=cmd_surge)

    s = sub.add_parser("assumptions", help="correlated noise / finite datasets vs Theorem 2")
    common(s)
    s.add_argument("--rhos", type=_floats, default=[0.1, 0.3, 0.6])
    s.add_argument("--n-examples", type=_ints, default=[256, 1024])
    s.add_argument("--n-samples", type=int, default=20000)
    s.add_argument("--n-samples-finite", type=int, default=1000)
    s.add_argument("--b-max", type=float, default=8192.0)
    s.add_argument("--n-batch", type=int, default=22)
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    s.set_defaults(func=cmd_assumptions)

    s = sub.add_parser("train", help="multi-step grid; S-E fits; heatmap (resumable)")
    common(s, problem="dense")      # with TRAIN_PRESET_KW unless --problem-kw is given
    s.add_argument("--optimizer", default="sign", choices=["sgd", "sign", "adam"])
    s.add_argument("--beta1", type=float, default=0.9)
    s.add_argument("--beta2", type=float, default=0.999)
    s.add_argument("--adam-eps", type=float, default=1e-12)
    s.add_argument("--batch", type=_floats, default=[float(2**k) for k in range(2, 13)],
                   help="comma-separated batch sizes")
    s.add_argument("--lr-min", type=float, default=1e-4)
    s.add_argument("--lr-max", type=float, default=1e-2)
    s.add_argument("--n-lr", type=int, default=13)
    s.add_argument("--seeds", type=int, default=4)
    s.add_argument("--start-scale", type=float, default=1.0, help="x0 = scale * H^-1 mu")
    s.add_argument("--targets", type=_floats, default=[0.3, 0.1, 0.03],
                   help="target losses as fractions of L0, descending")
    s.add_argument("--further-steps", type=int, default=10)
    s.add_argument("--max-steps", type=int, default=3000)
    s.add_argument("--noise", default="constant", choices=["constant", "scaled"])
    s.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("momentum", help="Adam β1=0.9 vs 0 on a diagonal H: does the best lr fall?")
    common(s, problem="diagonal")
    s.add_argument("--betas", type=_floats, default=[0, 0, 0, 0.999, 0.9, 0.999],
                   help="flat list of (beta1, beta2) pairs; (0, 0) is sign-SGD")
    s.add_argument("--batch", type=_floats, default=[float(2**k) for k in range(8, 18)])
    s.add_argument("--lr-min", type=float, default=3e-4)
    s.add_argument("--lr-max", type=float, default=3e-2)
    s.add_argument("--n-lr", type=int, default=11)
    s.add_argument("--seeds", type=int, default=3)
    s.add_argument("--target", type=float, default=0.01)
    s.add_argument("--max-steps", type=int, default=3000)
    s.set_defaults(func=cmd_momentum)

    s = sub.add_parser("bench", help="vectorised grid vs per-run loop (writes bench.json)")
    common(s)
    s.add_argument("--n-lr", type=int, default=10)
    s.add_argument("--n-batch-sizes", type=int, default=12)
    s.add_argument("--seeds", type=int, default=10)
    s.add_argument("--loop-subset", type=int, default=24)
    s.add_argument("--optimizer", default="sign", choices=["sgd", "sign", "adam"])
    s.add_argument("--max-steps", type=int, default=1000)
    s.add_argument("--dtype", default="float32", choices=["float64", "float32"])
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv``, run the command, print the run folder."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _check_args(args)
    if problem is not None:
        print(f"{parser.prog} {args.command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        out = args.func(args)
    except ValueError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
