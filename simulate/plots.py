"""Figures drawn from saved tables only (``plot_x(table, ax=None)``; they compute nothing).

Tables are lists of row dicts (as the app layer writes them to CSV and reads them back);
``None`` cells (not reached, undefined) are skipped. Saving is the app layer's
(``RunDir.save_figure``).
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


def _col(table: Sequence[dict], key: str) -> np.ndarray:
    return np.array(
        [np.nan if r.get(key) is None or r.get(key) == "" else float(r[key]) for r in table],
        dtype=np.float64,
    )


def plot_surge(table: Sequence[dict], ax=None):
    """Fig. 1 style: optimal lr vs batch size (log-log) — MC points with error bars (sign and
    SGD), Theorem 2 exact, Theorem 3 curve, Theorem 4 asymptote, SGD law; extra references
    (finite-population, correlated-exact) when the table has them. Table: ``surge.csv``."""
    ax = _ax(ax)
    B = _col(table, "B")
    ax.errorbar(
        B,
        _col(table, "lr_mc"),
        yerr=_col(table, "lr_mc_se"),
        fmt="o",
        ms=4,
        color="C0",
        label="sign (Adam β=0): Monte Carlo",
        zorder=3,
    )
    ax.plot(B, _col(table, "lr_exact"), "-", color="C0", label="Theorem 2 (exact, indep.)")
    ax.plot(B, _col(table, "lr_surge"), "--", color="C1", label="Theorem 3 (surge curve)")
    ax.plot(B, _col(table, "lr_large_batch"), ":", color="C2", label="Theorem 4 (B → ∞)")
    if "lr_exact_fpc" in table[0]:
        ax.plot(
            B,
            _col(table, "lr_exact_fpc"),
            "-.",
            color="C4",
            label="Theorem 2 with finite-population B",
        )
    if "lr_exact_correlated" in table[0]:
        ax.plot(
            B,
            _col(table, "lr_exact_correlated"),
            "-.",
            color="C4",
            label="exact, correlated Gaussian",
        )
    ax.errorbar(
        B,
        _col(table, "lr_sgd_mc"),
        yerr=_col(table, "lr_sgd_mc_se"),
        fmt="s",
        ms=3,
        color="C3",
        alpha=0.7,
        label="SGD: Monte Carlo",
    )
    ax.plot(B, _col(table, "lr_sgd"), "-", color="C3", alpha=0.7, label="SGD law (McCandlish)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("optimal learning rate ε_opt")
    ax.legend(fontsize=7)
    return ax


def plot_heatmap(
    cells: Sequence[dict],
    best: Sequence[dict],
    target_index: int = 0,
    value: str = "reduction_mean",
    ax=None,
):
    """Figs. 2-4 layout: ``value`` over (B, lr) (log axes), best lr per B marked, and the fitted
    Adam surge curve and SGD α = 1, ½ curves over it. Tables: ``cells.csv``, ``best.csv``."""
    ax = _ax(ax)
    c = [r for r in cells if int(r["target_index"]) == target_index]
    b = [r for r in best if int(r["target_index"]) == target_index]
    Bu = np.unique(_col(c, "B"))
    lu = np.unique(_col(c, "lr"))
    Z = np.full((lu.size, Bu.size), np.nan)
    for r, v in zip(c, _col(c, value)):
        Z[np.searchsorted(lu, float(r["lr"])), np.searchsorted(Bu, float(r["B"]))] = v

    def edges(x):  # cell edges halfway between grid points in log space
        lx = np.log(x)
        half = 0.5 * np.diff(lx)
        return np.exp(np.r_[lx[0] - half[:1], 0.5 * (lx[1:] + lx[:-1]), lx[-1] + half[-1:]])

    m = ax.pcolormesh(edges(Bu), edges(lu), Z, shading="flat", cmap="viridis")
    ax.figure.colorbar(m, ax=ax, label=value.replace("_", " "))
    Bb = _col(b, "B")
    key = "lr_best_reduction" if value.startswith("reduction") else "lr_best_steps"
    ax.plot(Bb, _col(b, key), "o", color="red", ms=6, mfc="none", mew=1.5, label="best lr per B")
    ax.plot(Bb, _col(b, "lr_fit_adam"), "-", color="white", lw=2, label="Adam surge fit (Eq. 13)")
    ax.plot(Bb, _col(b, "lr_fit_sgd1"), "--", color="orange", label="SGD form α=1")
    ax.plot(Bb, _col(b, "lr_fit_sgd05"), ":", color="orange", label="SGD form α=½")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_se_fit(best: Sequence[dict], fits: Sequence[dict], ax=None):
    """Eq. 22: 1/S against 1/E at each B's best lr, one colour per target, with the fitted
    lines 1/S = −B_noise/E + 1/S_min. Tables: ``best.csv``, ``fits.csv``."""
    ax = _ax(ax)
    for f in fits:
        k = int(f["target_index"])
        rows = [r for r in best if int(r["target_index"]) == k]
        S, E = _col(rows, "steps_best"), _col(rows, "examples_best")
        ok = np.isfinite(S) & np.isfinite(E)
        if not ok.any():
            continue
        x = 1.0 / E[ok]
        ax.plot(x, 1.0 / S[ok], "o", color=f"C{k}", label=f"target {f['target_frac']:.3g}·L0")
        bn, sm = f.get("b_noise_fit"), f.get("s_min_fit")
        if bn is not None and sm not in (None, "inf") and np.isfinite(float(bn)):
            xx = np.linspace(0, x.max() * 1.05, 20)
            ax.plot(
                xx,
                -float(bn) * xx + 1.0 / float(sm),
                "-",
                color=f"C{k}",
                alpha=0.7,
                label=f"fit B_noise={float(bn):.3g}",
            )
    ax.ticklabel_format(style="sci", axis="both", scilimits=(-2, 2))
    ax.set_xlabel("1 / E (examples)")
    ax.set_ylabel("1 / S (steps)")
    ax.legend(fontsize=7)
    return ax


def plot_bnoise_targets(fits: Sequence[dict], ax=None):
    """B_noise vs target loss: the S–E fit and the one-step noise scales along the trajectory
    (the paper's second conclusion: it grows as the loss falls). Table: ``fits.csv``."""
    ax = _ax(ax)
    t = _col(fits, "target_frac")
    ax.plot(t, _col(fits, "b_noise_fit"), "o-", label="S–E fit (Eq. 22)")
    if "b_noise_sign_1step" in fits[0]:
        ax.plot(t, _col(fits, "b_noise_sign_1step"), "s--", label="one-step, Theorem 3")
        ax.plot(t, _col(fits, "b_noise_sgd_1step"), "^:", label="one-step, SGD tr(HΣ)/GᵀHG")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("target loss / L0  (training proceeds →)")
    ax.set_ylabel("B_noise")
    ax.legend(fontsize=7)
    return ax


def plot_momentum(table: Sequence[dict], ax=None):
    """Best lr vs B per horizon (K steps from Adam's steady state; ``whole``: steps to target
    over a whole run), one colour per horizon and one line style per (β1, β2); Su's one-step
    curve (column ``su_lr``) in black and his mean-field peak B* (``su_fall_threshold``) dotted.
    Censored optima (at an lr-grid edge) are open markers. Table: ``momentum.csv``."""
    ax = _ax(ax)
    keys = sorted({(float(r["beta1"]), float(r["beta2"])) for r in table})
    hs = list(dict.fromkeys(str(r["horizon"]) for r in table))
    styles = ["-", "--", "-.", ":"]
    for n, (b1, b2) in enumerate(keys):
        rows = [r for r in table if float(r["beta1"]) == b1 and float(r["beta2"]) == b2]
        ls = styles[n % len(styles)]
        for m, h in enumerate(hs):
            hr = [r for r in rows if str(r["horizon"]) == h]
            B, y = _col(hr, "B"), _col(hr, "lr_best")
            cens = np.array([bool(r.get("censored")) for r in hr])
            lab = "whole run" if h == "whole" else f"K = {h}"
            ax.plot(B, y, ls, marker="o", ms=4, color=f"C{m}", label=f"{lab} (β1={b1:g})")
            if cens.any():
                ax.plot(B[cens], y[cens], "o", mfc="white", color=f"C{m}", ms=7)
        su_rows = [r for r in rows if str(r["horizon"]) == hs[0]]
        ax.plot(
            _col(su_rows, "B"),
            _col(su_rows, "su_lr"),
            ls,
            color="k",
            lw=2,
            alpha=0.6,
            label=f"Su one-step (β1={b1:g})",
        )
        thr = _col(su_rows, "su_fall_threshold")
        if np.isfinite(thr[0]):
            ax.axvline(thr[0], color="k", ls=":", lw=0.8, label=f"Su B* = {thr[0]:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("best learning rate")
    ax.legend(fontsize=6, ncol=2)
    return ax


def plot_assumptions(table: Sequence[dict], ax=None):
    """Monte Carlo ε_opt relative to Theorem 2 (independent Gaussian) for each broken-assumption
    case, against B, with 1-SE bars. Table: ``assumptions.csv``."""
    ax = _ax(ax)
    cases = list(dict.fromkeys(str(r["case"]) for r in table))
    for n, cname in enumerate(cases):
        rows = [r for r in table if str(r["case"]) == cname]
        ref = _col(rows, "lr_exact")
        ax.errorbar(
            _col(rows, "B"),
            _col(rows, "lr_mc") / ref,
            yerr=_col(rows, "lr_mc_se") / ref,
            fmt="o-",
            color=f"C{n}",
            ms=3,
            capsize=2,
            label=cname,
        )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("ε_opt (Monte Carlo) / Theorem 2")
    ax.legend(fontsize=7)
    return ax
