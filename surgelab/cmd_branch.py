"""``surgelab validate branch``: the best lr per batch size at a training state, per horizon.

Trains one reference run (Adam at ``--ref-batch-size`` / ``--ref-lr``) and keeps its state at
the ``--at-losses`` levels (and ``--at-steps``), or starts from the user's own checkpoint
(``--from-checkpoint``, a ``torch.save`` of the model's state dict, optionally
``{"model": ..., "optimizer": ..., "step": ...}`` with an Adam state whose moments are then
carried). From each state it branches every (batch size, lr, seed) for the horizons K
(``validate.branch.branch_group``: common random numbers across lrs) and estimates, per state
and horizon, the best lr per batch size with its interval and censoring, the peak batch size
and the laws' leave-one-batch-size-out comparison with the practitioners' baselines
(``validate.branch.analyse``). A batch size whose optimum is on an edge of the lrs tried gets
up to ``--max-extra-lrs`` more lrs past that edge. With ``--estimate`` (the default) each state
also gets the one-step direct estimate of `validate estimate` at the same batch sizes (the
measured sign- and SGD-step optima and Theorem 2's prediction), drawn beside K = 1. Units run
in ``--workers`` processes (one per core by default; the numbers do not depend on it). Every
finished unit (state, batch size, lr set) and estimate is stored at once; rerun with the same
``--out`` to resume.

Files: ``points.csv`` (one row per checkpoint, horizon, batch size, lr, seed: the loss before
and after), ``best_lr.csv`` (``checkpoint_step, horizon, batch_size, lr, lo, hi, censored``
…), ``estimate.csv`` (the one-step estimate per state and batch size), ``peaks.csv``,
``falls.csv``, ``loo.csv``, ``summary.json`` (headline, verdicts, and a
``best_lr`` list at the last checkpoint and ``--advise-horizon`` for ``surgelab advise
--from``), ``starts/`` (the reference states), figures.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from surgelab.cli import Command, UsageError
from surgelab.config import Config, ConfigError, opt
from surgelab.workload_args import (
    DATA_DIR_WHY,
    DOWNLOAD_WHY,
    _env_download,
    check_data,
    check_workload,
    device_name,
)

_THIRD = tuple(float(f"{1e-4 * 10 ** (k / 3):.3g}") for k in range(7))  # 1e-4 … 1e-2


@dataclass(frozen=True)
class BranchConfig(Config):
    """``surgelab validate branch``: the only source of its defaults."""

    workload: str = opt("fmnist-cnn", "registered workload (fmnist-cnn, synthetic-mlp, ...)")
    import_: str | None = opt(
        None,
        "a Python file (or module) to import first: it registers your workload with "
        "@validate.workload.register",
        metavar="FILE",
    )
    size: Literal["smoke", "paper"] = opt("smoke", "workload size")
    data_dir: str | None = opt(None, DATA_DIR_WHY)
    download: bool = opt(_env_download(), DOWNLOAD_WHY)
    from_checkpoint: str | None = opt(
        None,
        "branch from this torch.save file (the model's state dict, or {'model', 'optimizer', "
        "'step'}) instead of a reference run",
        metavar="PATH",
    )
    ref_batch_size: int = opt(32, "batch size of the reference run", lo=1, hi=1_000_000)
    ref_lr: float = opt(1e-3, "Adam learning rate of the reference run", lo=0, lo_open=True)
    at_losses: tuple[float, ...] | None = opt(
        None,
        "branch where the reference run's held-in loss first falls below these levels "
        "(default: the workload's targets, or none when --at-steps is given)",
        lo=0,
        lo_open=True,
    )
    at_steps: tuple[int, ...] = opt(
        (), "also branch at these steps of the reference run", lo=0, hi=100_000_000
    )
    batch_sizes: tuple[int, ...] = opt(
        (1, 4, 16, 64, 256, 1024),
        "batch sizes to branch at",
        lo=1,
        hi=1_000_000,
        ascending=True,
        nonempty=True,
    )
    lrs: tuple[float, ...] = opt(
        _THIRD, "Adam learning rates to branch with", lo=0, lo_open=True, ascending=True
    )
    seeds: int = opt(5, "seeds 0 … N-1 per (batch size, lr): the bootstrap unit", lo=1, hi=10_000)
    horizons: tuple[int, ...] = opt(
        (1, 10, 100),
        "steps after which each branch's held-in loss is measured",
        lo=1,
        hi=1_000_000,
        ascending=True,
        nonempty=True,
    )
    horizon_examples: tuple[int, ...] | None = opt(
        None,
        "also measure after these numbers of training examples (⌈E/B⌉ steps at batch size B: "
        "the same compute for every B)",
        lo=1,
        hi=10**12,
        ascending=True,
    )
    betas: tuple[float, ...] = opt(
        (0.9, 0.999), "the branches' Adam (β1, β2), each in [0, 1); 0,0 is a sign update", lo=0
    )
    adam_state: Literal["carry", "reset"] = opt(
        "carry", "start the branches from the reference's Adam moments, or from zero"
    )
    max_extra_lrs: int = opt(
        3, "lrs added per batch size past a censored edge of the grid (0: fixed grid)", lo=0, hi=64
    )
    advise_horizon: int | None = opt(
        None,
        "the horizon whose best lrs `surgelab advise --from` uses (default: the longest)",
        lo=1,
    )
    compare_sweep: str | None = opt(
        None,
        "a `validate run` folder of the same workload: its best lrs (paper's rule) at the "
        "targets equal to --at-losses are drawn beside the branches and compared",
        metavar="DIR",
        presentation=True,
    )
    estimate: bool = opt(
        True,
        "also measure the one-step direct estimate at each state (`validate estimate`'s sign and "
        "SGD optima and Theorem 2's prediction per batch size), drawn beside K = 1",
    )
    estimate_batches: int = opt(
        36,
        "mini-batches per batch size at most in the one-step estimate (drawn in rounds, as "
        "`validate estimate --max-batches`, until its interval is narrow)",
        lo=2,
        hi=1_000_000,
    )
    n_boot: int = opt(200, "bootstrap resamples of seeds (0: no intervals)", lo=0, hi=100_000)
    seed: int = opt(0, "seed of the reference run (init and batches)", lo=0, hi=2**31 - 1)
    device: str = opt("cpu", "torch device: cpu, cuda, cuda:1, ...")
    workers: int | None = opt(
        None,
        "parallel processes, one unit (state, batch size, lrs) each; results do not depend on "
        "it (default: one per CPU core on cpu, 1 on a GPU)",
        lo=1,
        hi=4096,
        presentation=True,
    )
    threads: int | None = opt(
        None,
        "torch threads per process (default: 1 with several workers, else torch's)",
        lo=1,
        hi=4096,
    )

    def check(self) -> None:
        if self.import_ is not None:
            import_user_module(self.import_)
        check_workload(self.workload)
        if self.device != "cpu":
            device_name(self.device)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("betas", f"give two numbers β1,β2 in [0, 1); got {list(self.betas)}")
        if self.max_extra_lrs and len(self.lrs) < 2:
            raise ConfigError("lrs", "extending the grid needs >= 2 lrs (their ratio is the step)")
        if self.n_boot and self.n_boot < 10:
            raise ConfigError("n_boot", f"use 0 (no intervals) or >= 10; got {self.n_boot}")
        if self.advise_horizon is not None and self.advise_horizon not in self.horizons:
            raise ConfigError("advise_horizon", f"must be one of --horizons {list(self.horizons)}")
        if (
            self.compare_sweep is not None
            and not (Path(self.compare_sweep).expanduser() / "best_lr.csv").is_file()
        ):
            raise ConfigError(
                "compare_sweep", f"{self.compare_sweep!r} holds no best_lr.csv of `validate run`"
            )
        if self.from_checkpoint is not None:
            p = Path(self.from_checkpoint).expanduser()
            if not p.is_file():
                raise ConfigError(
                    "from_checkpoint", f"{self.from_checkpoint!r} is not a file (a torch.save)"
                )
        else:
            check_data(self.workload, self.size, self.data_dir, self.download)

    def levels(self, workload_targets: tuple[float, ...]) -> tuple[float, ...]:
        """The loss levels to branch at: ``--at-losses``, else none when ``--at-steps`` is
        given, else the workload's targets."""
        if self.at_losses is not None:
            return tuple(self.at_losses)
        return () if self.at_steps else tuple(workload_targets)


