"""Run a preset's grid unit by unit, locally or on Ray, into a resumable result store.

The grid (batch sizes × lrs × seeds) is cut into **units**: one batch size × all learning rates
× a chunk of ``preset.seeds_per_unit`` seeds. A unit is one call of the trainer
(:func:`validate.engine.train_group`, which trains all its models as one batched program, or
:func:`validate.engine.train_single`, one model at a time: ``engine``; with ``engine=None`` the
faster of the two on this device, timed on a slice of the preset first, :func:`measure_engines`),
and the unit of resumption: each finished unit is handed to the store as soon as it finishes, and
a restarted sweep skips the stored ones. Long units also hand their state to the store's
checkpoints every ``checkpoint_every`` seconds, so a killed sweep loses minutes of a unit, not
the whole unit.

**Stores.** This library never writes files. A store is any object with the methods of
:class:`ResultStore`; :class:`MemoryStore` keeps results in memory, ``surgelab.store.SweepStore``
(the app layer) in an SQLite file. Stored results are keyed on everything that determines them
(:func:`sweep_key`: the workload's fingerprint, the grid and the engine settings); a store that
holds results of another key refuses with :class:`StaleResultsError`, never reusing them.

Backends:

* ``local``: ``workers=1`` runs units in this process; more workers use a process pool with the
  ``spawn`` start method (fork is unsafe once torch has started threads). Default: one worker
  per CPU core with one torch thread each on ``cpu``; one worker on ``cuda`` (every local
  worker would share the one visible device). Workers ignore Ctrl-C (the driver stops them),
  and die with the driver even when it is killed (``PR_SET_PDEATHSIG`` on Linux, plus a thread
  watching the parent pid everywhere).
* ``ray``: connects to ``address`` (a running cluster; its nodes need surgelab installed and
  the data reachable) or starts a local Ray instance; one Ray task per unit, ``num_gpus=1`` per
  task on ``cuda``; results are stored as they come back (``ray.wait``).

**Grid extension** (``preset.max_extra_lrs`` > 0): after the base grid is stored, the sweep
looks, per batch size, for a censored optimum (:func:`validate.optimum.edges_to_extend`: the
point estimate of a rule of ``preset.extend_rules`` on the lowest / highest lr tried there, at
any target, all seeds) and adds ONE lr past each such edge (:meth:`Preset.extra_lr`: the
grid's own ratio at that edge), trained for ALL the preset's seeds, one unit per (batch size,
lr, seed chunk), stored in the same store like every other unit. Then it looks again, until no
optimum is censored or the batch size has ``max_extra_lrs`` extra lrs. The store's key holds
the extension fields (:meth:`Preset.config`), so a resumed sweep replays the same rule: the
decisions are a deterministic function of the stored points, a round left half-done is
completed before the next decision, and nothing is ever re-drawn or dropped.

*Why the estimators stay (nearly) unbiased under this adaptive sampling.* The rule decides
only WHERE to add lrs, from whether the current optimum sits on an edge, never from how good
it looks; the added runs are fresh, use every seed with that seed's own data stream, so each
seed's curve over lr stays complete and paired, and the seed bootstrap of
:mod:`validate.optimum` remains a resampling of exchangeable seeds; no point is removed, so
the grid only widens. What the rule changes is the grid the estimator sees: it removes the
censoring bias of an edge (an edge estimate is biased toward the grid), and the local
quadratic uses only the lrs next to the final argmax. The intervals are conditional on the
final grid (the bootstrap does not replay the extension decisions); a batch size that is
still censored at the cap stays flagged and out of the fits.

**Adaptive seeds** (``preset.max_seeds`` set): after the grid and its extension are stored, a
batch size whose optimum is unsure gets more seeds: where the seed-bootstrap interval of ln lr*
is wider than ``preset.seed_log_width`` at some target (:func:`validate.optimum.log_widths`,
over ``preset.extend_rules``, interior optima only), one unit of the next
``seeds_per_unit`` new seeds at EVERY lr tried there (so each seed's curve over lr stays
complete and paired), round after round, until the interval is narrow or the batch size has
``max_seeds`` seeds (:func:`next_seeds`). The extension rule sees only the grid's own seeds, so
added seeds never reopen it. *Bias:* the rule looks at the width of the interval only, never
at where the optimum lies, and the added seeds are fresh, independent streams, so the point
estimate at a batch size is the estimate on all its seeds, however many; what the rule does
change is coverage: stopping when an interval first looks narrow picks draws whose spread
happens to be small (optional stopping on the spread). On noisy synthetic sweeps (5 seeds,
chunks of 5 up to 15, W = 0.8) the 95% intervals held the true optimum in 0.883 of 300 draws,
0.75 among those that stopped at 5 seeds; so the analysis of an adaptive sweep gives a batch
size the rule stopped early an interval at least W wide (``floor`` "width" in ``best_lr.csv``,
:func:`validate.optimum.analyse_target`), which brought coverage back to 0.95 (the slow test in
tests/test_validate_estimators.py). Batch sizes may end with different numbers of seeds: a batch
size's best-lr interval resamples its own seeds (:func:`validate.optimum.analyse_target`);
statistics across batch sizes (B_crit, the law comparison, the fall) resample all seeds
jointly, a seed absent at a batch size contributing nothing there.

Ctrl-C (``KeyboardInterrupt``) stops the sweep within seconds: workers are terminated, the
stored units are kept, and the exception propagates to the caller.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import hashlib
import json
import math
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from validate.presets import Preset

Trainer = Callable[..., list[dict[str, Any]]]

#: Default seconds between checkpoints of a unit in progress.
CHECKPOINT_EVERY = 300.0


@dataclass(frozen=True)
class Unit:
    """One unit of work: a batch size, all the preset's lrs, a chunk of seeds."""

    unit_id: str
    batch_size: int
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]


