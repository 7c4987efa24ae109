"""The noisy quadratic model (simulate.nqm): exact recursion, Monte Carlo, steps to target, fits.

Independent references: the second moments by brute-force 2×2 covariance propagation
S ← M S Mᵀ + N in (x, v) coordinates; noise-free paths by direct iteration of x; McCandlish's
law from :mod:`theory.sgd`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulate import nqm as N
from theory import sgd

OPTS = [N.make_optimizer(n) for n in N.OPTIMIZERS]
BATCH_SIZES = np.array([4.0, 16, 64, 256, 1024, 4096, 16384, 65536])
LRS = np.logspace(-5, 0.5, 100)
Q_GRID = 10 ** (5.5 / 99)  # ratio of neighbouring lrs on the grid


def brute_force_loss(m: N.NQM, o: N.Optimizer, lr: float, B: float, n_steps: int) -> np.ndarray:
    """E[L(x_t)] by propagating each coordinate's 2×2 covariance of (x, αv) step by step.

    Heavy ball in the optimiser's own form, v ← βv + h^(−p) g, x ← x − αv, g = hx + ε, written
    as s' = M s + n ε with s = (x, u), u = αv: M = [[1 − ah, −β], [ah, β]], n = (−a, a).
    """
    h = m.h
    a = lr * h ** (-o.power)
    M = np.zeros((h.size, 2, 2))
    M[:, 0, 0], M[:, 0, 1], M[:, 1, 0], M[:, 1, 1] = 1 - a * h, -o.beta, a * h, o.beta
    n = np.stack([-a, a], axis=1)
    Nn = np.einsum("ki,kj->kij", n, n) * (h / B)[:, None, None]
    S = np.zeros((h.size, 2, 2))
    S[:, 0, 0] = 1.0  # E[x0²] = 1, v0 = 0
    out = []
    for _ in range(n_steps + 1):
        out.append(0.5 * float(h @ S[:, 0, 0]))
        S = np.einsum("kij,kjl,kml->kim", M, S, M) + Nn
    return np.array(out)


# (lr, B) pairs covering: overdamped and underdamped momentum, c < 0 (a h > 1 + β), noisy and
# nearly noise-free, and preconditioned rates far above 1 on the flat coordinates
CASES = [(0.05, 4.0), (0.7, 64.0), (1.5, 1e6), (1.9, 256.0), (3.0, 1e4)]


@pytest.mark.parametrize("o", OPTS, ids=[o.name for o in OPTS])
def test_closed_form_and_recursion_match_brute_force(o):
    """Closed form and the 3-moment recursion equal 2×2 covariance propagation at every step.

    Tolerance: all three are float64 evaluations of one quantity; f_n carries a relative error
    of O(n·eps) after n steps, so 1e-9 relative at n ≤ 300 leaves a margin of ~10⁴.
    """
    m = N.NQM(k=40)
    checked = 0
    for lr, B in CASES:
        if not np.isfinite(N.stationary_loss(m, o, lr, B)[0]):
            continue  # unstable for this optimiser
        ref = brute_force_loss(m, o, lr, B, 300)
        closed = N.expected_loss(m, o, lr, B, np.arange(301))[0]
        rec = N.iterate_moments(m, o, lr, B, 300)[0]
        np.testing.assert_allclose(closed, ref, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(rec, ref, rtol=1e-9, atol=1e-14)
        checked += 1
    assert checked >= 3


def test_stationary_loss_is_the_limit():
    """L_∞ (closed form) equals the brute-force loss after many steps (to 1e-9 relative)."""
    m = N.NQM(k=20)
    for o in OPTS:
        lr, B = 0.5, 32.0
        ref = brute_force_loss(m, o, lr, B, 20000)[-1]
        assert N.stationary_loss(m, o, lr, B)[0] == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("o", OPTS, ids=[o.name for o in OPTS])
def test_monte_carlo_within_5se_of_exact(o):
    """Sampled dynamics agree with the exact E[L(x_t)] within 5 SE at every step 0 … 150.

    5 SE: a two-sided normal tail of 6e-7 per check, so ~10³ checks all pass unless biased.
    256 seeds: the loss of a seed is dominated by a few χ²₁ coordinates (h₁ = 1), so its mean
    needs a few hundred seeds before its SE estimate and normal tails are reliable.
    """
    m = N.NQM(k=300)
    lr = np.array([0.3, 1.2])
    B = np.array([8.0, 512.0])
    ok = np.isfinite(N.stationary_loss(m, o, lr, B))
    mc = N.monte_carlo(m, o, lr[ok], B[ok], 150, 256, seed=3)
    exact = N.expected_loss(m, o, lr[ok], B[ok], np.arange(151))
    z = np.abs(mc.mean - exact) / mc.se
    assert np.all(z <= 5.0), float(z.max())
    # and the check can fail: the MC of another batch size is far outside
    wrong = N.expected_loss(m, o, lr[ok], 4 * B[ok], np.arange(151))
    assert np.any(np.abs(mc.mean - wrong) / mc.se > 5.0)


def _scan_steps(m, o, lr, B, target, n_max):
    loss = N.iterate_moments(m, o, lr, B, n_max)
    below = loss <= target
    return np.where(below.any(axis=1), np.argmax(below, axis=1), -1), loss


@pytest.mark.parametrize("o", OPTS, ids=[o.name for o in OPTS])
def test_steps_to_target_is_the_first_crossing(o):
    """steps_to_target equals a step-by-step scan of the exact recursion, for every lr."""
    m = N.NQM(k=100)
    target = 0.02
    lrs = np.logspace(-1.5, 0.5, 25)
    B = 256.0
    ok = N.reachable(m, o, lrs, B, target)
    got = N.steps_to_target(m, o, lrs, B, target)
    assert np.all(got[~ok] == -1)
    ref, loss = _scan_steps(m, o, lrs[ok], B, target, 6000)
    assert np.all(ref >= 0)  # every reachable lr crosses within the scan
    np.testing.assert_array_equal(got[ok], ref)
    # best_steps: the fewest steps over the grid (ties: lower loss at that step)
    best = N.best_steps(m, o, B, lrs, target)
    assert best.steps == ref.min()
    tied = np.nonzero(ref == ref.min())[0]
    j = tied[np.argmin(loss[tied, ref.min()])]
    assert best.lr == lrs[ok][j]


def _deterministic_steps(h, lr, target, n_max):
    """First t with ½ Σ h (1 − αh)^{2t} ≤ target, by iterating x ← (1 − αh) x from x = 1."""
    x = np.ones((lr.size, h.size))
    out = np.full(lr.size, -1)
    for t in range(n_max + 1):
        loss = 0.5 * (x * x) @ h
        out[(out < 0) & (loss <= target)] = t
        if np.all(out >= 0):
            break
        x *= 1.0 - lr[:, None] * h
    return out


def test_sgd_large_batch_equals_noise_free_count():
    """At large B, SGD's steps to target equal the noise-free count (best lr on the grid).

    At B = 2⁵⁰ the noise floor (~α ΣH/(4B) ≈ 1e-15) cannot move the crossing: equal counts.
    At B = 65536 the noise only adds to E[x²] and at most L_∞(B): the count lies between the
    noise-free count for the target and for target − L_∞ at the noise-free best lr.
    """
    m = N.NQM(k=1000)
    o = N.make_optimizer("sgd")
    target = 0.01
    stable = LRS[LRS < 2.0]
    det = _deterministic_steps(m.h, stable, target, 5000)
    assert det[-1] > 0 and np.count_nonzero(det >= 0) >= 10  # the minimum lies inside the scan
    d_best = int(det[det >= 0].min())
    assert N.best_steps(m, o, 2.0**50, LRS, target).steps == d_best
    p = N.best_steps(m, o, 65536.0, LRS, target)
    j = int(np.argmin(np.where(det >= 0, det, 10**9)))
    floor = N.stationary_loss(m, o, stable[j], 65536.0)[0]
    upper = _deterministic_steps(m.h, stable[j : j + 1], target - floor, 5000)[0]
    assert d_best <= p.steps <= upper
    assert upper - d_best < 0.02 * d_best  # the sandwich is tight: the check has teeth


def _best(m, name, target=0.01):
    o = N.make_optimizer(name)
    return N.scan_batch_sizes(m, o, BATCH_SIZES, LRS, target)


def test_preconditioning_and_momentum_raise_b_crit():
    """Zhang et al.'s headline: preconditioning (p = ½) and momentum (β = 0.9) raise B_crit.

    B_crit from the log-space fit S = S_min(1 + B_crit/B) and from Eq. 22, K = 1000.
    """
    from theory.efficiency import fit_b_noise

    m = N.NQM(k=1000)
    fits, eq22 = {}, {}
    for name in ("sgd", "precond", "momentum"):
        S = np.array([p.steps for p in _best(m, name)], dtype=float)
        fits[name] = N.fit_scaling(BATCH_SIZES, S).b_crit
        eq22[name] = fit_b_noise(S, BATCH_SIZES * S)[0]
    for name in ("precond", "momentum"):
        assert fits[name] > 4 * fits["sgd"], fits
        assert eq22[name] > 4 * eq22["sgd"], eq22


def test_sgd_best_lr_follows_mccandlish_small_batch_law():
    """For B ≤ B_noise/8, SGD's best constant lr is ∝ B: McCandlish's law's small-B limit.

    B_noise = tr(HΣ)/E[GᵀHG] at the expected state where SGD reaches the target at the
    smallest B (theory.sgd.params). Why ∝ B: with αh ≪ 1, E[x_t²] = α/(2B) + (1 − α/(2B))
    e^{−2αht} depends on α, B only through αt and α/B, so the best α/B is one constant; the law
    ε_opt = ε_max/(1 + B_noise/B) ≈ ε_max B/B_noise says the same. Tolerance: the best lr is
    on a grid, so α/B may move by one grid ratio q.
    """
    m = N.NQM(k=1000)
    o = N.make_optimizer("sgd")
    pts = _best(m, "sgd")
    p0 = pts[0]
    eps_state, bn_state = N.sgd_noise_scale(m, o, p0.lr, p0.batch_size, p0.steps)
    # the same numbers from theory.sgd at a G with the state's second moments
    P = N.second_moments(m, o, p0.lr, p0.batch_size, p0.steps)
    e_ref, bn_ref = sgd.params(m.h * np.sqrt(P), np.diag(m.h), m.h)
    assert (eps_state, bn_state) == pytest.approx((e_ref, bn_ref), rel=1e-12)
    small = [p for p in pts if p.batch_size <= bn_state / 8]
    assert len(small) >= 2, bn_state
    ratio = np.array([p.lr / p.batch_size for p in small])
    assert ratio.max() / ratio.min() <= Q_GRID * (1 + 1e-12)
    # the law's ratio between the smallest and largest small-B point (ε_max cancels)
    law = sgd.optimal_lr(small[-1].batch_size, 1.0, bn_state) / sgd.optimal_lr(
        small[0].batch_size, 1.0, bn_state
    )
    got = small[-1].lr / small[0].lr
    assert law / Q_GRID <= got <= law * Q_GRID**2


def test_fit_scaling_recovers_parameters():
    """The log-space fit returns the S_min, B_crit that generated exact data."""
    f = N.fit_scaling(BATCH_SIZES, 321.0 * (1 + 777.0 / BATCH_SIZES))
    assert (f.s_min, f.b_crit) == pytest.approx((321.0, 777.0), rel=1e-8)


def test_problem_for_train_has_the_nqm_moments():
    """problem(): μ = h, σ² = h, H = diag(h); x₀ = H⁻¹μ = 1 (E[x₀²] = 1)."""
    p = N.problem(d=50)
    h = N.NQM(50).h
    np.testing.assert_array_equal(p.h, h)
    np.testing.assert_array_equal(p.mu / p.h, np.ones(50))
    np.testing.assert_allclose(p.sigma**2, h, rtol=1e-15)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: N.NQM(k=0), "k"),
        (lambda: N.make_optimizer("precond", power=-0.5), "power"),
        (lambda: N.make_optimizer("momentum", momentum=1.0), "momentum"),
        (lambda: N.make_optimizer("momentum", momentum=-0.1), "momentum"),
        (lambda: N.make_optimizer("adam"), "optimizer"),
        (lambda: N.steps_to_target(N.NQM(10), OPTS[0], 0.1, 4.0, 0.0), "target"),
        (lambda: N.best_steps(N.NQM(10), OPTS[0], 4.0, [2.5, 3.0], 0.01), "no learning rate"),
        (lambda: N.best_steps(N.NQM(10), OPTS[0], 4.0, LRS, -1.0), "target"),
    ],
)
def test_bad_input_is_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


def test_default_dense_window():
    """β^dense < 1e-12 ≤ β^(dense − 1)."""
    for beta in (0.5, 0.9, 0.99):
        n = N.default_dense(beta)
        assert beta**n < 1e-12 <= beta ** (n - 1)
    assert math.isclose(N.default_dense(0.0), 0)


def test_train_on_the_nqm_matches_the_exact_sgd_loss(tmp_path):
    """`simulate train --problem nqm` trains the same model: with SGD at a batch size so large
    the noise is negligible, its steps to a target equal the exact recursion's noise-free count
    (x0 = 1, so E[L0] = ½ Σ h_i, as in the NQM)."""
    from simulate import problems
    from simulate.train import TrainConfig, run_grid

    d, lr, frac = 200, 0.5, 0.3
    p = problems.make("nqm", 0, d=d)
    h = p.h
    loss0 = 0.5 * h.sum()
    # noise-free: L_t = ½ Σ h_i (1 − lr h_i)^(2t); first t with L_t <= frac · L0
    t = np.arange(1, 2000)[:, None]
    exact = int(np.argmax(0.5 * np.sum(h * (1 - lr * h) ** (2 * t), axis=1) <= frac * loss0)) + 1
    cfg = TrainConfig(optimizer="sgd", targets=(frac,), max_steps=2000, further_steps=0)
    res = run_grid(p, [2.0**40], np.array([lr]), 1, cfg, 0)
    assert int(res.steps[0, 0]) == exact
