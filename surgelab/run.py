"""``surgelab run``: the main job — theory, simulation and real-data validation in one report.

Each part is a command run in-process with its own typed config into ``<run>/<part>/`` — the
same folder a user gets by typing the command shown under "Reproduce" in the report. A part
is finished when its folder holds the ``.done`` marker of exactly the config asked for now, so
a rerun with the same ``--out`` skips finished parts, recomputes parts whose flags changed, and
resumes an interrupted sweep point by point.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from surgelab.cli import Command, Stage, UsageError
from surgelab.cmd_validate import DOWNLOAD_WHY, _env_download
from surgelab.config import Config, ConfigError, opt
from surgelab.progress import say
from surgelab.report import Part, write_report
from surgelab.rundir import RunDir, check_out, command_line, is_finished, open_run, read_json

PART_KEYS = ("theory", "surge", "train", "real", "estimate")

#: --preset paper: the workload's Table-1 grid (Fashion-MNIST: the large-batch row, which spans
#: the peak; the small-batch row is ``--preset paper-fmnist-small``)
PAPER_PRESET = {
    "fmnist-cnn": "paper-fmnist-large",
    "eli5-gpt": "paper-eli5-adam",
    "tinyimagenet-resnet18": "paper-resnet-sign",
}

Scale = Literal["tiny", "smoke", "paper"]

#: per scale, the fields each part changes from its command's defaults ("smoke" = defaults)
SCALE_OVERRIDES: dict[str, dict[str, dict]] = {
    "tiny": {
        "surge": {"n_samples": 4000, "n_batch": 13},
        "train": {"n_lr": 5, "seeds": 2, "batch": (8.0, 32.0, 128.0, 512.0, 2048.0)},
        "estimate": {
            "checkpoints": (0, 100),
            "n_examples": 256,
            "probes": 4,
            "batch_sizes": (4, 32),
            "n_batches": 6,
            "max_batches": 12,
        },
    },
    # the main job's direct estimate explains, it does not decide: a B whose one-step optimum
    # is still wide after 36 mini-batches is flagged unresolved rather than bought with minutes
    "smoke": {"estimate": {"max_batches": 36}},
    "paper": {
        "surge": {"n_samples": 200000, "n_batch": 41},
        "train": {"n_lr": 25, "seeds": 16},
        "estimate": {
            "size": "paper",
            "n_examples": 8192,
            "probes": 64,
            "n_batches": 64,
            "max_batches": 256,
        },
    },
}


#: Seconds between "still running" lines while a part works (no part is silent longer).
HEARTBEAT_S = 20.0

#: Typical seconds of each part per scale on 2 busy CPU cores (the tiny run measured; smoke
#: from the parts' own notes), for the estimate of what is left. Unknown scales: no estimate.
TYPICAL_S: dict[str, dict[str, float]] = {
    "tiny": {"theory": 12, "surge": 5, "train": 8, "real": 20, "estimate": 50},
    "smoke": {"theory": 12, "surge": 20, "train": 60, "real": 450, "estimate": 300},
}


def _dur(s: float) -> str:
    s = max(0.0, s)
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


@dataclass
class Progress:
    """Where the main job is: part k of N, elapsed time, and an estimate of what is left."""

    keys: list[str]
    scale: str
    t_start: float
    k: int = 0
    t_part: float = 0.0

    def left(self) -> float | None:
        typical = TYPICAL_S.get(self.scale)
        if typical is None or not self.k:
            return None
        now = time.perf_counter()
        cur = max(typical[self.keys[self.k - 1]] - (now - self.t_part), 0.0)
        return cur + sum(typical[k] for k in self.keys[self.k :])

    def line(self, what: str) -> str:
        now = time.perf_counter()
        left = self.left()
        est = f", about {_dur(left)} left (typical at this scale)" if left is not None else ""
        return (
            f"surgelab run: part {self.k}/{len(self.keys)} {self.keys[self.k - 1]} {what} "
            f"[{_dur(now - self.t_part)} in this part, {_dur(now - self.t_start)} elapsed{est}]"
        )


@contextmanager
def heartbeat(progress: Progress, every: float | None = None) -> Iterator[None]:
    """Print a "still running" line every ``every`` seconds until the block ends."""
    stop = threading.Event()
    period = HEARTBEAT_S if every is None else every

    def beat() -> None:
        while not stop.wait(period):
            say(progress.line("still running"))

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)


@dataclass(frozen=True)
class RunConfig(Config):
    workload: str = opt("fmnist-cnn", "real-data workload (surgelab validate presets lists them)")
    preset: str = opt(
        "smoke",
        "real-data grid: tiny (seconds), smoke (CPU minutes), paper (the "
        "workload's Table-1 grid) or any preset name",
    )
    device: str = opt("cpu", "torch device of the real-data parts (cpu, cuda, cuda:1, ...)")
    backend: Literal["local", "ray"] = opt("local", "sweep backend: local process pool or Ray")
    address: str | None = opt(None, "Ray cluster address (with --backend ray)")
    workers: int | None = opt(None, "parallel sweep workers (default: one per core)", lo=1)
    data_dir: str | None = opt(
        None,
        "dataset folder, used alone (else $SURGELAB_DATA, the user "
        "cache, a checkout's ../shared/data)",
    )
    download: bool = opt(_env_download(), DOWNLOAD_WHY)
    parts: tuple[str, ...] = opt(PART_KEYS, "the parts to run", choices=PART_KEYS, nonempty=True)
    batch_sizes: tuple[int, ...] | None = opt(
        None,
        "batch sizes the Recommendation gives a learning rate for (default: the smallest, "
        "middle and largest measured, and 2× the largest)",
        lo=1,
        hi=1 << 30,
        ascending=True,
        nonempty=True,
    )

    def check(self) -> None:
        if self.address and self.backend != "ray":
            raise ConfigError("address", "needs --backend ray")
        if self.preset == "paper" and self.workload not in PAPER_PRESET:
            raise ConfigError(
                "preset",
                f"paper: the paper has no grid for workload {self.workload!r}; use --preset "
                f"smoke, or --workload one of {', '.join(sorted(PAPER_PRESET))}",
            )
        if "real" in self.parts or "estimate" in self.parts:
            from validate.workload import available

            if self.workload not in available():
                raise ConfigError(
                    "workload",
                    f"unknown workload {self.workload!r}; choose one of {', '.join(available())}",
                )
        # every part's own config checks its flags now, before anything is written
        for spec in PARTS:
            if spec.key in self.parts:
                spec.make(self)

    @property
    def sweep_preset(self) -> str:
        return PAPER_PRESET[self.workload] if self.preset == "paper" else self.preset

    @property
    def scale(self) -> str:
        if self.preset in ("tiny", "smoke"):
            return self.preset
        return "paper" if self.preset.startswith("paper") else "smoke"


@dataclass(frozen=True)
class PartSpec:
    key: str
    title: str
    stage: str
    command: str
    make: Callable[[RunConfig], Config]


def _scaled(cls: type[Config], cfg: RunConfig, key: str, **fields) -> Config:
    over = SCALE_OVERRIDES[cfg.scale].get(key, {})
    return dataclasses.replace(cls(), **{**over, **fields})


def _real_fields(cfg: RunConfig) -> dict:
    return {
        "workload": cfg.workload,
        "device": cfg.device,
        "data_dir": cfg.data_dir,
        "download": cfg.download,
    }


def _theory(cfg: RunConfig) -> Config:
    from surgelab.cmd_theory import CheckConfig

    return CheckConfig()


def _surge(cfg: RunConfig) -> Config:
    from surgelab.cmd_simulate import SurgeConfig

    return _scaled(SurgeConfig, cfg, "surge")


def _train(cfg: RunConfig) -> Config:
    from surgelab.cmd_simulate import TrainGridConfig

    return _scaled(TrainGridConfig, cfg, "train")


def _real(cfg: RunConfig) -> Config:
    from surgelab.cmd_validate import SweepConfig

    return _scaled(
        SweepConfig,
        cfg,
        "real",
        preset=cfg.sweep_preset,
        backend=cfg.backend,
        address=cfg.address,
        workers=cfg.workers,
        **_real_fields(cfg),
    )


def _estimate(cfg: RunConfig) -> Config:
    from surgelab.cmd_estimate import EstimateConfig

    return _scaled(EstimateConfig, cfg, "estimate", **_real_fields(cfg))


PARTS: tuple[PartSpec, ...] = (
    PartSpec(
        "theory",
        "Theory: derivations checked against the numeric closed forms",
        "theory",
        "check",
        _theory,
    ),
    PartSpec(
        "surge",
        "Simulation: one-step surge on a quadratic (Monte Carlo vs Theorems 2-4, SGD)",
        "simulate",
        "surge",
        _surge,
    ),
    PartSpec(
        "train",
        "Simulation: multi-step training and the steps–examples fit",
        "simulate",
        "train",
        _train,
    ),
    PartSpec(
        "real",
        "Real data: the paper's protocol (sweep, best lr per batch size, fits)",
        "validate",
        "run",
        _real,
    ),
    PartSpec(
        "estimate",
        "Real data: direct estimate of the theory's quantities at checkpoints",
        "validate",
        "estimate",
        _estimate,
    ),
)


def _command(spec: PartSpec) -> Command:
    from surgelab.cli import stages

    return stages()[spec.stage].commands[spec.command]


def run_part(spec: PartSpec, part_cfg: Config, root: Path, progress: Progress) -> Part:
    folder = root / spec.key
    prog = f"surgelab {spec.stage} {spec.command}"
    cmd = command_line(prog, part_cfg)
    progress.k += 1
    progress.t_part = time.perf_counter()
    if is_finished(folder, part_cfg):
        say(progress.line("finished earlier; reused"))
        return Part(
            spec.key,
            spec.title,
            folder,
            cmd,
            "ok",
            "(finished earlier; reused)",
            read_json(folder / "summary.json"),
        )
    try:
        check_out(folder, spec.stage, spec.command, part_cfg)
    except ConfigError:  # this run's own part folder from other flags: recompute it
        shutil.rmtree(folder)
    say(f"\n=== {progress.line('starting')}\n    {cmd}")
    t0 = time.perf_counter()
    run_dir: RunDir = open_run(spec.stage, spec.command, part_cfg, folder, prog=prog)
    try:
        with heartbeat(progress):
            rc = int(_command(spec).run(part_cfg, run_dir) or 0)
    except KeyboardInterrupt:
        raise
    except (ConfigError, UsageError, ValueError, FileNotFoundError) as exc:
        return Part(spec.key, spec.title, folder, cmd, "failed", " ".join(str(exc).split()))
    except Exception:  # one failing part must not lose the others: the report records it
        traceback.print_exc()
        return Part(
            spec.key, spec.title, folder, cmd, "failed", "raised an exception (traceback on stderr)"
        )
    wall = time.perf_counter() - t0
    summary = read_json(folder / "summary.json") if (folder / "summary.json").exists() else {}
    if rc != 0 or not run_dir.finished:
        return Part(spec.key, spec.title, folder, cmd, "failed", f"exit status {rc}", summary)
    return Part(spec.key, spec.title, folder, cmd, "ok", f"{wall:.0f} s", summary)


def recommendation_of(
    parts: list[Part], root: Path, batch_sizes: tuple[int, ...] | None
) -> tuple[list[dict], str]:
    """The Recommendation from the real-data sweep (``surgelab advise --from`` computes the
    same), or none and why."""
    from surgelab.cmd_advise import recommendation

    real = next((p for p in parts if p.key == "real"), None)
    if real is None or real.status != "ok":
        return [], (
            "no Recommendation: it comes from the measured training optimum, and the real-data "
            "sweep part " + ("was not run" if real is None else "failed")
        )
    try:
        return recommendation(root, batch_sizes), ""
    except (UsageError, ValueError) as exc:
        return [], f"no Recommendation: {' '.join(str(exc).split())}"


def run_main(cfg: RunConfig, run: RunDir | None) -> int:
    assert run is not None
    root = run.path
    wanted = [p for p in PARTS if p.key in cfg.parts]
    configs = {p.key: p.make(cfg) for p in wanted}  # every part's config checked up front
    parts: list[Part] = []
    progress = Progress([p.key for p in wanted], cfg.scale, time.perf_counter())
    try:
        for spec in wanted:
            parts.append(run_part(spec, configs[spec.key], root, progress))
    except KeyboardInterrupt:
        write_report(parts, root)
        raise
    rec, note = recommendation_of(parts, root, cfg.batch_sizes)
    write_report(parts, root, recommendation=rec, recommendation_note=note)
    if rec:
        from validate.advise import format_recommendation

        print(format_recommendation(rec))
    failed = [p.key for p in parts if p.status != "ok"]
    say(f"\nreport: {root / 'report.html'}  (and report.md)")
    if failed:
        print(f"surgelab run: part(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    run.finish({"parts": {p.key: p.status for p in parts}})
    return 0


STAGE = Stage(
    "run",
    "the main job: theory + simulation + real data, one report",
    {
        "main": Command(
            "main",
            "the main job: theory + simulation + real data, one report",
            RunConfig,
            run_main,
            flags_may_change=True,
        )
    },
    single=True,
)
