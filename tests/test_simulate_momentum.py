"""``simulate.momentum``: Su's one-step optimum in Adam's steady state, and how it fades with K.

Independent references: Su's mean-field closed form ε₁ ∝ √(1 + x)/(1 + c x), x = B_simple/B,
c = (1 − β1)/(1 + β1), peak at B* = (1 − β1)/(3β1 − 1)·B_simple (derived by hand in
simulate/momentum.py's module docstring), on a problem where it holds exactly: diagonal H and
the same σ_i/|μ_i| in every coordinate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulate.momentum import (
    best_lr,
    branch_losses,
    fall,
    run_momentum,
    su_fall_threshold,
    su_one_step_lr,
    warmup_steps,
)
from simulate.problems import Problem
from surgelab.cli import main
from theory import sgd

#: σ_i = 20 |μ_i|: B_simple = 400, Su's B* = 400/17 ≈ 23.5 at β1 = 0.9
RATIO = 20.0


def _su_problem(d: int = 64) -> Problem:
    rng = np.random.default_rng(5)
    mu = rng.choice([-1.0, 1.0], d) * rng.uniform(0.05, 0.15, d)
    return Problem(mu, RATIO * np.abs(mu), rng.uniform(0.5, 1.5, d), name="su-uniform")


def test_su_formula_is_the_mean_field_closed_form():
    """su_one_step_lr ∝ √(1+x)/(1+cx) when σ_i/|μ_i| is uniform; its peak is B*."""
    p = _su_problem()
    bs = sgd.b_simple(p.mu, p.Sigma)
    assert bs == pytest.approx(RATIO**2)
    B = bs * 2.0 ** np.linspace(-8, 3, 45)
    c = 0.1 / 1.9
    x = bs / B
    closed = np.sum(np.abs(p.mu)) / np.sum(p.h) * np.sqrt(1 + x) / (1 + c * x)
    np.testing.assert_allclose(su_one_step_lr(p, B, 0.9), closed, rtol=1e-12)
    fine = bs * 2.0 ** np.linspace(-6, -3, 3001)
    b_peak = fine[np.argmax(su_one_step_lr(p, fine, 0.9))]
    assert b_peak == pytest.approx(su_fall_threshold(0.9, bs), rel=2e-3)


def test_k1_reproduces_su_one_step_peak():
    """K = 1 from the steady state gives Su's ε₁(B) at every B and his peak B*.

    Tolerance, per B: the one-step loss change is exactly quadratic in ε, so the refined best lr
    is the ratio estimator Σ_s μᵀu_s / Σ_s u_sᵀHu_s — unbiased to O(1/n) with the bootstrap
    interval as its noise; allow 4 SE (SE = 90%-interval half-width / 1.645) plus 0.5% for
    what Su neglects (v's own fluctuation, relative ~(1−β2)√n_warm ≈ 1%, enters E[1/√v] at
    second order, ~1e-4; the warm-up residual β1^(2n) ≤ 1e-8). Peak location: ln ε₁ is flat
    at the top, ln ε₁ ≈ const − ½ a (ln B − ln B*)² with a = x²·|g''(x)| = 0.223 at β1 = 0.9;
    relative errors ≤ τ on the curve can move the vertex by √(4τ/a) in ln B, compared with the
    vertex the same refinement finds on Su's exact curve on the same grid.
    """
    p = _su_problem()
    bs = sgd.b_simple(p.mu, p.Sigma)
    b_star = su_fall_threshold(0.9, bs)
    B = b_star * 2.0 ** np.arange(-2.0, 3.0, 0.5)
    lrs = np.geomspace(0.01, 0.4, 25)
    rows, s = run_momentum(
        p, B, lrs, 1, [(0.9, 0.999)], target=0.1, max_steps=1, horizons=(1,),
        branch_seeds=1024, whole=False, n_boot=100,
    )  # fmt: skip
    c = s["configs"]["beta1=0.9,beta2=0.999"]["horizon=1"]
    y, lo, hi = np.asarray(c["lr_best"]), np.asarray(c["lo"]), np.asarray(c["hi"])
    assert not any(c["censored"])
    su = su_one_step_lr(p, B, 0.9)
    se_rel = (hi - lo) / 2 / 1.645 / y
    assert np.all(se_rel < 0.01)  # the test has power: 4 SE + 0.5% < 4.5%
    assert np.all(np.abs(y / su - 1) <= 4 * se_rel + 0.005), np.abs(y / su - 1) / se_rel
    # the peak
    from theory.stats import refined_argmax

    pk_meas = refined_argmax(B, y)
    pk_exact = refined_argmax(B, su)
    assert pk_meas.interior and pk_exact.interior
    assert pk_exact.x == pytest.approx(b_star, rel=0.05)  # grid refinement of the exact curve
    tau = float(np.max(4 * se_rel + 0.005))
    tol = math.sqrt(4 * tau / 0.223)
    assert abs(math.log(pk_meas.x / pk_exact.x)) <= tol, (pk_meas.x, pk_exact.x, tol)
    # and the fall beyond B* counts as a fall
    assert s["configs"]["beta1=0.9,beta2=0.999"]["horizon=1"]["falls"]
    assert s["configs"]["beta1=0.9,beta2=0.999"]["k1_max_rel_dev_from_su"] < 0.02
    assert {r["horizon"] for r in rows} == {"1"}


def test_momentum_advantage_fades_with_horizon():
    """The best-lr ratio β1 = 0.9 / β1 = 0 at B = B_simple is Su's one-step value at K = 1 and
    falls with the horizon: the K = 10 and K = 100 intervals lie below the K = 1 interval,
    and at K = 100 the ratio is near 1 (momentum's one-step advantage is gone)."""
    p = _su_problem()
    bs = sgd.b_simple(p.mu, p.Sigma)
    lrs = np.geomspace(3e-4, 0.4, 31)
    _, s = run_momentum(
        p, [bs / 4, bs], lrs, 1, [(0.0, 0.999), (0.9, 0.999)], target=0.1, max_steps=1,
        horizons=(1, 10, 100), branch_seeds=256, whole=False, n_boot=100,
    )  # fmt: skip
    r = s["ratio_momentum_over_beta0"]
    assert r["B"] == pytest.approx(bs)
    c = 0.1 / 1.9
    assert r["su_one_step"] == pytest.approx(2.0 / (1 + c))  # (1+x)/(1+cx) at x = 1
    k1, k10, k100 = r["1"], r["10"], r["100"]
    assert k1["lo"] <= r["su_one_step"] * 1.01 and r["su_one_step"] <= k1["hi"] * 1.01
    assert k10["hi"] < k1["lo"] and k100["hi"] < k1["lo"]
    assert 0.7 < k100["lo"] and k100["hi"] < 1.3


def test_fall_counts_a_monotone_fall_across_the_grid():
    """A best lr falling over the whole grid (no interior peak) is a fall; edges that could fake
    a fall are skipped; overlapping intervals are not a fall."""
    f = fall([1, 2, 4, 8], [4.0, 3.0, 2.0, 1.0], ["", "", "", ""], math.sqrt(2))
    assert f["falls"] and f["factor"] == 4.0 and (f["b_from"], f["b_to"]) == (1.0, 8.0)
    f = fall([1, 2, 4], [4.0, 3.0, 1.0], ["low", "", ""], 1.2)
    assert f["factor"] == 3.0 and f["b_from"] == 2.0
    assert not fall([1, 2], [3.0, 1.0], ["", "high"], 1.2)["falls"]
    assert not fall([1, 2], [1.0, 1.1], ["", ""], 1.05)["falls"]
    # end to end: Su's problem, every B above B* -> K = 1 falls monotonically across the grid
    p = _su_problem()
    b_star = su_fall_threshold(0.9, sgd.b_simple(p.mu, p.Sigma))
    B = b_star * 4.0 ** np.arange(1, 5)
    _, s = run_momentum(
        p, B, np.geomspace(0.01, 0.4, 21), 1, [(0.9, 0.999)], target=0.1, max_steps=1,
        horizons=(1,), branch_seeds=64, whole=False, n_boot=50,
    )  # fmt: skip
    h = s["configs"]["beta1=0.9,beta2=0.999"]["horizon=1"]
    assert np.all(np.diff(h["lr_best"]) < 0)
    assert h["falls"] and h["b_from"] == pytest.approx(B[0]) and h["b_to"] == pytest.approx(B[-1])


def test_branch_and_helpers():
    """Noiseless K steps are the deterministic Adam-sign recursion; warm-up length; best_lr."""
    p = Problem([1.0], [1e-9], [2.0])  # u = sign(g) while g > 0
    dl = branch_losses(p, 1.0, [0.1], 0.0, 0.0, [1, 2, 3], 3)
    # δ_k = −0.1 k while μ + hδ = 1 − 0.2k > 0: ΔL = −0.1k + (0.1k)²
    np.testing.assert_allclose(dl[:, 0, 0], [-0.1 + 0.01, -0.2 + 0.04, -0.3 + 0.09], atol=1e-9)
    assert warmup_steps(0.9, 0.999) == math.ceil(math.log(1e-4) / math.log(0.9))
    assert best_lr([1.0, 2.0, 3.0], [0.0, -1.0, 0.0]) == (pytest.approx(2.0), "")
    # common random numbers: the same seed gives the same draws for every lr
    a = branch_losses(_su_problem(), 50.0, [0.05, 0.1], 0.9, 0.999, [1], 4, seed=3)
    b = branch_losses(_su_problem(), 50.0, [0.1], 0.9, 0.999, [1], 4, seed=3)
    np.testing.assert_allclose(a[0, :, 1], b[0, :, 0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: branch_losses(p, 10.0, [-0.1], 0.9, 0.999, [1], 2), "lrs"),
        (lambda p: branch_losses(p, 10.0, [0.1], 0.9, 0.999, [10, 1], 2), "horizons"),
        (lambda p: branch_losses(p, 0.0, [0.1], 0.9, 0.999, [1], 2), "B"),
        (lambda p: branch_losses(p, 10.0, [0.1], 0.9, 0.999, [1], 0), "n_seeds"),
        (lambda p: su_one_step_lr(p, [10.0], 1.0), "beta1"),
        (lambda p: warmup_steps(1.0, 0.9), "beta1"),
        (
            lambda p: run_momentum(
                p, [1.0], [0.1, 0.2, 0.3], 1, [(0.9, 0.999)], target=0.1, max_steps=1
            ),
            "batch_sizes",
        ),
    ],
)
def test_library_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(_su_problem(4))


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--horizons", "0"], "--horizons"),
        (["--horizons", "10,1"], "--horizons"),
        (["--branch-seeds", "1"], "--branch-seeds"),
        (["--branch-seeds", "1e12"], "--branch-seeds"),
        (["--batch", "256"], "--batch"),
        (["--lr-min", "0.5"], "--lr-max"),
        (["--betas", "0.9,1.0"], "--betas"),
    ],
)
def test_cli_bad_input_is_one_line(argv, name, tmp_path, monkeypatch, capsys):
    """Exit 2, one stderr line naming the flag, no traceback, nothing written."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    rc = main(["simulate", "momentum", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if lines and lines[0].startswith("usage:"):
        lines = [ln for ln in lines[1:] if not ln.startswith(" ")]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("surgelab ") and name in lines[0], err
    assert not out.exists() and not (tmp_path / "runs").exists()
