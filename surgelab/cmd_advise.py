"""``surgelab advise``: the best learning rate at a new batch size, for Adam and for SGD.

Where the best learning rates come from (exactly one of):

- ``--from RUN_DIR``: a result folder of ``surgelab validate run`` (its summary's best lrs,
  ``best_lr.csv`` or ``points.csv``), of ``surgelab validate estimate`` (the last checkpoint's
  Theorem 3 and SGD parameters), or of ``surgelab run`` (its ``real/`` sweep, else its
  ``estimate/`` part);
- ``--points FILE``: a CSV with columns ``batch_size`` and ``lr`` (or ``best_lr``); every row
  must hold two positive finite numbers (a blank, NaN or inf cell is an error naming the line);
- ``--b-noise X --eps-max Y``: the surge law's parameters (optionally ``--b-noise-sgd``,
  ``--eps-max-sgd`` for the SGD law).

The analysis is :func:`validate.advise.advise`; this module reads the inputs and prints. It
writes nothing.
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

#: Bootstrap refits one advice may plan (3 laws × --n-boot; a refit takes a few ms, so this
#: is about a minute on one core).
MAX_BOOT_REFITS = 30_000

#: The theory laws the bootstrap refits (validate.advise.LAWS; not imported here so that the
#: config module stays free of scipy).
N_BOOT_LAWS = 3


@dataclass(frozen=True)
class AdviseConfig(Config):
    batch_size: float = opt(None, "the batch size to advise on", lo=0, lo_open=True, metavar="B")
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

    def check(self) -> None:
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


def _flag(name: str) -> str:
    # ``from_`` is the field of ``--from`` (a Python keyword); argparse also accepts ``--from``
    # for the generated ``--from-`` as an unambiguous prefix.
    return "--from" if name == "from_" else flag(name)


# ---------------------------------------------------------------------------------------------
# inputs


def read_points_csv(path: str | Path) -> tuple[Any, Any]:
    """``--points``: every data row two positive finite numbers; anything else names its line."""
    import numpy as np

    p = Path(path)
    where = f"--points: points file {str(p)!r}"
    if not p.is_file():
        raise UsageError(f"{where} does not exist" if not p.exists() else f"{where} is not a file")
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{where} is not a CSV text file ({exc})") from None
    if not lines:
        raise UsageError(f"{where} is empty; expected a header line batch_size,lr")
    _, header = lines[0]
    cols = [c.strip() for c in header]
    lr_col = "lr" if "lr" in cols else "best_lr" if "best_lr" in cols else None
    if "batch_size" not in cols or lr_col is None:
        raise UsageError(f"{where} must have columns 'batch_size' and 'lr'; found {cols}")
    ib, il = cols.index("batch_size"), cols.index(lr_col)
    data = lines[1:]
    while data and not any(c.strip() for c in data[-1][1]):  # trailing blank lines hold nothing
        data.pop()
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


def advice_for(cfg: AdviseConfig) -> Any:
    """The :class:`validate.advise.Advice` the config asks for (UsageError naming the flag)."""
    from validate.advise import advise

    kw = {"n_boot": cfg.n_boot, "ci": cfg.ci, "seed": cfg.seed}
    if cfg.from_ is not None:
        pts, params, source, notes = load_from(cfg.from_)
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


def run_advise(cfg: AdviseConfig, run_dir: Any = None) -> int:
    """Print the advice (a report, or one JSON object with ``--json``); write nothing."""
    from surgelab.rundir import jsonable
    from validate.advise import format_advice

    a = advice_for(cfg)
    print(json.dumps(jsonable(a.to_dict())) if cfg.json else format_advice(a))
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
