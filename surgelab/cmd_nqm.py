"""``surgelab simulate nqm``: the noisy quadratic model of Zhang et al. (2019), exact and MC.

For each optimiser and batch size: the best constant learning rate on a log grid and its exact
steps to the target loss (:mod:`simulate.nqm`); per optimiser the fit S = S_min (1 + B_crit/B)
in log space and Eq. 22; Monte Carlo of the same dynamics at each optimiser's largest batch size,
checked against the exact expected loss. Writes ``nqm.csv``, ``fits.csv``, ``curves.csv``,
``summary.json`` and three figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from surgelab.cli import Command
from surgelab.config import Config, ConfigError, opt
from surgelab.rundir import RunDir

_OPTIMIZERS = ("sgd", "precond", "momentum", "precond-momentum")


@dataclass(frozen=True)
class NqmConfig(Config):
    batch_sizes: tuple[int, ...] = opt(
        (4, 16, 64, 256, 1024, 4096, 16384, 65536),
        "batch sizes, ascending",
        lo=1,
        ascending=True,
        nonempty=True,
    )
    optimizers: tuple[str, ...] = opt(
        ("sgd", "precond", "momentum"),
        "optimisers (precond: H^-p g; momentum: heavy ball on SGD; precond-momentum: both)",
        choices=_OPTIMIZERS,
        nonempty=True,
    )
    k: int = opt(10_000, "number of coordinates K (curvatures h_i = 1/i)", lo=1)
    target: float = opt(
        0.01, "target loss (absolute) that defines steps to target", lo=0, lo_open=True
    )
    power: float = opt(0.5, "preconditioner exponent p of H^-p (0.5: the Adam-like case)", lo=0)
    momentum: float = opt(0.9, "heavy-ball momentum beta, in [0, 1)", lo=0)
    lr_min: float = opt(1e-5, "smallest learning rate of the log grid", lo=0, lo_open=True)
    lr_max: float = opt(10**0.5, "largest learning rate of the log grid", lo=0, lo_open=True)
    n_lrs: int = opt(100, "learning rates in the grid numpy.logspace(lr_min, lr_max)", lo=1)
    mc_seeds: int = opt(16, "Monte Carlo replicates per checked point", lo=2)
    mc_steps: int = opt(2000, "most steps simulated per Monte Carlo point", lo=1)
    seed: int = opt(0, "seed of the Monte Carlo", lo=0)

    def check(self) -> None:
        import numpy as np

        from simulate import nqm
        from surgelab.limits import check_memory

        if not self.momentum < 1.0:
            raise ConfigError(
                "momentum", f"must be < 1 (heavy ball diverges); got {self.momentum:g}"
            )
        if not self.lr_max >= self.lr_min:
            raise ConfigError("lr_max", f"must be >= --lr-min {self.lr_min:g}; got {self.lr_max:g}")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError("optimizers", "lists an optimiser twice")
        # the closed form holds ~16 float64 arrays of (learning rates × K)
        check_memory(16 * 8 * self.n_lrs * self.k, "k", "the exact recursion")
        check_memory(4 * 8 * self.mc_seeds * self.k, "mc_seeds", "the Monte Carlo")
        # the noise floor L_inf falls as 1/B: the smallest batch size is the hardest
        m = nqm.NQM(self.k)
        lrs = self.lrs()
        for name in self.optimizers:
            o = nqm.make_optimizer(name, self.power, self.momentum)
            b = float(self.batch_sizes[0])
            linf = nqm.stationary_loss(m, o, lrs, b)
            if not np.any(linf < self.target) and m.initial_loss > self.target:
                raise ConfigError(
                    "lr_min",
                    f"no learning rate in [{self.lr_min:g}, {self.lr_max:g}] reaches --target "
                    f"{self.target:g} with {name} at B={b:g} (smallest stationary loss "
                    f"{float(np.min(linf)):.3g}); lower --lr-min or raise --target",
                )

    def lrs(self):
        import numpy as np

        return np.logspace(math.log10(self.lr_min), math.log10(self.lr_max), self.n_lrs)


def compute(cfg: NqmConfig, on_progress=None) -> dict:
    """Everything the command writes: tables (lists of rows) and the summary."""
    import numpy as np

    from simulate import nqm
    from theory import efficiency, sgd

    m = nqm.NQM(cfg.k)
    lrs = cfg.lrs()
    B = np.asarray(cfg.batch_sizes, dtype=np.float64)
    rows, fit_rows, curve_rows = [], [], []
    per: dict[str, dict] = {}
    for name in cfg.optimizers:
        o = nqm.make_optimizer(name, cfg.power, cfg.momentum)
        pts = nqm.scan_batch_sizes(m, o, B, lrs, cfg.target, on_progress=on_progress)
        for p in pts:
            rows.append(
                {
                    "optimizer": name,
                    "batch_size": int(p.batch_size),
                    "lr": p.lr,
                    "steps": p.steps,
                    "method": "exact",
                    "lr_censored": p.censored,
                    "stationary_loss": p.stationary_loss,
                }
            )
        S = np.array([p.steps for p in pts], dtype=np.float64)
        info: dict = {
            "power": o.power,
            "momentum": o.beta,
            "steps": [p.steps for p in pts],
            "best_lr": [p.lr for p in pts],
            "lr_censored": [p.censored for p in pts if p.censored],
        }
        if B.size >= 2 and np.all(S > 0):
            f = nqm.fit_scaling(B, S)
            bn, smin22 = efficiency.fit_b_noise(S, B * S)
            info.update(
                s_min=f.s_min, b_crit=f.b_crit, rms_log=f.rms_log, s_min_eq22=smin22, b_crit_eq22=bn
            )
            fit_s = efficiency.steps_for_batch(B, f.s_min, f.b_crit)
            for b, sf in zip(B, np.atleast_1d(fit_s)):
                fit_rows.append(
                    {
                        "optimizer": name,
                        "batch_size": int(b),
                        "steps_fit": float(sf),
                        "steps_perfect": f.s_min * f.b_crit / b,
                        "b_crit": f.b_crit,
                        "s_min": f.s_min,
                        "lr_law": None,
                    }
                )
        per[name] = info
        # Monte Carlo at the largest batch size (fewest steps), at its best lr
        top = pts[-1]
        n_sim = int(min(top.steps + max(10, top.steps // 10), cfg.mc_steps))
        mc = nqm.monte_carlo(m, o, top.lr, top.batch_size, n_sim, cfg.mc_seeds, seed=cfg.seed)
        steps = np.unique(np.r_[0, np.geomspace(1, max(n_sim, 1), 60).astype(np.int64), n_sim])
        exact = nqm.expected_loss(m, o, top.lr, top.batch_size, steps)[0]
        z = np.abs(mc.mean[0, steps] - exact) / mc.se[0, steps]
        mc_steps = int(mc.first_below(cfg.target)[0])
        info["mc"] = {
            "batch_size": top.batch_size,
            "lr": top.lr,
            "steps_simulated": n_sim,
            "n_seeds": cfg.mc_seeds,
            "checked_steps": int(steps.size),
            "max_abs_z": float(np.max(z)),
            "within_5se": bool(np.all(z <= 5.0)),
            "steps_to_target": mc_steps if mc_steps >= 0 else None,
            "steps_to_target_exact": top.steps,
        }
        if mc_steps >= 0:
            rows.append(
                {
                    "optimizer": name,
                    "batch_size": int(top.batch_size),
                    "lr": top.lr,
                    "steps": mc_steps,
                    "method": "mc",
                    "lr_censored": top.censored,
                    "stationary_loss": top.stationary_loss,
                }
            )
        for j, t in enumerate(steps):
            base = {"optimizer": name, "batch_size": int(top.batch_size), "lr": top.lr}
            curve_rows.append(
                {**base, "step": int(t), "method": "exact", "loss": exact[j], "se": 0.0}
            )
            curve_rows.append(
                {**base, "step": int(t), "method": "mc", "loss": mc.mean[0, t], "se": mc.se[0, t]}
            )

    summary: dict = {"target": cfg.target, "k": cfg.k, "optimizers": per}
    if "sgd" in per:
        _sgd_law(cfg, m, per["sgd"], B, fit_rows, summary, sgd, efficiency, nqm)
    summary["headline"], summary["verdicts"] = _headline(cfg, summary)
    return {"nqm": rows, "fits": fit_rows, "curves": curve_rows, "summary": summary}


def _sgd_law(cfg, m, info, B, fit_rows, summary, sgd, efficiency, nqm) -> None:
    """McCandlish's law against SGD's best lrs; B_noise of the state where the target is hit."""
    import numpy as np

    o = nqm.make_optimizer("sgd")
    lr0, s0 = info["best_lr"][0], int(info["steps"][0])
    eps_state, bn_state = nqm.sgd_noise_scale(m, o, lr0, float(B[0]), s0)
    law: dict = {"b_noise_state": bn_state, "eps_max_state": eps_state, "state_batch_size": B[0]}
    if "b_crit" in info:
        bl = np.asarray(info["best_lr"])
        eps_max = efficiency.eps_max_sgd(B, bl, info["b_crit"])
        law.update(b_noise=info["b_crit"], eps_max=eps_max)
        curve = np.atleast_1d(sgd.optimal_lr(B, eps_max, info["b_crit"]))
        for r in fit_rows:
            if r["optimizer"] == "sgd":
                r["lr_law"] = float(curve[list(B).index(r["batch_size"])])
    small = B <= bn_state / 8
    if small.sum() >= 2:
        ratio = np.asarray(info["best_lr"])[small] / B[small]
        law["small_b_lr_over_b"] = ratio.tolist()
        law["small_b_spread"] = float(ratio.max() / ratio.min())
        law["lr_grid_step"] = float((cfg.lr_max / cfg.lr_min) ** (1 / max(cfg.n_lrs - 1, 1)))
    summary["sgd_law"] = law


def _headline(cfg: NqmConfig, summary: dict) -> tuple[list[dict], list[str]]:
    per = summary["optimizers"]
    head, verdicts = [], []
    for name, info in per.items():
        if "b_crit" in info:
            head.append(
                {
                    "key": f"optimizers.{name}.b_crit",
                    "label": f"NQM {name} B_crit (fit S = S_min(1 + B_crit/B))",
                    "value": info["b_crit"],
                }
            )
    base = per.get("sgd", {}).get("b_crit")
    if base is not None:
        for name, info in per.items():
            if name == "sgd" or "b_crit" not in info:
                continue
            grows = info["b_crit"] > base
            verdicts.append(
                f"{name} B_crit = {info['b_crit']:.4g} vs SGD {base:.4g} "
                f"(x{info['b_crit'] / base:.3g}; Eq. 22: {info['b_crit_eq22']:.4g} vs "
                f"{per['sgd']['b_crit_eq22']:.4g}): perfect scaling extends to "
                f"{'larger' if grows else 'no larger'} batch sizes — Zhang et al.'s headline "
                f"{'holds' if grows else 'FAILS'}"
            )
            if info["lr_censored"]:
                verdicts.append(
                    f"{name}: best lr at the grid edge at {len(info['lr_censored'])} batch "
                    f"size(s) ({', '.join(sorted(set(info['lr_censored'])))}); widen the lr grid "
                    f"for an uncensored B_crit"
                )
    law = summary.get("sgd_law")
    if law is not None:
        verdicts.append(
            f"SGD B_crit {base if base is not None else math.nan:.4g} (fit) vs McCandlish's "
            f"B_noise = tr(HΣ)/E[GᵀHG] = {law['b_noise_state']:.4g} at the state where SGD "
            f"reaches the target at B = {law['state_batch_size']:g}"
        )
        if "small_b_spread" in law:
            ok = law["small_b_spread"] <= law["lr_grid_step"]
            verdicts.append(
                f"SGD best lr / B constant to x{law['small_b_spread']:.3f} for B <= B_noise/8 "
                f"(one grid step x{law['lr_grid_step']:.3f}): McCandlish's small-B law "
                f"ε_opt ∝ B {'holds' if ok else 'does not hold'}"
            )
    for name, info in per.items():
        mc = info["mc"]
        verdicts.append(
            f"{name} Monte Carlo ({mc['n_seeds']} seeds, B = {mc['batch_size']:g}) vs exact "
            f"E[L]: max |z| = {mc['max_abs_z']:.2f} over {mc['checked_steps']} steps "
            f"({'within' if mc['within_5se'] else 'OUTSIDE'} 5 SE); steps to target "
            f"{mc['steps_to_target'] if mc['steps_to_target'] is not None else 'not reached'} "
            f"(MC) vs {mc['steps_to_target_exact']} (exact)"
        )
    return head, verdicts


def run_nqm(cfg: NqmConfig, run: RunDir | None) -> int:
    from simulate import nqm_plots
    from surgelab.progress import bar, say

    with bar(len(cfg.optimizers) * len(cfg.batch_sizes), "optimiser x batch size") as b:
        out = compute(cfg, on_progress=b.update)
    summary = out["summary"]
    for v in summary["verdicts"]:
        print(v)
    if run is None:
        return 0
    run.write_table("nqm.csv", out["nqm"])
    run.write_table("fits.csv", out["fits"])
    run.write_table("curves.csv", out["curves"])
    table, fits, curves = run.read_table("nqm.csv"), out["fits"], run.read_table("curves.csv")
    run.save_figure(nqm_plots.plot_steps(table, fits), "steps.png")
    run.save_figure(nqm_plots.plot_lr(table, fits), "lr.png")
    run.save_figure(nqm_plots.plot_curves(curves, cfg.target), "curves.png")
    run.finish(summary)
    say(f"wrote {run.path}")
    mc_ok = all(i["mc"]["within_5se"] for i in summary["optimizers"].values())
    return 0 if mc_ok else 1


NQM = Command(
    "nqm",
    "noisy quadratic model (Zhang et al. 2019): steps to target vs batch size, exact and MC",
    NqmConfig,
    run_nqm,
    description=__doc__ or "",
)
