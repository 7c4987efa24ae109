"""Figures of the branched protocol, drawn from its saved tables (``best_lr.csv``, ``peaks.csv``).

Pure: each function takes table rows and returns a matplotlib figure; the caller saves it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _label(r: Mapping[str, Any]) -> tuple[int, float, str]:
    """Sort key and legend of a row's horizon group: steps K first, then examples E."""
    e = _f(r.get("horizon_examples"))
    if math.isfinite(e):
        return (1, e, f"E = {e:g} examples")
    return (0, _f(r["horizon"]), f"K = {_f(r['horizon']):g}")


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def plot_best_lr_by_horizon(
    best: Sequence[Mapping[str, Any]],
    sweep: Sequence[Mapping[str, Any]] | None = None,
    estimate: Sequence[Mapping[str, Any]] | None = None,
) -> Any:
    """Best lr vs batch size, one panel per checkpoint, one curve per horizon K.

    Interior optima are filled markers with their bootstrap interval; a censored optimum (on an
    edge of the lrs tried: a bound, not an optimum) is an open triangle pointing the way the
    optimum may lie. ``sweep``: a from-scratch sweep's best lrs per checkpoint (rows with
    ``checkpoint, batch_size, lr, censored``), drawn in black beside the branches.
    ``estimate``: the one-step direct estimate per checkpoint (rows of ``validate estimate``'s
    ``per_batch`` with ``checkpoint``): the measured sign-step optimum with its interval (grey
    diamonds; open where unresolved) and Theorem 2's prediction (grey dotted), beside K = 1.
    """
    import matplotlib.pyplot as plt

    cks = sorted({(int(r["checkpoint_step"]), str(r["checkpoint"])) for r in best})
    hs = sorted({_label(r) for r in best})
    fig, axes = plt.subplots(1, len(cks), figsize=(4.6 * len(cks), 4.0), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (step, name) in zip(axes[0], cks):
        for k, h in enumerate(hs):
            rs = sorted(
                (r for r in best if str(r["checkpoint"]) == name and _label(r) == h),
                key=lambda r: int(r["batch_size"]),
            )
            c = colors[k % len(colors)]
            inner = [r for r in rs if not r.get("censored") and math.isfinite(_f(r["lr"]))]
            xb = [int(r["batch_size"]) for r in inner]
            yb = [_f(r["lr"]) for r in inner]
            ax.plot(xb, yb, "o-" if h[0] == 0 else "s:", color=c, label=h[2])
            for r in inner:
                lo, hi = _f(r["lo"]), _f(r["hi"])
                if math.isfinite(lo) and math.isfinite(hi):
                    ax.plot([int(r["batch_size"])] * 2, [lo, hi], "-", color=c, alpha=0.5)
            for r in rs:
                if r.get("censored") in ("low", "high") and math.isfinite(_f(r["lr"])):
                    m = "^" if r["censored"] == "high" else "v"
                    ax.plot(int(r["batch_size"]), _f(r["lr"]), m, mfc="none", color=c, ms=8)
        sw = sorted(
            (r for r in sweep or () if str(r["checkpoint"]) == name and math.isfinite(_f(r["lr"]))),
            key=lambda r: int(r["batch_size"]),
        )
        if sw:
            ax.plot(
                [int(r["batch_size"]) for r in sw],
                [_f(r["lr"]) for r in sw],
                "k--",
                lw=1,
                label="from scratch (sweep)",
            )
            for r in sw:
                if r.get("censored") in ("low", "high"):
                    m = "^" if r["censored"] == "high" else "v"
                    ax.plot(int(r["batch_size"]), _f(r["lr"]), m, mfc="none", color="k", ms=7)
        _draw_estimate(ax, [r for r in estimate or () if str(r["checkpoint"]) == name])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size B")
        ax.set_title(f"from {name} (step {step})", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("best lr (open triangle: censored at the grid edge)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _draw_estimate(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    rs = sorted(
        (r for r in rows if math.isfinite(_f(r.get("lr_meas_sign")))),
        key=lambda r: int(r["batch_size"]),
    )
    if not rs:
        return
    g = "0.45"
    ax.plot(
        [int(r["batch_size"]) for r in rs],
        [_f(r["lr_meas_sign"]) for r in rs],
        "-",
        color=g,
        lw=1,
        label="one-step sign estimate (measured)",
    )
    for r in rs:
        b, ok = int(r["batch_size"]), str(r.get("resolved_sign")) in ("True", "true", "1")
        ax.plot(b, _f(r["lr_meas_sign"]), "D", color=g, ms=5, mfc=g if ok else "none")
        lo, hi = _f(r.get("lr_meas_sign_lo")), _f(r.get("lr_meas_sign_hi"))
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([b, b], [lo, hi], "-", color=g, alpha=0.6)
    pred = [r for r in rs if _f(r.get("lr_pred_sign")) > 0]
    if pred:
        ax.plot(
            [int(r["batch_size"]) for r in pred],
            [_f(r["lr_pred_sign"]) for r in pred],
            ":",
            color=g,
            label="Theorem 2 (one sign step)",
        )


def plot_peak_by_checkpoint(peaks: Sequence[Mapping[str, Any]]) -> Any:
    """The measured peak batch size (largest interior lr*) per checkpoint, one line per K.

    x: the checkpoint's held-in loss (training runs right to left as it falls). A peak on the
    edge of the interior batch sizes is an open marker (censored).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, h in enumerate(sorted({_label(r) for r in peaks})):
        rs = sorted(
            (r for r in peaks if _label(r) == h and math.isfinite(_f(r["b_peak"]))),
            key=lambda r: -_f(r["checkpoint_loss"]),
        )
        c = colors[k % len(colors)]
        x = [_f(r["checkpoint_loss"]) for r in rs]
        ax.plot(x, [_f(r["b_peak"]) for r in rs], "-", color=c, label=h[2])
        for r in rs:
            cen = str(r.get("censored") or "") not in ("", "none")
            ax.plot(
                _f(r["checkpoint_loss"]), _f(r["b_peak"]), "o", color=c, mfc="none" if cen else c
            )
            lo, hi = _f(r["lo"]), _f(r["hi"])
            if math.isfinite(lo) and math.isfinite(hi):
                ax.plot([_f(r["checkpoint_loss"])] * 2, [lo, hi], "-", color=c, alpha=0.5)
    ax.set_yscale("log", base=2)
    ax.invert_xaxis()
    ax.set_xlabel("held-in loss at the checkpoint (training →)")
    ax.set_ylabel("peak batch size (open: censored)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
