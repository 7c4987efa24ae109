"""``surgelab validate estimate``: the laws estimated directly at checkpoints of Adam training.

Trains the workload with Adam at a fixed learning rate and batch size, and at each checkpoint
(``--checkpoints`` steps, and/or ``--at-losses`` loss levels) runs
:func:`validate.estimate.estimate_at_checkpoint`: per-example gradient statistics, Hessian
quantities by HVPs, every law's prediction, and a one-step measurement of the best learning
rate per batch size (by default on ONE population, the first ``--n-eval`` eval examples, with
mini-batches drawn in rounds until each optimum's interval is narrow).
Writes a run folder (``runs/validate/estimate/<UTC>/`` or ``--out``)::

    config.json, meta.json
    checkpoints.csv   one row per checkpoint: loss, B_noise (Theorem 3, SGD), ε_max, B_simple…
    per_batch.csv     one row per (checkpoint, B): predicted and measured best learning rates,
                      resolved_*/n_batches_* (the stopping rule), and the sign step's
                      shuffled-coordinate control: vhv_meas, vhv_shuf, vhv_thm2 (E[v'Hv]
                      measured, coordinates decoupled, Theorem 2's D(B)), gv_meas, numer_thm2
                      (bias-corrected) and the factors marginals × corr × quad = pred/meas
    one_step.csv      one row per (checkpoint, update, B, lr): mean loss improvement ± SE
    regime_hist.csv   histogram of π σ_i²/(2 μ_i²) per checkpoint
    partial.json      the finished checkpoints (rerun with the same --out to resume)
    summary.json      the last checkpoint's headline numbers, ``headline``, ``verdicts``, and
                      {"checkpoints": [{step, loss, b_noise_thm3, …, per_batch}], …}
    lr_sign.png, lr_sgd.png, regime_hist.png, b_noise_vs_loss.png   (drawn from the tables)
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

from surgelab.cli import Command
from surgelab.config import Config, ConfigError, opt
from surgelab.rundir import RunDir

#: the tables, and the key each row carries
TABLES = {
    "checkpoint_rows": "checkpoints.csv",
    "per_batch": "per_batch.csv",
    "one_step": "one_step.csv",
    "histogram": "regime_hist.csv",
}


def _env_download() -> bool:
    # the same source of --download's default as the other validate commands
    # (surgelab.cmd_validate._env_download; not imported: cmd_validate imports this module)
    return os.environ.get("SURGELAB_DOWNLOAD", "").strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class EstimateConfig(Config):
    """``surgelab validate estimate``: the only source of its defaults."""

    workload: str = opt("synthetic-mlp", "registered workload (synthetic-mlp, fmnist-cnn, ...)")
    size: Literal["smoke", "paper"] = opt("smoke", "workload size")
    data_dir: str | None = opt(
        None,
        "dataset folder, used alone (default: $SURGELAB_DATA, then the user cache, then a "
        "checkout's ../shared/data)",
    )
    download: bool = opt(
        _env_download(),
        "fetch a missing dataset from its official URL into the user cache (checksum-verified; "
        "default from $SURGELAB_DOWNLOAD)",
    )
    checkpoints: tuple[int, ...] = opt(
        (0, 100, 400),
        "Adam training steps at which to estimate",
        lo=0,
        ascending=True,
        hi=10_000_000,
    )
    at_losses: tuple[float, ...] = opt(
        (), "also estimate when the eval loss first falls below these levels", lo=0, lo_open=True
    )
    train_lr: float = opt(1e-3, "Adam learning rate of the training run", lo=0, lo_open=True)
    train_batch_size: int = opt(64, "batch size of the training run", lo=1, hi=1_000_000)
    n_examples: int = opt(
        1024, "training examples for per-example gradient statistics μ, σ²", lo=2, hi=10_000_000
    )
    n_eval: int = opt(
        500, "eval examples for the Hessian and the measured loss changes", lo=1, hi=10_000_000
    )
    probes: int = opt(16, "Hutchinson probes for tr(H), diag(H)", lo=2, hi=100_000)
    batch_sizes: tuple[int, ...] = opt(
        (4, 16, 64, 256),
        "batch sizes to predict and measure",
        lo=1,
        hi=10_000_000,
        ascending=True,
        nonempty=True,
    )
    n_batches: int = opt(
        12,
        "mini-batches per round of the one-step measurement (rounds until the interval is narrow)",
        lo=2,
        hi=1_000_000,
    )
    max_batches: int = opt(
        96,
        "mini-batches per batch size at most; a B whose optimum is still wide is flagged",
        lo=2,
        hi=1_000_000,
    )
    max_log_width: float = opt(
        0.3,
        "a B's measured optimum is resolved when its interval has ln(hi/lo) <= this",
        lo=0,
        lo_open=True,
    )
    population: Literal["eval", "train"] = opt(
        "eval",
        "eval: mu, sigma, G, the batches and the loss changes all from the n_eval eval examples "
        "(consistent); train: mu, sigma and the batches from the training set (the old setup)",
    )
    lrs: tuple[float, ...] | None = opt(
        None,
        "sign-step learning-rate grid (default: auto, around the prediction)",
        lo=0,
        lo_open=True,
        ascending=True,
    )
    lrs_sgd: tuple[float, ...] | None = opt(
        None, "SGD-step learning-rate grid (default: auto)", lo=0, lo_open=True, ascending=True
    )
    n_lrs: int = opt(9, "auto grid points", lo=3, hi=10_000)
    lr_span: float = opt(64.0, "auto grid: centre ÷ √span … × √span", lo=1, lo_open=True)
    max_extend: int = opt(
        3,
        "times an auto grid is extended when the measured optimum is at its edge",
        lo=0,
        hi=100,
    )
    n_boot: int = opt(200, "bootstrap resamples of mini-batches", lo=10, hi=1_000_000)
    ci: float = opt(0.9, "coverage of the measured-lr interval", lo=0, lo_open=True)
    noise_samples: int = opt(
        64, "per-example gradients whose uᵀHu give the full tr(HΣ)", lo=2, hi=1_000_000
    )
    hist_bins: int = opt(40, "log bins of the regime-bound histogram", lo=1, hi=100_000)
    chunk_floats: int = opt(
        20_000_000, "memory budget (floats) of one vmap chunk of gradients", lo=1000
    )
    measure: bool = opt(True, "run the one-step measurement (--no-measure: predictions only)")
    plots: bool = opt(True, "draw the figures (--no-plots to skip)")
    seed: int = opt(0, "all randomness", lo=0)
    device: str = opt("cpu", "torch device: cpu, cuda, cuda:1, ...")
    threads: int | None = opt(
        None,
        "torch CPU threads (default: torch's; 1 is fastest on a shared machine)",
        lo=1,
        hi=4096,
    )
    quiet: bool = opt(False, "no progress bars")

    def check(self) -> None:
        if not self.ci < 1:
            raise ConfigError("ci", f"must be < 1; got {self.ci:g}")
        for name in ("lrs", "lrs_sgd"):
            g = getattr(self, name)
            if g is not None and len(g) < 3:
                raise ConfigError(name, f"must list >= 3 learning rates; got {len(g)}")
        if not self.checkpoints and not self.at_losses:
            raise ConfigError("checkpoints", "is empty and so is --at-losses; give at least one")
        from surgelab import limits

        # the largest arrays: one vmap chunk (gradients + activations) and its float64 copy
        limits.check_memory(16 * self.chunk_floats, "chunk_floats", "one chunk of gradients")
        # cheap checks first: the ones below import torch and build the workload
        from surgelab.cmd_validate import check_data, check_workload, device_name

        device_name(self.device)
        check_workload(self.workload)
        check_data(self.workload, self.size, self.data_dir, self.download)
        self._check_plan_memory()

    def _check_plan_memory(self) -> None:
        """Vectors held at once: HVP inputs/outputs (probes + 3 + #B + noise samples, twice),
        the mini-batch gradients of one B (three copies), all of d float64 each."""
        import torch

        from surgelab import limits
        from validate.workload import get_workload

        state = torch.random.get_rng_state()
        try:
            model = get_workload(self.workload, size=self.size).make_model()
        finally:
            torch.random.set_rng_state(state)  # building it must not move the global RNG
        d = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_vec = self.probes + 3 + len(self.batch_sizes) + min(self.noise_samples, self.n_examples)
        parts = {
            "probes": 2 * self.probes,
            "noise_samples": 3 * self.noise_samples,
            "max_batches": 4 * max(self.n_batches, self.max_batches),
        }
        nb = max(self.n_batches, self.max_batches)
        need = 8 * d * (2 * n_vec + self.noise_samples + 4 * nb)
        worst = max(parts, key=parts.get)
        limits.check_memory(need, worst, f"{n_vec} HVP vectors of {d} parameters")

    def settings(self) -> Any:
        """The library's :class:`validate.estimate.EstimateSettings` of this config."""
        from validate.estimate import EstimateSettings

        return EstimateSettings(
            n_examples=self.n_examples,
            n_eval=self.n_eval,
            probes=self.probes,
            batch_sizes=self.batch_sizes,
            n_batches=self.n_batches,
            n_lrs=self.n_lrs,
            lr_span=self.lr_span,
            lrs=self.lrs,
            lrs_sgd=self.lrs_sgd,
            n_boot=self.n_boot,
            ci=self.ci,
            hist_bins=self.hist_bins,
            chunk_floats=self.chunk_floats,
            seed=self.seed,
            measure=self.measure,
            max_extend=self.max_extend,
            noise_samples=self.noise_samples,
            population=self.population,
            max_batches=self.max_batches,
            max_log_width=self.max_log_width,
        )


# ---------------------------------------------------------------------------------------------
# headline and verdicts (from the values already in the summary)


def _fmt(x: Any) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.4g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def caveat_thm3(b_noise: float, regime_q10: float = math.nan) -> str:
    """Why a Theorem 3 B_noise cannot be read as a peak position ("" when it can)."""
    if math.isnan(b_noise):
        return "undefined: tr(H) <= 0 here"
    if math.isinf(b_noise):
        return "no peak: S_off <= 0"
    if b_noise < 1:
        return "below 1, outside Theorem 3's regime (batch sizes >= 1): no peak at any B"
    if b_noise > regime_q10:
        return (
            "above the regime bound pi sigma^2/(2 mu^2) of >= 10% of coordinates: "
            "Theorem 3's small-batch assumption fails at the peak"
        )
    return ""


def caveat_sgd(b_noise: float) -> str:
    """Why an SGD B_noise is not a usable noise scale ("" when it is)."""
    if math.isnan(b_noise):
        return "undefined: G^T H G not resolved (debiased <= 0)"
    if b_noise < 1:
        return "below 1: gradient noise negligible at every batch size"
    return ""


def _trend(rows: list[dict[str, Any]], key: str) -> bool | None:
    """True if ``key`` increases monotonically as the loss falls (None: < 2 finite points)."""
    pts = sorted(
        ((r["loss"], _num(r.get(key))) for r in rows if math.isfinite(_num(r.get(key)))),
        key=lambda t: -t[0],
    )
    if len(pts) < 2:
        return None
    return all(b[1] > a[1] for a, b in itertools.pairwise(pts))


def headline(summary: dict[str, Any], ci: float) -> tuple[list[dict[str, Any]], list[str]]:
    """``headline`` items and ``verdicts`` of an estimate summary (its last checkpoint)."""
    s = summary
    at = f"direct, step {s['step']}"
    items: list[dict[str, Any]] = []

    def item(key: str, label: str, caveat: str = "", **iv: Any) -> None:
        items.append(
            {
                "key": key,
                "label": label + (f" [{caveat}]" if caveat else ""),
                "value": s.get(key),
                **iv,
            }
        )

    bn3 = _num(s.get("b_noise_thm3"))
    c3 = caveat_thm3(bn3, _num(s.get("regime_bound_q10")))
    iv = (
        {"lo": s["b_noise_thm3_lo"], "hi": s["b_noise_thm3_hi"]}
        if math.isfinite(_num(s.get("b_noise_thm3_lo")))
        else {}
    )
    item("b_noise_thm3", f"Theorem 3's B_noise (sign / Adam law; {at})", c3, **iv)
    item("eps_max_thm3", f"Theorem 3's eps_max (best sign-step lr at B_noise; {at})", c3)
    bsgd = _num(s.get("b_noise_sgd_full"))
    item("b_noise_sgd_full", f"SGD B_noise (McCandlish, full tr(H Sigma); {at})", caveat_sgd(bsgd))
    bs = _num(s.get("b_simple"))
    item(
        "b_simple",
        f"B_simple = tr(Sigma)/|G|^2 ({at})",
        "|G|^2 not resolved" if math.isinf(bs) else "",
    )
    item("regime_bound_median", f"median regime bound pi sigma_i^2/(2 mu_i^2) ({at})")
    # only from resolved B (the library's geomeans skip the unresolved; none resolved: NaN)
    for key, what in (
        ("ratio_sign_geomean", "predicted (Theorem 2) / measured best sign-step lr"),
        (
            "ratio_sgd_full_geomean",
            "predicted (McCandlish, full tr(H Sigma)) / measured best SGD-step lr",
        ),
        (
            "ratio_sgd_geomean",
            "predicted (McCandlish, diagonal Sigma only) / measured best SGD-step lr",
        ),
    ):
        if math.isfinite(_num(s.get(key))):
            item(key, f"{what}, geometric mean over the resolved B")

    verdicts = [
        f"at step {s['step']} (loss {_fmt(s['loss'])}): Theorem 3's B_noise = {_fmt(bn3)}"
        + (f" ({ci:.0%} interval {_fmt(iv['lo'])} to {_fmt(iv['hi'])})" if iv else "")
        + (f" [{c3}]" if c3 else "")
        + f"; SGD B_noise (full tr(H Sigma)) = {_fmt(bsgd)}"
        + (f" [{caveat_sgd(bsgd)}]" if caveat_sgd(bsgd) else "")
        + f"; B_simple = {_fmt(bs)}"
    ]
    per_batch = s["checkpoints"][-1]["per_batch"] if s.get("checkpoints") else []
    laws = (
        ("sign", "lr_pred_sign", "Theorem 2", "ratio_sign_geomean"),
        ("sgd", "lr_pred_sgd_full", "McCandlish (full tr(H Sigma))", "ratio_sgd_full_geomean"),
        ("sgd", "lr_pred_sgd", "McCandlish (diagonal Sigma)", "ratio_sgd_geomean"),
    )
    for upd, pred_key, law, ratio_key in laws:
        inside, outside, censored, wide = [], [], [], []
        for r in per_batch:
            p, lo, hi = (
                _num(r.get(k)) for k in (pred_key, f"lr_meas_{upd}_lo", f"lr_meas_{upd}_hi")
            )
            if r.get(f"lr_meas_{upd}_edge"):
                censored.append(r["batch_size"])
            elif r.get(f"resolved_{upd}") is False:
                wide.append(r["batch_size"])
            elif math.isfinite(p) and lo <= p <= hi:
                inside.append(r["batch_size"])
            elif math.isfinite(p) and math.isfinite(lo):
                outside.append(r["batch_size"])
        if not per_batch or f"lr_meas_{upd}" not in per_batch[0]:
            continue
        parts = []
        if inside:
            parts.append(f"inside at B = {', '.join(map(str, inside))}")
        if outside:
            parts.append(f"outside at B = {', '.join(map(str, outside))}")
        if censored:
            parts.append(
                f"not decided at B = {', '.join(map(str, censored))} (measured "
                f"optimum at the grid's edge)"
            )
        if wide:
            parts.append(
                f"unresolved at B = {', '.join(map(str, wide))} (interval wider than "
                f"ln(hi/lo) = {_fmt(s.get('max_log_width'))} after {_fmt(s.get('max_batches'))} "
                f"mini-batches)"
            )
        verdicts.append(
            f"{upd} step: {law}'s predicted best lr lies {'; '.join(parts) or 'nowhere decided'} "
            f"of the measured {ci:.0%} one-step interval (geometric mean pred/meas "
            f"{_fmt(s.get(ratio_key))})"
        )
    dec = decomposition_verdict(s, per_batch)
    if dec:
        verdicts.append(dec)
    n = len(s.get("checkpoints", []))
    for key, name in (
        ("b_noise_thm3", "Theorem 3's B_noise"),
        ("b_noise_sgd_full", "SGD B_noise (full tr(H Sigma))"),
        ("b_simple", "B_simple"),
    ):
        t = s.get(f"{key}_grows_as_loss_falls")
        if t is not None:
            verdicts.append(
                f"{name} {'grows' if t else 'does not grow monotonically'} as the "
                f"loss falls, over {n} checkpoints"
            )
    verdicts += [f"note: {x}" for x in s.get("notes", [])]
    return items, verdicts


def decomposition_verdict(s: dict[str, Any], per_batch: list[dict[str, Any]]) -> str:
    """One line: Theorem 2's miss split into Gaussian marginals × correlation × quadratic model,
    from the resolved B only ("" when none was resolved or nothing was measured)."""
    ok = [r for r in per_batch if r.get("resolved_sign") and "factor_corr" in r]
    if not ok:
        return ""
    per_b = "; ".join(
        f"B = {r['batch_size']}: E[v'Hv] measured {_fmt(_num(r['vhv_meas']))}, shuffled "
        f"{_fmt(_num(r['vhv_shuf']))}, Theorem 2 {_fmt(_num(r['vhv_thm2']))}"
        for r in ok
    )
    return (
        "sign step, Theorem 2 pred/meas "
        f"{_fmt(s.get('ratio_sign_geomean'))} (geometric mean over the resolved B) = marginals "
        f"{_fmt(s.get('factor_marginals_geomean'))} x correlation "
        f"{_fmt(s.get('factor_corr_geomean'))} (measured/shuffled E[v'Hv]) x quadratic model "
        f"{_fmt(s.get('factor_quad_geomean'))}; {per_b}"
    )


def build_summary(
    cfg: EstimateConfig, done: list[dict[str, Any]], device: str, wall_s: float
) -> dict[str, Any]:
    """summary.json from the finished checkpoints (``done``: one entry per checkpoint)."""
    rows = [c["summary"] for c in done]
    last = rows[-1] if rows else {}
    z = statistics.NormalDist().inv_cdf(0.5 + cfg.ci / 2)
    bn, se = _num(last.get("b_noise_thm3")), _num(last.get("b_noise_thm3_se"))
    top = {
        k: last.get(k)
        for k in (
            "step",
            "loss",
            "target_loss",
            "b_noise_thm3",
            "b_noise_thm3_se",
            "eps_max_thm3",
            "b_noise_sgd_full",
            "b_noise_sgd",
            "eps_max_sgd_full",
            "b_simple",
            "lr_thm4",
            "regime_bound_median",
            "regime_bound_q10",
            "regime_bound_floor",
            "ratio_sign_geomean",
            "ratio_sgd_geomean",
            "ratio_sgd_full_geomean",
            "factor_marginals_geomean",
            "factor_corr_geomean",
            "factor_quad_geomean",
            "unresolved_sign",
            "unresolved_sgd",
            "population",
            "notes",
        )
        if k in last
    }
    summary: dict[str, Any] = {
        "workload": cfg.workload,
        "size": cfg.size,
        "device": device,
        "wall_s": wall_s,
        "max_batches": cfg.max_batches,
        "max_log_width": cfg.max_log_width,
        **top,
        "b_noise_thm3_lo": bn - z * se if math.isfinite(bn) and math.isfinite(se) else None,
        "b_noise_thm3_hi": bn + z * se if math.isfinite(bn) and math.isfinite(se) else None,
        "b_noise_thm3_grows_as_loss_falls": _trend(rows, "b_noise_thm3"),
        "b_noise_sgd_full_grows_as_loss_falls": _trend(rows, "b_noise_sgd_full"),
        "b_simple_grows_as_loss_falls": _trend(rows, "b_simple"),
        "checkpoints": [{**c["summary"], "per_batch": c["per_batch"]} for c in done],
    }
    if rows:
        summary["headline"], summary["verdicts"] = headline(summary, cfg.ci)
    else:
        summary["headline"], summary["verdicts"] = [], ["no checkpoint was reached"]
    return summary


# ---------------------------------------------------------------------------------------------
# the command


class _Quiet:
    """A progress bar that shows nothing (``--quiet``)."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, s: str) -> None:
        return None

    def close(self) -> None:
        return None


def _bar(cfg: EstimateConfig, total: int | None, desc: str) -> Any:
    if cfg.quiet:
        return _Quiet()
    from surgelab.progress import bar

    return bar(total, desc)


def _key(step: int, level: float | None) -> str:
    return f"loss<={level:g}" if level is not None else f"step {step}"


def run_estimate(cfg: EstimateConfig, run: RunDir | None) -> int:
    import torch

    from surgelab import datasets
    from surgelab.cmd_validate import device_name
    from validate.estimate import estimate_at_checkpoint, n_stages, train_checkpoints
    from validate.workload import get_workload

    assert run is not None
    from surgelab.rundir import read_json

    if run.finished:
        print(f"already finished: {run.path}")
        _print(read_json(run / "summary.json"))
        return 0
    t0 = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    run.write_meta(device=device_name(cfg.device))
    settings = cfg.settings()
    datasets.ensure_workload(cfg.workload, cfg.size, cfg.data_dir, cfg.download)
    workload = get_workload(cfg.workload, size=cfg.size, data_dir=cfg.data_dir)
    with datasets.decoded_arrays():
        data = workload.load_data(cfg.data_dir, device)
    partial = run / "partial.json"
    done: list[dict[str, Any]] = (
        read_json(partial)["checkpoints"] if (run.resumed and partial.is_file()) else []
    )
    finished = {c["key"] for c in done}
    last_step = max(cfg.checkpoints, default=0)
    total = max(last_step, workload.max_steps if cfg.at_losses else 0)
    with _bar(cfg, total or None, "Adam training") as train_bar:
        for step, level, net in train_checkpoints(
            workload,
            data,
            cfg.checkpoints,
            cfg.at_losses,
            lr=cfg.train_lr,
            batch_size=cfg.train_batch_size,
            seed=cfg.seed,
            device=device,
            on_step=lambda _s: train_bar.update(1),
        ):
            key = _key(step, level)
            if key in finished:
                continue
            with _bar(cfg, n_stages(settings), f"checkpoint {key}") as b:

                def stage(msg: str, b: Any = b) -> None:
                    b.set_postfix_str(msg)
                    b.update(1)

                res = estimate_at_checkpoint(
                    net, workload, data, settings, step=step, progress=stage
                )
            res["summary"]["target_loss"] = level
            done.append(
                {
                    "key": key,
                    "summary": res["summary"],
                    "per_batch": res["per_batch"],
                    "one_step": res["one_step"],
                    "histogram": res["histogram"],
                }
            )
            _write_tables(run, done)
            run.write_json("partial.json", {"checkpoints": done})
    summary = build_summary(cfg, done, str(device), time.perf_counter() - t0)
    if not done:
        _write_tables(run, done)
    if cfg.plots and done:
        _figures(run)
    run.finish(summary)
    _print(summary, run)
    return 0


def _write_tables(run: RunDir, done: list[dict[str, Any]]) -> None:
    lists = ("notes", "unresolved_sign", "unresolved_sgd")
    run.write_table(
        "checkpoints.csv",
        [{k: v for k, v in c["summary"].items() if k not in lists} for c in done],
    )
    run.write_table("per_batch.csv", [r for c in done for r in c["per_batch"]])
    run.write_table("one_step.csv", [r for c in done for r in c["one_step"]])
    run.write_table("regime_hist.csv", [r for c in done for r in c["histogram"]])


def _figures(run: RunDir) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from validate import estimate_plots as P

    per_batch = run.read_table("per_batch.csv")
    steps = sorted({r["step"] for r in per_batch})
    for upd in ("sign", "sgd"):
        fig, axes = plt.subplots(1, len(steps), figsize=(4.5 * len(steps), 4), squeeze=False)
        for ax, s in zip(axes[0], steps):
            P.plot_lr_vs_batch(per_batch, upd, step=s, ax=ax)
        run.save_figure(fig, f"lr_{upd}.png")
    for name, table, fn in (
        ("regime_hist", "regime_hist.csv", P.plot_regime_histogram),
        ("b_noise_vs_loss", "checkpoints.csv", P.plot_b_noise_vs_loss),
    ):
        rows = run.read_table(table)
        if rows:
            run.save_figure(fn(rows), f"{name}.png")


def _print(summary: dict[str, Any], run: RunDir | None = None) -> None:
    where = f": {run.path}" if run is not None else ""
    print(f"estimate on {summary.get('workload')} ({summary.get('size')}){where}")
    for h in summary.get("headline", []):
        iv = f"  [{_fmt(h['lo'])}, {_fmt(h['hi'])}]" if "lo" in h else ""
        print(f"  {h['label']}: {_fmt(h['value'])}{iv}")
    for v in summary.get("verdicts", []):
        print(f"  - {v}")


ESTIMATE = Command(
    "estimate",
    "the laws estimated directly at checkpoints of Adam training (HVPs, one-step measurement)",
    EstimateConfig,
    run_estimate,
    description=__doc__ or "",
)
