"""simulate.surge: the one-step Monte Carlo against Theorems 2-4 and the SGD law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulate import problems
from simulate.surge import (
    default_batch_sizes,
    run_surge,
)
from tests.tolerances import (
    GRID_HALF_CELL,
    MC_SIGMAS,
    erf_linearisation_rel,
    fp_tol,
    mc_close,
)
from theory import sign

N_SAMPLES = 20000
GRID = default_batch_sizes(1, 8192, 31)


def _cell(b: np.ndarray) -> float:
    """Largest grid step in log B (the grid is not exactly geometric after rounding)."""
    return float(np.max(np.diff(np.log(b))))


@pytest.fixture(scope="module")
def surge_runs():
    out = {}
    for name, prob in [
        ("surge", problems.surge(0)),
        ("dense", problems.dense(0)),
        ("surge-1", problems.surge(1, d=48)),
    ]:
        out[name] = (prob, *run_surge(prob, GRID, N_SAMPLES, seed=0, backend="auto"))
    return out


@pytest.mark.parametrize("name", ["surge", "dense", "surge-1"])
def test_mc_peak_matches_theorem2_peak(surge_runs, name):
    """On surge problems the MC peak (parabola-refined argmax) lies within half a grid cell
    (in log B) of Theorem 2's exact peak, and Theorem 2 itself agrees with the MC within 5 SE
    at every B."""
    _prob, rows, s = surge_runs[name]
    assert s["surge_detected"]
    cell = _cell(GRID)
    assert abs(math.log(s["b_peak_mc"] / s["b_peak_exact"])) <= GRID_HALF_CELL * cell
    lr = np.array([r["lr_mc"] for r in rows])
    assert mc_close(lr, [r["lr_exact"] for r in rows], [r["lr_mc_se"] for r in rows])


@pytest.mark.parametrize("name", ["surge", "dense", "surge-1"])
def test_mc_peak_matches_theorem3_b_noise(surge_runs, name):
    """The MC peak is at Theorem 3's B_noise up to the linearisation error of ξ at the peak
    (2·z²/3 with z² = B_noise·max r_i²/2, tests/tolerances.erf_linearisation_rel) plus half a
    grid cell."""
    prob, _, s = surge_runs[name]
    r2 = float(np.max((prob.mu / prob.marginal_std()) ** 2))
    lin = erf_linearisation_rel(s["b_noise_theory"] * r2 / 2.0)
    tol = math.log1p(lin) + GRID_HALF_CELL * _cell(GRID)
    assert abs(math.log(s["b_peak_mc"] / s["b_noise_theory"])) <= tol


@pytest.mark.parametrize(
    "prob",
    [problems.diagonal(0), problems.diagonal(5, d=16), problems.negative_soff(0)],
    ids=lambda p: p.name,
)
def test_no_surge_without_positive_s_off(prob):
    """Diagonal H (and S_off < 0 here): the MC optimum is non-decreasing in B up to 5 SE, no
    surge is detected, and it approaches Theorem 4's limit from below."""
    rows, s = run_surge(prob, GRID, 4000, seed=1)
    lr = np.array([r["lr_mc"] for r in rows])
    se = np.array([r["lr_mc_se"] for r in rows])
    assert np.all(np.diff(lr) >= -MC_SIGMAS * np.hypot(se[1:], se[:-1]))
    assert not s["surge_detected"]
    assert mc_close(lr, [r["lr_exact"] for r in rows], se)
    assert lr[-1] <= s["eps_large_batch"] + MC_SIGMAS * se[-1]


def test_sgd_mc_matches_mccandlish():
    """The SGD Monte Carlo reproduces ε_opt = ε_max/(1 + B_noise/B) within 5 SE."""
    _rows, s = run_surge(problems.surge(2, d=32), GRID[::3], 4000, seed=2)
    assert s["max_abs_z_sgd_mc_vs_law"] <= MC_SIGMAS


def test_correlated_noise_breaks_theorem2_but_not_the_exact_gaussian():
    """Rank-1 correlated noise: MC agrees with the exact correlated-Gaussian ε_opt (pairwise
    orthant moments) within 5 SE, and disagrees with Theorem 2 (independent coordinates) by far
    more than 5 SE."""
    prob = problems.correlated(0, d=32, rho=0.3)
    _rows, s = run_surge(prob, GRID[::2], 8000, seed=3)
    assert s["max_abs_z_mc_vs_correlated"] <= MC_SIGMAS
    assert s["max_abs_z_mc_vs_exact"] > 4 * MC_SIGMAS


def test_finite_dataset_sgd_law_with_fpc_and_exact_large_batch():
    """Finite dataset without replacement: SGD MC equals the FPC-corrected law within 5 SE;
    at B = N the batch is the full gradient, so the sign-update optimum is Theorem 4's limit
    exactly (floating point); at B = 1 it is the exact average over the examples (5 SE)."""
    prob = problems.finite(0, d=16, n_examples=128)
    b = np.array([1.0, 4.0, 16.0, 64.0, 100.0, 128.0])
    rows, s = run_surge(prob, b, 1500, seed=4)
    assert s["max_abs_z_sgd_mc_vs_law"] <= MC_SIGMAS
    assert rows[-1]["lr_mc"] == pytest.approx(sign.large_batch_lr(prob.mu, prob.H), rel=fp_tol(128))
    assert rows[-1]["lr_exact_fpc"] == pytest.approx(rows[-1]["lr_mc"], rel=fp_tol(128))
    # B = 1 is exact by enumeration of the examples: the MC must agree within 5 SE
    assert mc_close(rows[0]["lr_mc"], s["lr_exact_finite_b1"], rows[0]["lr_mc_se"])


@pytest.mark.parametrize(
    "kw, arg",
    [
        ({"batch_sizes": [4.0, 2.0, 8.0]}, "batch_sizes"),
        ({"batch_sizes": [1.0, 2.0]}, "batch_sizes"),
        ({"batch_sizes": [1.0, -2.0, 3.0]}, "batch_sizes"),
        ({"n_samples": 1}, "n_samples"),
    ],
)
def test_bad_input_names_argument(kw, arg):
    args = {"problem": problems.surge(0, d=8), "batch_sizes": [1.0, 2.0, 4.0], "n_samples": 100}
    args.update(kw)
    with pytest.raises(ValueError, match=arg):
        run_surge(**args)