def _chunks(preset: Preset) -> list[tuple[int, ...]]:
    k = preset.seeds_per_unit or len(preset.seeds)
    return [tuple(preset.seeds[i : i + k]) for i in range(0, len(preset.seeds), k)]


def _chunk_id(c: Sequence[int]) -> str:
    return f"s{c[0]}-{c[-1]}" if len(c) > 1 else f"s{c[0]}"


def plan_units(preset: Preset) -> list[Unit]:
    """Cut the grid into units, largest batch size first (they take longest per step).

    The cut depends on the preset alone (not on the number of workers), so a sweep can resume
    with a different ``--workers`` or backend.

    Examples:
      >>> from validate.presets import get_preset
      >>> [u.unit_id for u in plan_units(get_preset("tiny", "synthetic-mlp"))]
      ['B64_s0', 'B16_s0', 'B4_s0']
    """
    out = []
    for b in sorted(preset.batch_sizes, reverse=True):
        for c in _chunks(preset):
            out.append(Unit(f"B{b}_{_chunk_id(c)}", int(b), tuple(preset.lrs), tuple(c)))
    return out


def extension_units(batch_size: int, lr: float, preset: Preset) -> list[Unit]:
    """The units of one extra lr at one batch size: every seed chunk of the preset.

    Examples:
      >>> from validate.presets import get_preset
      >>> [u.unit_id for u in extension_units(16, 0.09, get_preset("tiny", "synthetic-mlp"))]
      ['B16_s0_lr0.09']
    """
    return [
        Unit(f"B{batch_size}_{_chunk_id(c)}_lr{lr:.12g}", int(batch_size), (float(lr),), c)
        for c in _chunks(preset)
    ]


