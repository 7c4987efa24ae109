"""Command-line handlers: ``validate run`` (the sweep protocol), ``validate presets``,
``validate bench``. Each handler is an object with ``add_arguments(parser)`` and
``run(args) -> int`` (the interface :mod:`validate.__main__` dispatches to); this module
itself is the ``run`` handler.

``validate run`` writes one run folder (``theory.rundir``)::

    config.json      the resolved preset and options
    meta.json        versions, git commit, device name
    sweep.sqlite     the resumable store (``--out SAME_DIR`` resumes)
    points.csv       one row per (batch_size, lr, seed, target)
    fits.csv         one row per target: B_noise, S_min, ε_max and fit errors of the 3 laws
    best_lr.csv      one row per (target, batch size): best lr, S, E, the laws' predictions
    summary.json     headline figures (validate.fits.summarise) + wall time: ``wall_s`` of
                     this invocation, ``units_wall_s`` summed over all stored units,
                     ``n_units`` / ``n_units_trained`` (how many this invocation trained)
    heatmap_*.png, se_fit.png, b_noise_vs_target.png
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from theory.rundir import out_dir_arg, start_run, write_json, write_table
from validate.data import DOWNLOAD_HELP, allow_download

STAGE = "validate"


# ----------------------------------------------------------------------------- checks
# Shared by the validate handlers and ``surgelab run``: bad flags fail at the command line, with
# a message that names the flag, before a run folder is made or a model is built.


def out_dir(s: str) -> Path:
    """argparse type of ``--out`` (:func:`theory.rundir.out_dir_arg`), as a Path."""
    return Path(out_dir_arg(s))


def data_dir(s: str) -> Path:
    """argparse type of ``--data-dir``: an existing folder (a typo must not silently fall
    back to the other dataset locations)."""
    p = Path(s).expanduser()
    if not p.is_dir():
        raise argparse.ArgumentTypeError(
            f"{s!r} is not an existing folder; give the folder that holds the datasets "
            "(or leave --data-dir out to use $SURGELAB_DATA / the user cache)"
        )
    return p


def ascending(flag: str, values: Any) -> None:
    """Raise ``ValueError`` unless ``values`` is strictly ascending (no repeats)."""
    v = list(values)
    if any(a >= b for a, b in itertools.pairwise(v)):
        raise ValueError(f"{flag} must be strictly ascending, without repeats; got {v}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``validate run``."""
    p.description = (
        "Sweep a (batch size × learning rate × seed) grid with the paper's "
        "protocol, then fit B_noise, ε_max and the three learning-rate laws."
    )
    p.add_argument(
        "--workload",
        default="fmnist-cnn",
        help="registered workload (fmnist-cnn, synthetic-mlp, ...)",
    )
    p.add_argument(
        "--preset",
        default="smoke",
        help="grid: tiny (seconds), smoke (CPU minutes) or a paper-* preset "
        "(see `validate presets`)",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--backend",
        default="local",
        choices=["local", "ray"],
        help="local process pool, or a Ray cluster",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (with --backend ray); none starts a local Ray",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel units (default: CPU count on cpu, 1 on a local GPU)",
    )
    p.add_argument(
        "--data-dir",
        type=data_dir,
        default=None,
        help="dataset folder (default: $SURGELAB_DATA, then ~/.cache/surgelab)",
    )
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.add_argument(
        "--out",
        type=out_dir,
        default=None,
        help="run folder (default runs/validate/run/<UTC>); reuse it to resume",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="override the preset's seeds with 0 … N-1"
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=200,
        help="bootstrap resamples of seeds for the B_noise interval (0: none)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _device_name(device: str) -> str:
    """A readable name of the torch ``--device``; ``ValueError`` naming the flag if it is not
    a device string torch knows, or names a CUDA GPU that is not there."""
    if device != "cpu":
        import torch

        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"--device {device!r} is not a torch device; use cpu, cuda or cuda:<index>"
            ) from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(
                    f"--device {device} asked for, but torch sees no CUDA GPU "
                    "(use --device cpu, or install a CUDA build of torch)"
                )
            n = torch.cuda.device_count()
            if dev.index is not None and dev.index >= n:
                raise ValueError(
                    f"--device {device}: torch sees {n} CUDA GPU(s); use cuda:0 … cuda:{n - 1}"
                )
            return f"{device} ({torch.cuda.get_device_name(dev)})"
    import platform

    return f"{device} ({platform.processor() or platform.machine()})"


