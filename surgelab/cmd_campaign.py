"""``surgelab campaign prepare | run``: spend a short GPU window on the paper-scale results.

- ``prepare`` (here, on the CPU): copies the datasets the next window needs into
  ``.campaign/data/`` (checksums verified, within the 64 MiB that travel with the checkout),
  writes ``.campaign/manifest.json`` and prints the one command to run on the GPU box and the
  folder to carry.
- ``run`` (there): the priority list of :mod:`surgelab.campaign` (gpu tests, kernel
  benchmark, the Table 1 sweeps round by round), each job time-boxed so that the command ends
  before ``--budget-s``; at most 8 files in ``--out``. ``--resume-from`` continues the results
  of earlier windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from surgelab.cli import Command, Stage, UsageError
from surgelab.config import Config, ConfigError, config_to_dict, opt
from surgelab.rundir import RunDir

DATA_WHY = "folder holding the datasets (<name>/<files>; default: the usual search path)"


def _job_names(preset: str) -> list[str]:
    from surgelab.campaign import JOBS

    return [j.name for j in JOBS[preset]]


@dataclass(frozen=True)
class PrepareConfig(Config):
    jobs: tuple[str, ...] = opt(
        (),
        "paper jobs whose data to pack (default: those whose data fit together: the "
        "Fashion-MNIST and ELI5 rows; resnet alone needs its own window)",
    )
    out: str = opt(".campaign", "git-ignored folder in the checkout that travels (carry it)")
    data_dir: str | None = opt(None, "where the datasets are now (default: the search path)")
    budget_s: float = opt(500.0, "the --budget-s of the printed command", lo=1, hi=86_400)
    limit_mib: float = opt(
        64.0, "MiB that may travel to the box, the checkout included", lo=0, lo_open=True
    )

    def check(self) -> None:
        from surgelab.campaign import REPO

        bad = [n for n in self.jobs if n not in _job_names("paper")]
        if bad:
            raise ConfigError(
                "jobs",
                f"unknown job(s) {', '.join(bad)}; choose from {', '.join(_job_names('paper'))}",
            )
        out = Path(self.out).expanduser().resolve()
        try:
            out.relative_to(REPO)
        except ValueError:
            raise ConfigError(
                "out", f"{self.out!r} is outside the checkout {REPO}; only the checkout travels"
            ) from None
        if out.exists() and not out.is_dir():
            raise ConfigError("out", f"{self.out!r} is an existing file, not a folder")
        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise ConfigError("data_dir", f"{self.data_dir!r} is not an existing folder")


def run_prepare(cfg: PrepareConfig, run: RunDir | None) -> int:
    from surgelab import campaign

    names = cfg.jobs or tuple(
        j.name for j in campaign.JOBS["paper"] if j.name != "resnet"
    )  # tiny-imagenet (58 MiB) does not fit beside the others
    jobs = campaign.jobs_of("paper", names)
    out = Path(cfg.out).expanduser().resolve()
    rel = out.relative_to(campaign.REPO)
    try:
        man = campaign.prepare(
            jobs, out, cfg.data_dir, limit_bytes=int(cfg.limit_mib * 2**20), say=print
        )
    except campaign.CampaignError as exc:
        raise UsageError(str(exc)) from None
    data = (rel / "data").as_posix()
    cmd = (
        f"PYTHONPATH=. python -m surgelab campaign run --device cuda --budget-s {cfg.budget_s:g} "
        f"--data-dir {data} --out $OUT"
    )
    if cfg.jobs:
        cmd += f" --jobs {','.join(j.name for j in jobs)}"
    prev = campaign.REPO / "results" / "gpu-campaign"
    if (prev / campaign.CAMPAIGN_JSON).is_file():
        cmd += " --resume-from results/gpu-campaign"
    total = man["data_bytes"] + man["tree_bytes"]
    print(
        f"wrote {rel.as_posix()}/ ({man['data_bytes'] / 2**20:.1f} MiB of data + the checkout "
        f"{man['tree_bytes'] / 2**20:.1f} MiB = {total / 2**20:.1f} of "
        f"{man['limit_bytes'] / 2**20:.0f} MiB)"
    )
    print("run on the GPU box (from the checkout's root):")
    print(f"  {cmd}")
    print(f'carry: ["{rel.as_posix()}"]')
    return 0


@dataclass(frozen=True)
class CampaignConfig(Config):
    budget_s: float = opt(
        500.0, "seconds the whole command may take; it ends before", lo=0, lo_open=True, hi=86_400
    )
    out: str | None = opt(None, "new or empty folder for the results (≤ 8 files)", metavar="DIR")
    device: str = opt("cpu", "torch device: cpu, cuda, cuda:1, ...")
    preset: Literal["paper", "tiny"] = opt(
        "paper", "job list: paper (Table 1 scale, a GPU) or tiny (the plumbing in seconds)"
    )
    data_dir: str | None = opt(None, DATA_WHY)
    resume_from: str | None = opt(
        None, "folder of an earlier --out (e.g. results/gpu-campaign): continue its results"
    )
    jobs: tuple[str, ...] = opt((), "only these jobs (default: all, in priority order)")
    tf32: bool = opt(False, "let float32 matmuls/convolutions use TF32 on the GPU (recorded)")
    capture: Literal["none", "compile", "graph"] = opt(
        "none", "engine steps of sweep units with B <= 64 (falls back to eager; keyed)"
    )
    isolate: bool | None = opt(
        None, "run each job in its own process, stopped at its box end (default: on a GPU)"
    )
    max_units: int | None = opt(
        None, "stop each sweep job after N units this window (short windows, tests)", lo=1
    )
    work: str | None = opt(None, "where the work files go (default: a temporary folder)")

    def check(self) -> None:
        from surgelab import campaign

        if self.out is None:
            raise ConfigError("out", "is required: the folder the results go to ($OUT on a box)")
        out = Path(self.out).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(
                "out",
                f"{self.out!r} is not a new or empty folder; choose a new one (earlier results "
                "are continued with --resume-from, never overwritten)",
            )
        if self.resume_from is not None and not Path(self.resume_from).expanduser().is_dir():
            raise ConfigError("resume_from", f"{self.resume_from!r} is not an existing folder")
        if self.data_dir is not None and not Path(self.data_dir).expanduser().is_dir():
            raise ConfigError("data_dir", f"{self.data_dir!r} is not an existing folder")
        if self.work is not None and not Path(self.work).expanduser().is_dir():
            raise ConfigError("work", f"{self.work!r} is not an existing folder")
        names = _job_names(self.preset)
        bad = [n for n in self.jobs if n not in names]
        if bad:
            raise ConfigError(
                "jobs",
                f"unknown job(s) {', '.join(bad)} for --preset {self.preset}; "
                f"choose from {', '.join(names)}",
            )
        if self.device != "cpu":
            from surgelab.cmd_validate import device_name

            device_name(self.device)
        elif self.tf32:
            raise ConfigError("tf32", "needs a CUDA --device (TF32 is a GPU arithmetic)")
        jobs = campaign.jobs_of(self.preset, self.jobs)
        reserve = campaign.reserve_s(self.budget_s, self.isolated)
        need = reserve + min(j.min_s for j in jobs)
        if self.budget_s < need:
            raise ConfigError(
                "budget_s",
                f"{self.budget_s:g} s is too small for any job: packing keeps {reserve:.0f} s "
                f"and the shortest job needs {need - reserve:.0f} s; give at least {need:.0f}",
            )

    @property
    def isolated(self) -> bool:
        return self.device != "cpu" if self.isolate is None else self.isolate


def process_start() -> float:
    """When this process started (``time.time()`` scale; Linux ``/proc``, else now): the
    budget counts the interpreter's start and the imports too."""
    import os

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5): start time in clock ticks after boot
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        started = btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
    # btime has one-second resolution: never report a start in the future or > 1 min ago
    now = time.time()
    return min(now, max(started, now - 60.0))