def import_user_module(what: str, arg: str = "import_") -> None:
    """Import a user's file (``path/to/file.py``) or module (``pkg.mod``); ``ConfigError``
    naming ``arg`` when it cannot be imported."""
    import importlib
    import importlib.util
    import sys

    p = Path(what).expanduser()
    try:
        if what.endswith(".py"):
            if not p.is_file():
                raise ConfigError(arg, f"{what!r} is not a file")
            name = f"surgelab_user_{p.stem}"
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, p)
                assert spec is not None and spec.loader is not None
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
        else:
            importlib.import_module(what)
    except ConfigError:
        raise
    except Exception as exc:  # the user's code: any error is theirs to see, in one line
        raise ConfigError(arg, f"importing {what!r} failed: {type(exc).__name__}: {exc}") from None


def _unit_id(start: str, b: int, lrs: list[float]) -> str:
    return f"{start}_B{b}_" + ",".join(f"{v:.12g}" for v in lrs)


def _load_checkpoint(cfg: BranchConfig, workload: Any) -> Any:
    import torch

    from validate import branch

    path = Path(cfg.from_checkpoint or "").expanduser()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign / corrupt file
        raise UsageError(
            f"--from-checkpoint {path}: not a torch.save checkpoint torch can read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
    try:
        start = branch.start_from_state_dict(workload, obj, name="user")
    except ValueError as exc:
        raise UsageError(f"--from-checkpoint {path}: {exc}") from None
    if cfg.adam_state == "carry" and not start.has_moments and any(cfg.betas):
        raise UsageError(
            f"--from-checkpoint {path}: holds no Adam state to carry; save "
            "{'model': model.state_dict(), 'optimizer': opt.state_dict(), 'step': step} or "
            "use --adam-state reset"
        )
    return start


def _starts(cfg: BranchConfig, run: Any, workload: Any, data: Any, device: str) -> list[Any]:
    """The states to branch from: the user's checkpoint, or the reference run's (saved in
    ``starts/`` so a resumed run does not retrain)."""
    import torch

    from surgelab.progress import bar
    from validate import branch

    if cfg.from_checkpoint is not None:
        return [_load_checkpoint(cfg, workload)]
    folder = run / "starts"
    index = folder / "index.json"
    if index.is_file():
        names = json.loads(index.read_text())["starts"]
        out = []
        for n in names:
            d = torch.load(folder / f"{n}.pt", map_location="cpu", weights_only=True)
            out.append(branch.Start(**d))
        return out
    levels = cfg.levels(workload.targets)
    out = []
    with bar(None, "reference run", unit="step") as b:
        for s in branch.reference_starts(
            workload,
            data,
            lr=cfg.ref_lr,
            batch_size=cfg.ref_batch_size,
            steps=cfg.at_steps,
            losses=levels,
            seed=cfg.seed,
            device=device,
            on_step=lambda _s: b.update(1),
        ):
            out.append(s)
    if not out:
        raise UsageError(
            f"--at-losses {list(levels)}: the reference run (lr {cfg.ref_lr:g}, B "
            f"{cfg.ref_batch_size}) reached none of them in {workload.max_steps} steps; give "
            "higher levels or a larger --ref-lr"
        )
    folder.mkdir(exist_ok=True)
    for s in out:
        torch.save(s.__dict__, folder / f"{s.name}.pt")
    index.write_text(json.dumps({"starts": [s.name for s in out]}))
    return out


def _edges(rows: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Per batch size, the lr-grid edges where an optimum is censored at some horizon."""
    from validate import branch, optimum

    per_h = [
        # one pseudo-target per horizon group: K for a steps horizon, -E for an examples one
        {**r, "target": -float(e) if (e := src.get("horizon_examples")) else float(src["horizon"])}
        for r, src in zip(branch.as_sweep_rows(rows), rows)
    ]
    return optimum.edges_to_extend(per_h)


# ----------------------------------------------------------------------------- units

#: Per-process cache of the loaded workload and data (a worker loads them once, not per unit).
_LOADED: dict[tuple[Any, ...], tuple[Any, Any]] = {}


@dataclass(frozen=True)
class _Job:
    """What every unit of a run shares; picklable (it travels to the worker processes)."""

    workload: str
    size: str
    data_dir: str | None
    import_: str | None
    device: str
    seeds: int
    horizons: tuple[int, ...]
    horizon_examples: tuple[int, ...]
    betas: tuple[float, float]
    adam_state: str
    estimate: Any  # validate.estimate.EstimateSettings, or None

    def loaded(self) -> tuple[Any, Any]:
        """The workload and its data on ``device`` (loaded once per process)."""
        from surgelab import datasets
        from validate.workload import factory, get_workload

        if self.import_ is not None:
            import_user_module(self.import_)
        # keyed on the factory too: a re-registered name is a new workload
        key = (self.workload, factory(self.workload), self.size, self.data_dir, self.device)
        if key not in _LOADED:
            wl = get_workload(self.workload, size=self.size, data_dir=self.data_dir)
            with datasets.decoded_arrays():
                _LOADED[key] = (wl, wl.load_data(self.data_dir, self.device))
        return _LOADED[key]


def _packed(start: Any) -> Any:
    """``start`` with its tensors as numpy arrays: pickled by value to a worker (torch's own
    pickling of tensors shares memory through file descriptors served by a thread of this
    process, which a worker stopped mid-transfer leaves with a traceback)."""
    import dataclasses

    def arrays(d: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if d is None else {k: v.detach().cpu().numpy() for k, v in d.items()}

    return dataclasses.replace(
        start,
        params=arrays(start.params),
        buffers=arrays(start.buffers),
        exp_avg=arrays(start.exp_avg),
        exp_avg_sq=arrays(start.exp_avg_sq),
    )


def _unpacked(start: Any) -> Any:
    """The inverse of :func:`_packed` (a start already holding tensors is returned as is)."""
    import dataclasses

    import torch

    def tensors(d: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if d is None else {k: torch.as_tensor(v) for k, v in d.items()}

    return dataclasses.replace(
        start,
        params=tensors(start.params),
        buffers=tensors(start.buffers),
        exp_avg=tensors(start.exp_avg),
        exp_avg_sq=tensors(start.exp_avg_sq),
    )


def _branch_unit(job: _Job, start: Any, b: int, lrs: list[float]) -> list[dict[str, Any]]:
    """Rows of one unit: every (lr, seed) at batch size ``b`` branched from ``start``."""
    from validate import branch

    start = _unpacked(start)
    workload, data = job.loaded()
    return branch.branch_group(
        workload,
        data,
        start,
        b,
        lrs,
        list(range(job.seeds)),
        job.horizons,
        horizon_examples=job.horizon_examples,
        betas=job.betas,
        adam_state=job.adam_state,
        device=job.device,
    )


def _estimate_unit(job: _Job, start: Any) -> list[dict[str, Any]]:
    """The one-step direct estimate's per-batch-size rows at ``start``
    (:func:`validate.estimate.estimate_at_checkpoint`)."""
    from validate.estimate import estimate_at_checkpoint

    start = _unpacked(start)
    workload, data = job.loaded()
    model = workload.make_model()
    model.load_state_dict({**start.params, **start.buffers})
    res = estimate_at_checkpoint(model.to(job.device), workload, data, job.estimate, start.step)
    return [
        {"checkpoint": start.name, "checkpoint_loss": start.loss, **r} for r in res["per_batch"]
    ]


def _estimate_settings(cfg: BranchConfig) -> Any:
    """`validate estimate`'s settings (its config's defaults) at the branches' batch sizes."""
    import dataclasses

    from surgelab.cmd_estimate import EstimateConfig
    from validate.estimate import EstimateSettings

    dflt = {f.name: f.default for f in dataclasses.fields(EstimateConfig)}
    ours = {
        "batch_sizes": tuple(cfg.batch_sizes),
        "max_batches": cfg.estimate_batches,
        "seed": cfg.seed,
    }
    return EstimateSettings(
        **{f.name: dflt[f.name] for f in dataclasses.fields(EstimateSettings)} | ours
    )


def _read_units(path: Path, key: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                u = json.loads(line)
                out[u[key]] = u["rows"]
    return out


def _append(path: Path, obj: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(obj) + "\n")


def run_branch(cfg: BranchConfig, run: Any) -> int:
    import torch

    from surgelab import datasets
    from surgelab.progress import say

    assert run is not None
    if run.finished:
        from surgelab.rundir import read_json

        print(f"already finished: {run.path}")
        for v in read_json(run / "summary.json").get("verdicts", []):
            print(f"  - {v}")
        return 0
    t0 = time.perf_counter()
    workers = _n_workers(cfg)
    threads = cfg.threads or (1 if workers > 1 else None)
    if threads is not None:
        torch.set_num_threads(threads)
    run.write_meta(device=device_name(cfg.device))
    if cfg.from_checkpoint is None:
        datasets.ensure_workload(cfg.workload, cfg.size, cfg.data_dir, cfg.download)
    job = _Job(
        cfg.workload,
        cfg.size,
        cfg.data_dir,
        cfg.import_,
        cfg.device,
        cfg.seeds,
        tuple(cfg.horizons),
        tuple(cfg.horizon_examples or ()),
        (float(cfg.betas[0]), float(cfg.betas[1])),
        cfg.adam_state,
        _estimate_settings(cfg) if cfg.estimate else None,
    )
    workload, data = job.loaded()
    starts = _starts(cfg, run, workload, data, cfg.device)
    say(
        f"validate branch: {len(starts)} state(s) × {len(cfg.batch_sizes)} batch sizes × "
        f"{len(cfg.lrs)} lrs × {cfg.seeds} seeds, horizons {list(cfg.horizons)}, "
        f"{workers} process(es) → {run.path}"
    )
    units, estimates = _run_units(cfg, job, run, starts, workers, threads or 1)
    all_rows = [r for rows in units for r in rows]
    run.write_table("points.csv", all_rows)
    if estimates is not None:
        run.write_table("estimate.csv", estimates)
    sweep = _sweep_rows(cfg, starts)
    if sweep is not None:
        run.write_table("sweep_best_lr.csv", sweep)
    summary = summarise(cfg, all_rows, starts, time.perf_counter() - t0, sweep, estimates)
    for name in ("best_lr", "peaks", "falls", "loo", "verdicts_by_group"):
        run.write_table(f"{name}.csv", summary.pop(f"_{name}"))
    _figures(run)
    run.finish(summary)
    print(f"validate branch: {run.path}")
    for v in summary["verdicts"]:
        print(f"  - {v}")
    return 0


def _n_workers(cfg: BranchConfig) -> int:
    from validate.sweep import cpu_count

    if cfg.workers is not None:
        return cfg.workers
    return 1 if cfg.device != "cpu" else cpu_count()


def _run_units(
    cfg: BranchConfig, job: _Job, run: Any, starts: list[Any], workers: int, threads: int
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]] | None]:
    """Branch every (state, batch size) and its grid extensions; measure the estimates.

    Units run in ``workers`` processes (in this one when 1), the largest batch sizes first;
    each finished unit is appended to ``branches.jsonl`` (estimates to ``estimate.jsonl``) at
    once, and a stored one is not run again. A batch size's grid is extended (up to
    ``--max-extra-lrs`` lrs past a censored edge, one per edge per round) once all its units
    so far have finished, so the lrs tried do not depend on the order units finish in.
    Returns the rows per unit in (state, batch size, lrs tried) order, and the estimate rows.
    """
    import concurrent.futures as cf
    import multiprocessing as mp
    import os

    from surgelab.progress import bar
    from validate.presets import extra_lr
    from validate.sweep import _worker_init, stop_processes

    store, est_store = run / "branches.jsonl", run / "estimate.jsonl"
    done = _read_units(store, "unit")
    est_done = _read_units(est_store, "start") if job.estimate is not None else {}
    base = [float(v) for v in cfg.lrs]
    keys = [(i, b) for i in range(len(starts)) for b in cfg.batch_sizes]
    tried: dict[tuple[int, int], list[float]] = {k: [] for k in keys}
    unit_ids: dict[tuple[int, int], list[str]] = {k: [] for k in keys}
    pending = dict.fromkeys(keys, 0)
    packed = [_packed(s) for s in starts]
    queue: list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]] = []
    pbar = bar(len(keys) + (len(starts) if job.estimate is not None else 0), "units", unit="unit")

    def add(key: tuple[int, int], lrs: list[float]) -> None:
        s, b = starts[key[0]], key[1]
        uid = _unit_id(s.name, b, lrs)
        unit_ids[key].append(uid)
        tried[key] += lrs
        if uid in done:
            pbar.update(1)
        else:
            pending[key] += 1
            queue.append((_branch_unit, (job, packed[key[0]], b, lrs), ("unit", key, uid)))

    def extend(key: tuple[int, int]) -> None:
        """Add the next round of extra lrs of a batch size whose units have all finished."""
        while pending[key] == 0 and len(tried[key]) - len(base) < cfg.max_extra_lrs:
            rows = [r for uid in unit_ids[key] for r in done[uid]]
            new = []
            for edge in sorted(_edges(rows).get(key[1], set())):
                have = tried[key] + new
                lr = extra_lr(tuple(base), max(have) if edge == "high" else min(have), edge)
                if lr not in have and len(have) - len(base) < cfg.max_extra_lrs:
                    new.append(lr)
            if not new:
                return
            pbar.total += len(new)
            for lr in new:
                add(key, [lr])

    def finished(tag: tuple[Any, ...], rows: list[dict[str, Any]]) -> None:
        pbar.update(1)
        if tag[0] == "estimate":
            _append(est_store, {"start": tag[1], "rows": rows})
            est_done[tag[1]] = rows
            return
        _, key, uid = tag
        _append(store, {"unit": uid, "rows": rows})
        done[uid] = rows
        pending[key] -= 1
        extend(key)

    if job.estimate is not None:
        for i, s in enumerate(starts):
            if s.name in est_done:
                pbar.update(1)
            else:
                queue.append((_estimate_unit, (job, packed[i]), ("estimate", s.name)))
    for key in sorted(keys, key=lambda k: (-k[1], k[0])):  # the largest batch sizes first
        add(key, base)
        extend(key)
    pool = None
    if workers > 1 and queue:
        pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(os.getpid(), threads),
        )
    running: dict[Any, tuple[Any, ...]] = {}
    try:
        with pbar:
            while queue or running:
                if pool is None:
                    fn, args, tag = queue.pop(0)
                    finished(tag, fn(*args))
                    continue
                while queue:
                    fn, args, tag = queue.pop(0)
                    running[pool.submit(fn, *args)] = tag
                ready, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for f in ready:
                    finished(running.pop(f), f.result())
    except BaseException:
        # Ctrl-C or a failing unit: drop what has not started, stop what runs, keep the store
        if pool is not None:
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            stop_processes(procs)
        raise
    if pool is not None:
        pool.shutdown(wait=True)
    per_unit = [done[uid] for key in keys for uid in unit_ids[key]]
    if job.estimate is None:
        return per_unit, None
    return per_unit, [r for s in starts for r in est_done[s.name]]


