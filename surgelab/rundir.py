"""Run folders: every command that computes writes its config, environment, tables, summary.

Layout::

    runs/<stage>/<command>/<UTC time>/      (or --out)
        config.json    the resolved config (every field, defaults included)
        meta.json      versions, git commit, device, the command line that reproduces it
        *.csv          tidy tables, one row per measured point
        summary.json   the headline figures
        *.png          figures drawn from the tables alone
        .done          written last: the run finished (holds the config's hash)

:func:`open_run` checks ``--out`` *before* writing anything: a file, an unwritable folder, a
folder of another command, a folder holding a run with a different config and a non-empty
folder that is not a run folder are refused with one line naming ``--out``. A folder holding
the same command with the same config is reopened, so a command can resume there.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgelab.config import Config, ConfigError, config_to_dict, flag

DONE = ".done"


def utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


# ---------------------------------------------------------------------------------------------
# JSON / CSV


def jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays to Python, non-finite floats to null/"inf"."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temp file + rename): an interrupted run never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_table(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write a tidy CSV (one row per measured point); columns in first-seen order."""
    rows = [dict(jsonable(dict(r))) for r in rows]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return path


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`write_table`, numeric cells back to numbers."""
    with Path(path).open(newline="") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def read_user_csv(
    path: str | os.PathLike, where: str, header_hint: str
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A user's CSV file: ``(columns, [(line number, cells), ...])`` without trailing blank lines.

    ``where`` prefixes every error (e.g. ``"--table: '/x.csv'"``); ``header_hint`` names the
    header the file should start with. Raises ``UsageError`` (one line) for a missing file, a
    non-text file, an empty file or a file without data rows.
    """
    from surgelab.cli import UsageError

    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{where} does not exist" if not p.exists() else f"{where} is not a file")
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{where} is not a CSV text file ({exc})") from None
    if not lines:
        raise UsageError(f"{where} is empty; expected a header line {header_hint}")
    cols = [c.strip() for c in lines[0][1]]
    data = lines[1:]
    while data and not any(c.strip() for c in data[-1][1]):  # trailing blank lines hold nothing
        data.pop()
    return cols, data


def _parse(v: str | None) -> Any:
    if v is None or v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


# ---------------------------------------------------------------------------------------------
# environment


