"""The branched protocol (validate.branch) on a quadratic where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.tiny_models import _one_torch_thread, quadratic_workload  # noqa: F401
from theory.sign import optimal_lr_exact
from validate import branch


def _start(wl, name="s0", step=0):
    m = wl.make_model()
    return branch.Start(
        name, step, math.nan, {k: p.detach().clone() for k, p in m.named_parameters()}
    )


def test_one_step_sign_branches_reproduce_lemma_1():
    """K = 1 sign branches (β = 0, 0) from θ: the measured optimum lr per B matches Theorem 2
    (Eq. 9, exact for Gaussian coordinates) with the population's μ, σ and H."""
    wl, data, h = quadratic_workload()
    start = _start(wl)
    theta = start.params["theta"]
    per_ex = h * (theta - data.x_train)  # per-example gradients
    mu, sigma = per_ex.mean(0).numpy(), per_ex.std(0, unbiased=False).numpy()
    seeds = list(range(48))
    rows = []
    for B in (1, 4, 16, 64):
        lr0 = optimal_lr_exact(mu, sigma, np.diag(h.numpy()), B)
        lrs = [lr0 * 1.15**k for k in range(-4, 5)]
        rows += branch.branch_group(
            wl, data, start, B, lrs, seeds, [1], betas=(0.0, 0.0), adam_state="reset"
        )
    (ga,) = branch.analyse(rows, n_boot=100)
    for b in ga.best:
        want = optimal_lr_exact(mu, sigma, np.diag(h.numpy()), b["batch_size"])
        assert b["censored"] == ""
        # the bootstrap interval covers the theory, up to the grid refinement (≤ 3 %)
        assert b["lo"] / 1.03 <= want <= b["hi"] * 1.03, (b, want)


def test_branches_share_batches_across_lrs_and_reproduce_bit_for_bit():
    wl, data, _ = quadratic_workload(d=4, n=256)
    start = _start(wl)
    kw = dict(betas=(0.0, 0.0), adam_state="reset")
    a = branch.branch_group(wl, data, start, 8, [0.01, 0.02], [0, 1], [1, 3], **kw)
    b = branch.branch_group(wl, data, start, 8, [0.01, 0.02], [0, 1], [1, 3], **kw)
    assert a == b
    # common random numbers: a sign step of lr η moves θ by η·s with the SAME s for every lr,
    # so on a quadratic ΔL(η) = η Gᵀs − ½ η² sᵀHs; the two lrs pin down Gᵀs, which must agree
    # with a third lr of the same seed
    c = branch.branch_group(wl, data, start, 8, [0.01, 0.02, 0.05], [0], [1], **kw)
    red = {r["lr"]: r["loss_reduction"] for r in c}
    quad = np.polyfit([0.0, 0.01, 0.02, 0.05], [0.0, red[0.01], red[0.02], red[0.05]], 2)
    resid = np.polyval(quad, [0.01, 0.02, 0.05]) - np.array([red[0.01], red[0.02], red[0.05]])
    # float32 losses: the residual is rounding of the loss values, nothing more
    assert np.abs(resid).max() < 8 * np.finfo(np.float32).eps * c[0]["loss_before"]
    # another start gives other batches
    seeds = list(range(8))
    mine = branch.branch_group(wl, data, start, 1, [0.01], seeds, [1], **kw)
    other = branch.branch_group(wl, data, _start(wl, "s1"), 1, [0.01], seeds, [1], **kw)
    assert [r["loss_after"] for r in other] != [r["loss_after"] for r in mine]


def test_a_checkpoint_that_does_not_match_the_model_is_a_clear_error():
    wl, _, _ = quadratic_workload(d=4)
    with pytest.raises(ValueError, match=r"shapes differ: theta \(5,\) vs \(4,\)"):
        branch.start_from_state_dict(wl, {"theta": torch.zeros(5)})
    with pytest.raises(ValueError, match="missing parameters \\['theta'\\]"):
        branch.start_from_state_dict(wl, {"model": {"w": torch.zeros(4)}})
    with pytest.raises(ValueError, match="state dict"):
        branch.start_from_state_dict(wl, [1, 2])