def _sweep_rows(cfg: BranchConfig, starts: list[Any]) -> list[dict[str, Any]] | None:
    """The compared sweep's best lrs (paper's rule) at the targets equal to a state's level."""
    from surgelab.rundir import read_table

    if cfg.compare_sweep is None:
        return None
    by_level = {float(s.name[4:]): s.name for s in starts if s.name.startswith("loss")}
    out = []
    for r in read_table(Path(cfg.compare_sweep).expanduser() / "best_lr.csv"):
        if r.get("rule", "further") != "further":
            continue
        name = by_level.get(float(r["target"]))
        if name is not None:
            out.append(
                {"checkpoint": name, "target": float(r["target"])}
                | {k: r.get(k) for k in ("batch_size", "lr", "lo", "hi", "censored")}
            )
    return out


def _compare(groups: list[Any], sweep: list[dict[str, Any]], k: int) -> list[str]:
    """Per state: the branches' lr* after K = ``k`` steps over the sweep's lr* (both interior)."""
    ref = {
        name: {
            int(r["batch_size"]): float(r["lr"])
            for r in sweep
            if r["checkpoint"] == name and not r.get("censored") and _finite(r.get("lr"))
        }
        for name in {g.checkpoint for g in groups}
    }
    return _ratios(
        groups,
        k,
        ref,
        lambda name: (
            f"{name} vs the from-scratch sweep at target {name[4:]}: lr*(branch, "
            f"K = {k}) / lr*(sweep)"
        ),
        f"(K = {k}) and the sweep",
    )


