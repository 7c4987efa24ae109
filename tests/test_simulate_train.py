"""simulate.train: the vectorised multi-step grid, the S–E fit, divergence, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulate import problems
from simulate.train import (
    TrainConfig,
    analyse,
    best_lrs,
    expected_steps_isotropic,
    fit_targets,
    per_cell,
    run_grid,
    run_runs,
)
from surgelab.chunks import ChunkStore
from tests.tolerances import MC_SIGMAS
from theory import efficiency

B_NOISE = 64.0


@pytest.fixture(scope="module")
def isotropic_grid():
    """SGD on H = I with loss-proportional noise: B_noise = B_simple = 64 all the way down."""
    prob = problems.isotropic_scaled(d=512, b_noise=B_NOISE)
    B = np.array([4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
    lrs = np.geomspace(0.02, 1.0, 19)
    cfg = TrainConfig(
        optimizer="sgd",
        noise="scaled",
        targets=(1e-3,),
        further_steps=0,
        max_steps=4000,
        keep_positions=False,
    )
    return prob, B, lrs, cfg, run_grid(prob, B, lrs, 4, cfg, seed=0)


def test_se_fit_recovers_the_exact_multistep_law(isotropic_grid):
    """On H = hI with noise ∝ loss, E|x_t|² = ρ^t |x0|² with ρ = (1−εh)² + ε²h²B_noise/B exactly,
    so S(B, ε) = ⌈log(1/f)/log(1/ρ)⌉ is known for every grid cell. The Eq. 22 fit of the
    simulated grid must equal the fit of that exact law on the same grid within 5 SE (SE from
    the spread of the per-seed fits). That exact law is log(1/f)/log(1 + B/B_noise) at the best
    ε, whose small-B expansion log(1/f)(B_noise/B + ½ + …) is Eq. 20's form with 2·B_noise: the
    fit must also land between B_noise and 2·B_noise·(1 + B_max/(6 B_noise)) (next term
    −x/12 of 1/log(1+x), relative x/6 against ½)."""
    prob, B, lrs, _cfg, res = isotropic_grid
    bn_sim = fit_targets(res)[0]["b_noise_fit"]
    S_law = np.array([[expected_steps_isotropic(prob, b, e, 1e-3) for e in lrs] for b in B])
    S_best = S_law.min(axis=1)
    bn_law, _ = efficiency.fit_b_noise(S_best, B * S_best)
    per_seed = []
    for s in range(4):
        S = np.array(
            [
                np.min(
                    np.where(
                        res.steps[(res.seed == s) & (res.B == b), 0] >= 0,
                        res.steps[(res.seed == s) & (res.B == b), 0],
                        np.inf,
                    )
                )
                for b in B
            ]
        )
        per_seed.append(efficiency.fit_b_noise(S, B * S)[0])
    se = np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))
    assert abs(bn_sim - bn_law) <= MC_SIGMAS * se + 1e-9
    assert B_NOISE <= bn_sim <= 2 * B_NOISE * (1 + B.max() / (6 * B_NOISE))


def test_best_lr_follows_mccandlish(isotropic_grid):
    """McCandlish's ε_max/(1 + B_noise/B) (ε_max = 1/h) minimises the exact law's steps, and
    the simulation's step-minimising lr per B is optimal for the law up to the noise of the
    comparison: its law steps exceed the law's grid minimum by at most one step (the ceiling)
    plus 5 SE of the seed-mean steps in that cell."""
    prob, _B, lrs, _cfg, res = isotropic_grid
    bl = best_lrs(res, 0, "steps")
    cell = per_cell(res, 0)
    for i, (b, e) in enumerate(zip(bl["B"], bl["lr"])):
        law_at = expected_steps_isotropic(prob, b, e, 1e-3)
        law_min = min(expected_steps_isotropic(prob, b, x, 1e-3) for x in lrs)
        eps_star = 1.0 / (1.0 + B_NOISE / b)
        assert expected_steps_isotropic(prob, b, eps_star, 1e-3) <= law_min
        se = cell["steps_se"][i, int(np.searchsorted(cell["lr"], e))]
        assert law_at <= law_min + 1 + MC_SIGMAS * se


def test_divergence_is_recorded_not_raised():
    """SGD with ε > 2/λ_max blows up (inf/NaN): such runs are marked diverged, keep steps = −1,
    and the rest of the grid is unaffected."""
    prob = problems.surge(0, d=16)
    lam = float(np.linalg.eigvalsh(prob.H).max())
    lrs = np.array([0.1 / lam, 5.0 / lam, 1e200])
    cfg = TrainConfig(optimizer="sgd", targets=(0.5,), max_steps=400, further_steps=3)
    res = run_grid(prob, [256.0, 1024.0], lrs, 2, cfg, seed=0)
    big = res.lr > 2.0 / lam
    assert np.all(res.diverged[big]) and not np.any(res.diverged[~big])
    assert np.all(res.steps[big, 0] == -1)
    assert np.all(res.steps[~big, 0] > 0)
    rows = res.rows()
    assert sum(r["diverged"] for r in rows) == int(big.sum())
    _cells, _best, _fits, summary = analyse(prob, res, cfg)
    assert summary["n_diverged"] == int(big.sum())


def test_not_reached_is_recorded():
    """A budget too small for the target leaves steps = −1 and a NaN reduction, not an error."""
    prob = problems.dense(0, d=8, cond=100.0)
    cfg = TrainConfig(optimizer="sign", targets=(1e-6,), max_steps=5)
    res = run_grid(prob, [4.0], [1e-4], 2, cfg, seed=0)
    assert np.all(res.steps == -1) and not res.diverged.any()
    assert np.all(np.isnan(res.reduction))
    assert np.all(res.steps_run == 5)


def test_adam_without_moments_is_sign_sgd():
    """Adam with β1 = β2 = 0 and ε_Adam = 0 is exactly sign-SGD: m̂/√v̂ = g/|g|."""
    prob = problems.surge(0, d=16)
    B, lr, sd = np.array([8.0, 64.0]), np.array([1e-3, 3e-3]), np.array([0, 1])
    kw = {"targets": (0.5, 0.2), "max_steps": 300}
    a = run_runs(prob, B, lr, sd, TrainConfig(optimizer="sign", **kw), [0, 0])
    b = run_runs(
        prob,
        B,
        lr,
        sd,
        TrainConfig(optimizer="adam", beta1=0.0, beta2=0.0, adam_eps=0.0, **kw),
        [0, 0],
    )
    assert np.array_equal(a.steps, b.steps) and np.array_equal(a.final_loss, b.final_loss)


def test_b_noise_grows_as_target_falls():
    """The paper's second conclusion on the ``train`` default problem (dense H, condition 100):
    the fitted B_noise increases from each target to the next lower one."""
    prob = problems.dense(0, d=32, cond=100.0, signal=4.0)
    cfg = TrainConfig(
        optimizer="sign", targets=(0.3, 0.1, 0.03), max_steps=2500, keep_positions=False
    )
    res = run_grid(prob, 2.0 ** np.arange(4, 13, 2), np.geomspace(2e-4, 1e-2, 9), 2, cfg, 0)
    bn = [f["b_noise_fit"] for f in fit_targets(res)]
    assert all(np.isfinite(bn)) and bn[0] < bn[1] < bn[2]
    summary = analyse(prob, res, cfg)[3]
    assert summary["b_noise_grows_as_loss_falls"] is True
    assert summary["b_noise_fit_per_target"] == bn


class _Stop(Exception):
    pass


def test_resume_skips_finished_chunks(tmp_path):
    """An interrupted grid resumes from its run folder: finished chunks are read back, only
    the rest are computed, and the result equals an uninterrupted run bit for bit (each chunk
    has its own random stream)."""
    prob = problems.surge(0, d=8)
    cfg = TrainConfig(optimizer="sign", targets=(0.5,), max_steps=200)
    B, lrs = [4.0, 16.0, 64.0, 256.0], [1e-3, 3e-3]
    spec = {"B": B, "lrs": lrs, "cfg": "x"}
    store = ChunkStore(tmp_path, spec)

    def save_then_stop(j, res):
        store.save(j, res)
        if j == 1:
            raise _Stop

    with pytest.raises(_Stop):
        run_grid(prob, B, lrs, 2, cfg, seed=3, on_chunk=save_then_stop)
    done = ChunkStore(tmp_path, spec).finished()
    assert sorted(done) == [0, 1]
    mtimes = {j: store.path(j).stat().st_mtime_ns for j in done}
    computed = []
    res = run_grid(
        prob,
        B,
        lrs,
        2,
        cfg,
        seed=3,
        done=done,
        on_chunk=lambda j, r: (computed.append(j), store.save(j, r)),
    )
    assert computed == [2, 3]
    assert {j: store.path(j).stat().st_mtime_ns for j in done} == mtimes
    fresh = run_grid(prob, B, lrs, 2, cfg, seed=3)
    for f in ("steps", "final_loss", "loss_at", "diverged"):
        assert np.array_equal(getattr(res, f), getattr(fresh, f), equal_nan=f != "diverged")
    with pytest.raises(ValueError, match="different grid"):
        ChunkStore(tmp_path, {**spec, "lrs": [1e-3]})


#: the fields TrainConfig requires (the command chooses them)
REQUIRED = {"optimizer": "sign", "targets": (0.5,), "max_steps": 100}


@pytest.mark.parametrize(
    "kw, arg",
    [
        ({"optimizer": "lion"}, "optimizer"),
        ({"targets": (0.1, 0.3)}, "targets"),
        ({"targets": (1.5,)}, "targets"),
        ({"beta1": 1.0}, "beta1"),
        ({"max_steps": 0}, "max_steps"),
        ({"noise": "pink"}, "noise"),
        ({"start_scale": -1.0}, "start_scale"),
    ],
)
def test_config_bad_input(kw, arg):
    with pytest.raises(ValueError, match=arg):
        TrainConfig(**{**REQUIRED, **kw})


def test_grid_bad_input():
    prob = problems.surge(0, d=8)
    with pytest.raises(ValueError, match="lrs"):
        run_grid(prob, [4.0], [-1e-3], 1, TrainConfig(**REQUIRED))
    with pytest.raises(ValueError, match="n_seeds"):
        run_grid(prob, [4.0], [1e-3], 0, TrainConfig(**REQUIRED))
    with pytest.raises(ValueError, match="batch_sizes"):
        run_grid(prob, [0.0], [1e-3], 1, TrainConfig(**REQUIRED))
