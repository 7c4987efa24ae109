"""Run folders: every command that computes writes config, environment, tables and summary.

Layout (../shared/DESIGN.md, "Results")::

    runs/<stage>/<command>/<UTC time>/
        config.json    the resolved configuration
        meta.json      versions, git commit, device, command line
        *.csv          tidy tables, one row per measured point
        summary.json   the headline figures
        *.png          figures drawn from the tables alone
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def out_dir_arg(s: str) -> str:
    """argparse type of every ``--out``: a folder (new or existing), not a file or under one."""
    import argparse

    p = Path(s)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise argparse.ArgumentTypeError(
                    f"{str(q)!r} is an existing file, not a folder; give a folder path"
                )
            break
    return s


def utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def make_run_dir(stage: str, command: str, out: str | os.PathLike | None = None) -> Path:
    """Create (or reuse, for resuming) the run folder; default ``runs/<stage>/<command>/<UTC>``."""
    path = Path(out) if out is not None else Path("runs") / stage / command / utc_stamp()
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit of the checkout this code runs from (with ``+dirty``), or None outside git."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "unknown"))
    except Exception:  # an optional package that is absent or broken is just not reported
        return None


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions, platform, git commit and device: what ``meta.json`` records."""
    mods = ["numpy", "scipy", "sympy", "numba", "matplotlib"]
    # torch / cupy are reported only if already imported: importing them here costs seconds
    mods += [m for m in ("torch", "cupy", "ray") if m in sys.modules]
    return {
        "time_utc": utc_stamp(),
        "argv": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "device": device or "cpu",
        "versions": {m: _version(m) for m in mods},
    }


def _jsonable(x: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if np is not None and isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if np is not None and isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temp file + rename) so an interrupted run never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_table(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write a tidy CSV table (one row per measured point); columns from the first row."""
    rows = [dict(_jsonable(r)) for r in rows]
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        if rows:
            cols = list(rows[0])
            for r in rows[1:]:
                cols += [k for k in r if k not in cols]
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    tmp.replace(path)
    return path


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`write_table`, converting numeric cells back to numbers."""
    out = []
    with Path(path).open(newline="") as f:
        for r in csv.DictReader(f):
            out.append({k: _parse(v) for k, v in r.items()})
    return out


def _parse(v: str) -> Any:
    if v in ("True", "False"):
        return v == "True"
    if v == "":
        return None
    try:
        i = int(v)
        return i
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def start_run(
    stage: str,
    command: str,
    config: Mapping[str, Any],
    out: str | os.PathLike | None = None,
    device: str | None = None,
) -> Path:
    """Make the run folder and write ``config.json`` and ``meta.json``; return the folder."""
    path = make_run_dir(stage, command, out)
    write_json(path / "config.json", dict(config))
    write_json(path / "meta.json", {"stage": stage, "command": command, **environment(device)})
    return path