def next_extension(preset: Preset, rows: Sequence[Mapping[str, Any]]) -> list[Unit]:
    """The next round of the grid extension (module docstring): the units of one new lr past
    each censored edge of each batch size with fewer than ``preset.max_extra_lrs`` extra lrs.

    Pure: a function of the preset and the stored points alone (so a resume replays it).
    """
    from validate.optimum import edges_to_extend

    if not preset.max_extra_lrs:
        return []
    base = {float(v) for v in preset.lrs}
    tried: dict[int, set[float]] = {}
    for r in rows:
        tried.setdefault(int(r["batch_size"]), set()).add(float(r["lr"]))
    out: list[Unit] = []
    for b, edges in sorted(edges_to_extend(rows, rules=preset.extend_rules).items()):
        if b not in tried:
            continue
        n_extra = len(tried[b] - base)
        for edge in sorted(edges):
            if n_extra >= preset.max_extra_lrs:
                break
            at = max(tried[b]) if edge == "high" else min(tried[b])
            out += extension_units(b, preset.extra_lr(at, edge), preset)
            n_extra += 1
    return out


def seed_unit(batch_size: int, lrs: Iterable[float], seeds: Sequence[int]) -> Unit:
    """The unit of one round of added seeds at one batch size: every lr tried there.

    Examples:
      >>> seed_unit(16, (0.01, 0.003), (5, 6)).unit_id
      'B16_s5-6_more'
    """
    return Unit(
        f"B{batch_size}_{_chunk_id(seeds)}_more",
        int(batch_size),
        tuple(sorted(float(v) for v in lrs)),
        tuple(int(s) for s in seeds),
    )


def next_seeds(preset: Preset, rows: Sequence[Mapping[str, Any]], n_boot: int = 200) -> list[Unit]:
    """The next round of adaptive seeds (module docstring): per batch size with fewer than
    ``preset.max_seeds`` seeds whose optimum is unsure (:func:`validate.optimum.log_widths`
    over ``preset.extend_rules`` > ``preset.seed_log_width``), one unit of the next
    ``seeds_per_unit`` new seeds (numbered after the largest there) at every lr tried there.

    Pure: a function of the preset and the stored points alone (so a resume replays it).
    """
    from validate.optimum import log_widths

    if not preset.max_seeds:
        return []
    k = preset.seeds_per_unit or len(preset.seeds)
    widths = log_widths(rows, rules=preset.extend_rules, n_boot=n_boot)
    seeds: dict[int, set[int]] = {}
    lrs: dict[int, set[float]] = {}
    for r in rows:
        seeds.setdefault(int(r["batch_size"]), set()).add(int(r["seed"]))
        lrs.setdefault(int(r["batch_size"]), set()).add(float(r["lr"]))
    out = []
    for b in preset.batch_sizes:
        have = seeds.get(int(b), set())
        if not have or len(have) >= preset.max_seeds:
            continue
        if not widths.get(int(b), 0.0) > preset.seed_log_width:
            continue
        first = max(have) + 1
        n = min(k, preset.max_seeds - len(have))
        out.append(seed_unit(int(b), lrs[int(b)], tuple(range(first, first + n))))
    return out


def _pending_extensions(preset: Preset, rows: Sequence[Mapping[str, Any]]) -> list[Unit]:
    """Every unit of the extra lrs already in the store (to finish a half-done round)."""
    base = {float(v) for v in preset.lrs}
    extra = sorted(
        {(int(r["batch_size"]), float(r["lr"])) for r in rows}
        - {(int(b), lr) for b in preset.batch_sizes for lr in base}
    )
    return [u for b, lr in extra for u in extension_units(b, lr, preset)]


# ----------------------------------------------------------------------------- stores


class StaleResultsError(ValueError):
    """A store holds results computed from another workload, grid or engine setting."""


class Checkpoints(Protocol):
    """Where units in progress keep their state (picklable: it travels to the workers)."""

    def load(self, unit_id: str) -> dict[str, Any] | None: ...

    def save(self, unit_id: str, state: dict[str, Any]) -> None: ...

    def discard(self, unit_id: str) -> None: ...


