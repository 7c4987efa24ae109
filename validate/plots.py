"""Figures of a sweep, drawn from its saved tables only (``points.csv``, ``fits.csv``,
``best_lr.csv``): they compute nothing beyond averaging the points they show.

* :func:`plot_heatmap`: mean further loss reduction over (batch size, lr), the paper's
  Figs. 2–4 layout (x = batch size, y = learning rate), the best lr per batch size marked, the
  three fitted laws drawn over it and B_noise as a vertical line.
* :func:`plot_se_fit`: the steps–examples fit, 1/S against 1/E with the fitted line (Eq. 22).
* :func:`plot_b_noise_vs_target`: B_noise (with its bootstrap interval) against the target loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# No matplotlib.use() here: choosing the backend is the application's business (importing a
# library must not switch a notebook's backend); headless machines fall back to Agg.
import matplotlib.pyplot as plt
import numpy as np

from theory.laws import LAWS, THEORY, law_lr

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
    bb = [
        (r["batch_size"], r["best_lr"])
        for r in best
        if float(r["target"]) == target and _finite(r["best_lr"])
    ]
    if bb:
        ax.plot(*zip(*bb), "w*", ms=11, mec="k", label="best lr per batch size", zorder=5)
    fit = next((f for f in fits if float(f["target"]) == target), None)
    if fit is not None and _finite(fit.get("b_noise")) and B.size:
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
                    law_lr(law, grid, float(eps), float(fit["b_noise"])),
                    color=c,
                    ls=ls,
                    lw=2,
                    label=label,
                )
        bn = float(fit["b_noise"])
        if e[0] <= bn <= e[-1]:
            ax.axvline(bn, color="w", ls="--", lw=1.5, label=f"B_noise = {bn:.3g}")
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


def plot_se_fit(fits: Sequence[Mapping[str, Any]], best: Sequence[Mapping[str, Any]], ax=None):
    """1/S against 1/E per target at each batch size's best lr, with 1/S = −B_noise/E + 1/S_min."""
    ax = _ax(ax)
    for k, f in enumerate(fits):
        t = float(f["target"])
        pts = [
            (r["E"], r["S"])
            for r in best
            if float(r["target"]) == t and _finite(r.get("S")) and _finite(r.get("E"))
        ]
        if not pts:
            continue
        E, S = (np.array(v, dtype=float) for v in zip(*pts))
        c = f"C{k % 10}"
        ax.plot(1 / E, 1 / S, "o", color=c, label=f"target {t:g}")
        if _finite(f.get("b_noise")) and _finite(f.get("s_min")):
            x = np.linspace(0, (1 / E).max() * 1.05, 50)
            ax.plot(
                x,
                -float(f["b_noise"]) * x + 1 / float(f["s_min"]),
                "-",
                color=c,
                label=f"fit: B_noise={float(f['b_noise']):.3g}",
            )
    ax.set_xlabel("1 / E (examples to target)")
    ax.set_ylabel("1 / S (steps to target)")
    ax.set_title("steps–examples trade-off (Eq. 22)")
    ax.legend(fontsize=7)
    return ax


def plot_b_noise_vs_target(fits: Sequence[Mapping[str, Any]], ax=None):
    """Fitted B_noise (bootstrap 95% interval as error bars) against the target loss."""
    ax = _ax(ax)
    ok = [f for f in fits if _finite(f.get("b_noise"))]
    if ok:
        t = np.array([float(f["target"]) for f in ok])
        b = np.array([float(f["b_noise"]) for f in ok])
        lo = np.array(
            [float(f["b_noise_lo"]) if _finite(f.get("b_noise_lo")) else v for f, v in zip(ok, b)]
        )
        hi = np.array(
            [float(f["b_noise_hi"]) if _finite(f.get("b_noise_hi")) else v for f, v in zip(ok, b)]
        )
        yerr = np.vstack([np.clip(b - lo, 0, None), np.clip(hi - b, 0, None)])
        ax.errorbar(t, b, yerr=yerr, fmt="o-", capsize=3, label="B_noise (95% bootstrap)")
        ax.invert_xaxis()  # training runs left to right as the target falls
    else:
        ax.text(0.5, 0.5, "no target with a valid B_noise fit", ha="center", transform=ax.transAxes)
    ax.set_xlabel("target training loss")
    ax.set_ylabel("B_noise")
    ax.set_title("B_noise against the target loss")
    return ax