def run_campaign(cfg: CampaignConfig, run: RunDir | None) -> int:
    from surgelab import campaign

    t_start = process_start()
    assert cfg.out is not None
    plan = campaign.Plan(
        preset=cfg.preset,
        device=cfg.device,
        budget_s=cfg.budget_s,
        out=Path(cfg.out).expanduser(),
        data_dir=None if cfg.data_dir is None else str(Path(cfg.data_dir).expanduser().resolve()),
        resume_from=None if cfg.resume_from is None else Path(cfg.resume_from).expanduser(),
        jobs=campaign.jobs_of(cfg.preset, cfg.jobs),
        explicit=bool(cfg.jobs),
        tf32=cfg.tf32,
        capture=cfg.capture,
        isolate=cfg.isolated,
        max_units=cfg.max_units,
        work=None if cfg.work is None else Path(cfg.work).expanduser(),
        config=config_to_dict(cfg),
    )
    try:
        campaign.run(plan, t_start)
    except campaign.CampaignError as exc:
        raise UsageError(str(exc)) from None
    return 0


STAGE = Stage(
    "campaign",
    "GPU windows: pack the data here, then run the time-boxed job list there",
    {
        "prepare": Command(
            "prepare",
            "copy the data the next GPU window needs into .campaign/ and print the command",
            PrepareConfig,
            run_prepare,
            writes=False,
            description=__doc__.split("\n\n")[1] if __doc__ else "",
        ),
        "run": Command(
            "run",
            "run the time-boxed job list (tests, kernel bench, Table 1 sweeps) into --out",
            CampaignConfig,
            run_campaign,
            writes=False,
            description="Run the campaign's jobs in priority order, each in a time box, so that "
            "the command ends before --budget-s; writes at most 8 files into --out after every "
            "job. --resume-from continues earlier windows' results.",
        ),
    },
)
