"""``surgelab validate run | bench | presets | estimate | branch``: real networks.

``validate run`` writes one run folder::

    config.json      the resolved config (every flag, defaults included)
    meta.json        versions, git commit, device name
    sweep.sqlite     the resumable store (``--out SAME_DIR`` resumes), keyed on the workload's
                     fingerprint, the grid and the engine settings (a stale store is refused)
    sweep.checkpoints/  state of units in progress (every --checkpoint-every seconds)
    points.csv       one row per (batch_size, lr, seed, target) (grid extensions included)
    best_lr.csv      target, batch_size, rule, lr, lo, hi, censored (+ grid_lr, value, ...):
                     the optimum by the paper's rule (``further``) and by fewest ``steps``
    loo.csv          target, law, err, lo, hi (+ diff to the best baseline and its interval)
    b_crit.csv       target, value, lo, hi: the S–E B_crit (Eq. 22) and its interval
    fits.csv         one row per target: B_crit, S_min, ε_max, fit / LOO errors, verdict
                     (estimators: validate.optimum; tables: validate.fits.summarise)
    summary.json     headline figures (validate.fits.summarise, ``falls``: the fall of lr*
                     past its peak per target) + ``headline`` / ``verdicts`` (the falls in
                     words, then the law-vs-baseline verdicts)
                     + wall time: ``wall_s`` of this invocation, ``units_wall_s`` summed over
                     all stored units, ``n_units`` / ``n_units_trained``
    heatmap_*.png, optimum_vs_b_*.png, se_fit.png, b_noise_vs_target.png (S–E B_crit)

Ctrl-C stops the sweep within seconds (workers are stopped, finished units stay in the store)
and prints how to resume; the exit status is 130.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from surgelab import cmd_branch, cmd_estimate
from surgelab.cli import Command, Stage, UsageError
from surgelab.config import Config, ConfigError, opt
from surgelab.rundir import RunDir
from surgelab.workload_args import (  # re-exported: other stages import them from here
    DATA_DIR_WHY,
    DOWNLOAD_WHY,
    _env_download,
    check_data,
    check_workload,
    device_name,
)

# ----------------------------------------------------------------------------- validate run


@dataclass(frozen=True)
class SweepConfig(Config):
    workload: str = opt("fmnist-cnn", "registered workload (fmnist-cnn, synthetic-mlp, ...)")
    preset: str = opt(
        "smoke",
        "grid: tiny (seconds), smoke (CPU minutes) or a paper-* preset (see `surgelab validate "
        "presets`)",
    )
    device: str = opt("cpu", "torch device: cpu, cuda, cuda:1, ...")
    backend: Literal["local", "ray"] = opt("local", "local process pool, or a Ray cluster")
    address: str | None = opt(
        None, "Ray cluster address (with --backend ray); none starts a local Ray"
    )
    workers: int | None = opt(
        None, "parallel units (default: one per CPU core on cpu, 1 on a local GPU)", lo=1, hi=4096
    )
    data_dir: str | None = opt(None, DATA_DIR_WHY)
    download: bool = opt(_env_download(), DOWNLOAD_WHY)
    seeds: int | None = opt(None, "override the preset's seeds with 0 … N-1", lo=1, hi=100_000)
    max_seeds: int | None = opt(
        None,
        "adaptive seeds: after the grid, add seed chunks at the batch sizes whose lr* interval "
        "is wider than --seed-log-width, up to this many seeds there (default: the preset's; "
        "none for the built-in presets)",
        lo=1,
        hi=100_000,
    )
    seed_log_width: float | None = opt(
        None,
        "with --max-seeds: ln(hi/lo) of the lr* interval below which no seeds are added "
        "(default: the preset's, 1.0)",
        lo=0,
        lo_open=True,
    )
    n_boot: int = opt(
        200, "bootstrap resamples of seeds for the B_noise interval (0: none)", lo=0, hi=100_000
    )
    checkpoint_every: float = opt(
        300.0,
        "seconds between checkpoints of a batch size in progress (a kill loses at most this)",
        lo=0,
        lo_open=True,
    )
    capture: Literal["none", "compile", "graph"] = opt(
        "none",
        "run the training steps eagerly, under torch.compile, or as a CUDA graph (GPU); falls "
        "back to eager when it cannot (rows say what ran); stored apart from eager results",
    )

    engine: Literal["group", "single"] | None = opt(
        None,
        "group: all lrs × seeds of a unit as one vmapped program; single: one model at a time "
        "(default: the faster on this device, timed first on a slice of the preset; a resumed "
        "run keeps its stored engine)",
    )

    def check(self) -> None:
        if self.address is not None and self.backend != "ray":
            raise ConfigError("address", "needs --backend ray")
        if self.capture != "none" and self.engine == "single":
            raise ConfigError("engine", f"--capture {self.capture} needs the group engine")
        check_workload(self.workload)
        preset = self.resolved_preset()
        if self.device != "cpu":
            device_name(self.device)
        if self.backend == "local":
            check_data(self.workload, preset.size, self.data_dir, self.download)
        elif self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise ConfigError("data_dir", f"{self.data_dir!r} is not an existing folder")

    def resolved_preset(self):
        from validate.presets import get_preset

        try:
            preset = get_preset(self.preset, self.workload)
        except ValueError as exc:
            raise ConfigError("preset", str(exc)) from None
        preset = preset.with_seeds(self.seeds) if self.seeds is not None else preset
        if self.seed_log_width is not None and (self.max_seeds or preset.max_seeds) is None:
            raise ConfigError("seed_log_width", "needs --max-seeds (or a preset with max_seeds)")
        change: dict[str, Any] = {}
        if self.max_seeds is not None:
            if self.max_seeds < len(preset.seeds):
                raise ConfigError(
                    "max_seeds", f"must be >= the grid's {len(preset.seeds)} seeds (--seeds)"
                )
            change["max_seeds"] = self.max_seeds
        if self.seed_log_width is not None:
            change["seed_log_width"] = self.seed_log_width
        return dataclasses.replace(preset, **change) if change else preset


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def headline(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """``headline`` and ``verdicts`` of a sweep's summary, from the values already in it."""
    from theory.stats import refined_argmax

    t = summary.get("primary_target")
    items: list[dict[str, Any]] = []
    verdicts: list[str] = []
    if summary.get("b_crit") is not None:
        # key "b_noise": the summary's alias of b_crit, kept for older readers
        items.append(
            {
                "key": "b_noise",
                "label": f"S–E B_crit (steps–examples fit, Eq. 22, at target loss {_fmt(t)})",
                "value": summary["b_crit"],
                "lo": summary.get("b_crit_lo"),
                "hi": summary.get("b_crit_hi"),
            }
        )
    best = [b for b in summary.get("best_lr", []) if b.get("lr") is not None]
    peak = None
    if len(best) >= 1:
        p = refined_argmax([b["batch_size"] for b in best], [b["lr"] for b in best], log=True)
        peak = p
        summary["peak_batch_size"] = p.x
        summary["peak_censored"] = p.censored
        items.append(
            {
                "key": "peak_batch_size",
                "label": "measured peak (batch size of the largest optimum lr*, paper's rule)",
                "value": p.x,
            }
        )
    if summary.get("eps_max_adam") is not None:
        items.append(
            {
                "key": "eps_max_adam",
                "label": "ε_max of the Adam law fit (Eq. 23 at S–E B_crit)",
                "value": summary["eps_max_adam"],
            }
        )
    if peak is not None:
        where = {
            "low": ", the smallest batch size of the grid (censored)",
            "high": ", the largest batch size of the grid (censored: widen the grid)",
        }
        line = (
            f"measured peak: the optimum lr* is largest at B ≈ {peak.x:.3g}"
            f"{where.get(peak.censored, '')}"
        )
        if best[peak.index].get("censored") in ("low", "high"):
            # the largest lr* there is a bound (the lr grid's edge); the fall line below uses
            # interior optima only, so it may start from another batch size
            line += f" (lr* at B = {best[peak.index]['batch_size']:g} is on the lr grid's edge)"
        if summary.get("b_crit") is not None:
            line += (
                f"; S–E B_crit = {_fmt(summary['b_crit'])} "
                f"[{_fmt(summary.get('b_crit_lo'))}, {_fmt(summary.get('b_crit_hi'))}]"
            )
        verdicts.append(line)
    by_t = [
        f"{_fmt(d['target'])}: {_fmt(d['b_crit'])} [{_fmt(d['lo'])}, {_fmt(d['hi'])}]"
        for d in summary.get("b_crit_by_target") or []
    ]
    if len(by_t) > 1:
        verdicts.append("S–E B_crit by target loss: " + "; ".join(by_t))
    # what was seen at each target, in words (fall or not, censored batch sizes), then the laws
    verdicts += [f["text"] for f in summary.get("falls") or [] if f.get("text")]
    verdicts += [v for v in summary.get("law_verdicts") or [] if v]
    n_edge = summary.get("n_best_at_edge")
    if n_edge:
        verdicts.append(
            f"at {n_edge} batch size(s) the optimum (paper's rule) is on the edge of the lr "
            "grid (censored, kept out of the law fits): widen the lr grid"
        )
    if summary.get("reason") and summary["reason"] not in verdicts:
        verdicts.append(f"note: {summary['reason']}")
    return items, verdicts


