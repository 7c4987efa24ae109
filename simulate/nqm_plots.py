"""Figures of the noisy quadratic model, drawn from its saved tables only (they compute nothing).

Tables are lists of row dicts as ``surgelab simulate nqm`` writes them: ``nqm.csv`` (best
steps per optimiser and batch size), ``fits.csv`` (the fitted and perfect-scaling steps and the
SGD law's lr per batch size), ``curves.csv`` (expected loss vs step, exact and Monte Carlo).
Saving is the app layer's (``RunDir.save_figure``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ax(ax):
    if ax is None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.4, 4.6))
    return ax


def _rows(table: Sequence[dict], **match) -> list[dict]:
    return [r for r in table if all(r.get(k) == v for k, v in match.items())]


def _col(rows: Sequence[dict], key: str) -> np.ndarray:
    return np.array(
        [np.nan if r.get(key) in (None, "") else float(r[key]) for r in rows], dtype=np.float64
    )


def _optimizers(table: Sequence[dict]) -> list[str]:
    seen: list[str] = []
    for r in table:
        if r["optimizer"] not in seen:
            seen.append(r["optimizer"])
    return seen


def plot_steps(table: Sequence[dict], fits: Sequence[dict], ax=None):
    """Steps to target vs batch size (log-log), one colour per optimiser.

    Exact points (line + dots), Monte Carlo points (open squares), the fit
    S_min (1 + B_crit/B) (thin), the perfect-scaling line S_min B_crit / B (dashed) and B_crit
    (dotted vertical). ``table``: ``nqm.csv``; ``fits``: ``fits.csv``.
    """
    ax = _ax(ax)
    for i, name in enumerate(_optimizers(table)):
        col = f"C{i}"
        ex = _rows(table, optimizer=name, method="exact")
        ax.plot(_col(ex, "batch_size"), _col(ex, "steps"), "o-", color=col, ms=4, label=name)
        mc = _rows(table, optimizer=name, method="mc")
        if mc:
            ax.plot(_col(mc, "batch_size"), _col(mc, "steps"), "s", mfc="none", color=col, ms=8)
        f = _rows(fits, optimizer=name)
        if f:
            b = _col(f, "batch_size")
            ax.plot(b, _col(f, "steps_fit"), "-", color=col, lw=0.8, alpha=0.6)
            ax.plot(b, _col(f, "steps_perfect"), "--", color=col, lw=0.8, alpha=0.6)
            ax.axvline(float(f[0]["b_crit"]), color=col, ls=":", lw=1)
    ax.plot([], [], "s", mfc="none", color="gray", label="Monte Carlo")
    ax.plot([], [], "--", color="gray", label="perfect scaling S_min B_crit/B")
    ax.plot([], [], ":", color="gray", label="B_crit (fit)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("steps to target")
    ax.set_title("NQM (Zhang et al. 2019): steps to target at the best lr")
    ax.legend(fontsize=7)
    return ax


def plot_lr(table: Sequence[dict], fits: Sequence[dict], ax=None):
    """Best learning rate vs batch size (log-log) per optimiser, the SGD law over it.

    ``table``: ``nqm.csv`` (exact rows); ``fits``: ``fits.csv`` (column ``lr_law`` on the SGD
    rows: ε_max / (1 + B_noise/B)).
    """
    ax = _ax(ax)
    for i, name in enumerate(_optimizers(table)):
        ex = _rows(table, optimizer=name, method="exact")
        ax.plot(_col(ex, "batch_size"), _col(ex, "lr"), "o-", color=f"C{i}", ms=4, label=name)
        f = [r for r in _rows(fits, optimizer=name) if r.get("lr_law") not in (None, "")]
        if f:
            ax.plot(
                _col(f, "batch_size"),
                _col(f, "lr_law"),
                "--",
                color=f"C{i}",
                label=f"{name}: SGD law ε_max/(1 + B_noise/B)",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("best constant learning rate")
    ax.legend(fontsize=7)
    return ax


def plot_curves(curves: Sequence[dict], target: float | None = None, ax=None):
    """Expected loss vs step: exact (line) and Monte Carlo mean ± 2 SE (band), per point.

    ``curves``: ``curves.csv``.
    """
    ax = _ax(ax)
    keys: list[tuple] = []
    for r in curves:
        k = (r["optimizer"], r["batch_size"], r["lr"])
        if k not in keys:
            keys.append(k)
    for i, (name, b, lr) in enumerate(keys):
        col = f"C{i}"
        ex = _rows(curves, optimizer=name, batch_size=b, lr=lr, method="exact")
        ax.plot(_col(ex, "step"), _col(ex, "loss"), "-", color=col, label=f"{name} B={b:g}")
        mc = _rows(curves, optimizer=name, batch_size=b, lr=lr, method="mc")
        if mc:
            s, m, se = _col(mc, "step"), _col(mc, "loss"), _col(mc, "se")
            ax.fill_between(s, m - 2 * se, m + 2 * se, color=col, alpha=0.3, lw=0)
            ax.plot(s, m, ".", color=col, ms=3)
    if target is not None:
        ax.axhline(target, color="k", lw=0.8, ls=":", label="target")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("E[L(x_t)]")
    ax.set_title("exact (lines) vs Monte Carlo mean ± 2 SE (dots, bands)")
    ax.legend(fontsize=7)
    return ax
