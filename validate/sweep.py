"""Run a preset's grid unit by unit, locally or on Ray, into a resumable SQLite store.

The grid (batch sizes × lrs × seeds) is cut into **units**: one batch size × all learning rates
× a chunk of ``preset.seeds_per_unit`` seeds. A unit is one call of the trainer
(:func:`validate.engine.train_group`, which trains all its models as one batched program), and
the unit of resumption: each finished unit is committed to the store in one transaction as soon
as it finishes, and a restarted sweep skips the committed ones. Only this (driver) process
writes SQLite; workers return rows.

Backends:

* ``local``: ``workers=1`` runs units in this process; more workers use a
  ``ProcessPoolExecutor`` with the ``spawn`` start method (fork is unsafe once torch has started
  threads), each worker limited to ``cpu_count // workers`` torch threads. On ``cuda`` the
  default is one worker (every local worker would share the one visible device); spread over
  several GPUs with the Ray backend, which gives each task its own.
* ``ray``: connects to ``address`` (a running cluster; its nodes need surgelab installed and
  the data reachable) or starts a local Ray instance; one Ray task per unit, ``num_gpus=1`` per
  task on ``cuda``; results are committed as they come back (``ray.wait``).

Ctrl-C (``KeyboardInterrupt``) stops the sweep; the units already committed are kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validate.presets import Preset
from validate.store import Store

Trainer = Callable[..., list[dict[str, Any]]]


@dataclass(frozen=True)
class Unit:
    """One unit of work: a batch size, all the preset's lrs, a chunk of seeds."""

    unit_id: str
    batch_size: int
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]


def plan_units(preset: Preset) -> list[Unit]:
    """Cut the grid into units, largest batch size first (they take longest per step).

    The cut depends on the preset alone (not on the number of workers), so a sweep can resume
    with a different ``--workers`` or backend.
    """
    k = preset.seeds_per_unit or len(preset.seeds)
    chunks = [preset.seeds[i : i + k] for i in range(0, len(preset.seeds), k)]
    out = []
    for b in sorted(preset.batch_sizes, reverse=True):
        for c in chunks:
            uid = f"B{b}_s{c[0]}-{c[-1]}" if len(c) > 1 else f"B{b}_s{c[0]}"
            out.append(Unit(uid, int(b), tuple(preset.lrs), tuple(c)))
    return out


def _default_trainer() -> Trainer:
    from validate.engine import train_group

    return train_group


# Per-process cache: a worker loads its workload's data once, not once per unit.
_CACHE: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _workload_and_data(preset: Preset, data_dir: str | None, device: str) -> tuple[Any, Any]:
    key = (preset.workload, preset.size, data_dir, device)
    if key not in _CACHE:
        from validate.workload import get_workload

        wl = get_workload(preset.workload, size=preset.size)
        _CACHE[key] = (wl, wl.load_data(data_dir, device))
    return _CACHE[key]


def check_inputs(preset: Preset, *, data_dir: str | None = None, device: str = "cpu") -> Any:
    """Build the preset's workload and load its data once in this process (cached for
    in-process units); raises the workload registry's ``ValueError`` or the data module's
    ``FileNotFoundError`` with their messages. Returns the workload."""
    return _workload_and_data(preset, data_dir, device)[0]


def units_wall_s(store_path: str | os.PathLike) -> float:
    """Total seconds the stored units took (summed over workers, across resumptions)."""
    from validate.store import read_units

    return float(sum(u["wall_s"] or 0.0 for u in read_units(store_path)))