def run(args: argparse.Namespace) -> int:
    """``validate run``: sweep (or resume), fit, write the run folder; returns 0."""
    from validate import fits, sweep
    from validate.presets import get_preset

    t0 = time.perf_counter()
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {args.seeds}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    if args.n_boot < 0:
        raise ValueError(f"--n-boot must be >= 0 (0: no interval); got {args.n_boot}")
    if args.address is not None and args.backend != "ray":
        raise ValueError("--address needs --backend ray")
    preset = get_preset(args.preset, args.workload)
    if args.seeds is not None:
        preset = preset.with_seeds(args.seeds)
    device = _device_name(args.device)
    data_dir = None if args.data_dir is None else str(args.data_dir)
    if args.download:
        allow_download()
    if args.backend == "local":
        # Fail here, with the data module's message, rather than inside a worker process.
        sweep.check_inputs(preset, data_dir=data_dir, device=args.device)
    config = {
        "preset_name": preset.name,
        "preset": preset.config(),
        "preset_description": preset.description,
        "backend": args.backend,
        "address": args.address,
        "workers": args.workers,
        "device": args.device,
        "data_dir": data_dir,
        "n_boot": args.n_boot,
    }
    out = start_run(STAGE, "run", config, out=args.out, device=device)
    print(
        f"validate run: {preset.name}: {len(preset.batch_sizes)} batch sizes × "
        f"{len(preset.lrs)} lrs × {len(preset.seeds)} seeds = {preset.n_runs} runs → {out}"
    )
    trained: list[str] = []  # units trained by THIS invocation (the rest were resumed)
    try:
        rows = sweep.run_sweep(
            preset,
            store_path=out / "sweep.sqlite",
            backend=args.backend,
            address=args.address,
            device=args.device,
            workers=args.workers,
            data_dir=data_dir,
            progress=not args.no_progress,
            on_unit=lambda unit, _n: trained.append(unit.unit_id),
        )
    except KeyboardInterrupt:
        print(
            f"validate run: interrupted; finished units are kept in {out / 'sweep.sqlite'} "
            f"(rerun with --out {out} to resume)"
        )
        return 130
    summary = fits.summarise(rows, n_boot=args.n_boot)
    write_table(out / "points.csv", rows)
    write_table(out / "fits.csv", summary.pop("fits"))
    write_table(out / "best_lr.csv", summary.pop("best"))
    _figures(out)
    summary.update(
        preset=preset.name,
        workload=preset.workload,
        device=device,
        # wall_s: this invocation only; a resumed run's earlier units are in units_wall_s
        wall_s=time.perf_counter() - t0,
        units_wall_s=sweep.units_wall_s(out / "sweep.sqlite"),
        n_units=len(sweep.plan_units(preset)),
        n_units_trained=len(trained),
    )
    write_json(out / "summary.json", summary)
    _print_headline(summary)
    return 0