def test_start_from_a_saved_adam_carries_its_moments():
    wl, data, _ = quadratic_workload(d=4, n=256)
    m = wl.make_model()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        wl.loss(m(data.x_train[:16]), None).backward()
        opt.step()
    s = branch.start_from_state_dict(
        wl, {"model": m.state_dict(), "optimizer": opt.state_dict(), "step": 3}
    )
    assert s.step == 3 and s.has_moments
    torch.testing.assert_close(s.exp_avg["theta"], opt.state[m.theta]["exp_avg"])
    # carried vs reset give different branches; carry without moments is refused
    carry = branch.branch_group(wl, data, s, 4, [0.01], [0], [1], adam_state="carry")
    reset = branch.branch_group(wl, data, s, 4, [0.01], [0], [1], adam_state="reset")
    assert carry[0]["loss_after"] != reset[0]["loss_after"]
    # carry without moments is refused after step 0; at step 0 the moments are zero anyway
    with pytest.raises(ValueError, match="no Adam moments"):
        branch.branch_group(wl, data, _start(wl, step=5), 4, [0.01], [0], [1], adam_state="carry")
    a, b = (
        branch.branch_group(wl, data, _start(wl), 4, [0.01], [0], [1, 3], adam_state=k)
        for k in ("carry", "reset")
    )
    assert [r["loss_after"] for r in a] == [r["loss_after"] for r in b]


def test_reference_starts_yield_the_requested_states():
    wl, data, _ = quadratic_workload(d=4, n=256)
    got = list(
        branch.reference_starts(
            wl,
            data,
            lr=0.05,
            batch_size=8,
            steps=(0, 5),
            losses=(3.9,),
            eval_every=1,
            max_steps=400,
        )
    )
    names = [s.name for s in got]
    assert names[:1] == ["step0"] and "step5" in names and "loss3.9" in names
    s = next(s for s in got if s.name == "loss3.9")
    assert s.loss <= 3.9 and s.has_moments
    assert next(s for s in got if s.name == "step0").exp_avg is None


def test_the_momentum_advantage_fades_with_the_horizon():
    """From Adam's steady state far from the optimum (m ≈ G, v ≈ E[g²]), β1 = 0.9 takes a
    much larger best lr than β1 = 0 for one step (its update m/√v is small and accurate) and
    the advantage fades as the horizon grows (the quadratic-with-momentum result of
    ``simulate momentum``): the best-lr ratio falls with K."""
    wl, data, _ = quadratic_workload(d=16, n=4096, noise=2.0)
    (st,) = branch.reference_starts(wl, data, lr=1e-4, batch_size=1, steps=(300,))
    lrs = [1e-2 * 1.4**k for k in range(20)]
    best = {}
    for b1 in (0.9, 0.0):
        rows = branch.branch_group(
            wl,
            data,
            st,
            1,
            lrs,
            list(range(16)),
            [1, 10, 100],
            betas=(b1, 0.999),
            adam_state="carry",
        )
        for g in branch.analyse(rows, n_boot=0):
            (b,) = g.best
            assert b["censored"] == ""
            best[b1, g.horizon] = b["lr"]
    ratio = {k: best[0.9, k] / best[0.0, k] for k in (1, 10, 100)}
    assert ratio[1] > 2.0 and ratio[1] > 1.5 * ratio[10] and ratio[1] > 1.5 * ratio[100], ratio


def test_an_examples_horizon_is_the_steps_horizon_of_the_same_length():
    """E examples at batch size B are measured after ⌈E/B⌉ steps of the same branches: equal
    to the steps horizon of that length, and grouped apart by the analysis."""
    wl, data, _ = quadratic_workload(d=4, n=256)
    kw = dict(betas=(0.0, 0.0), adam_state="reset")
    rows = branch.branch_group(
        wl,
        data,
        _start(wl),
        4,
        [0.01, 0.02],
        list(range(5)),
        [1, 4],
        horizon_examples=[16, 6],
        **kw,
    )
    steps4 = [r for r in rows if r["horizon_examples"] is None and r["horizon"] == 4]
    e16 = [r for r in rows if r["horizon_examples"] == 16]
    e6 = [r for r in rows if r["horizon_examples"] == 6]
    assert [r["loss_after"] for r in e16] == [r["loss_after"] for r in steps4]
    assert {r["horizon"] for r in e6} == {2}  # ⌈6/4⌉
    labels = [g.label for g in branch.analyse(rows, n_boot=0)]
    assert labels == ["K = 1", "K = 4", "E = 6 examples", "E = 16 examples"]