def run_unit(
    preset: Preset,
    unit: Unit,
    *,
    trainer: Trainer | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> tuple[Unit, list[dict[str, Any]], float]:
    """Train one unit; returns ``(unit, rows, wall seconds)``. Runs in any worker process."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    wl, data = _workload_and_data(preset, data_dir, device)
    fn = trainer or _default_trainer()
    rows = fn(
        wl,
        data,
        unit.batch_size,
        list(unit.lrs),
        list(unit.seeds),
        betas=tuple(preset.betas),
        targets=preset.targets,
        further_steps=preset.further_steps,
        max_steps=preset.max_steps,
        eval_every=preset.eval_every,
        device=device,
        progress=False,
    )
    return unit, rows, time.perf_counter() - t0


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="unit")


def run_sweep(
    preset: Preset,
    *,
    store_path: str | os.PathLike,
    backend: str = "local",
    address: str | None = None,
    device: str = "cpu",
    workers: int | None = None,
    trainer: Trainer | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    threads: int | None = None,
    on_unit: Callable[[Unit, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a preset's sweep; return every stored point.

    Args:
      preset: the grid and protocol (:class:`validate.presets.Preset`).
      store_path: the SQLite file; an existing one resumes (same preset config required,
        else :class:`validate.store.ConfigMismatchError`).
      backend: ``"local"`` (process pool / in-process) or ``"ray"``.
      address: Ray cluster address (``"auto"``, ``"ray://host:10001"``, ...); None starts a
        local Ray instance with ``workers`` CPUs.
      device: torch device every unit trains on (``"cpu"``, ``"cuda"``).
      workers: parallel units. Default: ``os.cpu_count()`` on CPU (capped by the number of
        units), 1 on a local GPU.
      trainer: a :func:`validate.engine.train_group`-compatible function (default: that one);
        must be importable by name for the process-pool and Ray backends.
      data_dir: dataset folder (None: the workload's default resolution).
      progress: show a tqdm bar over units.
      threads: torch threads per unit in pool / Ray workers (default: the CPUs divided among
        the workers; in-process units keep this process's setting).
      on_unit: called in the driver after each unit is committed, with the unit and the
        number of units committed in this call (monitoring, tests).

    Returns:
      All stored rows (this run's and earlier runs'), sorted by target, batch size, lr, seed.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray'; got {backend=}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers=}")
    units = plan_units(preset)
    ddir = None if data_dir is None else str(data_dir)
    with Store(store_path, preset.config(), preset.config_hash()) as store:
        done = store.done_units()
        todo = [u for u in units if u.unit_id not in done]
        n_done = [0]

        def commit(unit: Unit, rows: list[dict[str, Any]], wall: float) -> None:
            store.write_unit(unit.unit_id, unit.batch_size, unit.lrs, unit.seeds, rows, wall)
            n_done[0] += 1
            bar.update(1)
            if on_unit is not None:
                on_unit(unit, n_done[0])

        with _progress(
            len(units), len(units) - len(todo), progress, f"{preset.name} [{backend}]"
        ) as bar:
            if todo:
                if backend == "ray":
                    _run_ray(
                        preset,
                        todo,
                        commit,
                        address=address,
                        device=device,
                        workers=workers,
                        trainer=trainer,
                        data_dir=ddir,
                        threads=threads,
                    )
                else:
                    _run_local(
                        preset,
                        todo,
                        commit,
                        device=device,
                        workers=workers,
                        trainer=trainer,
                        data_dir=ddir,
                        threads=threads,
                    )
        return store.rows()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def _run_local(
    preset: Preset,
    todo: Sequence[Unit],
    commit,
    *,
    device: str,
    workers: int | None,
    trainer: Trainer | None,
    data_dir: str | None,
    threads: int | None,
) -> None:
    n = workers or (1 if device.startswith("cuda") else min(_cpu_count(), len(todo)))
    n = max(1, min(n, len(todo)))
    if n == 1:
        for u in todo:
            commit(
                *run_unit(
                    preset, u, trainer=trainer, data_dir=data_dir, device=device, threads=threads
                )
            )
        return
    threads = threads or max(1, _cpu_count() // n)
    pool = cf.ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"))
    futs = [
        pool.submit(
            run_unit, preset, u, trainer=trainer, data_dir=data_dir, device=device, threads=threads
        )
        for u in todo
    ]
    try:
        for f in cf.as_completed(futs):
            commit(*f.result())
    except BaseException:
        # Ctrl-C or a failing unit: drop what has not started, keep what is committed.
        pool.shutdown(wait=False, cancel_futures=True)
        for p in list(getattr(pool, "_processes", {}).values()):
            p.terminate()  # our own workers only; a unit in flight is lost by design
        raise
    pool.shutdown(wait=True)


def _run_ray(
    preset: Preset,
    todo: Sequence[Unit],
    commit,
    *,
    address: str | None,
    device: str,
    workers: int | None,
    trainer: Trainer | None,
    data_dir: str | None,
    threads: int | None,
) -> None:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is an optional dependency
        raise ValueError("the ray backend needs Ray: pip install 'surgelab[ray]'") from e
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # The package must be importable by Ray's workers: pass this checkout's root on.
            root = str(Path(__file__).resolve().parent.parent)
            ray.init(
                num_cpus=workers or _cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={
                    "env_vars": {
                        "PYTHONPATH": os.pathsep.join(
                            [root, os.environ.get("PYTHONPATH", "")]
                        ).rstrip(os.pathsep)
                    }
                },
            )
        started = True
    try:
        gpu = device.startswith("cuda")
        total = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # one CPU per task (Ray packs as many as fit) unless --workers asks for fewer, fatter ones
        cpus = 1 if gpu or not workers else max(1, total // workers)
        task = ray.remote(num_cpus=cpus, num_gpus=1 if gpu else 0, max_retries=1)(run_unit)
        pending = [
            task.remote(
                preset,
                u,
                trainer=trainer,
                data_dir=data_dir,
                device=device,
                threads=threads or cpus,
            )
            for u in todo
        ]
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    commit(*ray.get(ref))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