class ResultStore(Protocol):
    """What :func:`run_sweep` needs from a store of finished units.

    ``bind(key)`` records the sweep's key in a new store, or raises
    :class:`StaleResultsError` naming what differs when the store holds another key.
    ``checkpoints`` may be None (units in progress are then not checkpointed).
    """

    checkpoints: Checkpoints | None

    def bind(self, key: Mapping[str, Any]) -> None: ...

    def done_units(self) -> set[str]: ...

    def write_unit(
        self,
        unit_id: str,
        batch_size: int,
        lrs: Sequence[float],
        seeds: Sequence[int],
        rows: Iterable[Mapping[str, Any]],
        wall_s: float | None = None,
    ) -> int: ...

    def rows(self) -> list[dict[str, Any]]: ...


def key_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two keys.

    Examples:
      >>> old = {"a": 1, "w": {"model": "x", "data": "d"}}
      >>> key_diff(old, {"a": 1, "w": {"model": "y", "data": "d"}})
      ['w.model']
    """
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += key_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def key_hash(key: Mapping[str, Any]) -> str:
    """SHA-256 of a key in canonical JSON."""
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _sort_key(r: Mapping[str, Any]) -> tuple:
    return (-r["target"], r["batch_size"], r["lr"], r["seed"])


class MemoryStore:
    """A :class:`ResultStore` in memory (nothing is written anywhere; no checkpoints)."""

    checkpoints: Checkpoints | None = None

    def __init__(self) -> None:
        self.key: dict[str, Any] | None = None
        self._units: dict[str, list[dict[str, Any]]] = {}

    def bind(self, key: Mapping[str, Any]) -> None:
        key = json.loads(json.dumps(key))
        if self.key is None:
            self.key = key
        elif self.key != key:
            raise StaleResultsError(
                f"the store holds results of another sweep ({', '.join(key_diff(self.key, key))} "
                "differ); use a new store"
            )

    def done_units(self) -> set[str]:
        return set(self._units)

    def write_unit(self, unit_id, batch_size, lrs, seeds, rows, wall_s=None) -> int:
        self._units[unit_id] = [dict(r, unit_id=unit_id) for r in rows]
        return len(self._units[unit_id])

    def rows(self) -> list[dict[str, Any]]:
        return sorted((r for u in self._units.values() for r in u), key=_sort_key)


# ----------------------------------------------------------------------------- the key


def sweep_key(
    preset: Preset,
    workload_fingerprint: Mapping[str, Any],
    *,
    device: str = "cpu",
    trainer: Trainer | None = None,
) -> dict[str, Any]:
    """Everything that determines a sweep's stored results.

    ``grid``: the preset's grid and protocol (:meth:`Preset.config`); ``workload``: the
    workload's fingerprint (:func:`validate.workload.fingerprint`: model, initial weights,
    data, loss, protocol constants); ``engine``: the trainer, its numerical constants and the
    device type (CPU and GPU round differently).
    """
    from validate import engine

    fn = trainer or engine.train_group
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return {
        "grid": preset.config(),
        "workload": dict(workload_fingerprint),
        "engine": {
            "trainer": f"{getattr(fn, '__module__', None) or type(fn).__module__}.{name}",
            "device_type": device.split(":")[0],
            "adam_eps": 1e-8,
            "diverge_factor": engine.DIVERGE_FACTOR,
            "eval_chunk": engine.EVAL_CHUNK,
        },
    }


# ----------------------------------------------------------------------------- workers


def _default_trainer() -> Trainer:
    from validate.engine import train_group

    return train_group


# Per-process cache: a worker loads its workload's data once, not once per unit.
_CACHE: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def load_workload(
    preset: Preset,
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    decoded_cache: Any = None,
) -> tuple[Any, Any]:
    """The preset's workload and its data on ``device`` (cached in this process).

    ``decoded_cache``: where decoded arrays may be kept between runs
    (:func:`validate.workloads.decoded_cache`; None: decode).

    Raises the registry's ``ValueError`` or the data module's ``FileNotFoundError``.
    """
    from validate.workload import factory, get_workload
    from validate.workloads import decoded_cache as using

    # keyed on the factory too: a re-registered name is a new workload
    key = (preset.workload, factory(preset.workload), preset.size, data_dir, device)
    if key not in _CACHE:
        wl = get_workload(preset.workload, size=preset.size, data_dir=data_dir)
        with using(decoded_cache):
            _CACHE[key] = (wl, wl.load_data(data_dir, device))
    return _CACHE[key]


def run_unit(
    preset: Preset,
    unit: Unit,
    *,
    trainer: Trainer | None = None,
    data_dir: str | None = None,
    decoded_cache: Any = None,
    device: str = "cpu",
    threads: int | None = None,
    checkpoints: Checkpoints | None = None,
    checkpoint_every: float | None = CHECKPOINT_EVERY,
) -> tuple[Unit, list[dict[str, Any]], float]:
    """Train one unit; returns ``(unit, rows, wall seconds)``. Runs in any worker process."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    wl, data = load_workload(preset, data_dir=data_dir, device=device, decoded_cache=decoded_cache)
    fn = trainer or _default_trainer()
    extra: dict[str, Any] = {}
    if checkpoints is not None and checkpoint_every is not None and _resumable(fn):
        state = checkpoints.load(unit.unit_id)
        extra = {
            "checkpoint_every": checkpoint_every,
            "on_checkpoint": lambda s: checkpoints.save(unit.unit_id, s),
            "resume": state,
        }
    if preset.eval_schedule != "fixed":  # a fixed-schedule call stays as before (any trainer)
        extra.update(eval_schedule=preset.eval_schedule, eval_rel=preset.eval_rel)
    rows = fn(
        wl,
        data,
        unit.batch_size,
        list(unit.lrs),
        list(unit.seeds),
        betas=tuple(preset.betas),
        targets=preset.targets,
        further_steps=preset.further_steps,
        max_steps=preset.max_steps
        if preset.max_examples is None
        else preset.steps_for(unit.batch_size, wl.max_steps),
        eval_every=preset.eval_every,
        device=device,
        **extra,
    )
    return unit, rows, time.perf_counter() - t0


