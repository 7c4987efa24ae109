"""``surgelab advise``: the best learning rate at a new batch size, for Adam and for SGD.

Two laws compete for the same measurements (best learning rate ε_opt at several batch
sizes B):

* Adam / sign-like updates, the surge law (Li et al. 2024, Eq. 13):
  ε_opt(B) = ε_max / (½ (√(B_noise/B) + √(B/B_noise))): rises as √B, peaks at B = B_noise,
  then FALLS;
* SGD, McCandlish et al. 2018 (Eq. 2.7): ε_opt(B) = ε_max / (1 + B_noise/B): rises linearly,
  saturates at ε_max.

Each law's (B_noise, ε_max) is fitted by nonlinear least squares in log learning rate
(``scipy.optimize.least_squares`` on log B_noise, log ε_max), with a bootstrap interval over
the points (resampled with replacement). Or the parameters are given directly (from
``surgelab validate estimate`` or a sweep's summary).

=============== ============ ===========================================================
code            symbol       meaning
=============== ============ ===========================================================
``batch_size``  B            the batch size to advise on
``lr_adam``     ε_opt(B)     surge-law prediction
``lr_sgd``      ε_opt(B)     SGD-law prediction (the same points fitted with McCandlish)
``b_noise_*``   B_noise      fitted noise scale (Adam: the peak; SGD: the knee)
``eps_max_*``   ε_max        fitted scale (Adam: the peak value; SGD: the B → ∞ limit)
``rms_*``       —            RMS residual in log lr of each law's fit (which law fits)
=============== ============ ===========================================================

Library part: :func:`advise` (pure). Command line: :func:`main`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from theory import sgd as sgd_law
from theory import sign as sign_law

LAWS = ("adam", "sgd")


def law_lr(law: str, B: ArrayLike, eps_max: float, b_noise: float) -> NDArray[np.float64]:
    """ε_opt(B) of ``law`` ("adam": surge law, Eq. 13; "sgd": McCandlish Eq. 2.7)."""
    if law == "adam":
        out = sign_law.surge_lr(B, eps_max, b_noise)
    elif law == "sgd":
        out = sgd_law.optimal_lr(B, eps_max, b_noise)
    else:
        raise ValueError(f"law must be one of {LAWS}; got {law!r}")
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class Fit:
    """One law fitted to (B, ε) points: parameters, RMS log residual, and the fit's bounds."""

    law: str
    b_noise: float
    eps_max: float
    rms: float
    at_bound: bool