def run_sweep(cfg: SweepConfig, run: RunDir | None) -> int:
    """``validate run``: sweep (or resume), fit, write the run folder."""
    from surgelab import datasets
    from surgelab.progress import bar, say
    from surgelab.store import SweepStore, read_units
    from validate import engine, fits, sweep

    assert run is not None
    t0 = time.perf_counter()
    preset = cfg.resolved_preset()
    if cfg.backend == "local" or cfg.address is None:
        # workers run on this machine: fetch what is missing before any of them starts
        datasets.ensure_workload(cfg.workload, preset.size, cfg.data_dir, cfg.download)
    device = device_name(cfg.device)
    run.write_meta(device=device, preset_description=preset.description)
    trained: list[str] = []  # units trained by THIS invocation (the rest were resumed)
    chosen: dict[str, Any] = {}  # how the engine was chosen (sweep.run_sweep's on_engine)
    store_path = run / "sweep.sqlite"
    with (
        SweepStore(store_path) as store,
        bar(None, f"{preset.name} [{cfg.backend}]", unit="unit") as b,
    ):

        def on_plan(total: int, done: int) -> None:  # called once the store is accepted
            say(
                f"validate run: {preset.name}: {len(preset.batch_sizes)} batch sizes × "
                f"{len(preset.lrs)} lrs × {len(preset.seeds)} seeds = {preset.n_runs} runs "
                f"({done} of {total} units stored) → {run.path}"
            )
            b.reset(total)
            b.update(done)

        def on_unit(unit: Any, _n: int) -> None:
            trained.append(unit.unit_id)
            b.update(1)

        def on_engine(choice: dict[str, Any]) -> None:
            chosen.update(choice)
            if choice["how"] == "measured":
                rates = ", ".join(
                    f"{k.removesuffix('_model_steps_per_s')} {v:.3g}"
                    for k, v in choice.items()
                    if k.endswith("_model_steps_per_s")
                )
                say(
                    f"engine: {choice['engine']} (measured at B = {choice['batch_size']}, "
                    f"{choice['n_models']} models × {choice['steps']} steps: model-steps/s "
                    f"{rates})"
                )

        try:
            rows = sweep.run_sweep(
                preset,
                store=store,
                backend=cfg.backend,
                address=cfg.address,
                device=cfg.device,
                workers=cfg.workers,
                data_dir=cfg.data_dir,
                decoded_cache=datasets.disk_cache(),
                checkpoint_every=cfg.checkpoint_every,
                trainer=None if cfg.capture == "none" else engine.TRAINERS[cfg.capture],
                engine=cfg.engine,
                on_plan=on_plan,
                on_unit=on_unit,
                on_engine=on_engine,
            )
        except sweep.StaleResultsError as exc:
            raise UsageError(f"--out {exc}") from None
    adaptive = (
        dict(seed_log_width=preset.seed_log_width, max_seeds=preset.max_seeds)
        if preset.max_seeds
        else {}
    )
    summary = fits.summarise(rows, n_boot=cfg.n_boot, **adaptive)
    run.write_table("points.csv", rows)
    run.write_table("fits.csv", summary.pop("fits"))
    run.write_table("best_lr.csv", summary.pop("best"))
    run.write_table("loo.csv", summary.pop("loo_table"))
    run.write_table("b_crit.csv", summary.pop("b_crit_table"))
    _figures(run)
    units = read_units(store_path)
    summary.update(
        preset=preset.name,
        workload=preset.workload,
        device=device,
        # wall_s: this invocation only; a resumed run's earlier units are in units_wall_s
        wall_s=time.perf_counter() - t0,
        units_wall_s=float(sum(u["wall_s"] or 0.0 for u in units)),
        # every stored unit: the base grid's and those the grid extension added
        n_units=len(units),
        n_units_base=len(sweep.plan_units(preset)),
        n_units_trained=len(trained),
        engine=chosen or {"engine": f"group (capture {cfg.capture})", "how": "given"},
        seeds_by_batch_size={
            str(b): len({r["seed"] for r in rows if r["batch_size"] == b})
            for b in sorted({int(r["batch_size"]) for r in rows})
        },
    )
    summary["headline"], summary["verdicts"] = headline(summary)
    run.finish(summary)
    _print_headline(summary)
    return 0