def _figures(out: Path) -> None:
    """Draw every figure from the saved CSV tables alone."""
    import matplotlib.pyplot as plt

    from theory.rundir import read_table
    from validate import plots

    points = read_table(out / "points.csv")
    fit_rows = read_table(out / "fits.csv")
    best = read_table(out / "best_lr.csv")
    for f in fit_rows:
        fig, ax = plt.subplots(figsize=(7, 5))
        plots.plot_heatmap(points, fit_rows, best, float(f["target"]), ax=ax)
        fig.tight_layout()
        fig.savefig(out / f"heatmap_target{float(f['target']):g}.png", dpi=110)
        plt.close(fig)
    for name, fn in (
        ("se_fit", lambda ax: plots.plot_se_fit(fit_rows, best, ax=ax)),
        ("b_noise_vs_target", lambda ax: plots.plot_b_noise_vs_target(fit_rows, ax=ax)),
    ):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        fn(ax)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print_headline(s: dict[str, Any]) -> None:
    print(
        f"primary target {_fmt(s['primary_target'])}: B_noise = {_fmt(s['b_noise'])} "
        f"[{_fmt(s['b_noise_lo'])}, {_fmt(s['b_noise_hi'])}], "
        f"eps_max (Adam) = {_fmt(s['eps_max_adam'])}"
    )
    print(
        "  log-lr RMS error fit / leave-one-out: "
        + ", ".join(
            f"{law} {_fmt(s[f'fit_err_{law}'])} / {_fmt(s[f'loo_err_{law}'])}"
            for law in ("adam", "sgd", "sgd_sqrt")
        )
    )
    if s.get("reason"):
        print(f"  note: {s['reason']}")
    if s.get("n_best_at_edge"):
        print(
            f"  note: at {s['n_best_at_edge']} batch size(s) the best lr is the smallest or "
            "largest lr tried (censored): widen the lr grid"
        )
    print(f"  wall {s['wall_s']:.1f} s")


# ----------------------------------------------------------------------------- presets


def _presets_args(p: argparse.ArgumentParser) -> None:
    p.description = "List the sweep presets (the paper's Table 1 rows, smoke and tiny grids)."


def _presets_run(args: argparse.Namespace) -> int:
    from validate.presets import list_presets

    for pr in list_presets():
        print(
            f"{pr.name:<28} {pr.workload:<22} B {pr.batch_sizes[0]}…{pr.batch_sizes[-1]} "
            f"({len(pr.batch_sizes)})  lr {pr.lrs[0]:g}…{pr.lrs[-1]:g} ({len(pr.lrs)})  "
            f"seeds {len(pr.seeds)}  betas {pr.betas}  runs {pr.n_runs}"
        )
    print("\n`--preset smoke` / `--preset tiny` pick the <workload>:smoke / :tiny grid.")
    return 0


PRESETS = SimpleNamespace(add_arguments=_presets_args, run=_presets_run)


# ----------------------------------------------------------------------------- bench


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Time the batched engine against one-model-at-a-time training on the same "
        "grid (validate.bench.run_bench); writes a run folder."
    )
    p.add_argument("--workload", default="synthetic-mlp")
    p.add_argument("--size", default="smoke", choices=["smoke", "paper"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3, 8e-3])
    p.add_argument("--seeds", type=int, default=2, help="seeds 0 … N-1")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", type=data_dir, default=None)
    p.add_argument(
        "--out", type=out_dir, default=None, help="run folder (default runs/validate/bench/<UTC>)"
    )


def _bench_run(args: argparse.Namespace) -> int:
    from validate.bench import run_bench

    _device_name(args.device)  # a clear error when cuda is asked for and absent
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {args.seeds}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1; got {args.max_steps}")
    if not all(math.isfinite(lr) and lr > 0 for lr in args.lrs):
        raise ValueError(f"--lrs must be positive numbers; got {args.lrs}")
    ascending("--lrs", args.lrs)
    res = run_bench(
        args.workload,
        out=args.out,
        size=args.size,
        batch_size=args.batch_size,
        lrs=tuple(args.lrs),
        seeds=tuple(range(args.seeds)),
        max_steps=args.max_steps,
        device=args.device,
        data_dir=None if args.data_dir is None else str(args.data_dir),
    )
    for k in (
        "workload",
        "device",
        "n_models",
        "single_s",
        "batched_s",
        "ratio",
        "batched_model_steps_per_s",
        "same_steps",
        "run_dir",
    ):
        print(f"{k}: {_fmt(res.get(k))}")
    return 0


BENCH = SimpleNamespace(add_arguments=_bench_args, run=_bench_run)
