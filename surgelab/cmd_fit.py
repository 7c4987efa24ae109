"""``surgelab fit --table FILE``: S_min and the S–E B_crit from your own runs' steps to a target.

The table is a CSV with one row per run: ``batch_size, steps`` (steps to reach the target
loss, each run at its own best learning rate) and optionally ``target`` (several target losses
in one table: each is fitted on its own) and ``tokens_per_example`` (the same on every row: the
figure's x-axis and B_crit are then also given in tokens). A W&B export with these columns
works as it is.

For each target: S = S_min (1 + B_crit/B) fitted in log steps (the headline) and by the
paper's Eq. 22 line, both with a bootstrap interval over the rows; E_min = S_min · B_crit; the
batch size of Zhang et al. (2024) with 20% more steps than linear scaling (0.2 · B_crit). The
run folder holds ``fit.csv`` (each run with both fits and their log residuals),
``summary.json`` and ``steps_examples.png``.

A bad row (blank, NaN, inf, not a number, <= 0, missing a cell) is an error naming its line;
a target with one batch size, or whose steps do not fall as the batch size grows, is an error
too (there is no B_crit to fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surgelab.cli import Command, Stage, UsageError
from surgelab.config import Config, ConfigError, opt
from surgelab.rundir import RunDir, read_user_csv

ADVICE = "at B_crit you pay 2× the minimum steps and 2× the minimum examples"


@dataclass(frozen=True)
class FitConfig(Config):
    table: str = opt(
        None, "CSV of your runs: batch_size,steps[,target][,tokens_per_example]", metavar="FILE"
    )
    n_boot: int = opt(1000, "bootstrap resamples of the rows (0: no interval)", lo=0, hi=100_000)
    ci: float = opt(0.9, "coverage of the bootstrap intervals, in (0, 1)", lo=0, lo_open=True)
    seed: int = opt(0, "seed of the bootstrap", lo=0)
    overhead: float = opt(
        0.2,
        "step overhead over linear scaling that defines Zhang et al.'s critical batch size",
        lo=0,
        lo_open=True,
        hi=10,
    )

    def check(self) -> None:
        if not self.ci < 1:
            raise ConfigError("ci", f"must lie in (0, 1), e.g. 0.9; got {self.ci:g}")
        if 0 < self.n_boot < 10:
            raise ConfigError("n_boot", f"must be 0 (no interval) or >= 10; got {self.n_boot}")
        p = Path(self.table).expanduser()
        if not p.is_file():
            what = "does not exist" if not p.exists() else "is not a file"
            raise ConfigError("table", f"{self.table!r} {what}; give the CSV of your runs")
        check_table(read_steps_table(self.table))  # every row, before the run folder is made


def read_steps_table(path: str | Path, arg: str = "--table") -> dict[str, Any]:
    """The runs of a steps-to-target CSV, checked row by row (UsageError naming the line).

    Returns ``{"batch_size": [...], "steps": [...], "target": [... or None], "tokens_per_example":
    float | None}``.
    """
    where = f"{arg}: {str(Path(path).expanduser())!r}"
    cols, data = read_user_csv(path, where, "batch_size,steps")
    if "batch_size" not in cols or "steps" not in cols:
        raise UsageError(f"{where} must have columns 'batch_size' and 'steps'; found {cols}")
    if not data:
        raise UsageError(f"{where} has no rows below its header")
    names = [c for c in ("batch_size", "steps", "target", "tokens_per_example") if c in cols]
    out: dict[str, list[float]] = {c: [] for c in names}
    for num, row in data:
        at = f"{where}, line {num}"
        if not any(c.strip() for c in row):
            raise UsageError(f"{at} is blank; delete it")
        if len(row) < len(cols):
            raise UsageError(f"{at} has {len(row)} field(s); the header has {len(cols)}")
        for c in names:
            cell = row[cols.index(c)].strip()
            if not cell:
                raise UsageError(f"{at}: {c} is empty")
            try:
                v = float(cell)
            except ValueError:
                raise UsageError(f"{at}: {c} {cell!r} is not a number") from None
            if not math.isfinite(v) or v <= 0:
                raise UsageError(f"{at}: {c} {cell!r} must be positive and finite")
            out[c].append(v)
    tpe = None
    if "tokens_per_example" in out:
        values = set(out["tokens_per_example"])
        if len(values) > 1:
            raise UsageError(
                f"{where}: tokens_per_example must be the same on every row; found "
                f"{', '.join(f'{v:g}' for v in sorted(values))}"
            )
        tpe = values.pop()
    return {
        "batch_size": out["batch_size"],
        "steps": out["steps"],
        "target": out.get("target", [None] * len(out["steps"])),
        "tokens_per_example": tpe,
        "where": where,
    }


def _groups(table: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
    """Per target (descending): ``(target, B array, S array)``."""
    import numpy as np

    targets = sorted(set(table["target"]), key=lambda t: -(t or 0.0))
    out = []
    for t in targets:
        k = [i for i, v in enumerate(table["target"]) if v == t]
        out.append(
            (
                t,
                np.array([table["batch_size"][i] for i in k]),
                np.array([table["steps"][i] for i in k]),
            )
        )
    return out


def check_table(table: dict[str, Any]) -> None:
    """UsageError (naming the table) for a target with one batch size, or whose steps do not
    fall as the batch size grows (there is no B_crit to fit)."""
    import numpy as np

    where = table["where"]
    for t, b, s in _groups(table):
        what = "" if t is None else f" (target {t:g})"
        ub = np.unique(b)
        if ub.size < 2:
            raise UsageError(
                f"{where}{what}: runs at one batch size ({ub[0]:g}) only; B_crit needs steps at "
                ">= 2 batch sizes (better >= 4, spanning B_crit)"
            )
        gm = [float(np.exp(np.mean(np.log(s[b == u])))) for u in ub]
        if not gm[-1] < gm[0]:
            raise UsageError(
                f"{where}{what}: the steps do not fall with batch size ({gm[0]:g} steps at "
                f"B = {ub[0]:g}, {gm[-1]:g} at B = {ub[-1]:g}); S = S_min(1 + B_crit/B) has no "
                "B_crit to fit — check the columns, or that every run reached the same target"
            )


def fit_table(
    table: dict[str, Any], *, n_boot: int, ci: float, seed: int, overhead: float = 0.2
) -> list[dict[str, Any]]:
    """:func:`validate.advise.fit_steps` per target of a :func:`read_steps_table` table,
    targets in descending order (training order); :func:`check_table` first."""
    from validate.advise import fit_steps

    check_table(table)
    fits = []
    for t, b, s in _groups(table):
        ub = sorted(set(b.tolist()))
        f = fit_steps(b, s, n_boot=n_boot, ci=ci, seed=seed, overhead=overhead)
        f["target"] = t
        f["b_range"] = [float(ub[0]), float(ub[-1])]
        for r in f["rows"]:
            r["target"] = t
        tpe = table["tokens_per_example"]
        if tpe is not None:
            f["tokens_per_example"] = tpe
            f["b_crit_tokens"] = f["b_crit"] * tpe
            f["e_min_tokens"] = f["e_min"] * tpe
        fits.append(f)
    return fits


def primary(fits: list[dict[str, Any]]) -> dict[str, Any]:
    """The lowest target whose fit locates B_crit (else the lowest target)."""
    ok = [f for f in fits if not f["at_bound"]]
    return min(ok or fits, key=lambda f: f["target"] if f["target"] is not None else 0.0)


def _g(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def describe(f: dict[str, Any]) -> list[str]:
    """The fit of one target in words (the command's output and the summary's verdicts)."""
    t = "" if f["target"] is None else f" at target {f['target']:g}"
    lines = [
        f"S–E B_crit{t} = {_g(f['b_crit'])} examples [{_g(f['b_crit_lo'])}, "
        f"{_g(f['b_crit_hi'])}] (log-space fit, RMS residual {f['rms_log']:.3f} in log steps); "
        f"Eq. 22 fit: {_g(f['b_crit_eq22'])} [{_g(f['b_crit_eq22_lo'])}, "
        f"{_g(f['b_crit_eq22_hi'])}]",
        f"S_min = {_g(f['s_min'])} steps, E_min = {_g(f['e_min'])} examples",
        f"{f['overhead']:.0%}-overhead critical batch size (Zhang et al. 2024) = "
        f"{_g(f['b_overhead'])} [{_g(f['b_overhead_lo'])}, {_g(f['b_overhead_hi'])}]",
    ]
    if f.get("tokens_per_example"):
        lines.append(
            f"in tokens: B_crit = {_g(f['b_crit_tokens'])} tokens per step, E_min = "
            f"{_g(f['e_min_tokens'])} tokens"
        )
    if f["at_bound"]:
        lines.append(
            "caveat: B_crit ran to the edge of its search range: the steps do not bend within "
            "the measured batch sizes, so B_crit is not located (measure wider batch sizes)"
        )
    bmin, bmax = f["b_range"]
    if not bmin <= f["b_crit"] <= bmax:
        lines.append(
            f"caveat: B_crit lies outside the measured batch sizes {bmin:g}…{bmax:g}: an "
            "extrapolation of the fitted curve"
        )
    lines.append(ADVICE)
    return lines


def run_fit(cfg: FitConfig, run: RunDir | None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from validate.advise import plot_steps_examples

    assert run is not None
    table = read_steps_table(cfg.table)
    fits = fit_table(table, n_boot=cfg.n_boot, ci=cfg.ci, seed=cfg.seed, overhead=cfg.overhead)
    rows = [r for f in fits for r in f.pop("rows")]
    if all(f["target"] is None for f in fits):
        for r in rows:
            r.pop("target")
    run.write_meta()
    run.write_table("fit.csv", rows)
    _, ax = plt.subplots(figsize=(6.5, 4.5))
    shown = run.read_table("fit.csv")
    run.save_figure(
        plot_steps_examples(shown, fits, tokens_per_example=table["tokens_per_example"], ax=ax),
        "steps_examples.png",
    )
    p = primary(fits)
    verdicts = describe(p)
    summary = {
        "table": str(Path(cfg.table).expanduser().resolve()),
        "primary_target": p["target"],
        **{k: v for k, v in p.items() if k != "target"},
        "targets": fits,
        "advice": ADVICE,
        "headline": [
            {
                "key": "b_crit",
                "label": "S–E B_crit (log-space fit of S = S_min(1 + B_crit/B))",
                "value": p["b_crit"],
                "lo": p["b_crit_lo"],
                "hi": p["b_crit_hi"],
            },
            {"key": "s_min", "label": "S_min (steps at B → ∞)", "value": p["s_min"]},
            {
                "key": "b_overhead",
                "label": "20%-overhead critical batch size (Zhang et al. 2024)",
                "value": p["b_overhead"],
            },
        ],
        "verdicts": verdicts,
    }
    run.finish(summary)
    for f in fits:
        for line in describe(f):
            if line != ADVICE:
                print(line)
    print(ADVICE)
    print(f"wrote {run.path}")
    return 0


STAGE = Stage(
    "fit",
    "S_min and the S–E B_crit from your own runs' steps to a target (CSV table)",
    {
        "fit": Command(
            "fit",
            "S_min and the S–E B_crit from a steps-to-target table",
            FitConfig,
            run_fit,
            description=__doc__ or "",
        )
    },
    single=True,
)