def _figures(run: RunDir) -> None:
    """Draw every figure from the saved CSV tables alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from validate import plots

    points = run.read_table("points.csv")
    fit_rows = run.read_table("fits.csv")
    best = run.read_table("best_lr.csv")
    loo = run.read_table("loo.csv")
    for f in fit_rows:
        t = float(f["target"])
        fig, ax = plt.subplots(figsize=(7, 5))
        plots.plot_heatmap(points, fit_rows, best, t, ax=ax)
        run.save_figure(fig, f"heatmap_target{t:g}.png")
        fig, ax = plt.subplots(figsize=(7, 5))
        run.save_figure(
            plots.plot_optimum_vs_b(best, fit_rows, loo, t, ax=ax), f"optimum_vs_b_target{t:g}.png"
        )
    fig, ax = plt.subplots(figsize=(6, 4.5))
    run.save_figure(plots.plot_se_fit(fit_rows, best, ax=ax), "se_fit.png")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    run.save_figure(
        # the file keeps its old name (readers and tests look for it); the figure is B_crit's
        plots.plot_b_crit_vs_target(run.read_table("b_crit.csv"), ax=ax),
        "b_noise_vs_target.png",
    )


def _print_headline(s: dict[str, Any]) -> None:
    print(
        f"primary target {_fmt(s['primary_target'])}: S–E B_crit = {_fmt(s['b_crit'])} "
        f"[{_fmt(s['b_crit_lo'])}, {_fmt(s['b_crit_hi'])}], "
        f"eps_max (Adam) = {_fmt(s['eps_max_adam'])}"
    )
    for v in s["verdicts"]:
        print(f"  {v}")
    print(f"  wall {s['wall_s']:.1f} s")


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class PresetsConfig(Config):
    """No options: lists the sweep presets."""


def run_presets(cfg: PresetsConfig, run: RunDir | None) -> int:
    from validate.presets import list_presets

    for pr in list_presets():
        print(
            f"{pr.name:<28} {pr.workload:<22} B {pr.batch_sizes[0]}…{pr.batch_sizes[-1]} "
            f"({len(pr.batch_sizes)})  lr {pr.lrs[0]:g}…{pr.lrs[-1]:g} ({len(pr.lrs)})  "
            f"seeds {len(pr.seeds)}  betas {pr.betas}  runs {pr.n_runs}"
        )
    print("\n`--preset smoke` / `--preset tiny` pick the <workload>:smoke / :tiny grid.")
    return 0


# ----------------------------------------------------------------------------- bench


@dataclass(frozen=True)
class BenchConfig(Config):
    workload: str = opt("synthetic-mlp", "registered workload")
    size: Literal["smoke", "paper"] = opt("smoke", "model and data size of the workload")
    batch_size: int = opt(32, "examples per optimiser step", lo=1, hi=1 << 20)
    lrs: tuple[float, ...] = opt(
        (1e-3, 2e-3, 4e-3, 8e-3),
        "Adam learning rates, ascending",
        lo=0,
        lo_open=True,
        ascending=True,
        nonempty=True,
    )
    seeds: int = opt(2, "seeds 0 … N-1", lo=1, hi=10_000)
    max_steps: int = opt(200, "optimiser steps per model", lo=1, hi=10_000_000)
    device: str = opt("cpu", "torch device: cpu, cuda, cuda:1, ...")
    data_dir: str | None = opt(None, DATA_DIR_WHY)
    download: bool = opt(_env_download(), DOWNLOAD_WHY)
    capture: Literal["none", "compile", "graph"] = opt(
        "none",
        "the batched engine's steps: eager, torch.compile, or a CUDA graph (GPU); falls back "
        "to eager when it cannot (the summary says which ran)",
    )

    def check(self) -> None:
        check_workload(self.workload)
        if self.device != "cpu":
            device_name(self.device)
        check_data(self.workload, self.size, self.data_dir, self.download)


def run_bench(cfg: BenchConfig, run: RunDir | None) -> int:
    from surgelab import datasets
    from surgelab.progress import bar
    from validate.bench import bench

    assert run is not None
    datasets.ensure_workload(cfg.workload, cfg.size, cfg.data_dir, cfg.download)
    run.write_meta(device=device_name(cfg.device))
    n_models = len(cfg.lrs) * cfg.seeds
    # warm-up + one timed run of each engine; single trains its models one after another
    with bar(None, "bench steps", unit="step") as b, datasets.decoded_arrays():
        summary, rows = bench(
            cfg.workload,
            size=cfg.size,
            batch_size=cfg.batch_size,
            lrs=cfg.lrs,
            seeds=tuple(range(cfg.seeds)),
            max_steps=cfg.max_steps,
            device=cfg.device,
            data_dir=cfg.data_dir,
            capture=cfg.capture,
            on_progress=b.update,
        )
    run.write_table("bench.csv", rows)
    run.finish(summary)
    for k in (
        "workload",
        "device",
        "n_models",
        "single_s",
        "batched_s",
        "ratio",
        "batched_model_steps_per_s",
        "same_steps",
        "capture_used",
        "batched_train_flops_per_s",
        "fraction_of_fp32_peak",
        "batched_activation_bytes_per_s",
        "fraction_of_bandwidth_peak",
    ):
        print(f"{k}: {_fmt(summary.get(k))}")
    assert summary["n_models"] == n_models
    print(f"wrote {run.path}")
    return 0


COMMANDS: dict[str, Command] = {
    "run": Command(
        "run",
        "sweep a preset grid with the paper's protocol and fit the laws",
        SweepConfig,
        run_sweep,
        description="Sweep a (batch size × learning rate × seed) grid with the paper's protocol, "
        "then fit B_noise, ε_max and the learning-rate laws. Rerun with the same --out to resume.",
    ),
    "estimate": cmd_estimate.ESTIMATE,
    "branch": cmd_branch.BRANCH,
    "bench": Command(
        "bench",
        "time the batched engine against single-model training",
        BenchConfig,
        run_bench,
        description="Time the batched engine against one-model-at-a-time training on the same "
        "grid (validate.bench.bench); writes a run folder.",
    ),
    "presets": Command(
        "presets", "list the sweep presets", PresetsConfig, run_presets, writes=False
    ),
}

STAGE = Stage("validate", "real networks: the paper's protocol, direct estimates, bench", COMMANDS)