def _compare_estimate(groups: list[Any], est: list[dict[str, Any]], k: int) -> list[str]:
    """Per state: the branches' lr* after K = ``k`` steps over the one-step direct estimate's
    measured sign-step optimum, at the batch sizes where both are resolved (interior)."""
    ref = {
        name: {
            int(r["batch_size"]): float(r["lr_meas_sign"])
            for r in est
            if r["checkpoint"] == name and r.get("resolved_sign") and _finite(r.get("lr_meas_sign"))
        }
        for name in {g.checkpoint for g in groups}
    }
    return _ratios(
        groups,
        k,
        ref,
        lambda name: (
            f"{name} vs the one-step direct estimate (sign step, measured): "
            f"lr*(branch, K = {k}) / lr*(estimate)"
        ),
        f"after K = {k} step(s) and a resolved one-step sign estimate",
    )


def _ratios(
    groups: list[Any], k: int, ref: dict[str, dict[int, float]], head: Any, both: str
) -> list[str]:
    """Per state with reference lrs: lr*(branch, K = ``k``) over them, geometric mean and range
    over the batch sizes where both are interior (``head(name)`` starts the line)."""
    import numpy as np

    out = []
    for name in dict.fromkeys(g.checkpoint for g in groups):
        (g,) = [g for g in groups if g.checkpoint == name and g.horizon == k] or [None]
        other = ref.get(name) or {}
        if g is None or not other:
            continue
        br = {b["batch_size"]: b["lr"] for b in g.best if b["censored"] == ""}
        common = sorted(set(other) & set(br))
        if not common:
            out.append(
                f"{name}: no batch size with an interior optimum in both the branches {both}"
            )
            continue
        r = np.array([br[b] / other[b] for b in common])
        out.append(
            f"{head(name)} = {float(np.exp(np.log(r).mean())):.3g} (geometric mean over B = "
            f"{', '.join(map(str, common))}; range {r.min():.3g}–{r.max():.3g})"
        )
    return out


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _iv(lo: Any, hi: Any) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def summarise(
    cfg: BranchConfig,
    rows: list[dict[str, Any]],
    starts: list[Any],
    wall_s: float,
    sweep: list[dict[str, Any]] | None = None,
    estimates: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The run's summary (headline, verdicts) and its tables (keys ``_best_lr`` …)."""
    from validate import branch

    groups = branch.analyse(rows, n_boot=cfg.n_boot)
    best, peaks, falls, loo, per_group = [], [], [], [], []
    for g in groups:
        best += g.best
        peaks.append({**g.peak, "checkpoint_loss": g.checkpoint_loss})
        falls.append({k: v for k, v in g.fall.items() if k != "censored"})
        loo += g.loo
        per_group.append(
            {
                "checkpoint": g.checkpoint,
                "checkpoint_step": g.checkpoint_step,
                "horizon": g.horizon,
                "horizon_examples": g.horizon_examples,
                "fall": g.fall.get("text", ""),
                "laws": g.verdict.get("text", ""),
            }
        )
    hs = sorted({g.horizon for g in groups if g.horizon is not None})
    k_adv = cfg.advise_horizon or (hs[-1] if hs else None)
    last = max(groups, key=lambda g: g.checkpoint_step, default=None)
    verdicts: list[str] = []
    headline: list[dict[str, Any]] = []
    for name in dict.fromkeys(g.checkpoint for g in groups):
        gs = [g for g in groups if g.checkpoint == name]
        head = f"{name} (step {gs[0].checkpoint_step}, held-in loss {gs[0].checkpoint_loss:.3g})"
        parts = []
        for g in gs:
            p = g.peak
            if not math.isfinite(p["b_peak"]):
                where = "no peak estimate"
            elif p["censored"] == "plateau":
                where = f"lr* on a plateau from B = {_fmt(p['b_peak'])} (no single peak)"
            else:
                where = f"peak B ≈ {_fmt(p['b_peak'])} {_iv(p['lo'], p['hi'])}"
                if p["censored"] not in ("", "none"):
                    where += f" (censored {p['censored']}: the peak may lie beyond)"
            fell = "falls past it" if g.fall.get("falls") else "no resolved fall"
            parts.append(f"{g.label}: {where}, {fell}")
        verdicts.append(f"{head}: " + "; ".join(parts))
    short = [g for g in groups if g.horizon == hs[0]] if hs else []
    long_ = [g for g in groups if g.horizon == hs[-1]] if hs else []
    if hs and len(hs) > 1:
        n_s = sum(bool(g.fall.get("falls")) for g in short)
        n_l = sum(bool(g.fall.get("falls")) for g in long_)
        if n_s > n_l:
            what = "the surge (a resolved fall of lr* past its peak) appears at short horizons "
            what += "and fades at long ones"
        elif n_s == n_l == 0:
            what = "no resolved fall of lr* past its peak at any horizon"
        elif n_s == n_l:
            what = "a resolved fall at the shortest and the longest horizon alike"
        else:
            what = "a resolved fall at long horizons more often than at short ones"
        verdicts.append(
            f"horizon: resolved falls at K = {hs[0]} in {n_s} of {len(short)} state(s), at "
            f"K = {hs[-1]} in {n_l} of {len(long_)}: {what} (Adam betas "
            f"{tuple(cfg.betas)}, moments {cfg.adam_state})"
        )
    if sweep and hs:
        verdicts += _compare(groups, sweep, hs[-1])
    if estimates and hs:
        verdicts += _compare_estimate(groups, estimates, hs[0])
    for g in groups:
        if g.fall.get("text"):
            verdicts.append(f"{g.checkpoint}, {g.label}: {g.fall['text']}")
        if g.verdict.get("text"):
            verdicts.append(f"{g.checkpoint}, {g.label}: {g.verdict['text']}")
    if last is not None:
        for g in groups:
            if (
                g.checkpoint == last.checkpoint
                and g.horizon is not None
                and g.horizon
                in (
                    hs[0],
                    hs[-1],
                )
            ):
                headline.append(
                    {
                        "key": f"b_peak_k{g.horizon}",
                        "label": f"measured peak batch size after K = {g.horizon} steps from "
                        f"{g.checkpoint}",
                        "value": g.peak["b_peak"],
                        "lo": g.peak["lo"],
                        "hi": g.peak["hi"],
                    }
                )
    # the interior optima of the advised group (censored ones are bounds: left out)
    advice = [
        {k: b[k] for k in ("batch_size", "lr", "lo", "hi")}
        for b in best
        if last is not None
        and b["checkpoint"] == last.checkpoint
        and b["horizon"] == k_adv
        and b["censored"] == ""
        and math.isfinite(b["lr"])
    ]
    return {
        "command": "validate branch",
        "workload": cfg.workload,
        "size": cfg.size,
        "starts": [
            {"name": s.name, "step": s.step, "loss": s.loss, "moments": s.has_moments}
            for s in starts
        ],
        "horizons": hs,
        "advice_from": {
            "checkpoint": None if last is None else last.checkpoint,
            "horizon": k_adv,
        },
        "best_lr": advice,
        "headline": headline,
        "verdicts": verdicts,
        "n_points": len(rows),
        "wall_s": wall_s,
        "_best_lr": best,
        "_peaks": peaks,
        "_falls": falls,
        "_loo": loo,
        "_verdicts_by_group": per_group,
    }


def _figures(run: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from validate import branch_plots as P

    best, peaks = run.read_table("best_lr.csv"), run.read_table("peaks.csv")
    sweep = run.read_table("sweep_best_lr.csv") if (run / "sweep_best_lr.csv").is_file() else None
    est = run.read_table("estimate.csv") if (run / "estimate.csv").is_file() else None
    if best:
        run.save_figure(P.plot_best_lr_by_horizon(best, sweep, est), "best_lr_vs_batch.png")
    if peaks:
        run.save_figure(P.plot_peak_by_checkpoint(peaks), "peak_vs_checkpoint.png")


BRANCH = Command(
    "branch",
    "best lr per batch size at training states, per horizon (branches from one run or yours)",
    BranchConfig,
    run_branch,
    description=__doc__ or "",
)