def _resumable(fn: Trainer) -> bool:
    """Whether a trainer takes checkpoints (``resume``); one that does not reruns a killed
    unit from its start."""
    import inspect

    try:
        ps = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return "resume" in ps or any(p.kind is p.VAR_KEYWORD for p in ps.values())


# ----------------------------------------------------------------------------- the engine

#: The engines a sweep may train with: the batched (vmapped) group, or one model at a time.
ENGINES = ("group", "single")


def engine_trainer(name: str) -> Trainer:
    """The trainer of an engine name (:data:`ENGINES`)."""
    from validate import engine

    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {name!r}")
    return engine.train_group if name == "group" else engine.train_single


def _stored_engine(store: Any) -> str | None:
    """The engine a store's results were trained with (None: a new store, or another trainer)."""
    key = getattr(store, "key", None)
    key = key() if callable(key) else key  # a method or a property
    name = ((key or {}).get("engine") or {}).get("trainer")
    return {"validate.engine.train_group": "group", "validate.engine.train_single": "single"}.get(
        name or ""
    )


def measure_engines(
    preset: Preset,
    workload: Any,
    data: Any,
    *,
    device: str = "cpu",
    threads: int | None = None,
    steps: int | None = None,
    repeats: int = 2,
    trainers: Mapping[str, Trainer] | None = None,
) -> dict[str, Any]:
    """Time every engine on one unit of the preset's own work on this device; pick the faster.

    The slice: the preset's middle batch size, all its lrs × one unit's seeds (the single
    engine, whose cost per model-step does not depend on their number: at most 2 lrs × 4
    seeds of them), ``steps`` optimiser steps (default two evaluation intervals) with no
    target crossed (so no forks),
    after a one-interval warm-up of each engine (first-call costs); each engine is run
    ``repeats`` times, alternately, and its fastest wall time kept (the least disturbed on a
    shared machine). ``threads``: torch threads during the measurement (the workers' setting;
    restored after). ``trainers``: name → trainer to compare (default :data:`ENGINES`).

    Returns:
      ``{"engine": the faster name, "batch_size", "n_models", "steps", "threads",
      "<name>_model_steps_per_s" per engine, "ratio": fastest / slowest rate (≥ 1)}``.
    """
    import torch

    cands = dict(trainers) if trainers is not None else {n: engine_trainer(n) for n in ENGINES}
    if not cands or repeats < 1:
        raise ValueError(f"need >= 1 trainer and repeats >= 1; got {list(cands)}, {repeats=}")
    bs = sorted(preset.batch_sizes)
    b = int(bs[(len(bs) - 1) // 2])
    seeds = list(preset.seeds[: preset.seeds_per_unit])
    lrs = list(preset.lrs)
    every = int(preset.eval_every or workload.eval_every)
    n = int(steps or 2 * every)
    kw = dict(
        betas=tuple(preset.betas),
        targets=(1e-12,),  # never crossed: the slice is pure training and evaluation
        eval_every=every,
        device=device,
    )
    # one model at a time costs the same per model-step however many: time at most 2 × 4
    grids = {k: (lrs[:2], seeds[:4]) if k == "single" else (lrs, seeds) for k in cands}
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    best: dict[str, float] = {}
    try:
        for fn in cands.values():
            fn(workload, data, b, lrs[:1], seeds[:1], max_steps=every, **kw)
        for _ in range(repeats):
            for name, fn in cands.items():
                ls, ss = grids[name]
                t0 = time.perf_counter()
                fn(workload, data, b, ls, ss, max_steps=n, **kw)
                best[name] = min(best.get(name, math.inf), time.perf_counter() - t0)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    m = len(lrs) * len(seeds)
    rates = {k: len(grids[k][0]) * len(grids[k][1]) * n / max(v, 1e-12) for k, v in best.items()}
    fast = max(rates, key=rates.__getitem__)
    return {
        "engine": fast,
        "batch_size": b,
        "n_models": m,
        "steps": n,
        "threads": used,
        **{f"{k}_model_steps_per_s": v for k, v in rates.items()},
        "ratio": rates[fast] / min(rates.values()),
    }


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` ends, even by SIGKILL.

    Linux: the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``).
    Everywhere: a daemon thread polls the parent pid once a second and exits when this
    process has been re-parented (the fallback for other systems, and for the race where the
    parent died before ``prctl`` ran).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog below does the job
        pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="surgelab-parent-watchdog", daemon=True).start()


def _worker_init(parent_pid: int, threads: int) -> None:
    """Pool worker set-up: Ctrl-C is the driver's business, die with it, torch threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(int(threads))


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def stop_processes(procs: Sequence[Any], timeout: float = 3.0) -> None:
    """SIGTERM each process, wait up to ``timeout`` s in all, SIGKILL the ones still alive."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(1.0)


# ----------------------------------------------------------------------------- the sweep


def run_sweep(
    preset: Preset,
    *,
    store: ResultStore | None = None,
    backend: str = "local",
    address: str | None = None,
    device: str = "cpu",
    workers: int | None = None,
    trainer: Trainer | None = None,
    engine: str | None = "group",
    data_dir: str | os.PathLike | None = None,
    decoded_cache: Any = None,
    threads: int | None = None,
    checkpoint_every: float | None = CHECKPOINT_EVERY,
    on_unit: Callable[[Unit, int], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    on_extend: Callable[[list[Unit]], None] | None = None,
    on_engine: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a preset's sweep, extending its lr grid past censored optima when
    ``preset.max_extra_lrs`` > 0 (module docstring); return every stored point.

    Args:
      preset: the grid and protocol (:class:`validate.presets.Preset`).
      store: where finished units go (:class:`ResultStore`; default a new
        :class:`MemoryStore`). A store holding another sweep's results (another workload
        definition, grid or engine setting; :func:`sweep_key`) raises
        :class:`StaleResultsError` before anything is trained.
      backend: ``"local"`` (process pool / in-process) or ``"ray"``.
      address: Ray cluster address (``"auto"``, ``"ray://host:10001"``, ...); None starts a
        local Ray instance with ``workers`` CPUs.
      device: torch device every unit trains on (``"cpu"``, ``"cuda"``).
      workers: parallel units. Default: one per CPU core on CPU (capped by the number of
        units), 1 on a local GPU.
      trainer: a :func:`validate.engine.train_group`-compatible function; must be importable
        by name for the process-pool and Ray backends. Overrides ``engine``.
      engine: ``"group"`` (:func:`validate.engine.train_group`, the default), ``"single"``
        (:func:`validate.engine.train_single`: one model at a time; a killed unit restarts
        from its beginning) or None: the engine the store's results were trained with, and
        for a new store the faster one on this device, measured first on a slice of the
        preset's work (:func:`measure_engines`, with the workers' torch threads; on Ray the
        group engine). The two
        engines agree to float rounding, not bit for bit, so the choice is in the store's key.
      data_dir: dataset folder, used alone (None: the data module's search path). The
        datasets must be there already (this package fetches nothing).
      decoded_cache: a picklable :class:`validate.data.ArrayCache` every process keeps
        decoded arrays in (None: each process decodes).
      threads: torch threads per pool / Ray worker (default 1: one worker per core is faster
        than fewer workers with more threads for these small models; in-process units keep
        this process's setting).
      checkpoint_every: seconds between checkpoints of a unit in progress (when the store has
        ``checkpoints``); None: never.
      on_unit: called in the driver after each unit is stored, with the unit and the number
        of units stored in this call (progress bars, monitoring, tests).
      on_plan: called once with (units in the base grid, units of it already stored).
      on_extend: called with each round's new units of the grid extension (module
        docstring), before they run.
      on_engine: called once with how the engine was chosen: ``{"engine", "how"}`` with
        ``how`` = ``"given"``, ``"stored"``, ``"measured"`` (then with
        :func:`measure_engines`'s timings) or, on Ray (the driver is not where units run),
        the group engine by default.

    Returns:
      All stored rows (this run's and earlier runs'), sorted by target (descending), batch
      size, lr, seed.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray'; got {backend=}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers=}")
    from validate.workload import fingerprint

    store = MemoryStore() if store is None else store
    ddir = None if data_dir is None else os.fspath(data_dir)
    wl, data = load_workload(preset, data_dir=ddir, device="cpu", decoded_cache=decoded_cache)
    if trainer is None:
        choice: dict[str, Any] = {"engine": engine, "how": "given"}
        if engine is None:
            stored = _stored_engine(store)
            if stored is not None:
                choice = {"engine": stored, "how": "stored"}
            elif backend == "ray":  # the driver is not where the units run: nothing to time
                choice = {"engine": "group", "how": "default (ray: not measured)"}
            else:
                n = workers or (1 if device.startswith("cuda") else cpu_count())
                on = load_workload(preset, data_dir=ddir, device=device)[1]
                t = threads or (1 if backend == "local" and n > 1 else None)
                choice = {"how": "measured"} | measure_engines(
                    preset, wl, on, device=device, threads=t
                )
        trainer = engine_trainer(str(choice["engine"]))
        if on_engine is not None:
            on_engine(choice)
    store.bind(sweep_key(preset, fingerprint(wl, data), device=device, trainer=trainer))
    units = plan_units(preset)
    done = store.done_units()
    todo = [u for u in units if u.unit_id not in done]
    if on_plan is not None:
        on_plan(len(units), len(units) - len(todo))
    ckpts = store.checkpoints if checkpoint_every is not None else None
    n_done = [0]

    def commit(unit: Unit, rows: list[dict[str, Any]], wall: float) -> None:
        store.write_unit(unit.unit_id, unit.batch_size, unit.lrs, unit.seeds, rows, wall)
        if ckpts is not None:
            ckpts.discard(unit.unit_id)
        n_done[0] += 1
        if on_unit is not None:
            on_unit(unit, n_done[0])

    opts = dict(
        trainer=trainer,
        data_dir=ddir,
        decoded_cache=decoded_cache,
        device=device,
        checkpoints=ckpts,
        checkpoint_every=checkpoint_every,
    )

    def run(todo: Sequence[Unit]) -> None:
        if not todo:
            return
        if backend == "ray":
            _run_ray(
                preset, todo, commit, address=address, workers=workers, threads=threads, **opts
            )
        else:
            _run_local(preset, todo, commit, workers=workers, threads=threads, **opts)

    run(todo)
    base_seeds = {int(s) for s in preset.seeds}
    if preset.max_extra_lrs:
        # each round adds at least one lr to a batch size below its cap, so this ends
        for _ in range(2 * preset.max_extra_lrs * len(preset.batch_sizes) + 1):
            # the grid's own seeds decide (added seeds come after, and do not reopen this)
            rows = [r for r in store.rows() if int(r["seed"]) in base_seeds]
            done = store.done_units()
            todo = [u for u in _pending_extensions(preset, rows) if u.unit_id not in done]
            if not todo:
                todo = [u for u in next_extension(preset, rows) if u.unit_id not in done]
                if not todo:
                    break
                if on_extend is not None:
                    on_extend(list(todo))
            run(todo)
    if preset.max_seeds:
        # each round adds >= 1 seed to a batch size below its cap, so this ends
        for _ in range(len(preset.batch_sizes) * preset.max_seeds + 1):
            todo = [
                u for u in next_seeds(preset, store.rows()) if u.unit_id not in store.done_units()
            ]
            if not todo:
                break
            if on_extend is not None:
                on_extend(list(todo))
            run(todo)
    return store.rows()


def _run_local(
    preset: Preset,
    todo: Sequence[Unit],
    commit: Callable[..., None],
    *,
    workers: int | None,
    threads: int | None,
    **opts: Any,
) -> None:
    device = opts["device"]
    n = workers or (1 if device.startswith("cuda") else cpu_count())
    n = max(1, min(n, len(todo)))
    if n == 1:
        for u in todo:
            commit(*run_unit(preset, u, threads=threads, **opts))
        return
    pool = cf.ProcessPoolExecutor(
        max_workers=n,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(), threads or 1),
    )
    procs: list[Any] = []
    try:
        futs = [pool.submit(run_unit, preset, u, **opts) for u in todo]
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for f in cf.as_completed(futs):
            commit(*f.result())
    except BaseException:
        # Ctrl-C or a failing unit: drop what has not started, stop what is running (a unit in
        # flight keeps only its last checkpoint), keep what is stored.
        procs = procs or list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        stop_processes(procs)
        raise
    pool.shutdown(wait=True)


def _run_ray(
    preset: Preset,
    todo: Sequence[Unit],
    commit: Callable[..., None],
    *,
    address: str | None,
    workers: int | None,
    threads: int | None,
    **opts: Any,
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
            path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            ray.init(
                num_cpus=workers or cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
            )
        started = True
    try:
        gpu = opts["device"].startswith("cuda")
        total = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # one CPU per task (Ray packs as many as fit) unless --workers asks for fewer, fatter ones
        cpus = 1 if gpu or not workers else max(1, total // workers)
        task = ray.remote(num_cpus=cpus, num_gpus=1 if gpu else 0, max_retries=1)(run_unit)
        pending = [task.remote(preset, u, threads=threads or cpus, **opts) for u in todo]
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