def _check_points(B: ArrayLike, lr: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    b = np.asarray(B, dtype=np.float64).reshape(-1)
    e = np.asarray(lr, dtype=np.float64).reshape(-1)
    if b.size == 0:
        raise ValueError("no (batch_size, lr) points given; need at least 2 batch sizes")
    if b.shape != e.shape:
        raise ValueError(f"batch_size and lr must have the same length; got {b.size} and "
                         f"{e.size}")
    if not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(f"batch sizes must be positive and finite; got {b.tolist()}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"learning rates must be positive and finite; got {e.tolist()}")
    if np.unique(b).size < 2:
        raise ValueError(f"need points at >= 2 distinct batch sizes to fit (B_noise, eps_max); "
                         f"got {np.unique(b).tolist()}")
    return b, e


def fit_law(law: str, B: ArrayLike, lr: ArrayLike, start: Fit | None = None) -> Fit:
    """Least squares in log lr: minimise Σ (log ε_law(B_k; B_noise, ε_max) − log ε_k)².

    Parameters are searched as (log B_noise, log ε_max), with B_noise confined to
    [min B / 10⁴, max B · 10⁴] (``at_bound`` flags a fit that ran into that box: the data
    do not locate B_noise, e.g. a surge law on points that never turn down). Several starting
    points are tried unless ``start`` (e.g. the full-data fit, for bootstrap refits) is given.
    """
    b, e = _check_points(B, lr)
    lb, le = np.log(b), np.log(e)
    lo, hi = lb.min() - math.log(1e4), lb.max() + math.log(1e4)

    def resid(p: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.log(law_lr(law, b, math.exp(p[1]), math.exp(p[0]))) - le

    k = int(np.argmax(e))
    starts = ([(math.log(start.b_noise), math.log(start.eps_max))] if start is not None else
              [(lb[k], le[k]), (np.median(lb), le.max() + math.log(2.0)),
               (lb.max() + 1.0, le.max() + 1.0), (lb.min() - 1.0, le.max())])
    best = None
    for bn0, em0 in starts:
        x0 = np.array([np.clip(bn0, lo + 1e-6, hi - 1e-6), em0])
        r = least_squares(resid, x0, bounds=([lo, -np.inf], [hi, np.inf]), method="trf")
        if best is None or r.cost < best.cost:
            best = r
    assert best is not None
    at_bound = bool(best.x[0] <= lo + 1e-3 or best.x[0] >= hi - 1e-3)
    rms = float(np.sqrt(np.mean(best.fun**2)))
    return Fit(law, float(math.exp(best.x[0])), float(math.exp(best.x[1])), rms, at_bound)


@dataclass(frozen=True)
class Advice:
    """A recommendation at ``batch_size`` (all learning rates in the units of the inputs)."""

    batch_size: float
    lr_adam: float
    lr_sgd: float
    interval_adam: tuple[float, float]
    interval_sgd: tuple[float, float]
    b_noise_adam: float
    eps_max_adam: float
    b_noise_sgd: float
    eps_max_sgd: float
    rms_adam: float
    rms_sgd: float
    n_points: int
    b_range: tuple[float, float] | None
    source: str
    ci: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval_adam"] = list(self.interval_adam)
        d["interval_sgd"] = list(self.interval_sgd)
        d["b_range"] = None if self.b_range is None else list(self.b_range)
        return d


def _bootstrap(B: NDArray[np.float64], lr: NDArray[np.float64], target: float, n_boot: int,
               ci: float, seed: int, fits: dict[str, Fit]) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    preds: dict[str, list[float]] = {law: [] for law in LAWS}
    for _ in range(n_boot):
        i = rng.integers(0, B.size, B.size)
        if np.unique(B[i]).size < 2:
            continue
        for law in LAWS:
            f = fit_law(law, B[i], lr[i], start=fits[law])
            preds[law].append(float(law_lr(law, target, f.eps_max, f.b_noise)))
    a = (1.0 - ci) / 2.0
    return {law: ((float(np.quantile(p, a)), float(np.quantile(p, 1 - a))) if len(p) >= 2
                  else (math.nan, math.nan)) for law, p in preds.items()}


def advise(batch_size: float, points: tuple[ArrayLike, ArrayLike] | None = None, *,
           b_noise: float | None = None, eps_max: float | None = None,
           b_noise_sgd: float | None = None, eps_max_sgd: float | None = None,
           n_boot: int = 200, ci: float = 0.9, seed: int = 0, source: str = "") -> Advice:
    """Predict the best Adam and SGD learning rates at ``batch_size``.

    Args:
      batch_size: the new batch size B (> 0).
      points: ``(B, lr)`` arrays of measured best learning rates; both laws are fitted to them.
      b_noise, eps_max: the surge law's parameters, when no points are given.
      b_noise_sgd, eps_max_sgd: the SGD law's parameters (default: the same as Adam's).
      n_boot: bootstrap resamples of the points (0: no interval).
      ci: interval coverage.
      seed: bootstrap generator seed.
      source: where the inputs came from (for the report).

    Returns:
      :class:`Advice`. Warnings: the target lies outside the measured batch sizes
      (extrapolation), B > B_noise for Adam (past the peak: "larger batches now need a
      SMALLER Adam learning rate"), or a fit whose B_noise ran to its bound.

    Examples:
      >>> B = [8, 32, 128, 512]
      >>> lr = [float(sign_law.surge_lr(b, 1e-3, 64.0)) for b in B]
      >>> a = advise(256, (B, lr), n_boot=0)
      >>> round(a.b_noise_adam, 3), round(a.lr_adam / float(sign_law.surge_lr(256, 1e-3, 64)), 6)
      (64.0, 1.0)
    """
    try:
        target = float(batch_size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batch size must be a positive number, got {batch_size!r}") from exc
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"batch size must be positive, got batch_size={batch_size!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1); got {ci=}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0; got {n_boot=}")
    warnings: list[str] = []
    nan2 = (math.nan, math.nan)
    if points is not None:
        b, e = _check_points(*points)
        fits = {law: fit_law(law, b, e) for law in LAWS}
        intervals = _bootstrap(b, e, target, n_boot, ci, seed, fits) if n_boot else \
            {law: nan2 for law in LAWS}
        b_range: tuple[float, float] | None = (float(b.min()), float(b.max()))
        n_points = int(b.size)
        if not b_range[0] <= target <= b_range[1]:
            warnings.append(f"batch size {target:g} lies outside the measured range "
                            f"[{b_range[0]:g}, {b_range[1]:g}]: this is an extrapolation")
        for law, f in fits.items():
            if f.at_bound:
                warnings.append(f"the {law} law's B_noise ran to the edge of its search range "
                                f"({f.b_noise:.3g}): the points do not locate it")
    else:
        if b_noise is None or eps_max is None:
            raise ValueError("give either points (batch_size, lr) or both b_noise and eps_max")
        for name, v in (("b_noise", b_noise), ("eps_max", eps_max)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number; got {name}={v!r}")
        bs = b_noise if b_noise_sgd is None else b_noise_sgd
        es = eps_max if eps_max_sgd is None else eps_max_sgd
        for name, v in (("b_noise_sgd", bs), ("eps_max_sgd", es)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number; got {name}={v!r}")
        fits = {"adam": Fit("adam", float(b_noise), float(eps_max), math.nan, False),
                "sgd": Fit("sgd", float(bs), float(es), math.nan, False)}
        intervals = {law: nan2 for law in LAWS}
        b_range, n_points = None, 0
        if b_noise_sgd is None:
            warnings.append("no SGD parameters given: the SGD law uses the Adam law's "
                            "(B_noise, eps_max); its learning rate is indicative only")
    fa, fs = fits["adam"], fits["sgd"]
    if target > fa.b_noise:
        warnings.append(f"B = {target:g} is past the Adam peak B_noise = {fa.b_noise:.3g}: "
                        f"larger batches now need a SMALLER Adam learning rate")
    return Advice(
        batch_size=target,
        lr_adam=float(law_lr("adam", target, fa.eps_max, fa.b_noise)),
        lr_sgd=float(law_lr("sgd", target, fs.eps_max, fs.b_noise)),
        interval_adam=intervals["adam"], interval_sgd=intervals["sgd"],
        b_noise_adam=fa.b_noise, eps_max_adam=fa.eps_max,
        b_noise_sgd=fs.b_noise, eps_max_sgd=fs.eps_max,
        rms_adam=fa.rms, rms_sgd=fs.rms, n_points=n_points, b_range=b_range,
        source=source, ci=ci, warnings=warnings,
    )


# ---------------------------------------------------------------------------------------------
# input readers and the command line
# ---------------------------------------------------------------------------------------------


def read_points_csv(path: str | Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Read a CSV with columns ``batch_size`` and ``lr`` (``best_lr`` also accepted)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"points file {str(p)!r} does not exist")
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        lr_col = "lr" if "lr" in cols else "best_lr" if "best_lr" in cols else None
        if "batch_size" not in cols or lr_col is None:
            raise ValueError(f"points file {str(p)!r} must have columns 'batch_size' and 'lr'; "
                             f"found {cols}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"points file {str(p)!r} has no rows")
    try:
        b = np.array([float(r["batch_size"]) for r in rows])
        e = np.array([float(r[lr_col]) if r[lr_col] not in ("", None) else math.nan
                      for r in rows])
    except ValueError as exc:
        raise ValueError(f"points file {str(p)!r} has a non-numeric cell: {exc}") from exc
    keep = np.isfinite(e)   # a batch size without a best lr (nothing reached) is skipped
    return b[keep], e[keep]


def points_from_run(run_dir: str | Path) -> tuple[Any, dict[str, float], str]:
    """Points or parameters from a result folder.

    Sweep folders: ``summary.json``'s ``best_lr`` list, else ``best_lr.csv`` (rows of the
    primary target), else ``points.csv`` (its best lrs recomputed by :mod:`validate.fits`).
    Estimate folders (``surgelab validate estimate``): the last checkpoint's Theorem 3
    (``b_noise_thm3``, ``eps_max_thm3``) and SGD (``b_noise_sgd_full``/``b_noise_sgd``,
    ``eps_max_sgd*``) parameters. Returns ``(points or None, params, description)``.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise ValueError(f"result folder {str(d)!r} does not exist")
    summary: dict[str, Any] = {}
    if (d / "summary.json").is_file():
        summary = json.loads((d / "summary.json").read_text())
        if not isinstance(summary, dict):
            raise ValueError(f"{d}/summary.json is not a JSON object (a run's summary)")
    best = summary.get("best_lr")
    if isinstance(best, list) and best:
        b = np.array([float(r["batch_size"]) for r in best])
        e = np.array([math.nan if r.get("lr") in (None, "nan") else float(r["lr"])
                      for r in best])
        k = np.isfinite(e)
        return (b[k], e[k]), {}, f"{d}/summary.json best_lr"
    if (d / "best_lr.csv").is_file():
        b, e, tgt = _best_csv(d / "best_lr.csv", summary.get("primary_target"))
        return (b, e), {}, f"{d}/best_lr.csv (target {tgt})"
    if (d / "points.csv").is_file():
        return _from_points_table(d / "points.csv"), {}, f"{d}/points.csv"
    cps = summary.get("checkpoints")
    if isinstance(cps, list) and cps:
        c = cps[-1]

        def num(key: str) -> float | None:
            v = c.get(key)
            return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

        params = {"b_noise": num("b_noise_thm3"), "eps_max": num("eps_max_thm3"),
                  "b_noise_sgd": num("b_noise_sgd_full") or num("b_noise_sgd"),
                  "eps_max_sgd": num("eps_max_sgd_full") or num("eps_max_sgd")}
        return None, params, f"{d}/summary.json checkpoint at step {c.get('step')}"
    raise ValueError(f"result folder {str(d)!r} has no summary.json best_lr, best_lr.csv, "
                     f"points.csv or estimate checkpoints to advise from")


def _best_csv(path: Path, primary: Any) -> tuple[NDArray, NDArray, Any]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "batch_size" not in rows[0] or "best_lr" not in rows[0]:
        raise ValueError(f"{path} must have columns 'batch_size' and 'best_lr' and >= 1 row")
    if "target" in rows[0]:
        tg = sorted({float(r["target"]) for r in rows})
        want = float(primary) if primary is not None else tg[0]
        rows = [r for r in rows if float(r["target"]) == want]
    else:
        want = None
    b = np.array([float(r["batch_size"]) for r in rows])
    e = np.array([float(r["best_lr"]) if r["best_lr"] not in ("", "nan") else math.nan
                  for r in rows])
    k = np.isfinite(e)
    return b[k], e[k], want


def _from_points_table(path: Path) -> tuple[NDArray, NDArray]:
    """Best lrs from a sweep's points table, by the sweep's own analysis
    (:func:`validate.fits.summarise`: the paper's best lr, usable-seed fraction, primary
    target), so a folder advises the same points whichever of its files is read."""
    from theory.rundir import read_table
    from validate.fits import summarise

    rows = read_table(path)
    need = {"batch_size", "lr", "seed", "target", "loss_reduction"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path} must have columns {sorted(need)} and >= 1 row")
    best = summarise(rows, n_boot=0)["best_lr"]
    return (np.array([float(r["batch_size"]) for r in best]),
            np.array([float(r["lr"]) for r in best]))


def format_advice(a: Advice) -> str:
    """A person-readable report of an :class:`Advice`."""
    def iv(x: tuple[float, float]) -> str:
        return "" if not all(map(math.isfinite, x)) else \
            f"  ({a.ci:.0%} interval {x[0]:.3g} … {x[1]:.3g})"

    lines = [f"Advice for batch size {a.batch_size:g}" + (f"  [from {a.source}]" if a.source
                                                          else ""), ""]
    lines.append(f"  Adam (surge law):  learning rate {a.lr_adam:.4g}{iv(a.interval_adam)}")
    lines.append(f"      B_noise = {a.b_noise_adam:.4g} (peak), eps_max = {a.eps_max_adam:.4g}"
                 + (f", fit RMS {a.rms_adam:.3f} in log lr" if math.isfinite(a.rms_adam) else ""))
    lines.append(f"  SGD (McCandlish):  learning rate {a.lr_sgd:.4g}{iv(a.interval_sgd)}")
    lines.append(f"      B_noise = {a.b_noise_sgd:.4g}, eps_max = {a.eps_max_sgd:.4g}"
                 + (f", fit RMS {a.rms_sgd:.3f} in log lr" if math.isfinite(a.rms_sgd) else ""))
    if a.b_range is not None:
        lines.append(f"  from {a.n_points} points at batch sizes {a.b_range[0]:g} … "
                     f"{a.b_range[1]:g}")
    for w in a.warnings:
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="surgelab advise",
        description="Predict the best learning rate at a new batch size for Adam (surge law) "
                    "and SGD (McCandlish), from a sweep/estimate result folder, a CSV of "
                    "(batch_size, lr) points, or given (B_noise, eps_max).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="run_dir", metavar="RUN_DIR",
                     help="a result folder of `surgelab validate run` or `... estimate`")
    src.add_argument("--points", metavar="FILE", help="CSV with columns batch_size,lr")
    src.add_argument("--b-noise", type=float, help="the Adam law's B_noise (with --eps-max)")
    p.add_argument("--eps-max", type=float, help="the Adam law's eps_max (with --b-noise)")
    p.add_argument("--b-noise-sgd", type=float, help="the SGD law's B_noise (optional)")
    p.add_argument("--eps-max-sgd", type=float, help="the SGD law's eps_max (optional)")
    p.add_argument("--batch-size", type=float, required=True, help="the batch size to advise on")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples (0: none)")
    p.add_argument("--ci", type=float, default=0.9, help="interval coverage")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``surgelab advise ...``: returns 0, or 2 with a one-line message for bad input."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0)
    # flag-level checks, each message naming its flag (advise() re-checks what it is given)
    extra = {"--eps-max": args.eps_max, "--b-noise-sgd": args.b_noise_sgd,
             "--eps-max-sgd": args.eps_max_sgd}
    given = [f for f, v in extra.items() if v is not None]
    numbers = {"--batch-size": args.batch_size, "--b-noise": args.b_noise, **extra}
    checks = [(v is not None and not (math.isfinite(v) and v > 0),
               f"argument {f}: must be a positive finite number; got {v}")
              for f, v in numbers.items()]
    checks += [
        (args.b_noise is None and bool(given),
         f"{', '.join(given)} only go(es) with --b-noise; with --from / --points the "
         f"parameters are fitted: drop {', '.join(given)}"),
        (args.n_boot < 0, f"argument --n-boot: must be >= 0 (0: no interval); got {args.n_boot}"),
        (not 0 < args.ci < 1, f"argument --ci: must lie in (0, 1), e.g. 0.9; got {args.ci}"),
        (args.seed < 0, f"argument --seed: must be a non-negative integer; got {args.seed}"),
    ]
    problem = next((msg for failed, msg in checks if failed), None)
    if problem is not None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return 2
    try:
        kw: dict[str, Any] = {"n_boot": args.n_boot, "ci": args.ci, "seed": args.seed}
        if args.run_dir is not None:
            try:
                pts, params, source = points_from_run(args.run_dir)
            except ValueError as e:  # name the folder if the message does not
                if str(args.run_dir) in str(e):
                    raise
                raise ValueError(f"--from {args.run_dir}: {e}") from e
            except (KeyError, TypeError) as e:  # a malformed or foreign summary / table
                raise ValueError(f"--from {args.run_dir}: not a sweep or estimate result this "
                                 f"version can read ({type(e).__name__}: {e})") from e
            if pts is None and (params.get("b_noise") is None or params.get("eps_max") is None):
                raise ValueError(f"{source}: Theorem 3 has no finite B_noise there (S_off <= 0); "
                                 f"nothing to advise from")
            a = advise(args.batch_size, pts, source=source, **kw) if pts is not None else \
                advise(args.batch_size, None, source=source, **params, **kw)
        elif args.points is not None:
            a = advise(args.batch_size, read_points_csv(args.points), source=args.points, **kw)
        else:
            if args.eps_max is None:
                raise ValueError("--b-noise needs --eps-max")
            a = advise(args.batch_size, None, b_noise=args.b_noise, eps_max=args.eps_max,
                       b_noise_sgd=args.b_noise_sgd, eps_max_sgd=args.eps_max_sgd,
                       source="given parameters", **kw)
    except ValueError as e:
        print(f"surgelab advise: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_jsonable(a.to_dict())))
    else:
        print(format_advice(a))
    return 0


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


if __name__ == "__main__":
    sys.exit(main())
