"""validate.advise: fitting the laws to best-lr points and predicting at a new batch size.

The command line (reading files, printing, exit codes) is tested in tests/test_cli_advise.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.tolerances import LSQ_RTOL, fp_tol
from theory import sgd as sgd_law
from theory import sign as sign_law
from validate.advise import (
    advise,
    fit_law,
    params_from_estimate,
    points_from_best_table,
    points_from_points_table,
    points_from_summary,
)

B = np.array([4.0, 8, 16, 32, 64, 128, 256, 512, 1024])


def test_recovers_surge_law_parameters_and_prediction():
    """Noise-free points on the surge curve: (B_noise, ε_max) and ε_opt at a new B recovered to
    the solver's tolerance; the surge law fits better than SGD's."""
    lr = sign_law.surge_lr(B, 3e-3, 90.0)
    a = advise(300.0, (B, lr), n_boot=0)
    assert a.b_noise_adam == pytest.approx(90.0, rel=LSQ_RTOL)
    assert a.eps_max_adam == pytest.approx(3e-3, rel=LSQ_RTOL)
    assert a.lr_adam == pytest.approx(float(sign_law.surge_lr(300.0, 3e-3, 90.0)), rel=LSQ_RTOL)
    assert a.rms_adam < a.rms_sgd
    assert any("SMALLER Adam learning rate" in w for w in a.warnings)
    below = advise(40.0, (B, lr), n_boot=0)
    assert not below.warnings


def test_recovers_sgd_law_parameters():
    """Points on McCandlish's curve: the SGD fit recovers (B_noise, ε_max) and fits better."""
    lr = sgd_law.optimal_lr(B, 0.5, 120.0)
    f = fit_law("sgd", B, lr)
    assert f.b_noise == pytest.approx(120.0, rel=LSQ_RTOL)
    assert f.eps_max == pytest.approx(0.5, rel=LSQ_RTOL)
    assert f.rms < fit_law("adam", B, lr).rms


def test_bootstrap_interval_covers_the_truth_and_warns_on_extrapolation():
    """5% log-normal noise on the points: the 90% bootstrap interval holds the point estimate
    and (for this seed) the true value; a target past the measured range warns."""
    rng = np.random.default_rng(1)
    lr = sign_law.surge_lr(B, 1e-3, 60.0) * np.exp(0.05 * rng.standard_normal(B.size))
    a = advise(100.0, (B, lr), n_boot=200, seed=0)
    lo, hi = a.interval_adam
    assert lo <= a.lr_adam <= hi
    assert lo <= float(sign_law.surge_lr(100.0, 1e-3, 60.0)) <= hi
    assert math.isfinite(a.interval_sgd[0])
    far = advise(5000.0, (B, lr), n_boot=0)
    assert any("outside the measured range" in w for w in far.warnings)


def test_from_parameters_matches_the_hand_computed_laws():
    """Given (B_noise, ε_max), the predictions are the laws' values worked by hand.

    Adam at B = 25, B_noise = 100, ε_max = 1e-3: ½(√(100/25) + √(25/100)) = ½(2 + ½) = 1.25,
    so ε = 1e-3/1.25 = 8e-4. SGD at B = 25, B_noise = 20, ε_max = 0.1: 0.1/(1 + 20/25) = 0.1/1.8
    = 1/18."""
    a = advise(25.0, None, b_noise=100.0, eps_max=1e-3, b_noise_sgd=20.0, eps_max_sgd=0.1)
    assert a.lr_adam == pytest.approx(8e-4, rel=fp_tol())
    assert a.lr_sgd == pytest.approx(1 / 18, rel=fp_tol())
    assert not any("SMALLER" in w for w in a.warnings)
    assert math.isnan(a.rms_adam) and math.isnan(a.interval_adam[0])
    past = advise(400.0, None, b_noise=100.0, eps_max=1e-3)  # ½(½ + 2) = 1.25 again
    assert past.lr_adam == pytest.approx(8e-4, rel=fp_tol())
    assert any("SMALLER" in w for w in past.warnings)
    assert any("no SGD parameters" in w for w in past.warnings)


def test_two_batch_sizes_report_no_fit_error_and_no_interval():
    """Two batch sizes for two free parameters: each law passes through them exactly, so the
    RMS, the leave-one-out error and the interval are NaN (not 'RMS 0.000' and a zero-width
    interval) and a warning says why."""
    a = advise(16.0, ([8.0, 32.0], [1e-3, 2e-3]), n_boot=200)
    assert math.isnan(a.rms_adam) and math.isnan(a.rms_sgd)
    assert all(math.isnan(v) for v in (*a.interval_adam, *a.interval_sgd))
    assert all(math.isnan(r["loo_err"]) for r in a.laws)
    assert any("only 2 batch sizes" in w for w in a.warnings)
    three = advise(16.0, ([8.0, 32.0, 128.0], [1e-3, 2e-3, 1.5e-3]), n_boot=50)
    assert math.isfinite(three.rms_adam) and math.isfinite(three.interval_adam[0])


