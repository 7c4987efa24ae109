"""Direct estimation of the learning-rate laws at a checkpoint of a real network (orchestration).

At fixed parameters θ this measures every quantity the theorems need, without any d×d matrix,
and compares the laws with a direct one-step measurement:

1. per-example gradient statistics μ, σ² (:mod:`validate.pergrad`);
2. Hessian quantities by Hessian-vector products and Hutchinson probes (:mod:`validate.hessian`);
3. the laws' predictions from these sufficient statistics (:mod:`validate.predict`, built on
   :mod:`theory.sign` / :mod:`theory.sgd`);
4. for each batch size, the true loss change of one sign step and one SGD step over a
   learning-rate grid, the measured best learning rate with a bootstrap interval, and
   Lemma 1 with measured moments (:mod:`validate.onestep`).

:func:`train_checkpoints` trains the workload with Adam and yields the checkpoints.

Conventions (stated, because they change numbers):

* All measurements use the model in ``eval()`` mode (dropout off, batch norm on its running
  statistics), so that per-example gradients are defined and the loss being differentiated
  is the one whose change is measured. Training augmentation (``batch_transform``) is not
  applied: the statistics are those of the un-augmented loss.
* One population (``population="eval"``, the default): the first ``n_eval`` examples of the
  fixed evaluation set, whose mean loss is the "full loss" of the protocol. μ, σ come from
  ``min(n_examples, n_eval)`` of them (all: μ̂ is the population gradient G exactly), σ² is
  the population's (divisor N), the Hessian, G and the measured loss changes are the
  population's, and mini-batches are drawn i.i.d. (with replacement) from it — so the
  theorems' noise model and the measurement describe the same distribution.
  ``population="train"`` is the earlier, inconsistent setup (μ, σ and the batches from the
  training set; H, G and the loss changes from the eval set).
* A noisy μ̂ biases the plug-in sums; |G|² and GᵀHG are debiased by their known excess
  (Σσ²/n, tr(HΣ)/n), Theorem 2's numerator by :func:`validate.predict.sign_numerator`; the
  other sign-law quantities are plug-in.
* Per B, mini-batches are drawn in rounds of ``n_batches`` until the measured optimum's
  interval has log-width ≤ ``max_log_width`` or ``max_batches`` are used
  (:func:`validate.onestep.measure_adaptive`); a B left wider is "unresolved" and kept out
  of the summary ratios.
* Shuffled-coordinate control (sign step): the same sign vectors with every coordinate
  permuted independently across draws (:func:`validate.onestep.shuffled_control`). Per B,
  pred/meas = (Theorem 2 / shuffled: Gaussian marginals) × (shuffled / measured quadratic
  model: correlation between coordinates) × (quadratic model / true loss).

Reference: Li et al., "Surge Phenomenon in Optimal Learning Rate and Batch Size Scaling",
NeurIPS 2024, Eqs. 8-17; McCandlish et al. 2018, Eqs. 2.6-2.9; Hutchinson (1990).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from validate.flatparams import eval_mode, flat_params
from validate.hessian import full_gradient, hessian_stats, make_hvp
from validate.onestep import (
    eval_losses,
    lr_grid,
    measure_adaptive,
    one_step_rows,
    quad_model_lr,
    quad_model_moments,
    shuffled_control,
    step_gains,
)
from validate.pergrad import (
    GradStats,
    group_grads,
    histogram_rows,
    minibatch_grads,
    per_example_grad_stats,
    regime_bounds,
    regime_floor,
)
from validate.predict import laws

__all__ = [
    "EstimateSettings",
    "estimate_at_checkpoint",
    "n_stages",
    "per_example_grad_stats",
    "train_checkpoints",
]

#: wide grids for a step whose optimum neither theory nor Lemma 1 could place
FALLBACK_GRID = {"sign": (1e-6, 1e-1), "sgd": (1e-5, 10.0)}


@dataclass(frozen=True)
class EstimateSettings:
    """What one checkpoint's estimate measures. No defaults here: the command's config
    (``surgelab validate estimate``) is the only source of them.

    Attributes:
      n_examples: training examples for μ, σ² (per-example gradients); the resolution limit.
      n_eval: evaluation examples for the Hessian and the measured loss changes.
      probes: Rademacher probes for Hutchinson's tr(H), diag(H); SE ∝ 1/√probes.
      batch_sizes: batch sizes B at which the laws are predicted and measured (ascending).
      n_batches: independent mini-batches per B for the one-step measurement (≥ 2).
      n_lrs: learning-rate grid points per B (auto grid: geometric around the prediction).
      lr_span: auto grid covers prediction ÷ √span … × √span (geometric).
      lrs: explicit sign-step grid (same for every B); overrides the auto grid.
      lrs_sgd: explicit SGD-step grid; overrides the auto grid.
      n_boot: bootstrap resamples of mini-batches for the measured-lr interval (≥ 10).
      ci: two-sided coverage of that interval.
      hist_bins: bins (log-spaced) of the regime-bound histogram.
      chunk_floats: memory budget (floats) of one vmap chunk of gradients: bounds memory.
      seed: all randomness (example choice, probes, mini-batches, bootstrap).
      measure: run the one-step measurement (False: predictions only).
      max_extend: times an auto grid is extended when the measured optimum is at its edge.
      noise_samples: per-example gradients whose uᵀHu give the full tr(HΣ) (one HVP each).
      population: "eval" (one population: the first n_eval eval examples) or "train".
      max_batches: mini-batches per B at most (drawn in rounds of n_batches).
      max_log_width: a B's measured optimum is resolved when ln(hi/lo) ≤ this.
    """

    n_examples: int
    n_eval: int
    probes: int
    batch_sizes: tuple[int, ...]
    n_batches: int
    n_lrs: int
    lr_span: float
    lrs: tuple[float, ...] | None
    lrs_sgd: tuple[float, ...] | None
    n_boot: int
    ci: float
    hist_bins: int
    chunk_floats: int
    seed: int
    measure: bool
    max_extend: int
    noise_samples: int
    population: str
    max_batches: int
    max_log_width: float

    def __post_init__(self) -> None:
        for name in ("n_eval", "n_lrs", "hist_bins", "chunk_floats"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {name}={v!r}")
        for name, least in (
            ("n_examples", 2),
            ("probes", 2),
            ("n_batches", 2),
            ("n_boot", 10),
            ("noise_samples", 2),
        ):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < least:
                raise ValueError(f"{name} must be an integer >= {least}; got {name}={v!r}")
        if self.max_extend < 0 or self.seed < 0:
            raise ValueError(
                f"max_extend and seed must be >= 0; got {self.max_extend}, {self.seed}"
            )
        b = self.batch_sizes
        if not b or any(int(x) != x or x < 1 for x in b):
            raise ValueError(f"batch sizes must be positive integers; got {b}")
        if any(y <= x for x, y in itertools.pairwise(b)):
            raise ValueError(f"batch sizes must be strictly ascending; got {b}")
        if self.population not in ("eval", "train"):
            raise ValueError(f"population must be 'eval' or 'train'; got {self.population!r}")
        if not self.max_log_width > 0:
            raise ValueError(f"max_log_width must be > 0; got {self.max_log_width}")
        if not isinstance(self.max_batches, (int, np.integer)) or self.max_batches < 2:
            raise ValueError(f"max_batches must be an integer >= 2; got {self.max_batches!r}")
        if not self.lr_span > 1:
            raise ValueError(f"lr_span must be > 1; got {self.lr_span}")
        if not 0 < self.ci < 1:
            raise ValueError(f"ci must lie in (0, 1); got {self.ci}")
        for name in ("lrs", "lrs_sgd"):
            g = getattr(self, name)
            if g is not None and (len(g) < 3 or any(not (x > 0) for x in g)):
                raise ValueError(f"{name} must hold >= 3 positive learning rates; got {g}")


def n_stages(s: EstimateSettings) -> int:
    """Progress messages :func:`estimate_at_checkpoint` sends (one at the start of each stage)."""
    return 3 + (2 * len(s.batch_sizes) if s.measure else 0)


def _finite_or_nan(x: Any) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else math.nan


def _geomean(values: Sequence[float]) -> float:
    r = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(r) & (r > 0)
    return float(np.exp(np.mean(np.log(r[ok])))) if ok.any() else math.nan


def estimate_at_checkpoint(
    model: torch.nn.Module,
    workload: Any,
    data: Any,
    settings: EstimateSettings,
    step: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Estimate every law's parameters at the model's current weights and measure one step.

    Args:
      model: the network at the checkpoint (left unchanged; mode restored).
      workload: a :class:`validate.workload.Workload` (its ``loss`` is used).
      data: a :class:`validate.workload.Data` on the model's device.
      settings: what to measure.
      step: training step of this checkpoint, copied into the rows.
      progress: ``progress(message)`` at the start of each of :func:`n_stages` stages.

    Returns:
      ``{"summary": {...scalars}, "per_batch": [rows], "one_step": [rows],
      "histogram": [rows], "bounds": ndarray}``: the summary holds ``loss``,
      ``b_noise_thm3``, ``eps_max_thm3``, ``b_simple``, ``b_noise_sgd``, ``lr_thm4``,
      ``regime_bound_median``, ``regime_bound_floor``, ``notes``…; each per-batch row holds
      ``batch_size``, ``lr_pred_sign`` (Theorem 2), ``lr_thm3``, ``lr_meas_sign`` with
      ``lr_meas_sign_lo/hi``, ``lr_pred_sgd``, ``lr_meas_sgd`` with its interval, and the ratios.
    """
    cfg = settings
    say = progress or (lambda _m: None)
    loss = workload.loss
    gen = torch.Generator().manual_seed(cfg.seed)
    n_eval = min(cfg.n_eval, int(data.x_eval.shape[0]))
    xe, ye = data.x_eval[:n_eval], data.y_eval[:n_eval]
    one_pop = cfg.population == "eval"
    xpop, ypop = (xe, ye) if one_pop else (data.x_train, data.y_train)
    n_pop = int(xpop.shape[0])
    if cfg.measure and not one_pop and max(cfg.batch_sizes) > n_pop:
        raise ValueError(
            f"batch sizes {list(cfg.batch_sizes)} exceed the {n_pop} training examples"
        )
    n_ex = min(cfg.n_examples, n_pop)
    if n_ex < 2:
        raise ValueError(f"need >= 2 population examples for a variance; got {n_ex}")
    pick = torch.randperm(n_pop, generator=gen)[:n_ex].to(xpop.device)
    xs, ys = xpop[pick], ypop[pick]
    # Var(μ̂_i)/σ_i²: n of N drawn without replacement (0 when μ̂ is the population's mean)
    noise_frac = (n_pop - n_ex) / (n_ex * (n_pop - 1)) if n_pop > 1 else 0.0

    say(f"per-example gradients over {n_ex} examples")
    stats = per_example_grad_stats(model, loss, xs, ys, cfg.chunk_floats)
    if one_pop:  # the population's own variance (divisor N): the i.i.d. batches' noise
        stats = GradStats(mu=stats.mu, var=stats.var * ((n_pop - 1) / n_pop), n=stats.n)
    d = int(stats.mu.shape[0])
    # centred per-example gradients for the full tr(HΣ); √(n/(n−1)) undoes the centring bias.
    # Per-example uᵀHu is heavy-tailed (a few examples dominate): more samples than probes.
    m = min(cfg.noise_samples, n_ex)
    # all m rows: group_grads may split them into several chunks (small d, large inputs)
    per_ex = torch.cat(
        list(
            group_grads(model, loss, xs[:m, None], ys[:m, None], max(cfg.chunk_floats, 10 * m * d))
        )
    )
    noise = (per_ex - stats.mu) * math.sqrt(n_ex / (n_ex - 1))
    n_vec = cfg.probes + 3 + len(cfg.batch_sizes) + m
    vec_chunk = max(1, min(n_vec, cfg.chunk_floats // d))

    say(
        f"Hessian: {cfg.probes} Hutchinson probes + {n_vec - cfg.probes} exact HVPs "
        f"on {n_eval} eval examples"
    )
    hvp = make_hvp(model, loss, xe, ye)
    hs = hessian_stats(
        hvp, stats, cfg.batch_sizes, cfg.probes, seed=cfg.seed + 1, noise=noise, vec_chunk=vec_chunk
    )
    pred = laws(stats, hs, noise_frac=noise_frac)
    bounds = regime_bounds(stats)

    say("loss and gradient on the evaluation set")
    theta = flat_params(model).to(torch.float64)
    loss0 = float(eval_losses(model, loss, theta[None], xe, ye, cfg.chunk_floats)[0])
    summary: dict[str, Any] = {
        "step": step,
        "loss": loss0,
        "n_eval": n_eval,
        "population": cfg.population,
        "n_population": n_pop,
        "numer_noise_frac": noise_frac,
        **{k: v for k, v in pred.items() if np.ndim(v) == 0},
        "regime_bound_median": float(np.median(bounds)) if bounds.size else math.nan,
        "regime_bound_q10": float(np.quantile(bounds, 0.1)) if bounds.size else math.nan,
        "regime_bound_q90": float(np.quantile(bounds, 0.9)) if bounds.size else math.nan,
        "regime_bound_floor": regime_floor(n_ex),
        "n_coords_dead": int(d - bounds.size),
    }
    g_eval = full_gradient(model, loss, xe, ye) if cfg.measure else None
    rows: list[dict[str, Any]] = []
    one_step: list[dict[str, Any]] = []
    for k, b in enumerate(int(b) for b in cfg.batch_sizes):
        row: dict[str, Any] = {
            "step": step,
            "loss": loss0,
            "batch_size": b,
            "lr_pred_sign": _finite_or_nan(pred["lr_thm2"][k]),
            "lr_thm3": _finite_or_nan(pred["lr_thm3"][k]),
            "lr_pred_sgd": _finite_or_nan(pred["lr_sgd"][k]),
            "lr_pred_sgd_full": _finite_or_nan(pred["lr_sgd_full"][k]),
            "denom": float(pred["denom"][k]),
            "denom_se": float(pred["denom_se"][k]),
        }
        if cfg.measure:
            assert g_eval is not None
            pool: list[Tensor] = []  # mini-batch gradients of this B, drawn as needed

            def draw(i: int, j: int, b: int = b, pool: list[Tensor] = pool) -> Tensor:
                have = sum(int(t.shape[0]) for t in pool)
                if j > have:
                    pool.append(
                        minibatch_grads(
                            model,
                            loss,
                            xpop,
                            ypop,
                            b,
                            j - have,
                            gen,
                            cfg.chunk_floats,
                            replace=one_pop,
                        )
                    )
                return torch.cat(pool)[i:j]

            for upd, explicit in (("sign", cfg.lrs), ("sgd", cfg.lrs_sgd)):
                say(f"one-step measurement, {upd} step, B={b}: from {cfg.n_batches} mini-batches")

                def take(i: int, j: int, upd: str = upd) -> Tensor:
                    g = draw(i, j)
                    return torch.sign(g) if upd == "sign" else g

                def hv_of(v: Tensor) -> Tensor:
                    return torch.cat(
                        [hvp(v[i : i + vec_chunk]) for i in range(0, v.shape[0], vec_chunk)]
                    )

                v0 = take(0, cfg.n_batches)
                lq0, _ = quad_model_lr(g_eval, v0, hv_of(v0))
                centre = next((c for c in (lq0, row[f"lr_pred_{upd}"]) if c > 0), math.nan)
                if explicit is not None:
                    lrs0 = np.asarray(explicit, dtype=np.float64)
                elif math.isfinite(centre) and centre > 0:
                    lrs0 = lr_grid(centre, cfg.n_lrs, cfg.lr_span)
                else:  # neither theory nor Lemma 1 gave a positive value: a wide grid
                    lo_hi = FALLBACK_GRID[upd]
                    lrs0 = np.geomspace(lo_hi[0], lo_hi[1], 2 * cfg.n_lrs)

                def gains_fn(v: Tensor, lrs: np.ndarray) -> np.ndarray:
                    return step_gains(model, loss, v, lrs, xe, ye, cfg.chunk_floats)

                grid, gains, best = measure_adaptive(
                    gains_fn,
                    take,
                    lrs=lrs0,
                    fixed=explicit is not None,
                    n_first=cfg.n_batches,
                    n_more=cfg.n_batches,
                    max_updates=max(cfg.max_batches, cfg.n_batches),
                    max_log_width=cfg.max_log_width,
                    max_extend=cfg.max_extend,
                    n_boot=cfg.n_boot,
                    ci=cfg.ci,
                    seed=cfg.seed + 7 * k,
                )
                v = take(0, best["n_batches"])
                hv = hv_of(v)
                lq, lq_se = quad_model_lr(g_eval, v, hv)
                m1, _, m2, _ = quad_model_moments(g_eval, v, hv)
                row[f"lr_quad_{upd}"], row[f"lr_quad_{upd}_se"] = lq, lq_se
                # Lemma 1's two moments, measured and as the theory predicts them: shows whether
                # a miss is in the numerator (signal) or the denominator (curvature of v)
                row[f"m1_{upd}_meas"], row[f"m2_{upd}_meas"] = m1, m2
                row[f"m1_{upd}_pred"], row[f"m2_{upd}_pred"] = (
                    (float(pred["numer"][k]), float(pred["denom"][k]))
                    if upd == "sign"
                    else (pred["g2"], pred["g_h_g_full"] + pred["tr_h_sigma_full"] / b)
                )
                row[f"lr_meas_{upd}"] = best["lr"]
                row[f"lr_meas_{upd}_lo"] = best["lo"]
                row[f"lr_meas_{upd}_hi"] = best["hi"]
                row[f"lr_meas_{upd}_edge"] = best["edge"]
                row[f"lr_meas_{upd}_logwidth"] = best["log_width"]
                row[f"n_batches_{upd}"] = best["n_batches"]
                row[f"resolved_{upd}"] = bool(best["resolved"])
                row[f"ratio_{upd}"] = row[f"lr_pred_{upd}"] / best["lr"]
                row[f"ratio_quad_{upd}"] = lq / best["lr"]
                if upd == "sign":
                    row.update(_decomposition(row, pred, k, v, hvp, g_eval, gen, vec_chunk))
                one_step += one_step_rows(grid, gains, step=step, update=upd, batch_size=b)
        rows.append(row)
    if cfg.measure:
        # over the resolved B only: an unresolved optimum decides nothing
        ok = {u: [r for r in rows if r[f"resolved_{u}"]] for u in ("sign", "sgd")}
        for key, u in (
            ("ratio_sign", "sign"),
            ("ratio_sgd", "sgd"),
            ("ratio_quad_sign", "sign"),
            ("ratio_quad_sgd", "sgd"),
            ("factor_marginals", "sign"),
            ("factor_corr", "sign"),
            ("factor_quad", "sign"),
        ):
            summary[f"{key}_geomean"] = _geomean([r[key] for r in ok[u]])
        summary["ratio_sgd_full_geomean"] = _geomean(
            [r["lr_pred_sgd_full"] / r["lr_meas_sgd"] for r in ok["sgd"]]
        )
        for u in ("sign", "sgd"):
            summary[f"unresolved_{u}"] = [r["batch_size"] for r in rows if not r[f"resolved_{u}"]]
            summary[f"n_resolved_{u}"] = len(ok[u])
        summary["max_log_width"] = cfg.max_log_width
    summary["notes"] = notes(summary, rows)
    hist = [{"step": step, **h} for h in histogram_rows(bounds, cfg.hist_bins)]
    return {
        "summary": summary,
        "per_batch": rows,
        "one_step": one_step,
        "histogram": hist,
        "bounds": bounds,
    }


def _decomposition(
    row: dict[str, Any],
    pred: dict[str, Any],
    k: int,
    v: Tensor,
    hvp: Callable[[Tensor], Tensor],
    g_eval: Tensor,
    gen: torch.Generator,
    vec_chunk: int,
) -> dict[str, Any]:
    """The shuffled-coordinate control of one B's sign vectors and the discrepancy's factors.

    ratio_sign = pred/meas = factor_marginals × factor_corr × factor_quad with
    factor_marginals = lr_thm2 / lr_shuf (Theorem 2's Gaussian ξ vs the exact marginals,
    numerator and denominator), factor_corr = lr_shuf / lr_quad = E[vᵀHv]/E[v'ᵀHv'] (the
    correlation between coordinates) and factor_quad = lr_quad / lr_meas (the quadratic model
    vs the true loss). numer_ratio = N̂(B)/E[Gᵀv] isolates the numerator's part.
    """
    c = shuffled_control(v, hvp, g_eval, gen, vec_chunk)
    lr_shuf = c["gv"] / c["vhv_shuf"] if c["vhv_shuf"] > 0 else math.nan
    numer, denom = float(pred["numer"][k]), float(pred["denom"][k])
    return {
        "gv_meas": c["gv"],
        "gv_meas_se": c["gv_se"],
        "numer_thm2": numer,
        "numer_thm2_plugin": float(pred["numer_plugin"][k]),
        "numer_ratio": numer / c["gv"] if c["gv"] != 0 else math.nan,
        "vhv_meas": c["vhv"],
        "vhv_meas_se": c["vhv_se"],
        "vhv_shuf": c["vhv_shuf"],
        "vhv_shuf_se": c["vhv_shuf_se"],
        "vhv_thm2": denom,
        "vhv_thm2_se": float(pred["denom_se"][k]),
        "corr_ratio": c["corr_ratio"],
        "corr_ratio_se": c["corr_ratio_se"],
        "lr_shuf_sign": lr_shuf,
        "factor_marginals": row["lr_pred_sign"] / lr_shuf,
        "factor_corr": lr_shuf / row["lr_quad_sign"],
        "factor_quad": row["lr_quad_sign"] / row["lr_meas_sign"],
    }


def notes(s: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Plain-language caveats for the report: what was not resolved, and why."""
    n = s["n_examples"]
    out = []
    if not s["g2"] > 0:
        out.append(
            f"|G|^2 not resolved by {n} examples (debiased |mu|^2 - tr(Sigma)/n <= 0): "
            f"B_simple is inf; raise n_examples"
        )
    if not s["g_h_g_full"] > 0:
        out.append(
            f"G^T H G not resolved by {n} examples (debiased <= 0): the full-tr(H Sigma) "
            f"SGD law is undefined; raise n_examples"
        )
    if s["regime_bound_median"] > 0.5 * s["regime_bound_floor"]:
        out.append(
            "most coordinates' mu_i is below the n-example resolution: the regime-bound "
            "histogram is floor-limited and the sign-law predictions are plug-in biased"
        )
    if not s["tr_h"] > 0:
        out.append(f"tr(H) estimate {s['tr_h']:.3g} <= 0: Theorem 3 undefined here")
    elif not s["s_off"] > 0:
        out.append("S_off <= 0: Theorem 3 predicts no peak")
    if s["tr_h_se"] > 0.3 * abs(s["tr_h"]):
        out.append(
            f"tr(H) is poorly resolved ({s['tr_h']:.3g} +- {s['tr_h_se']:.3g}): raise probes"
        )
    for u in ("sign", "sgd"):
        if s.get(f"unresolved_{u}"):
            out.append(
                f"{u} step: measured optimum unresolved (interval log-width > "
                f"{s['max_log_width']:g} after the batch cap, or at the grid's edge) for B in "
                f"{s[f'unresolved_{u}']}: kept out of the ratios; raise max_batches"
            )
    edges = [r["batch_size"] for r in rows for u in ("sign", "sgd") if r.get(f"lr_meas_{u}_edge")]
    if edges:
        out.append(
            f"measured optimum at the edge of the learning-rate grid for B in "
            f"{sorted(set(edges))}: widen the grid"
        )
    return out


def train_checkpoints(
    workload: Any,
    data: Any,
    steps: Sequence[int] = (),
    losses: Sequence[float] = (),
    *,
    lr: float,
    batch_size: int,
    betas: tuple[float, float] = (0.9, 0.999),
    seed: int = 0,
    device: str | torch.device = "cpu",
    model: torch.nn.Module | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, float | None, torch.nn.Module]]:
    """Train the workload with Adam at fixed (lr, batch size) and yield snapshots.

    Yields ``(step, target, model)`` at each requested step (``target`` None) and the first
    evaluation at which the eval loss is ≤ each requested loss level (``target`` = level).
    The model is the live one: use it before advancing the iterator. Stops after the last
    request or at ``workload.max_steps`` (levels not reached are not yielded). ``on_step(step)``
    is called after every training step (progress).
    """
    if any(int(s) != s or s < 0 for s in steps):
        raise ValueError(f"checkpoint steps must be non-negative integers; got {list(steps)}")
    if any(not (v > 0) for v in losses):
        raise ValueError(f"checkpoint loss levels must be positive; got {list(losses)}")
    if not steps and not losses:
        raise ValueError("give at least one checkpoint step or loss level")
    torch.manual_seed(seed)
    net = (model if model is not None else workload.make_model()).to(device)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr, betas=betas)
    gen = torch.Generator().manual_seed(seed + 1)
    want_steps = sorted({int(s) for s in steps})
    want_losses = sorted(set(losses), reverse=True)
    last = max(want_steps, default=0)
    limit = max(last, workload.max_steps if want_losses else 0)
    n = data.n_train
    step = 0
    while True:
        while want_steps and want_steps[0] == step:
            want_steps.pop(0)
            yield step, None, net
        if want_losses and step % workload.eval_every == 0:
            with eval_mode(net), torch.no_grad():
                cur = float(workload.loss(net(data.x_eval[:1024]), data.y_eval[:1024]))
            while want_losses and cur <= want_losses[0]:
                yield step, want_losses.pop(0), net
        if (not want_steps and not want_losses) or step >= limit:
            return
        idx = torch.randint(0, n, (batch_size,), generator=gen).to(data.x_train.device)
        xb = data.x_train[idx]
        if workload.batch_transform is not None:
            xb = workload.batch_transform(xb, gen)
        net.train()
        opt.zero_grad(set_to_none=True)
        workload.loss(net(xb), data.y_train[idx]).backward()
        opt.step()
        step += 1
        if on_step is not None:
            on_step(step)
