"""The GPU campaign: a priority list of jobs that turns any short GPU window into results.

A window is a fresh machine for a few minutes, with only this checkout (and the data that
``surgelab campaign prepare`` packed into ``.campaign/``), and room for at most
:data:`OUT_MAX_FILES` files to come back. ``surgelab campaign run`` spends a time budget on:

1. ``gpu-tests``: the ``gpu``-marked tests (the CUDA kernel against numba) in a pytest
   subprocess;
2. ``kernel-bench``: the Monte Carlo kernel at the issue's size against torch on the same
   GPU, correctness first, CUDA-event timings (:func:`kernels.bench.gpu_case`);
3. ``fmnist-small`` / ``fmnist-large``: Table 1's Fashion-MNIST rows;
4. ``eli5-adam`` / ``eli5-sign``: the GPT rows;
5. ``resnet``: the ResNet-18 row (skipped, with the reason recorded, when its data is absent).

**Time boxes.** Every job gets a share of what is left of the budget (its ``share`` over the
shares of the jobs still to run), so time a job does not use flows to the later ones. The
packing at the end and the grace given to a job that overruns are reserved up front
(:func:`reserve_s`), so the whole command ends before ``--budget-s``.

**Sweeps, round by round.** A sweep job's grid is cut into blocks of ``block`` seeds (rounds):
block k is the job's preset with seeds ``k·block … (k+1)·block − 1``, in its own SQLite store
(:class:`surgelab.store.SweepStore`, keyed by :func:`validate.sweep.sweep_key` plus the TF32
setting), unit by unit (one batch size × all lrs × the block's seeds). Before a unit starts,
its time is estimated from the units already done at that batch size (seconds per step ×
the steps the group ran); a unit that is known not to fit is left for a later window, a unit
with no history runs as a probe. A unit still running at the end of the box is stopped at
its next evaluation (its progress is lost; how far it got is recorded as ``cuts``, so a later
window does not start it again with less time); every finished unit stays in its store.

**Isolation.** On a GPU each job runs in its own Python process (``python -m
surgelab.campaign SPEC``): a crash, a hang or an out-of-memory error ends that job only (the
process is stopped at the end of its box plus a grace), and the campaign goes on with the next.

**Output** (``--out``, at most 8 files, none in a sub-folder): ``campaign.json`` (per-job
status, timings, estimates, the device, driver and versions, the commit, every window so
far), ``gpu_tests.txt``, ``bench.json`` and one ``<job>.tar.gz`` per sweep job (its stores,
``points.csv``, ``job.json``). It is rewritten after every job, so a command killed from
outside still leaves the jobs finished so far.

**Resume.** ``--resume-from DIR`` (the files of an earlier ``--out``, e.g. committed under
``results/gpu-campaign/``) skips the tests and the benchmark when they passed with the same
kernel sources, unpacks the sweep stores and continues their grids. Results of another
configuration (another preset, device type or TF32 setting, or stores whose key differs:
another workload definition, grid or engine) are refused before anything is written,
naming what differs; another commit is fine when the keys match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surgelab.rundir import environment, git_commit, jsonable, read_json, utc_stamp, write_json

REPO = Path(__file__).resolve().parent.parent
FORMAT = 1

#: What comes back from a window: at most this many files, each at most OUT_MAX_BYTES.
OUT_MAX_FILES = 8
OUT_MAX_BYTES = 16 << 20
#: What travels to a window: the working tree plus the carried data, at most this many bytes.
CARRY_LIMIT_BYTES = 64 << 20

CAMPAIGN_JSON = "campaign.json"
GPU_TESTS_TXT = "gpu_tests.txt"
BENCH_JSON = "bench.json"

#: seconds between a job's box end and SIGTERM, and between SIGTERM and SIGKILL
GRACE_S = 10.0
KILL_WAIT_S = 5.0


class CampaignError(ValueError):
    """A user error found while preparing or running (one line; exit status 2)."""


# ----------------------------------------------------------------------------- the jobs


@dataclass(frozen=True)
class Job:
    """One entry of the campaign's priority list.

    Attributes:
      name: its name on the command line (``--jobs``) and in the output.
      kind: ``tests`` (the gpu-marked tests), ``kernel-bench`` or ``sweep``.
      share: its weight in the split of the remaining budget.
      min_s: a box shorter than this is not worth starting.
      preset: the validate preset (sweeps); scaled presets as ``<workload>:<kind>``.
      block: seeds per round block (sweeps).
      unit_seeds: seeds per unit of work within a block (None: the whole block). Small
        units fit short boxes; big ones fill the GPU better where steps are launch-bound.
      small_first: try the small batch sizes first (where a step costs ~B: a unit is
        cheaper there); else the large ones (where steps are launch-bound: fewer of them).
      rounds: seeds in all (None: the preset's).
      betas: Adam's betas instead of the preset's (None: the preset's).
      what: one line for the help page.
    """

    name: str
    kind: str
    share: float
    min_s: float
    preset: str | None = None
    block: int = 10
    unit_seeds: int | None = None
    small_first: bool = False
    rounds: int | None = None
    betas: tuple[float, float] | None = None
    what: str = ""

    def base_preset(self) -> Any:
        """The validate preset of a sweep job (with this job's betas)."""
        from validate.presets import get_preset

        p = get_preset(self.preset)
        return p if self.betas is None else dataclasses.replace(p, betas=self.betas)

    def n_rounds(self) -> int:
        return self.rounds or len(self.base_preset().seeds)

    def blocks(self) -> list[Any]:
        """The round blocks: the preset with seeds k·block … (k+1)·block − 1, one unit per
        batch size (all lrs × the block's seeds)."""
        p = self.base_preset()
        n = self.n_rounds()
        out = []
        for s0 in range(0, n, self.block):
            seeds = tuple(range(s0, min(n, s0 + self.block)))
            k = min(self.unit_seeds or len(seeds), len(seeds))
            out.append(dataclasses.replace(p, seeds=seeds, seeds_per_unit=k))
        return out

    def units(self, block_preset: Any) -> list[Any]:
        """A block's units in the order this job tries them."""
        from validate.sweep import plan_units

        units = plan_units(block_preset)  # largest batch size first, seeds ascending
        if self.small_first:
            units.sort(key=lambda u: (u.batch_size, u.seeds[0]))
        return units

    def datasets(self) -> tuple[str, ...]:
        if self.kind != "sweep":
            return ()
        from validate.workload import get_workload

        p = self.base_preset()
        return tuple(get_workload(p.workload, size=p.size).datasets)


def store_name(block_preset: Any) -> str:
    """The store file of a round block: ``seeds_000-009.sqlite``."""
    s = block_preset.seeds
    return f"seeds_{s[0]:03d}-{s[-1]:03d}.sqlite"


#: The two job lists. ``paper``: the issue's priority list at Table 1's scale; ``tiny``: the
#: same plumbing in seconds on a CPU (tests, CI): a small kernel case and two sweeps of the
#: generated-data MLP, one seed a round, three rounds.
JOBS: dict[str, tuple[Job, ...]] = {
    "paper": (
        Job("gpu-tests", "tests", 0.25, 20.0, what="gpu-marked tests: CUDA kernel = numba"),
        Job("kernel-bench", "kernel-bench", 0.10, 15.0, what="d=1e6 r=16 32 B 1e4 samples"),
        Job("engine-bench", "engine-bench", 0.04, 10.0, what="batched vs one model, B=64"),
        # B = 1…12: steps are launch-bound (50 models cost about what 10 do) and the held-in
        # evaluation of every model every 10 steps dominates; 50 models a unit
        Job(
            "fmnist-small",
            "sweep",
            0.24,
            30.0,
            "paper-fmnist-small",
            unit_seeds=5,
            what="Table 1 row 1",
        ),
        # B = 64…1164: a step costs ~B·models, so small units (20 models) fit short boxes
        Job(
            "fmnist-large",
            "sweep",
            0.25,
            30.0,
            "paper-fmnist-large",
            unit_seeds=2,
            small_first=True,
            what="Table 1 row 2",
        ),
        # a GPT unit takes minutes: in a shared window these measure the rate (a probe cut
        # at its box end), a window of their own (--jobs eli5-adam) finishes units
        Job(
            "eli5-adam",
            "sweep",
            0.04,
            20.0,
            "paper-eli5-adam",
            unit_seeds=1,
            small_first=True,
            what="Table 1 row 3",
        ),
        Job(
            "eli5-sign",
            "sweep",
            0.04,
            20.0,
            "paper-eli5-sign",
            unit_seeds=1,
            small_first=True,
            what="Table 1 row 4",
        ),
        Job(
            "resnet",
            "sweep",
            0.04,
            20.0,
            "paper-resnet-sign",
            unit_seeds=1,
            small_first=True,
            what="Table 1 row 5",
        ),
    ),
    "tiny": (
        Job("gpu-tests", "tests", 0.2, 5.0, what="gpu-marked tests (skipped on a CPU)"),
        Job("kernel-bench", "kernel-bench", 0.15, 2.0, what="d=2000 r=4 8 B 2000 samples"),
        Job("engine-bench", "engine-bench", 0.05, 2.0, what="batched vs one model, MLP"),
        Job("mlp-adam", "sweep", 0.3, 2.0, "synthetic-mlp:tiny", block=1, rounds=3),
        Job(
            "mlp-sign",
            "sweep",
            0.3,
            2.0,
            "synthetic-mlp:tiny",
            block=1,
            rounds=3,
            betas=(0.0, 0.0),
        ),
    ),
}


def jobs_of(preset: str, names: Sequence[str] = ()) -> list[Job]:
    """The preset's jobs in priority order (only ``names`` when given, still in that order)."""
    jobs = JOBS[preset]
    if not names:
        return list(jobs)
    known = {j.name for j in jobs}
    bad = [n for n in names if n not in known]
    if bad:
        raise CampaignError(f"--jobs: unknown job(s) {', '.join(bad)} for --preset {preset}")
    return [j for j in jobs if j.name in names]


def reserve_s(budget_s: float, isolate: bool) -> float:
    """Seconds kept back from the jobs: packing (3 s + 2 %) and, for jobs in their own process,
    the grace and kill wait of one that overruns its box.

    Examples:
      >>> reserve_s(500, True), reserve_s(60, False)
      (28.0, 4.2)
    """
    return 3.0 + 0.02 * budget_s + ((GRACE_S + KILL_WAIT_S) if isolate else 0.0)


def boxes(jobs: Sequence[Job], seconds: float) -> list[float]:
    """Split ``seconds`` by the jobs' shares (what a job leaves is re-split later).

    Examples:
      >>> [round(b, 6) for b in boxes(jobs_of("tiny"), 100.0)]
      [20.0, 15.0, 5.0, 30.0, 30.0]
    """
    total = sum(j.share for j in jobs)
    return [seconds * j.share / total for j in jobs]


#: The code a campaign's results depend on (its digest stands in for the commit on a box
#: that got the files without ``.git``).
CODE = ("surgelab", "validate", "kernels", "theory", "simulate")


#: What each non-sweep job's result depends on: it is reused while their digest is unchanged.
DEPENDS = {
    "tests": ("kernels", "tests/test_kernels_gpu.py", "tests/tolerances.py"),
    "kernel-bench": ("kernels",),
    "engine-bench": ("validate/engine.py", "validate/bench.py", "validate/models.py"),
}


def sources_digest(paths: Sequence[str] = DEPENDS["tests"]) -> str:
    """SHA-256 of the kernel sources and their GPU tests (a passed test stays passed while
    this is unchanged); with ``paths=CODE``, of all the code."""
    h = hashlib.sha256()
    files: list[Path] = []
    for p in paths:
        q = REPO / p
        if q.is_dir():
            files += sorted(
                f for f in q.rglob("*") if f.suffix in (".py", ".cu", ".cuh") and f.is_file()
            )
        elif q.is_file():
            files.append(q)
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- data


def dataset_bytes(name: str, folder: Path) -> int:
    from validate import data as vdata

    return sum((folder / f.name).stat().st_size for f in vdata.dataset_files(name))


def check_data(
    jobs: Sequence[Job], data_dir: str | None, explicit: bool
) -> tuple[list[Job], dict[str, str]]:
    """Which jobs have their data: ``(runnable jobs, {skipped job: reason})``.

    A dataset that is absent skips its job (an error when the job was asked for by name);
    a partial dataset (some of its files, or files missing from a prepared folder's
    ``manifest.json``) or a file with the wrong checksum is an error.
    """
    from validate import data as vdata

    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise CampaignError(f"--data-dir {data_dir!r} is not an existing folder")
        _check_manifest(root)
    ok: list[Job] = []
    skipped: dict[str, str] = {}
    for job in jobs:
        missing = []
        for name in job.datasets():
            try:
                vdata.find_dataset(name, data_dir, verify=True)
            except vdata.ChecksumError as exc:
                raise CampaignError(f"--data-dir: {exc}") from None
            except vdata.DataNotFoundError as exc:
                partial = _partial(name, data_dir)
                if partial:
                    raise CampaignError(
                        f"--data-dir: dataset {name!r} is partial ({partial}); copy it again "
                        "(surgelab campaign prepare)"
                    ) from None
                if explicit:
                    raise CampaignError(f"--data-dir: job {job.name} needs {exc}") from None
                missing.append(name)
        if missing:
            skipped[job.name] = f"data not found: {', '.join(missing)}"
        else:
            ok.append(job)
    return ok, skipped


def _partial(name: str, data_dir: str | None) -> str:
    """'' or which files of dataset ``name`` are missing where some of them are present."""
    from validate import data as vdata

    files = [f.name for f in vdata.dataset_files(name)]
    roots = vdata.resolve_data_dir(data_dir)
    for root in roots:
        for cand in (root / name, root):
            have = [f for f in files if (cand / f).is_file()]
            if have and len(have) < len(files):
                missing = sorted(set(files) - set(have))
                return f"{cand} lacks {', '.join(missing)}"
    return ""


def _check_manifest(root: Path) -> None:
    """A folder written by ``campaign prepare`` must still hold every file it listed."""
    man = root.parent / "manifest.json"
    if not man.is_file():
        return
    try:
        m = read_json(man)
    except (OSError, ValueError) as exc:
        raise CampaignError(f"--data-dir: {man} is unreadable ({exc}); run prepare again") from None
    for name, info in m.get("datasets", {}).items():
        for f in info.get("files", []):
            p = root / name / f["name"]
            if not p.is_file() or p.stat().st_size != f["bytes"]:
                raise CampaignError(
                    f"--data-dir: partial data: {p} is missing or not {f['bytes']} bytes as "
                    f"{man} lists; run surgelab campaign prepare again"
                )


def tree_bytes(root: Path = REPO) -> int:
    """Bytes of the working tree that travels: tracked files and untracked, not ignored ones."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    total = 0
    for name in out.decode(errors="replace").split("\0"):
        p = root / name
        if name and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0


def prepare(
    jobs: Sequence[Job],
    out: Path,
    data_dir: str | None,
    *,
    limit_bytes: int = CARRY_LIMIT_BYTES,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Copy the datasets of ``jobs`` into ``out/data/<name>/`` (checksums verified) and write
    ``out/manifest.json``; refuse, before writing anything, when the checkout plus the data
    would exceed ``limit_bytes``. Returns the manifest."""
    from validate import data as vdata

    names = sorted({d for j in jobs for d in j.datasets()})
    sources: dict[str, Path] = {}
    for name in names:
        try:
            sources[name] = vdata.find_dataset(name, data_dir, verify=True)
        except (vdata.DataNotFoundError, vdata.ChecksumError) as exc:
            raise CampaignError(f"--data-dir: {exc}") from None
    sizes = {n: dataset_bytes(n, sources[n]) for n in names}
    repo = tree_bytes()
    data_root = out / "data"
    # what would stay in out besides the datasets written now (other files are not ours)
    keep = 0
    if out.is_dir():
        known = set(vdata.DATASETS)
        for f in out.rglob("*"):
            if not f.is_file() or f == out / "manifest.json":
                continue
            rel = f.relative_to(out).parts
            if len(rel) >= 2 and rel[0] == "data" and rel[1] in known:
                continue
            keep += f.stat().st_size
    total = repo + keep + sum(sizes.values())
    if total > limit_bytes:
        parts = ", ".join(f"{n} {sizes[n] / 2**20:.1f}" for n in names)
        extra = f" + other files in {out} {keep / 2**20:.1f}" if keep else ""
        raise CampaignError(
            f"--jobs: the data needs {total / 2**20:.1f} MiB ({parts} + the checkout "
            f"{repo / 2**20:.1f}{extra}), more than the {limit_bytes / 2**20:.0f} MiB that "
            "travel to a GPU box; prepare fewer jobs (e.g. --jobs resnet alone)"
        )
    data_root.mkdir(parents=True, exist_ok=True)
    for d in data_root.iterdir():  # datasets of an earlier prepare that this one does not need
        if d.is_dir() and d.name in vdata.DATASETS and d.name not in names:
            shutil.rmtree(d)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_utc": utc_stamp(),
        "commit": git_commit(),
        "code_digest": sources_digest(CODE),
        "jobs": [j.name for j in jobs],
        "datasets": {},
    }
    for name in names:
        dest = data_root / name
        dest.mkdir(exist_ok=True)
        files = []
        for f in vdata.dataset_files(name):
            src, dst = sources[name] / f.name, dest / f.name
            if not (dst.is_file() and dst.stat().st_size == src.stat().st_size):
                tmp = dst.with_name(dst.name + ".tmp")
                shutil.copyfile(src, tmp)
                tmp.replace(dst)
            vdata.verify_file(dst, f.sha256)
            files.append({"name": f.name, "bytes": dst.stat().st_size, "sha256": f.sha256})
        manifest["datasets"][name] = {"files": files, "source": str(sources[name])}
        say(f"  {name}: {sum(f['bytes'] for f in files) / 2**20:.1f} MiB, checksums ok")
    manifest["data_bytes"] = sum(sizes.values())
    manifest["tree_bytes"] = repo
    manifest["limit_bytes"] = limit_bytes
    write_json(out / "manifest.json", manifest)
    return manifest


# ----------------------------------------------------------------------------- device facts


def device_facts(device: str) -> dict[str, Any]:
    """Versions, commit and, on a GPU, its name, memory, driver and CUDA versions."""
    facts: dict[str, Any] = {}
    errors: list[str] = []
    if device.startswith("cuda"):
        try:
            import torch

            props = torch.cuda.get_device_properties(torch.device(device))
            facts["gpu"] = {
                "name": props.name,
                "total_memory": int(props.total_memory),
                "sm_count": int(props.multi_processor_count),
                "compute_capability": [int(props.major), int(props.minor)],
                "torch_cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
            }
        except Exception as exc:  # facts are best effort: a failure is recorded, not raised
            errors.append(f"torch: {type(exc).__name__}: {exc}")
        try:
            import cupy

            facts["cupy"] = {
                "version": cupy.__version__,
                "runtime": int(cupy.cuda.runtime.runtimeGetVersion()),
                "driver": int(cupy.cuda.runtime.driverGetVersion()),
            }
        except Exception as exc:
            errors.append(f"cupy: {type(exc).__name__}: {exc}")
        try:
            q = "name,driver_version,memory.total,clocks.max.sm,power.limit"
            r = subprocess.run(
                ["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            facts["nvidia_smi"] = dict(zip(q.split(","), (x.strip() for x in r.stdout.split(","))))
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"nvidia-smi: {type(exc).__name__}: {exc}")
    facts.update(environment(device))
    if errors:
        facts["errors"] = errors
    return facts


# ----------------------------------------------------------------------------- stores


#: Units with at most this batch size run their steps captured when ``capture`` asks for it
#: (small batches are launch-bound; larger ones gain little and run eagerly).
CAPTURE_MAX_BATCH = 64


def block_key(
    block_preset: Any, workload_fp: dict[str, Any], device: str, tf32: bool, capture: str = "none"
) -> dict:
    """The key of a round block's store: :func:`validate.sweep.sweep_key` plus TF32 (and the
    capture, when it is not "none", so eager keys are unchanged)."""
    from validate.sweep import sweep_key

    key = sweep_key(block_preset, workload_fp, device=device)
    key["engine"]["tf32"] = bool(tf32)
    if capture != "none":
        key["engine"]["capture"] = capture
        key["engine"]["capture_max_batch"] = CAPTURE_MAX_BATCH
    return key


def read_store(path: Path) -> dict[str, Any]:
    """``{"key", "units", "rows"}`` of a store file (a leftover WAL is folded in first)."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        cur = db.execute("SELECT * FROM units ORDER BY batch_size, unit_id")
        names = [d[0] for d in cur.description]
        units = [dict(zip(names, r)) for r in cur]
        cur = db.execute("SELECT batch_size, unit_id, final_step FROM points")
        steps: dict[str, int] = {}
        for _b, uid, fs in cur:
            steps[uid] = max(steps.get(uid, 0), int(fs or 0))
    finally:
        db.close()
    for u in units:
        u["group_steps"] = steps.get(u["unit_id"], 0)
        u["n_models"] = len(json.loads(u["lrs"])) * len(json.loads(u["seeds"]))
    key = json.loads(meta["key"]) if "key" in meta else None
    return {"key": key, "units": units}


def unit_history(folder: Path) -> list[dict[str, Any]]:
    """Every finished unit in a job folder's stores: batch size, wall, steps, s per step."""
    out = []
    for path in sorted(folder.glob("seeds_*.sqlite")):
        for u in read_store(path)["units"]:
            steps = max(1, int(u["group_steps"]))
            out.append(
                {
                    "store": path.name,
                    "unit_id": u["unit_id"],
                    "batch_size": int(u["batch_size"]),
                    "n_models": u["n_models"],
                    "wall_s": float(u["wall_s"] or 0.0),
                    "group_steps": int(u["group_steps"]),
                    "s_per_step": float(u["wall_s"] or 0.0) / steps,
                }
            )
    return out


def estimate_unit(
    batch_size: int, history: Sequence[dict[str, Any]], cuts: dict[str, Any]
) -> tuple[float | None, float]:
    """``(estimate, lower bound)`` in seconds of a unit at ``batch_size``.

    The estimate is the mean wall time of the finished units at that batch size (None when
    there is none); the lower bound is the longest time a unit at that batch size ran before
    it was cut (0 when none was).
    """
    walls = [h["wall_s"] for h in history if h["batch_size"] == batch_size]
    est = sum(walls) / len(walls) if walls else None
    lo = max(
        (c["after_s"] for c in cuts.values() if c.get("batch_size") == batch_size), default=0.0
    )
    return est, float(lo)


def projection(job: Job, folder: Path, cuts: dict[str, Any]) -> dict[str, Any]:
    """What is done of a sweep job's grid and what the rest would take on this device.

    For each batch size with finished units, the rest of its units cost their mean wall
    time; batch sizes without one are counted in ``units_unknown``, with the lower bound a
    cut gives (the time it ran) and, where a cut measured the rate, an upper bound (its
    seconds per step × the step budget: a group stops at the latest there).
    """
    hist = unit_history(folder) if folder.is_dir() else []
    done = {(h["store"], h["unit_id"]) for h in hist}
    from validate.sweep import plan_units

    todo_s, unknown, lower, upper, n_upper = 0.0, 0, 0.0, 0.0, 0
    total = 0
    rounds_done = 0
    for bp in job.blocks():
        units = plan_units(bp)
        total += len(units)
        n_done = sum((store_name(bp), u.unit_id) in done for u in units)
        if n_done == len(units):
            rounds_done += len(bp.seeds)
        for u in units:
            if (store_name(bp), u.unit_id) in done:
                continue
            est, lo = estimate_unit(u.batch_size, hist, cuts)
            if est is None:
                unknown += 1
                lower += lo
                rates = [
                    c["first_stretch_s"] + c["s_per_step_after_first"] * c["max_steps"]
                    for c in cuts.values()
                    if c.get("batch_size") == u.batch_size and c.get("s_per_step_after_first")
                ]
                if rates:
                    upper += max(rates)
                    n_upper += 1
            else:
                todo_s += est
    wall = sum(h["wall_s"] for h in hist)
    return {
        "units_total": total,
        "units_done": len(done),
        "rounds_total": job.n_rounds(),
        "rounds_done": rounds_done,
        "units_wall_s": wall,
        "rest_estimate_s": todo_s,
        "units_unknown": unknown,
        "units_unknown_lower_bound_s": lower,
        "units_unknown_upper_bound_s": upper,
        "units_unknown_with_upper_bound": n_upper,
        "per_batch_size": _per_b(hist),
    }


def _per_b(hist: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for b in sorted({h["batch_size"] for h in hist}):
        hs = [h for h in hist if h["batch_size"] == b]
        steps = sum(h["group_steps"] for h in hs)
        wall = sum(h["wall_s"] for h in hs)
        models = sum(h["n_models"] * h["group_steps"] for h in hs)
        out.append(
            {
                "batch_size": b,
                "units": len(hs),
                "mean_unit_s": wall / len(hs),
                "mean_group_steps": steps / len(hs),
                "s_per_step": wall / max(1, steps),
                "model_steps_per_s": models / wall if wall > 0 else None,
                "examples_per_s": models * b / wall if wall > 0 else None,
            }
        )
    return out


# ----------------------------------------------------------------------------- jobs, run


class OutOfTime(Exception):
    """Raised from a unit's progress callback when its box ends before the next evaluation."""


class _Ticker:
    """The ``on_progress`` of a unit: times each stretch between evaluations and stops the
    unit when the next one would end after ``deadline`` (wall clock, ``time.time()``)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.t0 = self.last = time.time()
        self.steps = 0
        self.longest = 0.0
        self.stretches: list[tuple[int, float]] = []  # (steps, seconds incl. an evaluation)

    def __call__(self, n: int) -> None:
        now = time.time()
        self.longest = max(self.longest, now - self.last)
        self.stretches.append((int(n), now - self.last))
        self.last = now
        self.steps += int(n)
        if now + 1.5 * self.longest > self.deadline:
            raise OutOfTime

    def timing(self) -> dict[str, Any]:
        """The first stretch (set-up, first evaluation, warm-up) and the later ones' rate."""
        first = self.stretches[0] if self.stretches else (0, 0.0)
        rest = self.stretches[1:]
        n = sum(k for k, _ in rest)
        return {
            "first_stretch_s": first[1],
            "s_per_step_after_first": sum(t for _, t in rest) / n if n else None,
        }


def run_sweep_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run a sweep job's units into its stores until its box ends (runs in any process)."""
    job = job_named(spec["preset"], spec["name"])
    Path(spec["folder"]).mkdir(parents=True, exist_ok=True)
    cuts: dict[str, Any] = dict(spec.get("cuts") or {})
    res: dict[str, Any] = {"units_run": [], "units_left": [], "model_chunk": {}, "cuts": cuts}
    try:
        _sweep_units(job, spec, res, cuts)
    except KeyboardInterrupt:  # SIGTERM at the end of the box (+ grace): keep what is known
        res.update(status="cut", reason="stopped at the end of its box (SIGTERM)")
    return res


def _sweep_units(job: Job, spec: dict[str, Any], res: dict[str, Any], cuts: dict) -> None:
    import torch

    from surgelab.store import SweepStore
    from validate import engine, sweep
    from validate.workload import fingerprint

    folder = Path(spec["folder"])
    deadline = float(spec["deadline"])
    device = spec["device"]
    cuda = device.startswith("cuda")
    capture = spec.get("capture", "none")
    if cuda:
        res["precision"] = engine.set_tf32(bool(spec["tf32"]))
        torch.cuda.reset_peak_memory_stats()
    blocks = job.blocks()
    t0 = time.time()
    wl, data = sweep.load_workload(blocks[0], data_dir=spec["data_dir"], device=device)
    fp = fingerprint(wl, data)
    res["load_s"] = time.time() - t0
    history = unit_history(folder)
    max_units = spec.get("max_units")
    status, reason = "done", ""
    stop = False
    for bp in blocks:
        if stop:
            break
        with SweepStore(folder / store_name(bp), checkpoints=False) as store:
            store.bind(block_key(bp, fp, device, bool(spec["tf32"]) and cuda, capture))
            done = store.done_units()
            for u in job.units(bp):
                if u.unit_id in done:
                    continue
                tag = f"{store_name(bp)}/{u.unit_id}"
                left = deadline - time.time()
                est, lower = estimate_unit(u.batch_size, history, cuts)
                if max_units is not None and len(res["units_run"]) >= max_units:
                    status, reason, stop = "cut", f"--max-units {max_units} reached", True
                    break
                if left < float(spec.get("min_unit_s", 1.0)):
                    status, reason, stop = "cut", "box ended", True
                    break
                if (est is not None and est > left) or lower >= left:
                    status, reason = "cut", "some units do not fit in this box"
                    res["units_left"].append(
                        {"unit": tag, "estimate_s": est, "lower_bound_s": lower, "left_s": left}
                    )
                    continue
                chunk = None
                if cuda:
                    n_models = len(u.lrs) * len(u.seeds)
                    if u.batch_size not in res["model_chunk"]:
                        try:
                            res["model_chunk"][u.batch_size] = engine.auto_model_chunk(
                                wl, data, u.batch_size, n_models, device
                            )
                        except Exception as exc:  # the engine halves on OOM anyway
                            res["model_chunk"][u.batch_size] = None
                            res.setdefault("notes", []).append(
                                f"auto_model_chunk B={u.batch_size}: {type(exc).__name__}: {exc}"
                            )
                    chunk = res["model_chunk"][u.batch_size]
                tick = _Ticker(deadline)
                t1 = time.perf_counter()
                try:
                    rows = engine.train_group(
                        wl,
                        data,
                        u.batch_size,
                        list(u.lrs),
                        list(u.seeds),
                        betas=tuple(bp.betas),
                        targets=bp.targets,
                        further_steps=bp.further_steps,
                        max_steps=bp.max_steps,
                        eval_every=bp.eval_every,
                        eval_schedule=bp.eval_schedule,
                        eval_rel=bp.eval_rel,
                        device=device,
                        on_progress=tick,
                        model_chunk=chunk,
                        capture=capture if u.batch_size <= CAPTURE_MAX_BATCH else "none",
                    )
                except (OutOfTime, KeyboardInterrupt) as exc:
                    wall = time.perf_counter() - t1
                    cuts[tag] = {
                        "batch_size": u.batch_size,
                        "n_models": len(u.lrs) * len(u.seeds),
                        "after_s": wall,
                        "steps": tick.steps,
                        "max_steps": bp.max_steps or wl.max_steps,
                        **tick.timing(),
                        "time_utc": utc_stamp(),
                    }
                    status, reason, stop = "cut", f"box ended during {tag}", True
                    if isinstance(exc, KeyboardInterrupt):
                        reason += " (SIGTERM)"
                    break
                wall = time.perf_counter() - t1
                store.write_unit(u.unit_id, u.batch_size, u.lrs, u.seeds, rows, wall)
                steps = max(int(r["final_step"]) for r in rows)
                info = {
                    "store": store_name(bp),
                    "unit_id": u.unit_id,
                    "batch_size": u.batch_size,
                    "n_models": len(u.lrs) * len(u.seeds),
                    "wall_s": wall,
                    "group_steps": steps,
                    "s_per_step": wall / max(1, steps),
                    "engine": rows[0]["engine"] if rows else None,
                }
                if rows and rows[0].get("capture_note"):
                    info["capture_note"] = rows[0]["capture_note"]
                history.append(info)
                res["units_run"].append(dict(info, model_chunk=chunk, **tick.timing()))
    if cuda:
        res["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
    res.update(status=status, reason=reason)


def finish_sweep_folder(
    job: Job, folder: Path, cuts: dict[str, Any], *, fits: bool = True
) -> dict[str, Any]:
    """Write ``points.csv`` (every stored point) and, with ``fits``, the fits of a job
    folder; returns the summary (with :func:`projection`)."""
    from surgelab.rundir import write_table
    from surgelab.store import SweepStore

    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("seeds_*.sqlite")):
        read_store(path)  # folds a killed writer's WAL into the file
        with SweepStore(path, checkpoints=False) as st:
            rows += st.rows()
    out: dict[str, Any] = {"n_points": len(rows)}
    if rows:
        write_table(folder / "points.csv", rows)
    if rows and fits:
        try:
            from validate.fits import summarise

            s = summarise(rows, n_boot=0)
            fit_rows, best = s.pop("fits"), s.pop("best")
            write_table(folder / "fits.csv", fit_rows)
            write_table(folder / "best_lr.csv", best)
            out["fits"] = {
                k: s.get(k)
                for k in ("primary_target", "b_noise", "s_min", "eps_max_adam", "reason")
            }
        except Exception as exc:  # too few points for a fit is normal early on
            out["fits"] = {"error": f"{type(exc).__name__}: {exc}"}
    out["projection"] = projection(job, folder, cuts)
    write_json(folder / "job.json", {"job": dataclasses.asdict(job), **out, "cuts": cuts})
    return out


def run_bench_job(spec: dict[str, Any]) -> dict[str, Any]:
    """The kernel benchmark: the issue's case with cuda on a GPU, a small one on a CPU."""
    from kernels import bench

    deadline = float(spec["deadline"])
    folder = Path(spec["folder"])
    if spec["device"].startswith("cuda"):
        case = bench.GPU_CASE if spec["preset"] == "paper" else bench.TINY_CASE
        checks = bench.check_correctness(["numba", "cuda"])  # small shapes, every code path
        write_json(folder / BENCH_JSON, {"correctness": checks, "rows": []})
        try:
            result = bench.gpu_case(case, stop=lambda: time.time() > deadline - 5.0)
        except Exception as exc:
            result = {"rows": [], "correctness": [], "error": f"{type(exc).__name__}: {exc}"}
            result["traceback"] = traceback.format_exc()[-4000:]
        result["correctness"] = checks + result["correctness"]
    else:
        case = bench.TINY_CASE
        checks = bench.check_correctness(["numba"])
        rows = []
        if all(c["ok"] for c in checks):
            rows = bench.run_case(case, ["numba"], repeats=2, ref_samples=32, torch_samples=200)
        result = {"case": dataclasses.asdict(case), "correctness": checks, "rows": rows}
    ok = all(c["ok"] for c in result["correctness"])
    write_json(folder / BENCH_JSON, result)
    line = {r["backend"]: r["per_sample_s"] for r in result["rows"]}
    return {
        "status": "done" if ok and result["rows"] else "failed",
        "reason": result.get("error")
        or ("" if ok else "a backend disagrees with its reference (see bench.json)"),
        "per_sample_s": line,
        "summary": [
            {
                k: r.get(k)
                for k in (
                    "backend",
                    "per_sample_s",
                    "speedup_vs_torch",
                    "speedup_vs_numba",
                    "speedup_vs_reference",
                    "fraction_of_peak",
                )
                if r.get(k) is not None
            }
            for r in result["rows"]
        ],
    }


def run_engine_bench_job(spec: dict[str, Any]) -> dict[str, Any]:
    """The batched engine against one model at a time (:func:`validate.bench.bench`): the
    paper CNN at B = 64 with the Table 1 lrs × 2 seeds on a GPU, the tiny MLP on a CPU."""
    from validate.bench import bench

    if spec["preset"] == "paper":
        from validate.presets import get_preset

        lrs = get_preset("paper-fmnist-large").lrs
        kw = dict(size="paper", batch_size=64, lrs=lrs, seeds=(0, 1), max_steps=100)
        name = "fmnist-cnn"
    else:
        kw = dict(size="smoke", batch_size=16, lrs=(3e-3, 1e-2), seeds=(0,), max_steps=40)
        name = "synthetic-mlp"
    if spec["device"].startswith("cuda"):
        from validate import engine

        engine.set_tf32(bool(spec["tf32"]))
    summary, _rows = bench(
        name,
        device=spec["device"],
        data_dir=spec["data_dir"],
        capture=spec.get("capture", "none"),
        **kw,
    )
    keep = (
        "workload batch_size n_models max_steps single_s batched_s ratio single_cuda_s "
        "batched_cuda_s batched_model_steps_per_s batched_model_examples_per_s "
        "train_flops_per_example batched_train_flops_per_s fp32_peak_flops "
        "fraction_of_fp32_peak same_steps max_abs_loss_diff capture capture_used capture_note "
        "activation_bytes_per_example batched_activation_bytes_per_s device_name "
        "memory_bandwidth_peak fraction_of_bandwidth_peak"
    ).split()
    return {
        "status": "done" if summary["same_steps"] else "failed",
        "reason": "" if summary["same_steps"] else "batched and single found different S",
        "summary": {k: summary.get(k) for k in keep},
    }


def job_named(preset: str, name: str) -> Job:
    return next(j for j in JOBS[preset] if j.name == name)


def run_job_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job from its spec; always returns a result (a failure is a status)."""
    import torch

    # numba's OpenMP layer shares libgomp with torch and changes its thread count: restore it
    # (a job in the campaign's own process must not slow the next one down)
    threads = torch.get_num_threads()
    t0 = time.time()
    try:
        if spec["kind"] == "sweep":
            res = run_sweep_job(spec)
        elif spec["kind"] == "kernel-bench":
            res = run_bench_job(spec)
        elif spec["kind"] == "engine-bench":
            res = run_engine_bench_job(spec)
        else:
            raise ValueError(f"unknown job kind {spec['kind']!r}")
    except KeyboardInterrupt:
        res = {"status": "cut", "reason": "stopped at the end of its box (SIGTERM)"}
    except Exception as exc:  # a failing job is recorded and the campaign goes on
        res = {
            "status": "failed",
            "reason": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-4000:],
        }
    finally:
        torch.set_num_threads(threads)
    res["wall_s"] = time.time() - t0
    return res


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m surgelab.campaign SPEC``: run one job in this process, write its result."""
    args = list(sys.argv[1:] if argv is None else argv)
    spec_path = Path(args[0])
    spec = read_json(spec_path)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from validate.sweep import _die_with_parent

    _die_with_parent(os.getppid())  # a killed campaign leaves no job running on the GPU
    res = run_job_spec(spec)
    write_json(spec_path.with_name("result.json"), res)
    return 0


# ----------------------------------------------------------------------------- the driver


def run_tests_job(spec: dict[str, Any], log: Path) -> dict[str, Any]:
    """``pytest -m gpu tests/test_kernels_gpu.py`` in a subprocess, stopped at its box end."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
    cmd += ["tests/test_kernels_gpu.py"]
    timeout = max(1.0, float(spec["deadline"]) - time.time())
    t0 = time.time()
    with log.open("wb") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=_child_env(), **_group()
        )
        rc = _wait(proc, timeout)
    text = log.read_text(errors="replace")
    counts = {
        k: int(n)
        for n, k in re.findall(
            r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", text
        )
    }
    if rc is None:
        status, reason = "cut", f"stopped after {timeout:.0f} s (its box)"
    elif rc == 0 and counts.get("passed", 0) > 0:
        status, reason = "done", ""
    elif rc == 0:
        status, reason = "failed", "no test ran (all skipped: does cupy see the GPU?)"
    else:
        status, reason = "failed", f"pytest exit status {rc}"
    return {
        "status": status,
        "reason": reason,
        "returncode": rc,
        "counts": counts,
        "tail": text[-3000:],
        "wall_s": time.time() - t0,
    }


def _group() -> dict[str, Any]:
    return {"start_new_session": True} if os.name == "posix" else {}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["SURGELAB_PROGRESS"] = "0"
    return env


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    """Wait; past ``timeout`` (+ the grace) SIGTERM, then SIGKILL its process group.

    Returns the exit status, or None when it had to be stopped."""
    try:
        return proc.wait(timeout=timeout + GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    except BaseException:  # Ctrl-C / SIGTERM of the campaign: the job goes with it
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        raise
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    return None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)  # the job's own session: it and its children only
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_isolated(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run a job spec in its own Python process; a crash or hang is a recorded status."""
    spec_path = folder / "spec.json"
    write_json(spec_path, spec)
    (folder / "result.json").unlink(missing_ok=True)
    log = folder / "log.txt"
    timeout = max(1.0, float(spec["deadline"]) - time.time())
    t0 = time.time()
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "surgelab.campaign", str(spec_path)],
            cwd=REPO,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            **_group(),
        )
        rc = _wait(proc, timeout)
    tail = log.read_text(errors="replace")[-3000:]
    result_path = folder / "result.json"
    if result_path.is_file():
        res = read_json(result_path)
    elif rc is None:
        res = {"status": "cut", "reason": "stopped at the end of its box (killed)"}
    else:
        res = {"status": "failed", "reason": f"the job's process ended with status {rc}"}
    res.setdefault("wall_s", time.time() - t0)
    res["returncode"] = rc
    if res.get("status") != "done":
        res["log_tail"] = tail
    return res


# ----------------------------------------------------------------------------- packing


def pack(state: dict[str, Any], work: Path, out: Path, jobs: Sequence[Job]) -> list[str]:
    """Write the output files into ``out`` (flat, at most :data:`OUT_MAX_FILES`), then
    ``campaign.json`` last; returns the file names."""
    names: list[str] = []
    files: dict[str, Any] = {}
    tests_txt = work / "gpu-tests" / "log.txt"
    if tests_txt.is_file():
        _copy_capped(tests_txt, out / GPU_TESTS_TXT)
        names.append(GPU_TESTS_TXT)
    bench = work / "kernel-bench" / BENCH_JSON
    if bench.is_file():
        shutil.copyfile(bench, out / BENCH_JSON)
        names.append(BENCH_JSON)
    for job in jobs:  # every job of the preset: one not run now keeps its earlier stores
        folder = work / job.name
        if job.kind != "sweep" or not any(folder.glob("seeds_*.sqlite")):
            continue
        name = f"{job.name}.tar.gz"
        _archive(folder, out / name, job.name)
        if (out / name).stat().st_size > OUT_MAX_BYTES:  # drop the derived tables first
            _archive(folder, out / name, job.name, only_stores=True)
        names.append(name)
    for n in names:
        p = out / n
        files[n] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    state["files"] = files
    write_json(out / CAMPAIGN_JSON, state)
    names.append(CAMPAIGN_JSON)
    if len(names) > OUT_MAX_FILES:  # the job lists are built so this cannot happen
        raise RuntimeError(f"{len(names)} output files, more than {OUT_MAX_FILES}")
    return names


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _copy_capped(src: Path, dst: Path, cap: int = 4 << 20) -> None:
    data = src.read_bytes()
    if len(data) > cap:
        data = b"[... cut: the first %d bytes ...]\n" % (len(data) - cap) + data[-cap:]
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(dst)


def _archive(folder: Path, dest: Path, arcroot: str, only_stores: bool = False) -> None:
    members = sorted(folder.glob("seeds_*.sqlite"))
    for path in members:
        read_store(path)  # fold the WAL in: the .sqlite file alone is complete
    if not only_stores:
        members += [folder / n for n in ("points.csv", "fits.csv", "best_lr.csv", "job.json")]
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for m in members:
            if m.is_file():
                tar.add(m, arcname=f"{arcroot}/{m.name}")
    tmp.replace(dest)


def unpack(archive: Path, dest: Path) -> None:
    """Extract a job archive's files into ``dest`` (plain files only, no paths outside)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar.getmembers():
            name = Path(m.name).name
            if not m.isfile() or not re.fullmatch(r"[\w.\-]+", name):
                continue
            src = tar.extractfile(m)
            if src is not None:
                (dest / name).write_bytes(src.read())


# ----------------------------------------------------------------------------- resume


def load_previous(
    path: Path, preset: str, device: str, tf32: bool, capture: str = "none"
) -> dict[str, Any]:
    """The ``campaign.json`` of an earlier output folder, checked against this run."""
    cj = path / CAMPAIGN_JSON
    if not cj.is_file():
        raise CampaignError(f"--resume-from {str(path)!r} holds no {CAMPAIGN_JSON}")
    try:
        prev = read_json(cj)
    except (OSError, ValueError) as exc:
        raise CampaignError(f"--resume-from {cj} is unreadable ({exc})") from None
    diffs = []
    if prev.get("format") != FORMAT:
        diffs.append(f"format {prev.get('format')} (this is {FORMAT})")
    if prev.get("preset") != preset:
        diffs.append(f"--preset {prev.get('preset')} (this run: {preset})")
    prev_type = str(prev.get("device", "")).split(":")[0]
    if prev_type != device.split(":")[0]:
        diffs.append(f"--device {prev.get('device')} (this run: {device})")
    if bool(prev.get("tf32")) != bool(tf32):
        diffs.append(f"--tf32 {bool(prev.get('tf32'))} (this run: {bool(tf32)})")
    if prev.get("capture", "none") != capture:
        diffs.append(f"--capture {prev.get('capture', 'none')} (this run: {capture})")
    if diffs:
        raise CampaignError(
            f"--resume-from {str(path)!r} holds results of another configuration: "
            f"{'; '.join(diffs)}; rerun with the same flags or choose another folder"
        )
    for name, info in (prev.get("files") or {}).items():
        p = path / name
        if not p.is_file():
            raise CampaignError(f"--resume-from {str(path)!r} lacks {name} (partial results)")
        if info.get("sha256") and _sha256(p) != info["sha256"]:
            raise CampaignError(
                f"--resume-from {p} differs from the checksum {CAMPAIGN_JSON} records "
                "(a partial or edited copy)"
            )
    return prev


def check_resumed_stores(
    job: Job, folder: Path, data_dir: str | None, device: str, tf32: bool, capture: str = "none"
) -> None:
    """Every unpacked store of ``job`` must hold this run's key; else name what differs."""
    from validate import sweep
    from validate.workload import fingerprint

    stores = {p.name: p for p in folder.glob("seeds_*.sqlite")}
    if not stores:
        return
    blocks = {store_name(bp): bp for bp in job.blocks()}
    unknown = sorted(set(stores) - set(blocks))
    if unknown:
        raise CampaignError(
            f"--resume-from: job {job.name} holds stores of another round layout "
            f"({', '.join(unknown)}); the job's blocks changed, choose another folder"
        )
    wl, data = sweep.load_workload(blocks[next(iter(stores))], data_dir=data_dir, device="cpu")
    fp = fingerprint(wl, data)
    for name, path in sorted(stores.items()):
        old = read_store(path)["key"]
        new = json.loads(json.dumps(block_key(blocks[name], fp, device, tf32, capture)))
        if old != new:
            diff = ", ".join(sweep.key_diff(old or {}, new)) or "the key"
            raise CampaignError(
                f"--resume-from: job {job.name} store {name} holds results of another sweep "
                f"({diff} differ); they are not reused: choose another folder"
            )


# ----------------------------------------------------------------------------- the campaign


@dataclass
class Plan:
    """What one ``campaign run`` does (resolved from its flags)."""

    preset: str
    device: str
    budget_s: float
    out: Path
    data_dir: str | None
    resume_from: Path | None
    jobs: list[Job]
    explicit: bool
    tf32: bool
    isolate: bool
    max_units: int | None
    work: Path | None
    config: dict[str, Any]
    capture: str = "none"  # the sweep jobs' engine steps (B <= CAPTURE_MAX_BATCH), keyed


def run(plan: Plan, t_start: float, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The campaign: checks, resume, then each job in its box; returns ``campaign.json``."""
    deadline = t_start + plan.budget_s - reserve_s(plan.budget_s, plan.isolate)  # time.time()
    runnable, skipped = check_data(plan.jobs, plan.data_dir, plan.explicit)
    prev = None
    if plan.resume_from is not None:
        prev = load_previous(plan.resume_from, plan.preset, plan.device, plan.tf32, plan.capture)
    work = Path(tempfile.mkdtemp(prefix="surgelab-campaign-", dir=plan.work))
    try:
        prev_jobs: dict[str, Any] = (prev or {}).get("jobs", {})
        preset_jobs = list(JOBS[plan.preset])
        if prev is not None:
            assert plan.resume_from is not None
            for job in preset_jobs:  # all of them: the new --out must hold every result
                arch = plan.resume_from / f"{job.name}.tar.gz"
                if job.kind == "sweep" and arch.is_file():
                    unpack(arch, work / job.name)
                    if job in runnable:  # the ones this run adds to
                        check_resumed_stores(
                            job,
                            work / job.name,
                            plan.data_dir,
                            plan.device,
                            plan.tf32,
                            plan.capture,
                        )
        # --- nothing has been written to --out before this line
        plan.out.mkdir(parents=True, exist_ok=True)
        windows = list((prev or {}).get("windows", []))
        commit, commit_from = git_commit(), "git"
        code = sources_digest(CODE)
        manifest = _manifest(plan.data_dir)
        if commit is None and manifest.get("code_digest") == code:
            commit, commit_from = manifest.get("commit"), "manifest (same code digest)"
        window = {
            "index": len(windows),
            "time_utc": utc_stamp(),
            "commit": commit,
            "commit_from": commit_from,
            "code_digest": code,
            "budget_s": plan.budget_s,
            "jobs": {},
        }
        state: dict[str, Any] = {
            "format": FORMAT,
            "preset": plan.preset,
            "device": plan.device,
            "tf32": plan.tf32,
            "capture": plan.capture,
            "commit": window["commit"],
            "code_digest": code,
            "config": plan.config,
            "facts": device_facts(plan.device),
            "jobs": {n: dict(v) for n, v in prev_jobs.items()},
            "windows": [*windows, window],
            "status": "running",
        }
        if prev is not None:
            _carry_files(plan.resume_from, work)
        pack(state, work, plan.out, preset_jobs)
        all_jobs = list(plan.jobs)
        for i, job in enumerate(all_jobs):
            old = state["jobs"].get(job.name, {})
            t_job = time.time()
            try:
                res = _run_one(job, i, all_jobs, runnable, skipped, old, plan, work, deadline)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the driver's side of a job failed: record, go on
                res = {
                    "status": "failed",
                    "reason": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-4000:],
                    "ran": True,
                }
            res.setdefault("wall_s", time.time() - t_job)
            if res.get("ran"):  # this window's result replaces the last one (cuts add up)
                entry = {"cuts": old.get("cuts") or {}, **_public(res)}
            else:  # skipped, not run or reused: the earlier result stands, with this status
                entry = {**old, **{k: v for k, v in _public(res).items() if k != "ran"}}
            entry.update(kind=job.kind, what=job.what, window=window["index"])
            state["jobs"][job.name] = entry
            window["jobs"][job.name] = {
                k: res.get(k) for k in ("status", "reason", "wall_s", "box_s")
            }
            line = f"{job.name:<13} {res['status']:<8} {res.get('wall_s', 0):6.1f} s"
            say(f"{line}  {res.get('reason') or ''}".rstrip())
            pack(state, work, plan.out, preset_jobs)
        window["wall_s"] = time.time() - t_start
        state["status"] = "finished"
        names = pack(state, work, plan.out, preset_jobs)
        for line in summary_lines(state):
            say(f"  {line}")
        say(f"wrote {plan.out} ({len(names)} files: {', '.join(names)})")
        return state
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _public(res: dict[str, Any]) -> dict[str, Any]:
    return dict(jsonable(res))


def _manifest(data_dir: str | None) -> dict[str, Any]:
    """The ``manifest.json`` of a prepared data folder (``{}`` when there is none)."""
    if data_dir is None:
        return {}
    try:
        return read_json(Path(data_dir).expanduser().parent / "manifest.json")
    except (OSError, ValueError):
        return {}


def _carry_files(src: Path | None, work: Path) -> None:
    """Bring the earlier test output and benchmark into this window's work folder."""
    if src is None:
        return
    for job, name, target in (
        ("gpu-tests", GPU_TESTS_TXT, "log.txt"),
        ("kernel-bench", BENCH_JSON, BENCH_JSON),
    ):
        if (src / name).is_file():
            (work / job).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, work / job / target)


def _run_one(
    job: Job,
    i: int,
    all_jobs: list[Job],
    runnable: list[Job],
    skipped: dict[str, str],
    old: dict[str, Any],
    plan: Plan,
    work: Path,
    deadline: float,
) -> dict[str, Any]:
    folder = work / job.name
    folder.mkdir(parents=True, exist_ok=True)
    if job.name in skipped:
        return {"status": "skipped", "reason": skipped[job.name], "wall_s": 0.0}
    if job.kind == "tests" and not plan.device.startswith("cuda"):
        return {"status": "skipped", "reason": "--device cpu: the gpu tests need a CUDA GPU"}
    digest = sources_digest(DEPENDS[job.kind]) if job.kind in DEPENDS else None
    if (
        digest is not None
        and old.get("status") == "done"
        and old.get("sources") == digest
        and old.get("device_type") == plan.device.split(":")[0]
    ):
        return {
            "status": "done",
            "reason": "done in an earlier window with the same sources",
            "wall_s": 0.0,
            "reused": True,
        }
    later = [j for j in all_jobs[i:] if j in runnable]
    left = deadline - time.time()
    box = boxes(later, max(0.0, left))[0] if later else 0.0
    if box < job.min_s:
        return {
            "status": "not-run",
            "reason": f"its box would be {box:.0f} s, less than the {job.min_s:.0f} s it needs",
            "box_s": box,
        }
    spec = {
        "name": job.name,
        "kind": job.kind,
        "preset": plan.preset,
        "device": plan.device,
        "data_dir": plan.data_dir,
        "tf32": plan.tf32,
        "capture": plan.capture,
        "deadline": time.time() + box,
        "folder": str(folder),
        "cuts": old.get("cuts") or {},
        "max_units": plan.max_units,
    }
    if job.kind == "tests":
        res = run_tests_job(spec, folder / "log.txt")
    elif plan.isolate:
        res = run_isolated(spec, folder)
    else:
        res = run_job_spec(spec)
    res["box_s"] = box
    res["ran"] = True
    if digest is not None:
        res["sources"] = digest
        res["device_type"] = plan.device.split(":")[0]
    if job.kind == "sweep":
        res.setdefault("cuts", old.get("cuts") or {})
        try:
            # the fits take seconds: only while the jobs' time is not over
            fits = deadline - time.time() > 10.0
            res.update(finish_sweep_folder(job, folder, res["cuts"], fits=fits))
        except Exception as exc:  # a store a killed job left unreadable: record, go on
            res["finish_error"] = f"{type(exc).__name__}: {exc}"
        proj = res.get("projection") or {}
        if res.get("status") == "done" and proj.get("units_done", 0) < proj.get("units_total", 0):
            res["status"] = "cut"
    return res


def summary_lines(state: dict[str, Any]) -> list[str]:
    """A few lines per job: what is done, what the rest would take."""
    out = []
    for name, j in state.get("jobs", {}).items():
        p = j.get("projection")
        if p:
            rest = p["rest_estimate_s"]
            out.append(
                f"{name}: {p['units_done']}/{p['units_total']} units, {p['rounds_done']}/"
                f"{p['rounds_total']} rounds; rest ≈ {rest / 60:.1f} min + "
                f"{p['units_unknown']} units not yet timed"
            )
        elif isinstance(j.get("summary"), dict):
            e = j["summary"]
            peak = e.get("fraction_of_fp32_peak")
            out.append(
                f"{name}: batched {e['batched_s']:.3g} s vs one at a time {e['single_s']:.3g} s "
                f"(x{e['ratio']:.2f}), {e['batched_train_flops_per_s'] / 1e12:.3g} TFLOP/s"
                + (f" = {peak:.1%} of fp32 peak" if peak else "")
            )
        elif j.get("summary"):
            parts = [
                f"{r['backend']} {r['per_sample_s']:.3g} s/sample"
                + (f" (x{r['speedup_vs_torch']:.1f} vs torch)" if "speedup_vs_torch" in r else "")
                for r in j["summary"]
            ]
            out.append(f"{name}: {'; '.join(parts)}")
        elif j.get("counts"):
            out.append(f"{name}: {j['counts']}")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
