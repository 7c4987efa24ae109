"""``surgelab advise``: the best learning rate at a new batch size, for Adam and for SGD.

Two ways to ask:

**The shortcut, for users who already train** (the paper's recipe: B_noise ≈ B_crit, and one
measured (batch size, best lr) pair fixes ε_max)::

    surgelab advise --batch-size B1 --current-batch-size B0 --current-lr LR0 --b-noise X
    surgelab advise ... --monitor-log noise.csv     # B_simple from a NoiseScaleMonitor log
    surgelab advise ... --table runs.csv            # the S–E B_crit of `surgelab fit`

prints the surge-law lr, the SGD-law lr, the square-root and linear rules side by side, each
with what it assumes. A monitor log is CSV or JSONL with columns ``step`` and ``b_simple``
(the callbacks' ``.history``); B_noise is its last row's ``b_simple``, or the median of the
last ``--monitor-last N`` rows.

**From measured best learning rates** (exactly one of):

- ``--from RUN_DIR``: the run root of ``surgelab run`` or any of its part folders (the
  Recommendation of the report, recomputed: the same numbers), a result folder of
  ``surgelab validate run`` (its summary's best lrs, ``best_lr.csv`` or ``points.csv``), or of
  ``surgelab validate estimate`` (the last checkpoint's Theorem 3 and SGD parameters: the
  one-step optimum, which explains but does not measure the training optimum);
- ``--points FILE``: a CSV with columns ``batch_size`` and ``lr`` (or ``best_lr``); every row
  must hold two positive finite numbers (a blank, NaN or inf cell is an error naming the line);
- ``--b-noise X --eps-max Y``: the surge law's parameters (optionally ``--b-noise-sgd``,
  ``--eps-max-sgd`` for the SGD law).

The analysis is :func:`validate.advise.advise`, :func:`validate.advise.recommend` and
:func:`validate.advise.shortcut`; this module reads the inputs and prints. It writes nothing.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surgelab.cli import Command, Stage, UsageError
from surgelab.config import Config, ConfigError, flag, opt
from surgelab.limits import check_work
from surgelab.rundir import read_user_csv

#: Bootstrap refits one advice may plan (3 laws × --n-boot; a refit takes a few ms, so this
#: is about a minute on one core).
MAX_BOOT_REFITS = 30_000

#: The theory laws the bootstrap refits (validate.advise.LAWS; not imported here so that the
#: config module stays free of scipy).
N_BOOT_LAWS = 3


@dataclass(frozen=True)
class AdviseConfig(Config):
    batch_size: float | None = opt(
        None,
        "the batch size to advise on (with --from: default the run's recommendation batch sizes)",
        lo=0,
        lo_open=True,
        metavar="B",
    )
    from_: str | None = opt(
        None,
        "result folder of `surgelab run`, `validate run` or `validate estimate`",
        metavar="RUN_DIR",
    )
    points: str | None = opt(
        None, "CSV of measured best lrs, columns batch_size,lr (or best_lr)", metavar="FILE"
    )
    b_noise: float | None = opt(
        None, "the Adam law's B_noise (with --eps-max)", lo=0, lo_open=True, metavar="X"
    )
    eps_max: float | None = opt(
        None, "the Adam law's eps_max (with --b-noise)", lo=0, lo_open=True, metavar="Y"
    )
    b_noise_sgd: float | None = opt(
        None, "the SGD law's B_noise (with --b-noise; default: Adam's)", lo=0, lo_open=True
    )
    eps_max_sgd: float | None = opt(
        None, "the SGD law's eps_max (with --b-noise; default: Adam's)", lo=0, lo_open=True
    )
    n_boot: int = opt(200, "bootstrap resamples of the points: 0 (no interval) or >= 10", lo=0)
    ci: float = opt(0.9, "coverage of the bootstrap interval, in (0, 1)", lo=0, lo_open=True)
    seed: int = opt(0, "seed of the bootstrap", lo=0)
    json: bool = opt(False, "print one JSON object instead of the report")
    current_batch_size: float | None = opt(
        None, "shortcut: the batch size B0 you train with now", lo=0, lo_open=True, metavar="B0"
    )
    current_lr: float | None = opt(
        None, "shortcut: the best learning rate at B0", lo=0, lo_open=True, metavar="LR0"
    )
    monitor_log: str | None = opt(
        None,
        "shortcut: B_noise = B_simple from a noise-scale monitor log (CSV/JSONL, columns "
        "step,b_simple)",
        metavar="FILE",
    )
    monitor_last: int = opt(
        1,
        "with --monitor-log: B_simple is the median of its last N rows (1: the last row)",
        lo=1,
        hi=1_000_000,
    )
    table: str | None = opt(
        None,
        "shortcut: B_noise = the S–E B_crit fitted to a steps-to-target CSV (as `surgelab fit`)",
        metavar="FILE",
    )

    @property
    def is_shortcut(self) -> bool:
        return self.current_batch_size is not None or self.current_lr is not None

    def check(self) -> None:
        if self.is_shortcut:
            self._check_shortcut()
            return
        for name in ("monitor_log", "table"):
            if getattr(self, name) is not None:
                raise ConfigError(
                    name, "needs --current-batch-size B0 and --current-lr LR0 (the shortcut)"
                )
        if self.batch_size is None and self.from_ is None:
            raise ConfigError(
                "batch_size", "is required (the batch size B to advise on), except with --from"
            )
        sources = [n for n in ("from_", "points", "b_noise") if getattr(self, n) is not None]
        if not sources:
            raise ConfigError(
                "points",
                "FILE, --from RUN_DIR or --b-noise X --eps-max Y is required: "
                "where the best learning rates come from",
            )
        if len(sources) > 1:
            raise ConfigError(
                sources[1],
                "goes alone: give one of --from, --points, --b-noise "
                f"(got {', '.join(_flag(n) for n in sources)})",
            )
        if self.b_noise is not None and self.eps_max is None:
            raise ConfigError("eps_max", "is required with --b-noise")
        if self.b_noise is None:
            for name in ("eps_max", "b_noise_sgd", "eps_max_sgd"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        name,
                        "only goes with --b-noise; with --from / --points the parameters are "
                        f"fitted: drop {flag(name)}",
                    )
        if not self.ci < 1:
            raise ConfigError("ci", f"must lie in (0, 1), e.g. 0.9; got {self.ci:g}")
        if 0 < self.n_boot < 10:
            raise ConfigError("n_boot", f"must be 0 (no interval) or >= 10; got {self.n_boot}")
        check_work(
            N_BOOT_LAWS * self.n_boot,
            MAX_BOOT_REFITS,
            "n_boot",
            f"bootstrap refits ({N_BOOT_LAWS} laws x --n-boot)",
        )

    def _check_shortcut(self) -> None:
        for name in ("current_batch_size", "current_lr", "batch_size"):
            if getattr(self, name) is None:
                raise ConfigError(
                    name,
                    "is required for the shortcut (--batch-size B1 --current-batch-size B0 "
                    "--current-lr LR0 and one of --b-noise, --monitor-log, --table)",
                )
        sources = [n for n in ("b_noise", "monitor_log", "table") if getattr(self, n) is not None]
        if not sources:
            raise ConfigError(
                "b_noise",
                "X, --monitor-log FILE or --table FILE is required with --current-batch-size: "
                "where the noise scale comes from",
            )
        if len(sources) > 1:
            raise ConfigError(
                sources[1],
                "goes alone: give one of --b-noise, --monitor-log, --table "
                f"(got {', '.join(_flag(n) for n in sources)})",
            )
        for name in ("from_", "points", "eps_max", "b_noise_sgd", "eps_max_sgd"):
            if getattr(self, name) is not None:
                raise ConfigError(
                    name,
                    "does not go with --current-batch-size/--current-lr (the shortcut fixes "
                    f"eps_max from them): drop {_flag(name)}",
                )


def _flag(name: str) -> str:
    # ``from_`` is the field of ``--from`` (a Python keyword); argparse also accepts ``--from``
    # for the generated ``--from-`` as an unambiguous prefix.
    return "--from" if name == "from_" else flag(name)


# ---------------------------------------------------------------------------------------------
# inputs


def read_points_csv(path: str | Path) -> tuple[Any, Any]:
    """``--points``: every data row two positive finite numbers; anything else names its line."""
    import numpy as np

    where = f"--points: points file {str(Path(path))!r}"
    cols, data = read_user_csv(path, where, "batch_size,lr")
    lr_col = "lr" if "lr" in cols else "best_lr" if "best_lr" in cols else None
    if "batch_size" not in cols or lr_col is None:
        raise UsageError(f"{where} must have columns 'batch_size' and 'lr'; found {cols}")
    ib, il = cols.index("batch_size"), cols.index(lr_col)
    if not data:
        raise UsageError(f"{where} has no rows below its header")
    if "target" in cols:  # a sweep's best_lr.csv holds one curve per target loss
        it = cols.index("target")
        targets = {row[it].strip() for _, row in data if len(row) > it and row[it].strip()}
        if len(targets) > 1:
            raise UsageError(
                f"{where} holds rows of {len(targets)} targets ({', '.join(sorted(targets))}); "
                "keep one target's rows, or give the sweep folder with --from"
            )
    B, lr = [], []
    for num, row in data:
        at = f"{where}, line {num}"
        if not any(c.strip() for c in row):
            raise UsageError(f"{at} is blank; delete it")
        if len(row) <= max(ib, il):
            raise UsageError(f"{at} has {len(row)} field(s); the header has {len(cols)}")
        for col, i, out in (("batch_size", ib, B), (lr_col, il, lr)):
            cell = row[i].strip()
            if not cell:
                raise UsageError(
                    f"{at}: {col} is empty (a batch size without a best lr has nothing to "
                    "fit: delete the line)"
                )
            try:
                v = float(cell)
            except ValueError:
                raise UsageError(f"{at}: {col} {cell!r} is not a number") from None
            if not math.isfinite(v) or v <= 0:
                raise UsageError(f"{at}: {col} {cell!r} must be positive and finite")
            out.append(v)
    return np.array(B), np.array(lr)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--from: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--from: {path} is not a JSON object (a run's summary.json)")
    return data


def _from_folder(d: Path) -> tuple[Any, dict[str, Any], str, list[str]] | None:
    """(points or None, parameters, source, notes) from one result folder; None if none."""
    from surgelab.rundir import read_table
    from validate import advise as A

    summary = _read_json(d / "summary.json") if (d / "summary.json").is_file() else {}

    def without(n: int, what: str) -> list[str]:
        return [f"{n} batch size(s) in {what} have no best lr (left out)"] if n else []

    try:
        pts = A.points_from_summary(summary)
        if pts is not None:
            b, e, n = pts
            src = f"{d}/summary.json best_lr"
            branch = summary.get("advice_from")
            if isinstance(branch, dict) and branch.get("horizon"):
                src += (
                    f" (validate branch from {branch.get('checkpoint')}: the best lr over the "
                    f"next K = {branch['horizon']} steps)"
                )
            return (b, e), {}, src, without(n, src)
        if (d / "best_lr.csv").is_file():
            try:
                b, e, n, tgt = A.points_from_best_table(
                    read_table(d / "best_lr.csv"), summary.get("primary_target")
                )
            except ValueError as exc:
                raise UsageError(f"--from: {d}/best_lr.csv: {exc}") from None
            src = f"{d}/best_lr.csv (target {tgt})"
            return (b, e), {}, src, without(n, src)
        if (d / "points.csv").is_file():
            try:
                b, e = A.points_from_points_table(read_table(d / "points.csv"))
            except ValueError as exc:
                raise UsageError(f"--from: {d}/points.csv: {exc}") from None
            return (b, e), {}, f"{d}/points.csv", []
        est = A.params_from_estimate(summary)
    except (KeyError, TypeError, AttributeError) as exc:  # a malformed or foreign table
        raise UsageError(
            f"--from: {d} is not a sweep or estimate result this version can read "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if est is None:
        return None
    params, step = est
    source = f"{d}/summary.json checkpoint at step {step}"
    if params.get("b_noise") is None or params.get("eps_max") is None:
        raise UsageError(
            f"--from: {source}: Theorem 3 has no finite B_noise there (S_off <= 0); "
            "nothing to advise from"
        )
    return None, params, source, []


def load_from(folder: str) -> tuple[Any, dict[str, Any], str, list[str]]:
    """``--from``: the folder itself, else the ``real/`` then ``estimate/`` part of a main job."""
    d = Path(folder)
    if not d.is_dir():
        what = "does not exist" if not d.exists() else "is not a folder"
        raise UsageError(f"--from: result folder {folder!r} {what}")
    for cand in (d, d / "real", d / "estimate"):
        if cand.is_dir():
            got = _from_folder(cand)
            if got is not None:
                return got
    raise UsageError(
        f"--from: result folder {folder!r} has no summary.json best_lr, best_lr.csv, "
        "points.csv or estimate checkpoints to advise from (nor a real/ or estimate/ part "
        "of a `surgelab run`)"
    )


# ---------------------------------------------------------------------------------------------
# the Recommendation of a `surgelab run` (and of a sweep folder): one reader, used by both


def read_monitor_log(path: str | Path, last: int = 1) -> tuple[float, str]:
    """B_simple from a noise-scale monitor log: ``(value, description)``.

    CSV (header with ``step`` and ``b_simple``) or JSONL (one object per line with those
    keys). The value is the last row's ``b_simple`` (``last`` = 1) or the median of the last
    ``last`` rows; each of those rows must hold a positive finite ``b_simple`` (an error names
    the line). Blank lines inside the file and unparseable cells are errors too.
    """
    import numpy as np

    p = Path(path).expanduser()
    where = f"--monitor-log: {str(p)!r}"
    if not p.is_file():
        raise UsageError(f"{where} does not exist" if not p.exists() else f"{where} is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where} is not a text file ({exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise UsageError(f"{where} is empty; expected CSV or JSONL with columns step,b_simple")
    need = ("step", "b_simple")
    rows: list[tuple[int, Any, Any]] = []  # (line number, step, b_simple) as read
    if lines[0].lstrip().startswith("{"):
        for num, line in enumerate(lines, 1):
            if not line.strip():
                raise UsageError(f"{where}, line {num} is blank; delete it")
            try:
                obj = json.loads(line)
            except ValueError:
                raise UsageError(f"{where}, line {num} is not a JSON object") from None
            if not isinstance(obj, dict) or any(k not in obj for k in need):
                have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise UsageError(
                    f"{where}, line {num} lacks the columns {', '.join(need)} (has {have}); "
                    "save the monitor's .history with them"
                )
            rows.append((num, obj["step"], obj["b_simple"]))
    else:
        reader = list(csv.reader(lines))
        cols = [c.strip() for c in reader[0]]
        if any(k not in cols for k in need):
            raise UsageError(
                f"{where} must have the columns {', '.join(need)} (found {cols}); save the "
                "monitor's .history with them"
            )
        i_s, i_b = cols.index("step"), cols.index("b_simple")
        for num, row in enumerate(reader[1:], 2):
            if not any(c.strip() for c in row):
                raise UsageError(f"{where}, line {num} is blank; delete it")
            if len(row) < len(cols):
                raise UsageError(
                    f"{where}, line {num} has {len(row)} field(s); the header has {len(cols)}"
                )
            rows.append((num, row[i_s].strip(), row[i_b].strip()))
    if not rows:
        raise UsageError(f"{where} has no rows below its header")
    values = []
    for num, step, b in rows:
        for col, cell in (("step", step), ("b_simple", b)):
            try:
                v = float(cell) if cell is not None and cell != "" else math.nan
            except (TypeError, ValueError):
                raise UsageError(f"{where}, line {num}: {col} {cell!r} is not a number") from None
            if col == "step" and not math.isfinite(v):
                raise UsageError(f"{where}, line {num}: step {cell!r} is not a finite number")
            if col == "b_simple":
                values.append((num, v, cell))
    used = values[-last:]
    for num, v, cell in used:
        if not (math.isfinite(v) and v > 0):
            raise UsageError(
                f"{where}, line {num}: b_simple {cell!r} must be positive and finite (the rows "
                "used must hold a resolved noise scale; log longer, or use --monitor-last)"
            )
    if len(values) < last:
        raise UsageError(f"{where} has {len(values)} row(s); --monitor-last {last} needs that many")
    value = float(np.median([v for _, v, _ in used]))
    what = "last row" if last == 1 else f"median of the last {last} rows"
    return value, f"B_simple from {p.name}, {what} (line {used[-1][0]})"


def _optimizer_label(d: Path) -> str:
    """The optimizer setting of a sweep folder, in words (from its config.json's preset)."""
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        from validate.presets import get_preset

        b1, b2 = get_preset(cfg["preset"], cfg["workload"]).betas
    except (OSError, ValueError, KeyError, TypeError):
        return "Adam (setting not recorded)"
    if b1 == 0 and b2 == 0:
        return "sign update (Adam, β1 = β2 = 0)"
    return f"Adam (β1 = {b1:g}, β2 = {b2:g})"


def _lr_ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def sweep_evidence(d: Path) -> Any:
    """The measured best lrs of a sweep folder as :class:`validate.advise.Evidence`; None if
    the folder holds no sweep summary with best lrs.

    The summary's ``best_lr`` (its primary target); per point, censored (``at_edge`` of
    ``best_lr.csv``) and where the optimum lies (the lrs tried just below and above the best at
    that batch size, from ``points.csv``), when those files are there.
    """
    import numpy as np

    from surgelab.rundir import read_table
    from validate import advise as A

    if not (d / "summary.json").is_file():
        return None
    summary = _read_json(d / "summary.json")
    pts = A.points_from_summary(summary)
    if pts is None:
        return None
    b, e, _ = pts
    target = summary.get("primary_target")
    n = b.size
    censored = np.zeros(n, bool)
    lo, hi = np.full(n, math.nan), np.full(n, math.nan)
    branch = summary.get("advice_from") if isinstance(summary.get("advice_from"), dict) else {}

    def ours(r: dict[str, Any]) -> bool:  # a `validate branch` table holds many groups
        if not branch:
            return True
        try:
            h = int(float(r.get("horizon")))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False  # an examples horizon (its steps vary with B)
        return (
            str(r.get("checkpoint")) == str(branch.get("checkpoint"))
            and h == int(branch.get("horizon", -1))
            and not r.get("horizon_examples")
        )

    try:
        if (d / "best_lr.csv").is_file():
            for r in read_table(d / "best_lr.csv"):
                if r.get("rule", "further") != "further" or not ours(r):  # paper's rule only
                    continue
                if target is None or float(r.get("target", target)) == float(target):
                    k = np.isclose(b, float(r["batch_size"]))
                    censored[k] |= str(r.get("at_edge")).lower() in ("true", "1")
                    censored[k] |= str(r.get("censored")).lower() in ("low", "high")
        if (d / "points.csv").is_file():
            tried: dict[float, set[float]] = {}
            for r in read_table(d / "points.csv"):
                if not ours(r):
                    continue
                if target is None or float(r.get("target", target)) == float(target):
                    tried.setdefault(float(r["batch_size"]), set()).add(float(r["lr"]))
            for i, bb in enumerate(b):
                grid = sorted(tried.get(float(bb), ()))
                if e[i] in grid:
                    j = grid.index(e[i])
                    lo[i] = grid[j - 1] if j > 0 else math.nan
                    hi[i] = grid[j + 1] if j + 1 < len(grid) else math.nan
        for i, r in enumerate(r for r in summary["best_lr"] if _lr_ok(r.get("lr"))):
            if _lr_ok(r.get("lo")) and _lr_ok(r.get("hi")):  # the optimum's bootstrap interval
                lo[i], hi[i] = float(r["lo"]), float(r["hi"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--from: {d} holds a table this version cannot read ({exc})") from None
    b_crit = summary.get("b_crit", summary.get("b_noise"))
    fitted, loo = {}, {}
    if isinstance(b_crit, (int, float)) and math.isfinite(b_crit) and b_crit > 0:
        for law in A.LAWS:
            em = summary.get(f"eps_max_{law}")
            if isinstance(em, (int, float)) and math.isfinite(em) and em > 0:
                fitted[law] = (float(em), float(b_crit))
    for law in (*A.LAWS, "constant", "sqrt_rule", "linear_rule"):
        v = summary.get(f"loo_err_{law}")
        if isinstance(v, (int, float)) and math.isfinite(v):
            loo[law] = float(v)
    if len(fitted) < len(A.LAWS) or len(loo) < len(A.LAWS) + 3:
        fitted, loo = {}, {}
    return A.Evidence(
        optimizer=_optimizer_label(d),
        batch_sizes=b.tolist(),
        lrs=e.tolist(),
        target=None if target is None else float(target),
        censored=censored.tolist(),
        lr_lo=lo.tolist(),
        lr_hi=hi.tolist(),
        b_crit=float(b_crit) if isinstance(b_crit, (int, float)) else None,
        source=f"{d}/summary.json best_lr",
        fitted=fitted or None,
        loo=loo or None,
    )


#: The part folders of `surgelab run` (a folder with this name next to ``real/`` is a part).
RUN_PARTS = ("theory", "surge", "train", "real", "estimate")


def run_root(d: Path) -> Path | None:
    """The run root of `surgelab run` that ``d`` is, or is a part folder of; None otherwise."""
    d = d.resolve()
    if (d / "real").is_dir():
        return d
    if d.name in RUN_PARTS and (d.parent / "real").is_dir():
        return d.parent
    return None


def run_batch_sizes(root: Path) -> tuple[int, ...] | None:
    """The ``--batch-sizes`` a `surgelab run` was given (None: the default)."""
    try:
        cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    v = cfg.get("batch_sizes") if isinstance(cfg, dict) else None
    return tuple(v) if v else None


def recommendation(root: Path, batch_sizes: Any = None) -> list[dict[str, Any]]:
    """The Recommendation of a run root (its ``real/`` sweep): the report's and ``advise
    --from``'s one computation (:func:`validate.advise.recommend`). UsageError if none."""
    from validate.advise import recommend

    ev = sweep_evidence(root / "real")
    if ev is None:
        raise UsageError(
            f"--from: {root} has no finished real/ sweep with best lrs: the Recommendation "
            "comes from the measured training optimum (run `surgelab run` with the real part)"
        )
    try:
        return recommend([ev], batch_sizes)
    except ValueError as exc:
        raise UsageError(f"--from: {root}/real: {exc}") from None


def advice_for(cfg: AdviseConfig) -> Any:
    """The :class:`validate.advise.Advice` the config asks for (UsageError naming the flag)."""
    from validate.advise import advise

    kw = {"n_boot": cfg.n_boot, "ci": cfg.ci, "seed": cfg.seed}
    if cfg.from_ is not None:
        root = run_root(Path(cfg.from_)) if Path(cfg.from_).is_dir() else None
        pts, params, source, notes = load_from(str(root) if root else cfg.from_)
        try:
            if pts is not None:
                return advise(cfg.batch_size, pts, source=source, notes=notes, **kw)
            return advise(cfg.batch_size, None, source=source, notes=notes, **params, **kw)
        except ValueError as exc:
            raise UsageError(f"--from: {source}: {exc}") from None
    if cfg.points is not None:
        pts = read_points_csv(cfg.points)
        try:
            return advise(cfg.batch_size, pts, source=cfg.points, **kw)
        except ValueError as exc:
            raise UsageError(f"--points: points file {cfg.points!r}: {exc}") from None
    return advise(
        cfg.batch_size,
        None,
        b_noise=cfg.b_noise,
        eps_max=cfg.eps_max,
        b_noise_sgd=cfg.b_noise_sgd,
        eps_max_sgd=cfg.eps_max_sgd,
        source="given parameters",
        **kw,
    )


def shortcut_for(cfg: AdviseConfig) -> dict[str, Any]:
    """The shortcut's rules side by side (:func:`validate.advise.shortcut`)."""
    from validate.advise import shortcut

    if cfg.b_noise is not None:
        bn, src = cfg.b_noise, "given with --b-noise"
    elif cfg.monitor_log is not None:
        bn, src = read_monitor_log(cfg.monitor_log, cfg.monitor_last)
    else:
        from surgelab.cmd_fit import fit_table, primary, read_steps_table

        fits = fit_table(read_steps_table(cfg.table), n_boot=0, ci=cfg.ci, seed=cfg.seed)
        p = primary(fits)
        at = "" if p["target"] is None else f" at target {p['target']:g}"
        bn, src = p["b_crit"], f"S–E B_crit{at} fitted to {Path(cfg.table).name}"
        if p["at_bound"]:
            raise UsageError(
                f"--table: {cfg.table!r}: B_crit is not located (the steps do not bend within "
                "the measured batch sizes); measure wider batch sizes"
            )
    assert cfg.batch_size is not None and cfg.current_batch_size is not None
    assert cfg.current_lr is not None
    return shortcut(cfg.batch_size, cfg.current_batch_size, cfg.current_lr, bn, b_noise_source=src)


def run_advise(cfg: AdviseConfig, run_dir: Any = None) -> int:
    """Print the advice (a report, or one JSON object with ``--json``); write nothing."""
    from surgelab.rundir import jsonable
    from validate.advise import format_advice, format_recommendation, format_shortcut

    if cfg.is_shortcut:
        s = shortcut_for(cfg)
        print(json.dumps(jsonable(s)) if cfg.json else format_shortcut(s))
        return 0
    rec = None
    if cfg.from_ is not None:
        d = Path(cfg.from_)
        if not d.is_dir():
            what = "does not exist" if not d.exists() else "is not a folder"
            raise UsageError(f"--from: result folder {cfg.from_!r} {what}")
        root = run_root(d)
        targets = None if cfg.batch_size is None else (cfg.batch_size,)
        if root is not None:
            rec = recommendation(root, targets or run_batch_sizes(root))
        else:
            ev = sweep_evidence(d)
            if ev is not None:
                from validate.advise import recommend

                try:
                    rec = recommend([ev], targets)
                except ValueError as exc:
                    raise UsageError(f"--from: {d}: {exc}") from None
        if cfg.batch_size is None:
            if rec is None:
                raise UsageError(
                    f"--from: {cfg.from_!r} holds no sweep best lrs to recommend from; give "
                    "--batch-size B to advise from its estimate"
                )
            print(
                json.dumps(jsonable({"recommendation": rec}))
                if cfg.json
                else format_recommendation(rec)
            )
            return 0
    a = advice_for(cfg)
    if cfg.json:
        d = a.to_dict()
        if rec is not None:
            d["recommendation"] = rec
        print(json.dumps(jsonable(d)))
    else:
        if rec is not None:
            print(
                format_recommendation(rec)
                + "\n\nFor comparison, every law refitted here by least squares in log lr "
                "to the same best lrs (not the Recommendation):"
            )
        print(format_advice(a))
    return 0


STAGE = Stage(
    "advise",
    "predict the best learning rate at a new batch size (Adam surge law, SGD, baselines)",
    {
        "advise": Command(
            "advise",
            "predict the best learning rate at a new batch size",
            AdviseConfig,
            run_advise,
            writes=False,
            description=__doc__ or "",
        )
    },
    single=True,
)
