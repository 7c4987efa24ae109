"""Figures of a sweep, drawn from its saved tables only (``points.csv``, ``fits.csv``,
``best_lr.csv``, ``loo.csv``, ``b_crit.csv``): they compute nothing beyond averaging the
points they show and evaluating the fitted curves the tables hold.

* :func:`plot_heatmap`: mean further loss reduction over (batch size, lr), the paper's
  Figs. 2–4 layout (x = batch size, y = learning rate), the paper's-rule optimum per batch size
  with its bootstrap interval (censored optima as open triangles pointing off the grid), the
  three fitted laws drawn over it and the S–E B_crit as a vertical line.
* :func:`plot_optimum_vs_b`: the optimum lr* against B (both rules, intervals, censored
  marked) with the theory laws fitted at B_crit and the baselines' leave-one-out errors.
* :func:`plot_se_fit`: the steps–examples fit, 1/S against 1/E with the fitted line (Eq. 22).
* :func:`plot_b_crit_vs_target` (alias :func:`plot_b_noise_vs_target`): S–E B_crit with its
  interval (seeds × batch sizes) against the target loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# No matplotlib.use() here: choosing the backend is the application's business (importing a
# library must not switch a notebook's backend); headless machines fall back to Agg.
import matplotlib.pyplot as plt
import numpy as np

from theory.laws import BASELINES, LAWS, THEORY, law_lr

#: Colour and line style of each theory law's curve (labels come from :mod:`theory.laws`).
_LAW_STYLE = {"adam": ("C3", "-"), "sgd": ("C0", "--"), "sgd_sqrt": ("C2", ":")}


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.8))
    return ax


def _geometric(v: np.ndarray) -> bool:
    """True when the grid is closer to evenly spaced in log than in linear scale."""
    if v.size < 3 or v.min() <= 0:
        return False
    cv = lambda d: float(np.std(d) / np.mean(d))  # noqa: E731
    return cv(np.diff(np.log(v))) < cv(np.diff(v))


def _edges(v: np.ndarray) -> np.ndarray:
    if v.size == 1:
        return np.array([v[0] * 0.9, v[0] * 1.1])
    if _geometric(v):
        return np.exp(_edges_lin(np.log(v)))
    return _edges_lin(v)


def _edges_lin(v: np.ndarray) -> np.ndarray:
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def plot_heatmap(
    points: Sequence[Mapping[str, Any]],
    fits: Sequence[Mapping[str, Any]],
    best: Sequence[Mapping[str, Any]],
    target: float,
    ax=None,
):
    """Mean further loss reduction over (B, lr) at ``target``, with best lrs and fitted laws.

    Cells where no seed reached the target are left blank. Linear axes, as in the paper.
    """
    ax = _ax(ax)
    pts = [p for p in points if float(p["target"]) == target]
    B = np.array(sorted({int(p["batch_size"]) for p in pts}), dtype=float)
    L = np.array(sorted({float(p["lr"]) for p in pts}), dtype=float)
    acc = np.zeros((L.size, B.size))
    cnt = np.zeros((L.size, B.size))
    bi = {b: i for i, b in enumerate(B)}
    li = {v: i for i, v in enumerate(L)}
    for p in pts:
        if p.get("reached") and _finite(p.get("loss_reduction")) and not p.get("further_diverged"):
            k = (li[float(p["lr"])], bi[float(p["batch_size"])])
            acc[k] += float(p["loss_reduction"])
            cnt[k] += 1
    mean = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)
    if B.size and L.size:
        mesh = ax.pcolormesh(
            _edges(B), _edges(L), np.ma.masked_invalid(mean), cmap="viridis", shading="flat"
        )
        ax.figure.colorbar(mesh, ax=ax, label="further loss reduction (mean over seeds)")
    _draw_optima(
        ax, best, target, "further", color="w", mec="k", label="optimum lr* (paper's rule)"
    )
    fit = next((f for f in fits if float(f["target"]) == target), None)
    bc_key = "b_crit" if fit is not None and "b_crit" in fit else "b_noise"
    if fit is not None and _finite(fit.get(bc_key)) and B.size:
        e = _edges(B)
        grid = (np.geomspace if _geometric(B) else np.linspace)(max(e[0], B.min() / 2), e[-1], 200)
        for law in THEORY:
            eps = fit.get(f"eps_max_{law}")
            if _finite(eps):
                c, ls = _LAW_STYLE[law]
                label = LAWS[law].label
                err = fit.get(f"loo_err_{law}")
                label += f", LOO {float(err):.3f}" if _finite(err) else ""
                ax.plot(
                    grid,
                    law_lr(law, grid, float(eps), float(fit[bc_key])),
                    color=c,
                    ls=ls,
                    lw=2,
                    label=label,
                )
        bn = float(fit[bc_key])
        if e[0] <= bn <= e[-1]:
            ax.axvline(bn, color="w", ls="--", lw=1.5, label=f"S–E B_crit = {bn:.3g}")
    # Linear axes for the paper's linear grids; log axes for the geometric CPU grids.
    if L.size:
        ax.set_ylim(_edges(L)[0], _edges(L)[-1])
        if _geometric(L):
            ax.set_yscale("log")
    if B.size:
        ax.set_xlim(_edges(B)[0], _edges(B)[-1])
        if _geometric(B):
            ax.set_xscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("learning rate")
    ax.set_title(f"further loss reduction, target loss {target:g}")
    ax.legend(fontsize=7, loc="best")
    return ax


def _flag(v: Any) -> str:
    """A ``censored`` cell: "low" / "high" / "" (CSV cells come back as strings)."""
    v = "" if v is None else str(v).strip().lower()
    return v if v in ("low", "high") else ""


def _draw_optima(ax, best, target, rule, *, color, mec, label, **kw) -> None:
    """lr* per batch size with its interval; censored ones as triangles off the grid."""
    rows = [
        r
        for r in best
        if float(r["target"]) == target
        and r.get("rule", "further") == rule
        and _finite(r.get("lr", r.get("best_lr")))
    ]
    inner = [r for r in rows if not _flag(r.get("censored"))]
    if inner:
        b = np.array([float(r["batch_size"]) for r in inner])
        v = np.array([float(r.get("lr", r.get("best_lr"))) for r in inner])
        lo = np.array([float(r["lo"]) if _finite(r.get("lo")) else x for r, x in zip(inner, v)])
        hi = np.array([float(r["hi"]) if _finite(r.get("hi")) else x for r, x in zip(inner, v)])
        yerr = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
        ax.errorbar(
            b,
            v,
            yerr=yerr,
            fmt="*",
            color=color,
            mec=mec,
            ms=11,
            ecolor=mec,
            capsize=3,
            label=label,
            zorder=5,
            **kw,
        )
    for edge, marker in (("high", "^"), ("low", "v")):
        cen = [r for r in rows if _flag(r.get("censored")) == edge]
        if cen:
            ax.plot(
                [float(r["batch_size"]) for r in cen],
                [float(r.get("lr", r.get("best_lr"))) for r in cen],
                marker,
                color=color,
                mec=mec,
                mfc="none",
                ms=10,
                ls="none",
                zorder=5,
                label=f"{label}: censored ({edge} edge of the grid)",
            )


def plot_optimum_vs_b(
    best: Sequence[Mapping[str, Any]],
    fits: Sequence[Mapping[str, Any]],
    loo: Sequence[Mapping[str, Any]],
    target: float,
    ax=None,
):
    """lr* against B at ``target``: both rules with intervals (censored as open triangles),
    the theory laws at the fitted B_crit / ε_max, and each law's and baseline's
    leave-one-out error in the legend."""
    ax = _ax(ax)
    _draw_optima(ax, best, target, "further", color="C3", mec="C3", label="lr*, paper's rule")
    _draw_optima(ax, best, target, "steps", color="C7", mec="C7", label="lr*, fewest steps")
    errs = {r["law"]: r for r in loo if float(r["target"]) == target}

    def tag(law: str) -> str:
        r = errs.get(law)
        if r is None or not _finite(r.get("err")):
            return ""
        iv = f" [{float(r['lo']):.2f}, {float(r['hi']):.2f}]" if _finite(r.get("lo")) else ""
        return f", LOO {float(r['err']):.3f}{iv}"

    Bs = [float(r["batch_size"]) for r in best if float(r["target"]) == target]
    fit = next((f for f in fits if float(f["target"]) == target), None)
    bc = None if fit is None else fit.get("b_crit", fit.get("b_noise"))
    if Bs and fit is not None and _finite(bc):
        grid = np.geomspace(min(Bs) / 1.5, max(Bs) * 1.5, 200)
        for law in THEORY:
            eps = fit.get(f"eps_max_{law}")
            if _finite(eps):
                c, ls = _LAW_STYLE[law]
                ax.plot(
                    grid,
                    law_lr(law, grid, float(eps), float(bc)),
                    color=c,
                    ls=ls,
                    lw=1.8,
                    label=LAWS[law].label + tag(law),
                )
        ax.axvline(float(bc), color="k", ls="--", lw=1, label=f"S–E B_crit = {float(bc):.3g}")
    for law in BASELINES:  # no curve (each is scaled from the nearest batch size): the errors
        if tag(law):
            ax.plot([], [], " ", label=LAWS[law].label + tag(law))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("optimal learning rate lr*")
    ax.set_title(f"optimum against batch size, target loss {target:g}")
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_se_fit(fits: Sequence[Mapping[str, Any]], best: Sequence[Mapping[str, Any]], ax=None):
    """1/S against 1/E per target (S at each batch size's optimum, the rows of ``best`` that
    carry ``S``), with 1/S = −B_crit/E + 1/S_min."""
    ax = _ax(ax)
    for k, f in enumerate(fits):
        t = float(f["target"])
        pts = [
            (float(r["E"]), float(r["S"]))
            for r in best
            if float(r["target"]) == t and _finite(r.get("S")) and _finite(r.get("E"))
        ]
        if not pts:
            continue
        E, S = (np.array(v, dtype=float) for v in zip(*pts))
        c = f"C{k % 10}"
        ax.plot(1 / E, 1 / S, "o", color=c, label=f"target {t:g}")
        bc = f.get("b_crit", f.get("b_noise"))
        if _finite(bc) and _finite(f.get("s_min")):
            x = np.linspace(0, (1 / E).max() * 1.05, 50)
            ax.plot(
                x,
                -float(bc) * x + 1 / float(f["s_min"]),
                "-",
                color=c,
                label=f"fit: S–E B_crit={float(bc):.3g}",
            )
    ax.set_xlabel("1 / E (examples to target)")
    ax.set_ylabel("1 / S (steps to target)")
    ax.set_title("steps–examples trade-off (Eq. 22)")
    ax.legend(fontsize=7)
    return ax


def plot_b_crit_vs_target(table: Sequence[Mapping[str, Any]], ax=None):
    """S–E B_crit against the target loss, its interval (seeds × batch sizes) as error bars.

    ``table``: rows of ``b_crit.csv`` (``target, value, lo, hi``) or of ``fits.csv``
    (``b_crit`` / ``b_noise`` with ``_lo`` / ``_hi``).
    """
    ax = _ax(ax)

    def get(f, k):
        for name in {
            "value": ("value", "b_crit", "b_noise"),
            "lo": ("lo", "b_crit_lo", "b_noise_lo"),
            "hi": ("hi", "b_crit_hi", "b_noise_hi"),
        }[k]:
            if name in f:
                return f[name]
        return None

    ok = [f for f in table if _finite(get(f, "value"))]
    if ok:
        t = np.array([float(f["target"]) for f in ok])
        b = np.array([float(get(f, "value")) for f in ok])
        lo = np.array([float(get(f, "lo")) if _finite(get(f, "lo")) else v for f, v in zip(ok, b)])
        hi = np.array([float(get(f, "hi")) if _finite(get(f, "hi")) else v for f, v in zip(ok, b)])
        yerr = np.vstack([np.clip(b - lo, 0, None), np.clip(hi - b, 0, None)])
        ax.errorbar(t, b, yerr=yerr, fmt="o-", capsize=3, label="S–E B_crit (bootstrap interval)")
        ax.invert_xaxis()  # training runs left to right as the target falls
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no target with a valid B_crit fit", ha="center", transform=ax.transAxes)
    ax.set_xlabel("target training loss")
    ax.set_ylabel("S–E B_crit")
    ax.set_title("S–E B_crit against the target loss")
    return ax


#: The old name (the figure once called the S–E B_crit "B_noise").
plot_b_noise_vs_target = plot_b_crit_vs_target
