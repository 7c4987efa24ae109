"""Figures of ``surgelab validate estimate``, drawn from its saved tables only (no computation
beyond picking columns): predicted vs measured best learning rate per batch size, the
histogram of the regime bound π σ_i²/(2 μ_i²), and the noise scales against the loss.

Each function is ``plot_x(rows, ax=None) -> Axes`` with ``rows`` a table as read by
:func:`surgelab.rundir.read_table`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Rows = Sequence[Mapping[str, Any]]


def _ax(ax: Any) -> Any:
    if ax is None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.5, 4))
    return ax


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def plot_lr_vs_batch(
    rows: Rows, update: str = "sign", step: int | None = None, ax: Any = None
) -> Any:
    """Best learning rate vs batch size at one checkpoint: theory (lines) and measured (points).

    ``update="sign"``: Theorem 2 (``lr_pred_sign``), Theorem 3's surge curve (``lr_thm3``), the
    measured quadratic-model optimum E[Gᵀv]/E[vᵀHv] (``lr_quad_sign``) and the measured
    true-loss optimum with its bootstrap interval (``lr_meas_sign``). ``update="sgd"``:
    McCandlish with diagonal Σ (``lr_pred_sgd``) and full tr(HΣ) (``lr_pred_sgd_full``).
    """
    ax = _ax(ax)
    if step is None and rows:
        step = rows[0].get("step")
    sel = sorted((r for r in rows if r.get("step") == step), key=lambda r: _num(r["batch_size"]))
    b = [_num(r["batch_size"]) for r in sel]
    lines = (
        (
            ("lr_pred_sign", "Theorem 2 (independent coords)", "-"),
            ("lr_thm3", "Theorem 3 surge curve", "--"),
        )
        if update == "sign"
        else (
            ("lr_pred_sgd", "McCandlish, diagonal Σ", "-"),
            ("lr_pred_sgd_full", "McCandlish, full tr(HΣ)", "--"),
        )
    )
    for key, label, ls in lines:
        y = [_num(r.get(key)) for r in sel]
        if any(math.isfinite(v) for v in y):
            ax.plot(b, y, ls, label=label)
    yq = [_num(r.get(f"lr_quad_{update}")) for r in sel]
    if any(math.isfinite(v) and v > 0 for v in yq):
        ax.plot(
            b,
            [v if v > 0 else math.nan for v in yq],
            "s",
            mfc="none",
            label="measured E[Gᵀv]/E[vᵀHv]",
        )
    ym = [_num(r.get(f"lr_meas_{update}")) for r in sel]
    if any(math.isfinite(v) for v in ym):
        lo = [m - _num(r.get(f"lr_meas_{update}_lo")) for m, r in zip(ym, sel)]
        hi = [_num(r.get(f"lr_meas_{update}_hi")) - m for m, r in zip(ym, sel)]
        ax.errorbar(b, ym, yerr=[lo, hi], fmt="o", capsize=3, label="measured (true loss)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("best learning rate")
    ax.set_title(f"{'sign (Adam β=0)' if update == 'sign' else 'SGD'} step, checkpoint {step}")
    ax.legend(fontsize=7)
    return ax


def plot_regime_histogram(rows: Rows, ax: Any = None) -> Any:
    """Histogram (log bins) of π σ_i²/(2 μ_i²), one outline per checkpoint."""
    ax = _ax(ax)
    steps = sorted({r.get("step") for r in rows}, key=lambda s: _num(s))
    for s in steps:
        sel = [r for r in rows if r.get("step") == s]
        edges = [_num(r["bin_lo"]) for r in sel] + [_num(sel[-1]["bin_hi"])]
        counts = [_num(r["count"]) for r in sel]
        ax.stairs(counts, edges, label=f"step {s}")
    ax.set_xscale("log")
    ax.set_xlabel("π σ_i² / (2 μ_i²)  (Theorem 3 needs B below, Theorem 4 above)")
    ax.set_ylabel("parameters")
    ax.legend(fontsize=7)
    return ax


def plot_b_noise_vs_loss(rows: Rows, ax: Any = None) -> Any:
    """Noise scales against the checkpoint's loss (the paper: B_noise grows as the loss falls)."""
    ax = _ax(ax)
    sel = sorted(rows, key=lambda r: -_num(r["loss"]))
    loss = [_num(r["loss"]) for r in sel]
    for key, label, mk in (
        ("b_noise_thm3", "B_noise Theorem 3 (sign)", "o-"),
        ("b_noise_sgd_full", "B_noise SGD, full tr(HΣ)", "s-"),
        ("b_noise_sgd", "B_noise SGD, diagonal Σ", "^--"),
        ("b_simple", "B_simple", "d:"),
    ):
        y = [_num(r.get(key)) for r in sel]
        if any(math.isfinite(v) and v > 0 for v in y):
            ax.plot(loss, y, mk, label=label)
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("loss at checkpoint (training proceeds →)")
    ax.set_ylabel("batch size")
    ax.legend(fontsize=7)
    return ax
