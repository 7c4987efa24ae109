"""``surgelab validate estimate``: direct estimation of the laws at checkpoints of Adam training.

Trains the workload with Adam at a fixed learning rate and batch size, and at each checkpoint
(``--checkpoints`` steps, and/or ``--at-losses`` loss levels) runs
:func:`validate.estimate.estimate_at_checkpoint`. Writes a run folder
(``runs/validate/estimate/<UTC>/`` or ``--out``)::

    config.json, meta.json
    checkpoints.csv   one row per checkpoint: loss, B_noise (Theorem 3, SGD), ε_max, B_simple…
    per_batch.csv     one row per (checkpoint, B): predicted and measured best learning rates
    one_step.csv      one row per (checkpoint, update, B, lr): mean loss improvement ± SE
    regime_hist.csv   histogram of π σ_i²/(2 μ_i²) per checkpoint
    summary.json      {"workload", "checkpoints": [{step, loss, b_noise_thm3, …, per_batch}], …}
    lr_sign.png, lr_sgd.png, regime_hist.png, b_noise_vs_loss.png   (drawn from the tables)
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

from validate.data import DOWNLOAD_HELP, allow_download
from validate.sweep_cli import _device_name, ascending, data_dir, out_dir

#: smoke defaults: fmnist-cnn smoke in ~2–3 min on 2 CPU cores, synthetic-mlp in seconds
DEFAULTS = {
    "checkpoints": "0,100,400",
    "n_examples": 1024,
    "n_eval": 500,
    "probes": 16,
    "batch_sizes": "4,16,64,256",
    "n_batches": 12,
    "n_lrs": 9,
    "lr_span": 64.0,
}


def _ints(s: str) -> tuple[int, ...]:
    try:
        v = tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {s!r}") from exc
    if not v:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return v


def _floats(s: str) -> tuple[float, ...]:
    try:
        v = tuple(float(x) for x in s.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers; got {s!r}") from exc
    if not v:
        raise argparse.ArgumentTypeError("expected at least one number")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``estimate`` subcommand's options."""
    p.add_argument("--workload", default="synthetic-mlp", help="registered workload name")
    p.add_argument("--size", default="smoke", choices=("smoke", "paper"), help="workload size")
    p.add_argument("--data-dir", type=lambda s: str(data_dir(s)), default=None,
                   help="dataset folder (default: resolved)")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.add_argument("--checkpoints", type=_ints, default=_ints(DEFAULTS["checkpoints"]),
                   help="Adam training steps at which to estimate (comma list)")
    p.add_argument("--at-losses", type=_floats, default=(),
                   help="also estimate when the eval loss first falls below these levels")
    p.add_argument("--train-lr", type=float, default=1e-3, help="Adam lr of the training run")
    p.add_argument("--train-batch-size", type=int, default=64, help="its batch size")
    p.add_argument("--n-examples", type=int, default=DEFAULTS["n_examples"],
                   help="examples for per-example gradient statistics μ, σ²")
    p.add_argument("--n-eval", type=int, default=DEFAULTS["n_eval"],
                   help="eval examples for the Hessian and the measured loss changes")
    p.add_argument("--probes", type=int, default=DEFAULTS["probes"],
                   help="Hutchinson probes for tr(H), diag(H)")
    p.add_argument("--batch-sizes", type=_ints, default=_ints(DEFAULTS["batch_sizes"]),
                   help="batch sizes to predict and measure")
    p.add_argument("--n-batches", type=int, default=DEFAULTS["n_batches"],
                   help="independent mini-batches per batch size (one-step measurement)")
    p.add_argument("--lrs", type=_floats, default=None,
                   help="sign-step learning-rate grid (default: auto, around the prediction)")
    p.add_argument("--lrs-sgd", type=_floats, default=None, help="SGD-step grid (default auto)")
    p.add_argument("--n-lrs", type=int, default=DEFAULTS["n_lrs"], help="auto grid points")
    p.add_argument("--lr-span", type=float, default=DEFAULTS["lr_span"],
                   help="auto grid: centre ÷ √span … × √span")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples")
    p.add_argument("--chunk-floats", type=int, default=20_000_000,
                   help="memory budget (floats) of one vmap chunk of gradients")
    p.add_argument("--no-measure", action="store_true", help="predictions only (no one-step)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--seed", type=int, default=0, help="all randomness")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, …)")
    p.add_argument("--out", type=lambda s: str(out_dir(s)), default=None,
                   help="run folder (default runs/validate/estimate/<UTC>)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 is fastest on a shared machine)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`validate.estimate.EstimateConfig` the options describe (validated)."""
    from validate.estimate import EstimateConfig

    return EstimateConfig(
        n_examples=args.n_examples, n_eval=args.n_eval, probes=args.probes,
        batch_sizes=tuple(args.batch_sizes), n_batches=args.n_batches, n_lrs=args.n_lrs,
        lr_span=args.lr_span, lrs=args.lrs, lrs_sgd=args.lrs_sgd, n_boot=args.n_boot,
        seed=args.seed, measure=not args.no_measure, chunk_floats=args.chunk_floats)


def draw_figures(out: Path) -> list[Path]:
    """Draw every figure from the run folder's tables; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from theory.rundir import read_table
    from validate import estimate_plots as P

    written: list[Path] = []
    per_batch = read_table(out / "per_batch.csv") if (out / "per_batch.csv").is_file() else []
    steps = sorted({r["step"] for r in per_batch})
    for upd in ("sign", "sgd"):
        if not steps:
            break
        fig, axes = plt.subplots(1, len(steps), figsize=(4.5 * len(steps), 4), squeeze=False)
        for ax, s in zip(axes[0], steps):
            P.plot_lr_vs_batch(per_batch, upd, step=s, ax=ax)
        fig.tight_layout()
        fig.savefig(out / f"lr_{upd}.png", dpi=110)
        plt.close(fig)
        written.append(out / f"lr_{upd}.png")
    for name, table, fn in (("regime_hist", "regime_hist.csv", P.plot_regime_histogram),
                            ("b_noise_vs_loss", "checkpoints.csv", P.plot_b_noise_vs_loss)):
        if (out / table).is_file():
            rows = read_table(out / table)
            if rows:
                fig, ax = plt.subplots(figsize=(5.5, 4))
                fn(rows, ax=ax)
                fig.tight_layout()
                fig.savefig(out / f"{name}.png", dpi=110)
                plt.close(fig)
                written.append(out / f"{name}.png")
    return written


def _trend(rows: list[dict[str, Any]], key: str) -> bool | None:
    """True if ``key`` increases monotonically as the loss falls (None: < 2 finite points)."""
    pts = sorted(((r["loss"], r.get(key)) for r in rows
                  if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])),
                 key=lambda t: -t[0])
    if len(pts) < 2:
        return None
    return all(b[1] > a[1] for a, b in itertools.pairwise(pts))


def run(args: argparse.Namespace) -> int:
    """Run the estimate and write the run folder; returns 0 (errors raise ValueError)."""
    import torch

    from theory.rundir import start_run, write_json, write_table
    from validate.estimate import run_estimate
    from validate.workload import get_workload

    cfg = config_from_args(args)
    if args.download:
        allow_download()
    if not (math.isfinite(args.train_lr) and args.train_lr > 0) or args.train_batch_size < 1:
        raise ValueError(f"--train-lr must be > 0 and --train-batch-size >= 1; got "
                         f"{args.train_lr}, {args.train_batch_size}")
    if any(c < 0 for c in args.checkpoints):
        raise ValueError(f"--checkpoints must be non-negative steps; got {args.checkpoints}")
    ascending("--checkpoints", args.checkpoints)
    if not all(math.isfinite(x) and x > 0 for x in args.at_losses):
        raise ValueError(f"--at-losses must be positive loss levels; got {list(args.at_losses)}")
    ascending("--batch-sizes", args.batch_sizes)
    for flag, grid in (("--lrs", args.lrs), ("--lrs-sgd", args.lrs_sgd)):
        if grid is not None:
            ascending(flag, grid)
    if args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer; got {args.seed}")
    _device_name(args.device)  # a clear error for an unknown device or a missing CUDA GPU
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    workload = get_workload(args.workload, size=args.size, data_dir=args.data_dir)
    data = workload.load_data(args.data_dir, device)
    config = {"workload": args.workload, "size": args.size, "checkpoints": list(args.checkpoints),
              "at_losses": list(args.at_losses), "train_lr": args.train_lr,
              "train_batch_size": args.train_batch_size, "device": str(device),
              "estimate": {k: v for k, v in vars(cfg).items()}}
    out = start_run("validate", "estimate", config, args.out, device=str(device))
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    res = run_estimate(workload, data, cfg, steps=args.checkpoints, losses=args.at_losses,
                       train_lr=args.train_lr, train_batch_size=args.train_batch_size,
                       seed=args.seed, device=device, progress=say)
    write_table(out / "checkpoints.csv", res["checkpoint_rows"])
    write_table(out / "per_batch.csv", res["per_batch"])
    write_table(out / "one_step.csv", res["one_step"])
    write_table(out / "regime_hist.csv", res["histogram"])
    rows = res["checkpoint_rows"]
    summary = {
        "workload": args.workload, "size": args.size, "device": str(device),
        "wall_s": time.perf_counter() - t0,
        "b_noise_thm3_grows_as_loss_falls": _trend(rows, "b_noise_thm3"),
        "b_noise_sgd_full_grows_as_loss_falls": _trend(rows, "b_noise_sgd_full"),
        "b_simple_grows_as_loss_falls": _trend(rows, "b_simple"),
        "checkpoints": res["checkpoints"],
    }
    write_json(out / "summary.json", summary)
    if not args.no_plots:
        draw_figures(out)
    print(_headline(summary, out))
    return 0


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and x is not None else str(x)


def _headline(summary: dict[str, Any], out: Path) -> str:
    lines = [f"estimate on {summary['workload']} ({summary['size']}): {out}"]
    for c in summary["checkpoints"]:
        lines.append(
            f"  step {c['step']}: loss {_fmt(c['loss'])}  B_noise(Thm3) {_fmt(c['b_noise_thm3'])}"
            f"  eps_max(Thm3) {_fmt(c['eps_max_thm3'])}  B_noise(SGD full) "
            f"{_fmt(c.get('b_noise_sgd_full'))}  B_simple {_fmt(c['b_simple'])}  regime-bound "
            f"median {_fmt(c['regime_bound_median'])}"
            + (f"  pred/meas lr sign {_fmt(c.get('ratio_sign_geomean'))}"
               f" sgd {_fmt(c.get('ratio_sgd_geomean'))}" if "ratio_sign_geomean" in c else ""))
    notes = sorted({n for c in summary["checkpoints"] for n in c.get("notes", [])})
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m validate.estimate_cli``: standalone entry (the registry calls :func:`run`)."""
    p = argparse.ArgumentParser(prog="surgelab validate estimate", description=__doc__)
    add_arguments(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"validate estimate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