def git_commit() -> str | None:
    """The commit of the checkout this code runs from (``+dirty`` if tracked files changed)."""
    where = Path(__file__).resolve().parent
    try:
        run = dict(cwd=where, capture_output=True, text=True, timeout=10)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], check=True, **run).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], **run
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty.strip() else "")


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
    except Exception:  # an optional package that is absent or broken is just not reported
        return None
    return str(getattr(m, "__version__", "unknown"))


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions, platform, git commit and device: what ``meta.json`` records (no paths)."""
    mods = ["numpy", "scipy", "sympy", "numba", "matplotlib"]
    # torch / cupy / ray only if already imported: importing them here costs seconds
    mods += [m for m in ("torch", "cupy", "ray") if m in sys.modules]
    env = {
        "time_utc": utc_stamp(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "device": device or "cpu",
        "versions": {m: _version(m) for m in mods},
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch_threads"] = torch.get_num_threads()
        if device and device.startswith("cuda") and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
            env["cuda"] = torch.version.cuda
    return env


def command_line(prog: str, cfg: Config) -> str:
    """The command that reproduces ``cfg``: ``prog`` plus a flag for every non-default field."""
    import dataclasses
    import shlex

    parts = [prog]
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v == f.default:
            continue
        if isinstance(v, bool):
            parts.append(flag(f.name) if v else "--no-" + flag(f.name)[2:])
            continue
        text = ",".join(map(_fmt, v)) if isinstance(v, tuple) else _fmt(v)
        parts += [flag(f.name), shlex.quote(text) if text else "''"]
    return " ".join(parts)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else ("none" if v is None else str(v))


def config_hash(cfg: Config) -> str:
    blob = json.dumps(config_to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# run folders


@dataclass
class RunDir:
    """An opened run folder. ``resumed``: it already held this command with this config."""

    path: Path
    stage: str
    command: str
    config: Config
    prog: str
    device: str | None = None
    resumed: bool = False
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.path / name, obj)

    def write_table(self, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        return write_table(self.path / name, rows)

    def read_table(self, name: str) -> list[dict[str, Any]]:
        return read_table(self.path / name)

    def save_figure(self, ax_or_fig: Any, name: str) -> Path:
        """Save a matplotlib figure (or the figure of an axes) as ``name`` and close it."""
        import matplotlib.pyplot as plt

        fig = getattr(ax_or_fig, "figure", ax_or_fig)
        fig.tight_layout()
        path = self.path / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    def write_meta(self, device: str | None = None, **extra: Any) -> None:
        """(Re)write ``meta.json``: call again once the device or other facts are known."""
        if device is not None:
            self.device = device
        self.extra_meta.update(extra)
        self.write_json(
            "meta.json",
            {
                "stage": self.stage,
                "command": self.command,
                "command_line": command_line(self.prog, self.config),
                **environment(self.device),
                **self.extra_meta,
            },
        )

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        """Write ``summary.json`` (if given) and the ``.done`` marker (last)."""
        if summary is not None:
            self.write_json("summary.json", summary)
        (self.path / DONE).write_text(config_hash(self.config) + "\n")

    @property
    def finished(self) -> bool:
        return is_finished(self.path, self.config)


def is_finished(path: str | os.PathLike, cfg: Config) -> bool:
    """True if ``path`` holds a finished run of exactly this config."""
    marker = Path(path) / DONE
    try:
        return marker.read_text().strip() == config_hash(cfg)
    except OSError:
        return False


def default_out(stage: str, command: str) -> Path:
    return Path("runs") / stage / command / utc_stamp()


def check_out(
    path: Path,
    stage: str,
    command: str,
    cfg: Config,
    *,
    arg: str = "out",
    flags_may_change: bool = False,
) -> bool:
    """Check ``--out`` without writing; return True if it holds this run already (resume).

    ``flags_may_change``: a run of the same command with another config may be reopened.

    Raises:
      ConfigError: naming ``--out`` and the fix.
    """
    for q in (path, *path.parents):
        if q.exists():
            if not q.is_dir():
                raise ConfigError(arg, f"{str(q)!r} is an existing file, not a folder")
            if not os.access(q, os.W_OK | os.X_OK):
                raise ConfigError(arg, f"{str(q)!r} is not writable; choose a folder you can write")
            break
    if not path.exists():
        return False
    meta, conf = path / "meta.json", path / "config.json"
    if not meta.exists():
        if any(path.iterdir()):
            raise ConfigError(
                arg, f"{str(path)!r} is not empty and holds no surgelab run; choose a new folder"
            )
        return False
    try:
        m = read_json(meta)
        old = read_json(conf)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            arg, f"{str(path)!r} holds an unreadable run ({exc}); choose a new folder"
        ) from None
    if (m.get("stage"), m.get("command")) != (stage, command):
        other = " ".join(x for x in ("surgelab", m.get("stage"), m.get("command")) if x)
        raise ConfigError(
            arg,
            f"{str(path)!r} holds a run of `{other}`, not `surgelab {stage} {command}`; "
            f"choose a new folder",
        )
    new = jsonable(config_to_dict(cfg))
    shown = {f.name for f in dataclasses.fields(cfg) if f.metadata.get("presentation")}
    # a key an older version did not write reads as None; presentation fields may change
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in shown)
    if diff and not flags_may_change:
        flags = ", ".join(flag(k) for k in diff)
        raise ConfigError(
            arg,
            f"{str(path)!r} holds a run with a different config ({flags} differ); rerun with "
            f"the same flags to resume it, or choose a new folder",
        )
    return True


def open_run(
    stage: str,
    command: str,
    cfg: Config,
    out: str | os.PathLike | None,
    *,
    prog: str | None = None,
    device: str | None = None,
    flags_may_change: bool = False,
) -> RunDir:
    """Check ``out``, then create the folder and write ``config.json`` and ``meta.json``."""
    path = Path(out) if out is not None else default_out(stage, command)
    resumed = check_out(path, stage, command, cfg, flags_may_change=flags_may_change)
    run = RunDir(path, stage, command, cfg, prog or f"surgelab {stage} {command}", device, resumed)
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / "config.json", config_to_dict(cfg))
        run.write_meta()
    except OSError as exc:
        raise ConfigError(
            "out", f"{str(path)!r} cannot be written ({exc.strerror or exc})"
        ) from None
    return run