def test_baselines_and_leave_one_out_by_hand():
    """Points exactly on the square-root rule, lr = 1e-3 √(B/4) at B = 4, 16, 64: the
    square-root rule predicts every held-out batch size exactly (LOO 0); the constant rule
    misses each by a factor 2 (hold out 4 → 16's 2e-3; 16 → 4's 1e-3, the smaller of two equally
    near; 64 → 16's 2e-3), so its LOO RMS is ln 2; at B = 32 the baselines scale B₀ = 16's lr."""
    b, lr = np.array([4.0, 16.0, 64.0]), np.array([1e-3, 2e-3, 4e-3])
    a = advise(32.0, (b, lr), n_boot=0)
    got = {r["law"]: r for r in a.laws}
    assert set(got) == {"adam", "sgd", "sgd_sqrt", "constant", "sqrt_rule", "linear_rule"}
    assert got["sqrt_rule"]["loo_err"] < fp_tol(10)
    assert got["constant"]["loo_err"] == pytest.approx(math.log(2), rel=fp_tol())
    assert got["linear_rule"]["loo_err"] == pytest.approx(math.log(2), rel=fp_tol())
    assert got["constant"]["lr"] == pytest.approx(2e-3, rel=fp_tol())
    assert got["sqrt_rule"]["lr"] == pytest.approx(2e-3 * math.sqrt(2), rel=fp_tol())
    assert got["linear_rule"]["lr"] == pytest.approx(4e-3, rel=fp_tol())
    assert got["linear_rule"]["b_ref"] == 16.0


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(points=([], [])), "no \\(batch_size, lr\\) points"),
        (dict(points=([0, 8], [1e-3, 2e-3])), "batch sizes must be positive"),
        (dict(points=([8, 8], [1e-3, 2e-3])), ">= 2 distinct batch sizes"),
        (dict(points=([8, 16], [1e-3, -2e-3])), "learning rates must be positive"),
        (dict(points=([8, 16], [1e-3, math.nan])), "learning rates must be positive"),
        (dict(points=None), "give either points"),
        (dict(points=None, b_noise=-1.0, eps_max=1.0), "b_noise must be a positive"),
        (dict(points=([8, 16, 32], [1, 2, 3]), n_boot=5), "n_boot must be 0"),
        (dict(points=([8, 16, 32], [1, 2, 3]), ci=1.0), "ci must lie"),
    ],
)
def test_bad_input_raises(bad, match):
    """Bad inputs raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        advise(32.0, **bad)
    with pytest.raises(ValueError, match="batch size must be positive"):
        advise(0.0, (B, sign_law.surge_lr(B, 1e-3, 60.0)))


def test_result_folder_readers():
    """A sweep summary's best_lr list and best_lr.csv rows give points (rows without a best lr
    counted, the primary target's rows only); an estimate summary gives the last checkpoint."""
    b, e, n = points_from_summary(
        {"best_lr": [{"batch_size": 8, "lr": 0.1}, {"batch_size": 16, "lr": None}]}
    )
    assert b.tolist() == [8.0] and e.tolist() == [0.1] and n == 1
    assert points_from_summary({"b_noise": 3.0}) is None
    rows = [
        {"target": 2.0, "batch_size": 8, "best_lr": 0.1},
        {"target": 2.0, "batch_size": 16, "best_lr": 0.2},
        {"target": 1.0, "batch_size": 8, "best_lr": 0.3},
        {"target": 1.0, "batch_size": 16, "best_lr": float("nan")},
    ]
    b, e, n, t = points_from_best_table(rows, primary=2.0)
    assert (b.tolist(), e.tolist(), n, t) == ([8.0, 16.0], [0.1, 0.2], 0, 2.0)
    b, e, n, t = points_from_best_table(rows)
    assert (b.tolist(), e.tolist(), n, t) == ([8.0], [0.3], 1, 1.0)
    params, step = params_from_estimate(
        {
            "checkpoints": [
                {"step": 0, "b_noise_thm3": 1.0, "eps_max_thm3": 2.0},
                {
                    "step": 9,
                    "b_noise_thm3": 10.0,
                    "eps_max_thm3": 0.01,
                    "b_noise_sgd": 30.0,
                    "eps_max_sgd": 1.0,
                    "b_noise_sgd_full": 40.0,
                    "eps_max_sgd_full": None,
                },
            ]
        }
    )
    assert step == 9
    assert params == {"b_noise": 10.0, "eps_max": 0.01, "b_noise_sgd": 40.0, "eps_max_sgd": 1.0}


def test_from_points_table_uses_the_sweeps_best_lr_definition():
    """A folder with only points.csv advises the sweep's own best lrs (validate.fits): an lr
    where 1 of 4 seeds reached the target, with a large reduction, does not win, and the
    primary target is the lowest one with a valid B_noise fit, not merely the lowest."""
    rows = []
    for t, s_of in ((2.0, {8: 100, 64: 30}), (1.0, {8: 100, 64: 100})):  # 1.0: no B_noise
        for b, steps in s_of.items():
            for seed in range(4):
                rows.append(
                    dict(
                        batch_size=b,
                        lr=1e-3,
                        seed=seed,
                        target=t,
                        reached=True,
                        steps=steps,
                        loss_reduction=0.1,
                        further_diverged=False,
                    )
                )
                ok = seed == 0 or t == 1.0  # at 1.0 every seed reaches: 5e-3 would win there
                rows.append(
                    dict(
                        batch_size=b,
                        lr=5e-3,
                        seed=seed,
                        target=t,
                        reached=ok,
                        steps=steps if ok else None,
                        loss_reduction=1.0 if ok else None,
                        further_diverged=False,
                    )
                )
    b, e = points_from_points_table(rows)
    assert b.tolist() == [8.0, 64.0] and e.tolist() == [1e-3, 1e-3]
