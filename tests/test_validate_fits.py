"""validate.fits: the paper's analysis recovers the laws it is fed, and never raises on
degenerate sweeps; validate.plots draws what the tables say. (The estimators' statistics —
interval coverage, censoring, the law verdict — are in tests/test_validate_estimators.py.)"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

from tests.tolerances import LAW_SEPARATION, fp_tol
from theory.efficiency import sgd_form_lr
from theory.sign import surge_lr
from validate import fits, plots

matplotlib.use("Agg")

B_GRID = np.array([4.0, 8, 16, 32, 64, 128, 256, 512])


def law_table(
    B, best_lr, S, *, n_seeds=3, target=1.0, extra_lrs=(1e-6, 1.0), step_noise=None, seed=0
):
    """Points whose mean further loss reduction peaks (in log lr) exactly at ``best_lr[i]``.

    Every batch size's lr grid holds all the ``best_lr`` values plus ``extra_lrs``, so the
    grid argmax is exactly the intended best lr. ``S`` are the steps to the target (optionally
    with multiplicative per-seed noise ``step_noise``).
    """
    rng = np.random.default_rng(seed)
    lrs = sorted({float(v) for v in best_lr} | set(extra_lrs))
    rows = []
    for b, opt, s in zip(B, best_lr, S):
        for lr in lrs:
            for k in range(n_seeds):
                steps = s * (1 + step_noise * rng.normal()) if step_noise else s
                rows.append(
                    dict(
                        batch_size=int(b),
                        lr=lr,
                        seed=k,
                        target=target,
                        reached=True,
                        steps=float(steps),
                        examples=float(b * steps),
                        loss_reduction=1.0 - (math.log(lr) - math.log(opt)) ** 2,
                        diverged=False,
                        further_diverged=False,
                    )
                )
    return rows


def _rule(tab, rule):
    return [r for r in tab["best"] if r["rule"] == rule]


def _cond(B, S):
    """Condition number of the S–E least-squares problem (its rounding-error amplifier)."""
    E = B * S
    return float(np.linalg.cond(np.vander(1.0 / E, 2)))


@pytest.mark.parametrize("b_noise", [6.0, 40.0, 300.0])
def test_surge_table_recovers_b_noise_and_eps_max(b_noise):
    """Exact surge-law data: B_noise, S_min and Adam's ε_max come back to rounding error, the
    Adam law fits with ~0 error and leave-one-out, and the SGD forms do measurably worse."""
    eps_max, s_min = 2e-3, 150.0
    S = s_min * (1 + b_noise / B_GRID)
    best = surge_lr(B_GRID, eps_max, b_noise)
    fit, tab = fits.fit_target(law_table(B_GRID, best, S), 1.0, n_boot=0)
    rows = _rule(tab, "further")
    tol = fp_tol(_cond(B_GRID, S))
    assert fit["reason"] is None
    assert fit["n_batch_sizes"] == B_GRID.size
    assert fit["b_noise"] == pytest.approx(b_noise, rel=tol)
    assert fit["s_min"] == pytest.approx(s_min, rel=tol)
    assert fit["eps_max_adam"] == pytest.approx(eps_max, rel=tol)
    assert fit["fit_err_adam"] < tol and fit["loo_err_adam"] < tol
    assert fit["loo_folds"] == B_GRID.size
    for wrong in ("sgd", "sgd_sqrt"):
        assert fit[f"loo_err_{wrong}"] > LAW_SEPARATION
        assert fit[f"fit_err_{wrong}"] > LAW_SEPARATION
    # the local quadratic in log lr is exact on these parabolas
    assert [r["lr"] for r in rows] == pytest.approx(best, rel=1e-9)
    assert [r["E"] for r in rows] == pytest.approx(B_GRID * S, rel=fp_tol())
    assert fit["b_crit"] == fit["b_noise"]


@pytest.mark.parametrize(("alpha", "law"), [(1.0, "sgd"), (0.5, "sgd_sqrt")])
def test_sgd_table_is_fitted_best_by_its_own_law(alpha, law):
    """Data from the SGD-style curve of exponent α: that law's ε_max is recovered and its
    leave-one-out error is the smallest of the three."""
    b_noise, eps_max = 50.0, 1e-3
    S = 100.0 * (1 + b_noise / B_GRID)
    best = sgd_form_lr(B_GRID, eps_max, b_noise, alpha)
    fit, _ = fits.fit_target(law_table(B_GRID, best, S), 1.0, n_boot=0)
    tol = fp_tol(_cond(B_GRID, S))
    assert fit[f"eps_max_{law}"] == pytest.approx(eps_max, rel=tol)
    assert fit[f"loo_err_{law}"] < tol
    others = [fit[f"loo_err_{k}"] for k in fits.LAWS if k != law]
    assert min(others) > LAW_SEPARATION


def test_best_lr_is_the_largest_mean_over_seeds_not_the_largest_single_run():
    """The paper's definition: argmax over lrs of the MEAN reduction over seeds. Here 1e-3
    has mean 0.4 and 2e-3 mean 0.3, although the single largest reduction (0.9) is at 2e-3."""
    reds = {1e-3: (0.4, 0.4, 0.4), 2e-3: (0.0, 0.0, 0.9)}
    rows = [
        dict(batch_size=8, lr=lr, seed=k, target=1.0, reached=True, steps=10, loss_reduction=r)
        for lr, rs in reds.items()
        for k, r in enumerate(rs)
    ]
    _, tab = fits.fit_target(rows, 1.0, n_boot=0)
    (best,) = _rule(tab, "further")
    assert best["grid_lr"] == 1e-3 and best["censored"] == "low"
    assert best["value"] == pytest.approx(0.4, rel=fp_tol())


def test_lr_where_most_seeds_failed_cannot_win():
    """An lr with a huge reduction on 1 of 4 seeds (the others never reached the target) is
    not eligible at the default min_ok_frac = 0.5; at min_ok_frac = 0.25 it wins."""
    rows = []
    for seed in range(4):
        rows.append(
            dict(
                batch_size=8,
                lr=1e-3,
                seed=seed,
                target=1.0,
                reached=True,
                steps=10,
                loss_reduction=0.1,
            )
        )
        ok = seed == 0
        rows.append(
            dict(
                batch_size=8,
                lr=5e-3,
                seed=seed,
                target=1.0,
                reached=ok,
                steps=5 if ok else None,
                loss_reduction=1.0 if ok else None,
            )
        )
    assert _rule(fits.fit_target(rows, 1.0, n_boot=0)[1], "further")[0]["lr"] == 1e-3
    got = fits.fit_target(rows, 1.0, n_boot=0, min_ok_frac=0.25)[1]
    assert _rule(got, "further")[0]["lr"] == 5e-3


def test_s_is_mean_steps_of_reached_seeds_at_the_best_lr():
    """S averages the steps of the seeds that reached the target at the optimum lr* (here on
    the grid point 1e-3, flanked by worse lrs): 120 = mean(100, 120, 140), E = 4·120."""
    rows = []
    for lr, red, st in ((5e-4, 0.2, (9, 9, 9)), (1e-3, 0.5, (100, 120, 140)), (2e-3, 0.2, None)):
        rows += [
            dict(
                batch_size=4,
                lr=lr,
                seed=s,
                target=1.0,
                reached=True,
                steps=10 if st is None else st[s],
                loss_reduction=red,
            )
            for s in range(3)
        ]
    _, tab = fits.fit_target(rows, 1.0, n_boot=0)
    (best,) = _rule(tab, "further")
    assert best["lr"] == pytest.approx(1e-3, rel=1e-12)
    assert best["S"] == pytest.approx(120.0, rel=1e-12) and best["E"] == pytest.approx(480.0)


def test_bootstrap_interval_brackets_b_noise_with_noisy_steps():
    """Per-seed 5% noise on S: the seed bootstrap's 95% interval is non-degenerate and holds
    the true B_noise (a fixed-seed, deterministic draw)."""
    b_noise = 40.0
    S = 200.0 * (1 + b_noise / B_GRID)
    rows = law_table(B_GRID, surge_lr(B_GRID, 1e-3, b_noise), S, n_seeds=8, step_noise=0.05)
    fit, _ = fits.fit_target(rows, 1.0, n_boot=100, seed=1)
    assert fit["b_noise_lo"] < b_noise < fit["b_noise_hi"]
    assert fit["b_noise_lo"] < fit["b_noise"] < fit["b_noise_hi"]


def test_only_one_batch_size_reaching_is_recorded_not_raised():
    """Fewer than 2 batch sizes with a best lr: NaN fields and a reason, no exception."""
    rows = law_table(B_GRID[:2], [1e-3, 1e-3], [100.0, 80.0])
    rows = [
        dict(r, reached=False, steps=None, loss_reduction=None)
        if r["batch_size"] == B_GRID[1]
        else r
        for r in rows
    ]
    fit, tab = fits.fit_target(rows, 1.0)
    assert math.isnan(fit["b_noise"]) and math.isnan(fit["eps_max_adam"])
    assert "only 1 batch size" in fit["reason"]
    assert math.isnan(_rule(tab, "further")[1]["lr"])


def test_non_positive_b_noise_is_recorded_not_raised():
    """Steps that GROW with batch size give a negative slope fit: NaN B_noise and a reason."""
    S = 100.0 * (1 + B_GRID / 64)
    fit, _ = fits.fit_target(law_table(B_GRID, np.full(B_GRID.size, 1e-3), S), 1.0)
    assert math.isnan(fit["b_noise"])
    assert "not positive" in fit["reason"]
    assert math.isnan(fit["fit_err_adam"]) and math.isnan(fit["loo_err_sgd"])


def test_all_diverged_and_empty_tables_summarise_without_raising():
    """Every run diverged (nothing reached), or no rows at all: a summary with reasons."""
    rows = [
        dict(
            batch_size=b,
            lr=1.0,
            seed=0,
            target=1.0,
            reached=False,
            steps=None,
            loss_reduction=None,
            diverged=True,
        )
        for b in (4, 8, 16)
    ]
    s = fits.summarise(rows)
    assert s["n_diverged"] == 3 and s["best_lr"] == [] and s["b_noise"] != s["b_noise"]
    assert "0 batch size" in s["reason"]
    empty = fits.summarise([])
    assert empty["primary_target"] is None and empty["reason"]


def test_primary_target_is_the_lowest_with_a_valid_fit():
    """B_noise per target; the primary target is the lowest whose fit is valid."""
    rows = []
    for t, bn in ((2.0, 20.0), (1.5, 60.0)):
        S = 100.0 * (1 + bn / B_GRID)
        rows += law_table(B_GRID, surge_lr(B_GRID, 1e-3, bn), S, target=t)
    S_bad = 100.0 * (1 + B_GRID / 64)
    rows += law_table(B_GRID, np.full(B_GRID.size, 1e-3), S_bad, target=1.0)
    s = fits.summarise(rows, n_boot=0)
    assert s["targets"] == [2.0, 1.5, 1.0]
    assert s["primary_target"] == 1.5
    assert s["b_noise"] == pytest.approx(60.0, rel=fp_tol(1e4))
    by = {d["target"]: d["b_noise"] for d in s["b_noise_by_target"]}
    assert by[2.0] == pytest.approx(20.0, rel=fp_tol(1e4)) and math.isnan(by[1.0])
    assert [d["batch_size"] for d in s["best_lr"]] == [int(b) for b in B_GRID]
    assert s["law_ranking"][0] == "adam"


def test_heatmap_draws_best_lrs_three_laws_and_b_noise():
    """plot_heatmap shows the table: one best-lr marker per batch size, one curve per law and
    the B_noise line at the fitted value."""
    import matplotlib.pyplot as plt

    b_noise = 40.0
    S = 100.0 * (1 + b_noise / B_GRID)
    rows = law_table(B_GRID, surge_lr(B_GRID, 1e-3, b_noise), S)
    s = fits.summarise(rows, n_boot=0)
    fig, ax = plt.subplots()
    plots.plot_heatmap(rows, s["fits"], s["best"], 1.0, ax=ax)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert sum(lab.startswith(("Adam", "SGD", "α=0.5")) for lab in labels) == 3
    (star,) = [c for c in ax.containers if c.get_label().startswith("optimum lr*")]
    assert len(star.lines[0].get_xdata()) == B_GRID.size
    (vline,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("S–E B_crit")]
    assert vline.get_xdata()[0] == pytest.approx(b_noise)
    plots.plot_se_fit(s["fits"], s["best"], ax=ax)
    plots.plot_b_noise_vs_target(s["fits"], ax=ax)
    plots.plot_b_crit_vs_target(s["b_crit_table"], ax=ax)
    plots.plot_optimum_vs_b(s["best"], s["fits"], s["loo_table"], 1.0, ax=ax)
    plt.close(fig)


def test_bootstrap_is_skipped_with_too_few_seeds():
    """With fewer than MIN_BOOT_SEEDS seeds the interval is NaN (a 2-seed bootstrap has only
    3 distinct resamples, so its quantiles would include the estimate itself)."""
    S = 100.0 * (1 + 40.0 / B_GRID)
    rows = law_table(
        B_GRID, surge_lr(B_GRID, 1e-3, 40.0), S, n_seeds=fits.MIN_BOOT_SEEDS - 1, step_noise=0.05
    )
    fit, _ = fits.fit_target(rows, 1.0, n_boot=50)
    assert math.isnan(fit["b_noise_lo"]) and math.isnan(fit["b_noise_hi"])
    assert math.isfinite(fit["b_noise"])


def test_b_noise_zero_to_rounding_is_recorded_not_used():
    """Equal steps at every batch size fit a slope of ±rounding error: B_noise is NaN with a
    reason instead of a 1e-15 value that would blow ε_max up to 1e5."""
    B = np.array([4.0, 16.0])
    rows = law_table(B, [1e-3, 3e-3], [15.0, 15.0])
    fit, _ = fits.fit_target(rows, 1.0, n_boot=0)
    assert math.isnan(fit["b_noise"]) and math.isnan(fit["eps_max_adam"])
    assert "zero to rounding" in fit["reason"]


def test_no_leave_one_out_ranking_without_a_valid_fit():
    """Steps that do not fall with batch size (full fit B_noise < 0) give NaN leave-one-out
    errors and no law ranking, even when one fold of a subset happens to slope the right way
    (here dropping B = 16 leaves a positive refit)."""
    B = np.array([4.0, 8, 16, 32, 64])
    S = np.array([53.61858395, 104.21917832, 9.77804348, 80.34890965, 28.76787286])
    best = surge_lr(B, 1e-3, 16.0)
    s = fits.summarise(law_table(B, best, S), n_boot=0)
    assert math.isnan(s["b_noise"]) and "not positive" in s["reason"]
    assert s["loo_folds"] == 0 and all(math.isnan(s[f"loo_err_{law}"]) for law in fits.LAWS)
    assert s["law_ranking"] == []


def test_best_lr_at_the_edge_of_the_grid_is_flagged():
    """A best lr that is the smallest or largest lr tried at its batch size is censored (the
    optimum may lie off the grid): its best row says ``censored`` and the fit counts it."""
    S = 100.0 * (1 + 40.0 / B_GRID)
    best = surge_lr(B_GRID, 1e-3, 40.0)
    best[0] = 1e-6  # = extra_lrs[0], the smallest lr of the grid
    fit, tab = fits.fit_target(law_table(B_GRID, best, S), 1.0, n_boot=0)
    assert [r["censored"] for r in _rule(tab, "further")] == ["low"] + [""] * (B_GRID.size - 1)
    assert fit["n_best_at_edge"] == 1
    assert fit["n_batch_sizes"] == B_GRID.size - 1  # kept out of the fits
    inside = fits.summarise(law_table(B_GRID, surge_lr(B_GRID, 1e-3, 40.0), S), n_boot=0)
    assert inside["n_best_at_edge"] == 0


def test_baselines_are_scored_on_the_same_leave_one_out_folds():
    """Best lrs exactly on the square-root rule, 1e-3·√(B/4) at B = 4, 16, 64: held out, each
    batch size is predicted exactly by the square-root rule from its nearest neighbour (LOO 0),
    while keeping the neighbour's lr misses by a factor 2 every time (hold out 4 → 16's 2e-3;
    16 → 4's 1e-3, the smaller of two equally near; 64 → 16's 2e-3): LOO = ln 2, and so for the
    linear rule. The baselines rank with the laws and have no in-sample fit error."""
    B = np.array([4.0, 16.0, 64.0])
    S = 100.0 * (1 + 40.0 / B)
    s = fits.summarise(law_table(B, [1e-3, 2e-3, 4e-3], S), n_boot=0)
    assert s["loo_folds"] == 3
    assert s["loo_err_sqrt_rule"] < fp_tol(10)
    assert s["loo_err_constant"] == pytest.approx(math.log(2), rel=fp_tol())
    assert s["loo_err_linear_rule"] == pytest.approx(math.log(2), rel=fp_tol())
    assert s["law_ranking"][0] == "sqrt_rule"
    assert set(s["law_ranking"]) == {*fits.LAWS, *fits.BASELINES}
    assert not any(k.startswith("fit_err_") and k.endswith(fits.BASELINES) for k in s)


def test_bootstrap_needs_n_boot_of_at_least_ten():
    """n_boot between 1 and 9 is refused at the door (a percentile interval of fewer values
    is not an interval), 0 means none."""
    S = 100.0 * (1 + 40.0 / B_GRID)
    rows = law_table(B_GRID, surge_lr(B_GRID, 1e-3, 40.0), S)
    with pytest.raises(ValueError, match="n_boot"):
        fits.fit_target(rows, 1.0, n_boot=5)
