"""``surgelab run``: the main job — theory, simulation and real-data validation in one report.

Each part runs through its own stage command with ``--out <run>/<part>``, so its run folder is
exactly what a user would get by typing the command printed under "Reproduce" in the report.
A part whose folder holds the ``.done`` marker is skipped on a rerun with the same ``--out``
(the real-data sweep also resumes point by point from its SQLite store), so the job can be
interrupted with Ctrl-C and resumed without losing finished work.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from theory.rundir import environment, make_run_dir, read_json, write_json
from validate.data import DOWNLOAD_HELP
from validate.report import Part, write_report
from validate.sweep_cli import _device_name, data_dir, out_dir

DONE = ".done"


@dataclass(frozen=True)
class PartSpec:
    key: str
    title: str
    module: str  # stage entry point whose main(argv) runs it
    argv: Callable[[argparse.Namespace, Path], list[str]]


def _common_real(a: argparse.Namespace) -> list[str]:
    out = ["--device", a.device, *(["--download"] if a.download else [])]
    if a.data_dir:
        out += ["--data-dir", str(a.data_dir)]
    return out


# Simulation sizes per scale: the defaults take ~10 s each on 2 cores; "tiny" is for tests,
# "paper" buys tighter Monte Carlo error bars and a finer learning-rate grid.
SIM_ARGS: dict[str, dict[str, list[str]]] = {
    "tiny": {
        "surge": ["--n-samples", "4000", "--n-batch", "13"],
        "train": ["--n-lr", "5", "--seeds", "2", "--batch", "8,32,128,512,2048"],
        "estimate": [
            "--checkpoints",
            "0,100",
            "--n-examples",
            "256",
            "--probes",
            "4",
            "--batch-sizes",
            "4,32",
            "--n-batches",
            "6",
            "--quiet",
        ],
    },
    "smoke": {"surge": [], "train": [], "estimate": ["--quiet"]},
    "paper": {
        "surge": ["--n-samples", "200000", "--n-batch", "41"],
        "train": ["--n-lr", "25", "--seeds", "16"],
        "estimate": [
            "--size",
            "paper",
            "--n-examples",
            "8192",
            "--probes",
            "64",
            "--n-batches",
            "64",
            "--quiet",
        ],
    },
}


def _sim(a: argparse.Namespace, part: str) -> list[str]:
    return SIM_ARGS[a.scale][part]


PARTS: tuple[PartSpec, ...] = (
    PartSpec(
        "theory",
        "Theory: derivations checked against the numeric closed forms",
        "theory.__main__",
        lambda a, d: ["check", "--out", str(d)],
    ),
    PartSpec(
        "surge",
        "Simulation: one-step surge on a quadratic (Monte Carlo vs Theorems 2-4, SGD)",
        "simulate.__main__",
        lambda a, d: ["surge", *_sim(a, "surge"), "--out", str(d)],
    ),
    PartSpec(
        "train",
        "Simulation: multi-step training and the steps-examples fit",
        "simulate.__main__",
        lambda a, d: ["train", *_sim(a, "train"), "--out", str(d)],
    ),
    PartSpec(
        "real",
        "Real data: the paper's protocol (sweep, best lr per batch size, fits)",
        "validate.__main__",
        lambda a, d: [
            "run",
            "--workload",
            a.workload,
            "--preset",
            a.preset,
            "--backend",
            a.backend,
            *(["--address", a.address] if a.address else []),
            *(["--workers", str(a.workers)] if a.workers else []),
            *_common_real(a),
            "--out",
            str(d),
        ],
    ),
    PartSpec(
        "estimate",
        "Real data: direct estimate of the theory's quantities at checkpoints",
        "validate.__main__",
        lambda a, d: [
            "estimate",
            "--workload",
            a.workload,
            *_sim(a, "estimate"),
            *_common_real(a),
            "--out",
            str(d),
        ],
    ),
)

# --preset picks the real-data grid; the simulations and the estimate follow its scale.
SCALE_OF_PRESET = {"tiny": "tiny", "smoke": "smoke"}
# --preset paper: the workload's Table-1 grid (for Fashion-MNIST the large-batch row, which
# spans B_noise; the small-batch row is `--preset paper-fmnist-small`).
PAPER_PRESET = {
    "fmnist-cnn": "paper-fmnist-large",
    "eli5-gpt": "paper-eli5-adam",
    "tinyimagenet-resnet18": "paper-resnet-sign",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="surgelab run",
        description="The main job: theory check, quadratic simulations and the real-data "
        "protocol, collected into report.html / report.md in one run folder.",
    )
    p.add_argument(
        "--out",
        type=out_dir,
        default=None,
        help="run folder (default runs/run/main/<UTC time>); reuse it to resume",
    )
    p.add_argument(
        "--workload",
        default="fmnist-cnn",
        help="real-data workload (see `surgelab validate presets`)",
    )
    p.add_argument(
        "--preset",
        default="smoke",
        help="real-data grid: tiny (seconds), smoke (CPU minutes), paper (the workload's "
        "Table-1 grid) or any preset name (surgelab validate presets)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the real-data parts")
    p.add_argument(
        "--backend",
        default="local",
        choices=["local", "ray"],
        help="sweep backend: local process pool, or a Ray cluster",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    p.add_argument("--workers", type=int, default=None, help="parallel sweep workers")
    p.add_argument(
        "--data-dir",
        type=data_dir,
        default=None,
        help="dataset folder (else $SURGELAB_DATA, else the user cache)",
    )
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.add_argument(
        "--parts",
        default=",".join(s.key for s in PARTS),
        help="comma-separated subset of parts to run",
    )
    return p


def _command_line(spec: PartSpec, argv: list[str]) -> str:
    stage = spec.module.split(".")[0]
    return shlex.join(["surgelab", stage, *argv])


def _done_key(done: Path) -> str | None:
    try:
        return read_json(done).get("key")
    except (ValueError, AttributeError):  # an old or damaged marker: run the part again
        return None


def run_part(spec: PartSpec, args: argparse.Namespace, root: Path) -> Part:
    folder = root / spec.key
    argv = spec.argv(args, folder)
    cmd = _command_line(spec, argv)
    done = folder / DONE
    # a part is reused only if it finished with the same command line (flags can change)
    key = shlex.join(["{out}" if a == str(folder) else a for a in argv])  # the folder may move
    if done.exists() and (folder / "summary.json").exists() and _done_key(done) == key:
        return Part(
            spec.key,
            spec.title,
            folder,
            cmd,
            "ok",
            "(finished earlier; resumed)",
            read_json(folder / "summary.json"),
        )
    print(f"\n=== surgelab run: {spec.key} — {cmd}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        rc = int(importlib.import_module(spec.module).main(argv) or 0)
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # argparse errors inside a stage
        rc = exc.code if isinstance(exc.code, int) else 2
    except Exception:  # one failing part must not lose the others: record it in the report
        traceback.print_exc()
        return Part(
            spec.key, spec.title, folder, cmd, "failed", "raised an exception (traceback on stderr)"
        )
    wall = time.perf_counter() - t0
    summary_path = folder / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else {}
    if rc != 0 or not summary:
        return Part(
            spec.key,
            spec.title,
            folder,
            cmd,
            "failed",
            f"exit code {rc}" + ("" if summary else "; no summary.json"),
            summary,
        )
    write_json(done, {"command": cmd, "key": key, "wall_s": wall})
    return Part(spec.key, spec.title, folder, cmd, "ok", f"{wall:.0f} s", summary)


def _check_real(args: argparse.Namespace, wanted: list[str]) -> None:
    """Check the real-data flags up front (``ValueError`` naming the flag), so that a typo
    fails in a second rather than as a failed part after the theory and simulations."""
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    if "real" in wanted:
        from validate.presets import get_preset

        try:
            get_preset(args.preset, args.workload)
        except ValueError as exc:
            raise ValueError(f"--preset / --workload: {exc}") from None
    if "estimate" in wanted:
        from validate.workload import available

        if args.workload not in available():
            raise ValueError(
                f"--workload: unknown workload {args.workload!r}; choose one of {available()}"
            )
    if "real" in wanted or "estimate" in wanted:
        _device_name(args.device)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    wanted = [k.strip() for k in args.parts.split(",") if k.strip()]
    unknown = sorted(set(wanted) - {s.key for s in PARTS})
    if unknown:
        print(
            f"surgelab run: error: --parts: unknown part(s) {unknown}; choose from "
            f"{[s.key for s in PARTS]}",
            file=sys.stderr,
        )
        return 2
    if not wanted:
        print(
            f"surgelab run: error: --parts names no part; give a comma-separated subset of "
            f"{[s.key for s in PARTS]}",
            file=sys.stderr,
        )
        return 2
    if args.backend != "ray" and args.address:
        print("surgelab run: error: --address needs --backend ray", file=sys.stderr)
        return 2
    if args.preset == "paper":
        if args.workload not in PAPER_PRESET:
            print(
                f"surgelab run: error: the paper has no grid for workload {args.workload!r}; "
                f"use --preset smoke, or one of {sorted(PAPER_PRESET)} with --preset paper",
                file=sys.stderr,
            )
            return 2
        args.preset = PAPER_PRESET[args.workload]
    try:
        _check_real(args, wanted)
    except ValueError as exc:
        print(f"surgelab run: error: {exc}", file=sys.stderr)
        return 2
    args.scale = SCALE_OF_PRESET.get(
        args.preset, "paper" if args.preset.startswith("paper") else "smoke"
    )
    root = make_run_dir("run", "main", args.out)
    write_json(
        root / "config.json",
        {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    write_json(root / "meta.json", {"stage": "run", "command": "main", **environment(args.device)})
    parts = []
    try:
        for spec in PARTS:
            if spec.key in wanted:
                parts.append(run_part(spec, args, root))
    except KeyboardInterrupt:
        print(
            f"\nsurgelab run: interrupted; finished parts are kept. Resume with "
            f"`surgelab run --out {root}` (same flags).",
            file=sys.stderr,
        )
        write_report(parts, root)
        return 130
    write_report(parts, root)
    failed = [p.key for p in parts if p.status != "ok"]
    print(f"\nreport: {root / 'report.html'}  (and report.md)", file=sys.stderr)
    if failed:
        print(f"surgelab run: part(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
