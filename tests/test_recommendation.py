"""The Recommendation, the shortcut and the steps-to-target fit, against hand-derived values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theory import efficiency
from theory.sign import surge_lr
from validate.advise import (
    Evidence,
    default_batch_sizes,
    fit_steps,
    recommend,
    shortcut,
)

B = [8.0, 32.0, 128.0, 512.0, 2048.0]


def test_measured_batch_size_gives_the_measured_best_lr_and_its_bracket():
    """At a measured batch size the answer is the sweep's best lr there, its interval the lrs
    tried either side; a censored point says so."""
    lrs = [0.01, 0.02, 0.03, 0.02, 0.01]
    ev = Evidence(
        "Adam",
        B,
        lrs,
        censored=[False, False, True, False, False],
        lr_lo=[0.005, 0.01, 0.02, 0.01, 0.005],
        lr_hi=[0.02, 0.03, math.nan, 0.03, 0.02],
    )
    r = recommend([ev], [32, 128])
    assert [x["law"] for x in r] == ["measured", "measured"]
    assert (r[0]["lr"], r[0]["lo"], r[0]["hi"]) == (0.02, 0.01, 0.03)
    assert math.isnan(r[1]["hi"]) and any("censored" in c for c in r[1]["caveats"])


def test_between_points_the_smallest_leave_one_out_law_predicts_with_its_interval():
    """With the sweep's own fit given, the law of smallest leave-one-out error predicts at an
    unmeasured B: lr = the law at (ε_max, B_noise) by hand, interval lr·exp(±1.6449·err)."""
    lrs = [float(surge_lr(b, 1e-2, 128.0)) for b in B]
    loo = {
        "adam": 0.1,
        "sgd": 0.5,
        "sgd_sqrt": 0.3,
        "constant": 0.4,
        "sqrt_rule": 0.2,
        "linear_rule": 0.9,
    }
    fitted = {"adam": (1e-2, 128.0), "sgd": (1.0, 10.0), "sgd_sqrt": (1.0, 10.0)}
    ev = Evidence("Adam", B, lrs, fitted=fitted, loo=loo, b_crit=128.0)
    (r,) = recommend([ev], [1024])
    # 1e-2 / (½(√(128/1024) + √(1024/128))) = 1e-2 / (½(0.353553 + 2.828427))
    want = 1e-2 / (0.5 * (math.sqrt(0.125) + math.sqrt(8.0)))
    assert r["law"] == "adam" and r["lr"] == pytest.approx(want, rel=1e-12)
    z = 1.6448536269514722  # Φ⁻¹(0.95)
    assert r["lo"] == pytest.approx(want * math.exp(-z * 0.1), rel=1e-9)
    assert r["hi"] == pytest.approx(want * math.exp(z * 0.1), rel=1e-9)
    assert r["past_peak"] is True and not r["extrapolated"]
    loo2 = {**loo, "sqrt_rule": 0.05}  # a rule wins: scale the nearest measured point
    (r2,) = recommend([Evidence("Adam", B, lrs, fitted=fitted, loo=loo2)], [1024])
    assert r2["law"] == "sqrt_rule"
    assert r2["lr"] == pytest.approx(lrs[3] * math.sqrt(1024 / 512), rel=1e-12)


def test_extrapolation_is_flagged_with_its_factor():
    lrs = [float(surge_lr(b, 1e-2, 128.0)) for b in B]
    (r,) = recommend([Evidence("Adam", B, lrs)], [8192])
    assert r["extrapolated"] and r["extrapolation_factor"] == pytest.approx(4.0)
    assert any("4× beyond" in c for c in r["caveats"])
    # the least-squares surge law on exact surge points: the law's own value
    assert r["lr"] == pytest.approx(float(surge_lr(8192.0, 1e-2, 128.0)), rel=1e-5)


def test_two_batch_sizes_use_the_square_root_rule_without_interval():
    (r,) = recommend([Evidence("Adam", [8.0, 32.0], [0.01, 0.02])], [16])
    assert r["law"] == "sqrt_rule" and r["lr"] == pytest.approx(0.01 * math.sqrt(2))
    assert math.isnan(r["lo"]) and "a priori" in r["basis"]


def test_default_batch_sizes_span_and_pass_the_measured_range():
    assert default_batch_sizes([4, 16, 64]) == (4, 16, 64, 128)
    assert default_batch_sizes([1, 2, 4, 8, 16, 32, 64]) == (1, 8, 64, 128)


def test_recommend_rejects_bad_batch_sizes():
    ev = Evidence("Adam", B, [0.01] * 5)
    for bad in ([0], [-4], [math.nan], []):
        with pytest.raises(ValueError, match="batch sizes"):
            recommend([ev], bad)


def test_shortcut_hand_computed():
    """B0 = 100, LR0 = 1e-3, B_noise = 100, B1 = 400: the surge law's ε_max is LR0 (B0 is the
    peak), lr = 1e-3/(½(½ + 2)) = 8e-4; SGD's ε_max = 2e-3, lr = 2e-3/(1 + ¼) = 1.6e-3;
    square-root rule 2e-3; linear rule 4e-3."""
    s = shortcut(400.0, 100.0, 1e-3, 100.0)
    got = {r["law"]: r["lr"] for r in s["rows"]}
    assert got == pytest.approx(
        {"adam": 8e-4, "sgd": 1.6e-3, "sqrt_rule": 2e-3, "linear_rule": 4e-3}, rel=1e-12
    )
    assert all(r["assumptions"] for r in s["rows"])
    assert any("past B_noise" in n for n in s["notes"])
    small = shortcut(4.0, 2.0, 1e-3, 0.8)
    assert any("below one example" in n for n in small["notes"])
    with pytest.raises(ValueError, match="current_lr"):
        shortcut(4.0, 2.0, 0.0, 10.0)


@pytest.mark.parametrize("b_crit", [20.0, 300.0, 5000.0])
def test_fit_steps_log_recovers_b_crit_exactly(b_crit):
    b = np.geomspace(b_crit / 20, b_crit * 20, 7)
    f = efficiency.fit_steps_log(b, efficiency.steps_for_batch(b, 50.0, b_crit))
    assert f.b_crit == pytest.approx(b_crit, rel=1e-6)
    assert f.s_min == pytest.approx(50.0, rel=1e-6)
    assert f.rms < 1e-6 and not f.at_bound


def test_fit_steps_flat_steps_run_to_the_bound():
    f = efficiency.fit_steps_log([8.0, 16.0, 32.0], [100.0, 100.0, 100.0])
    assert f.at_bound


def test_fit_steps_recovers_b_crit_on_noisy_tables():
    """5% log-normal noise on S = 200(1 + 100/B), 3 runs per B: the interval covers 100 in
    most of 20 tables, and the overhead batch size is 0.2·B_crit."""
    b = np.repeat(np.geomspace(8, 1024, 8), 3)
    covered = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        s = 200 * (1 + 100 / b) * np.exp(rng.normal(0, 0.05, b.size))
        f = fit_steps(b, s, n_boot=200, seed=seed)
        covered += f["b_crit_lo"] <= 100 <= f["b_crit_hi"]
        assert f["b_crit"] == pytest.approx(100, rel=0.25)
        assert f["b_crit_eq22"] == pytest.approx(100, rel=0.35)
        assert f["b_overhead"] == pytest.approx(0.2 * f["b_crit"])
        assert f["e_min"] == pytest.approx(f["s_min"] * f["b_crit"])
    assert covered >= 14  # 90% intervals: P(covered < 14 of 20) < 1% if calibrated
