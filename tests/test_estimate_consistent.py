"""The direct estimate made consistent (issue 11 §3): one population, the bias-corrected
Theorem 2 numerator, the stopping rule of the one-step measurement and the shuffled-coordinate
control. Small problems with known answers; each check can fail."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from surgelab.cmd_estimate import headline
from tests.tiny_models import tiny_classifier
from validate import estimate as E
from validate import onestep as O
from validate.hessian import full_gradient
from validate.predict import sign_numerator
from validate.workload import Data, Workload

LOSS = torch.nn.functional.cross_entropy


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _signs(n: int, d: int, common: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """n sign vectors v = sign(m + common·f + z): f shared by every coordinate of a draw."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=d) * 0.5
    f = rng.normal(size=(n, 1))
    z = rng.normal(size=(n, d))
    return torch.as_tensor(np.sign(m + common * f + z)), m


def _spd(d: int, seed: int, offdiag: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / math.sqrt(d)
    return torch.as_tensor(a @ a.T + np.eye(d) + offdiag * np.ones((d, d)))


def test_shuffled_control_is_one_when_coordinates_are_independent():
    """Independent coordinates: measured/shuffled E[vᵀHv] = 1 within 4 SE; the shuffled value
    equals the independent-coordinate formula Σ_ij H_ij m_i m_j + Σ_i H_ii (1 − m_i²) with the
    empirical sign means m (computed here), within 4 of its SE."""
    n, d = 2000, 12
    v, _ = _signs(n, d, common=0.0, seed=1)
    H = _spd(d, 2, offdiag=0.3)
    c = O.shuffled_control(
        v, lambda x: x @ H, torch.ones(d, dtype=torch.float64), torch.Generator().manual_seed(0)
    )
    assert abs(c["corr_ratio"] - 1.0) <= 4 * c["corr_ratio_se"]
    mbar = v.mean(0).numpy()
    h = H.numpy()
    indep = mbar @ h @ mbar - (np.diag(h) * mbar**2).sum() + np.trace(h)
    assert abs(c["vhv_shuf"] - indep) <= 4 * c["vhv_shuf_se"]
    # the same marginals: Gᵀv is unchanged by the permutation
    assert c["gv"] == pytest.approx(float(v.sum(1).mean()), rel=1e-12)


def test_shuffled_control_detects_correlated_coordinates():
    """A common factor per draw correlates the signs; with H = I + 0.3·11ᵀ (all couplings
    positive) measured E[vᵀHv] is far above the shuffled one: ratio − 1 > 10 SE and > 1.5."""
    n, d = 2000, 12
    v, _ = _signs(n, d, common=2.0, seed=3)
    H = _spd(d, 4, offdiag=0.3)
    c = O.shuffled_control(
        v, lambda x: x @ H, torch.ones(d, dtype=torch.float64), torch.Generator().manual_seed(0)
    )
    assert c["corr_ratio"] > 1.5
    assert c["corr_ratio"] - 1.0 > 10 * c["corr_ratio_se"]


@pytest.mark.parametrize("B", [4, 32])
def test_numerator_bias_correction_by_simulation(B):
    """Gaussian per-example gradients g ~ N(μ, diag σ²), n = 200 examples: over R replicates,
    the corrected N̂(B) (σ estimated from the same examples) is unbiased for the true
    Σ erf(√(B/2) μ_i/σ_i) μ_i within 4 SE, while the plug-in is biased (> 10 SE), its mean
    equals its exact Gaussian expectation (derived independently here) within 4 SE, and at
    small B/n the bias is √(2B/π)·Σσ_i/n within 15%."""
    rng = np.random.default_rng(B)
    d, n, R = 400, 200, 300
    sigma = rng.uniform(0.5, 2.0, size=d)
    mu = np.where(rng.random(d) < 0.2, rng.normal(size=d) * 0.3, 0.0)  # most without signal
    truth = float((erf(np.sqrt(B / 2) * mu / sigma) * mu).sum())
    plug, corr = [], []
    for _ in range(R):
        g = mu + sigma * rng.normal(size=(n, d))
        m, s = g.mean(0), g.std(0, ddof=1)
        plug.append(float((erf(np.sqrt(B / 2) * m / s) * m).sum()))
        corr.append(sign_numerator(m, s, B, 1.0 / n))
    plug, corr = np.array(plug), np.array(corr)
    se_c = corr.std(ddof=1) / math.sqrt(R)
    se_p = plug.std(ddof=1) / math.sqrt(R)
    assert abs(corr.mean() - truth) <= 4 * se_c
    bias = plug.mean() - truth
    assert bias > 10 * se_p
    # the plug-in's exact expectation for Gaussian μ̂ (σ known), a' = a/√(1 + κ), κ = B/n:
    # Σ μ erf(a'μ) + (σ²/n)(2a'/√π) exp(−a'² μ²)
    a = np.sqrt(B / 2) / sigma / math.sqrt(1 + B / n)
    expect = float(
        (
            mu * erf(a * mu) + sigma**2 / n * 2 * a / math.sqrt(math.pi) * np.exp(-((a * mu) ** 2))
        ).sum()
    )
    assert abs(plug.mean() - expect) <= 4 * se_p
    if B / n < 0.05:  # the first-order size √(2B/π)·Σσ_i/n
        first_order = math.sqrt(2 * B / math.pi) * sigma.sum() / n
        assert bias == pytest.approx(first_order, rel=0.15)


def _gains(noise: np.ndarray):
    def gains(u: torch.Tensor, lrs: np.ndarray) -> np.ndarray:  # parabola in log ε, peak 0.5
        return -(np.log(lrs / 0.5)[None] ** 2) + u.numpy() * noise[None]

    return gains


def test_stopping_rule_draws_until_narrow_or_flags():
    """Noisy rows: the first round is too wide, more rounds make the interval narrow
    (log-width ≤ 0.3, the optimum within it); with a low cap it stops at the cap, flagged."""
    rng = np.random.default_rng(0)
    e = np.geomspace(0.05, 5.0, 9)
    pool = torch.as_tensor(rng.normal(size=(2000, 9)))
    draw = lambda i, j: pool[i:j]  # noqa: E731
    kw = dict(
        lrs=e,
        fixed=False,
        n_first=4,
        n_more=8,
        max_log_width=0.3,
        max_extend=2,
        n_boot=100,
        ci=0.9,
        seed=0,
    )
    _, _, first = O.measure_adaptive(_gains(np.full(9, 3.0)), draw, max_updates=4, **kw)
    assert not first["resolved"] and first["n_batches"] == 4
    _, g, b = O.measure_adaptive(_gains(np.full(9, 3.0)), draw, max_updates=2000, **kw)
    assert b["resolved"] and b["log_width"] <= 0.3 and 4 < b["n_batches"] <= 2000
    assert g.shape[0] == b["n_batches"] and b["lo"] <= 0.5 * 1.2 and b["hi"] >= 0.5 / 1.2
    _, _, capped = O.measure_adaptive(_gains(np.full(9, 30.0)), draw, max_updates=20, **kw)
    assert not capped["resolved"] and capped["n_batches"] == 20
    assert capped["log_width"] > 0.3


def _workload() -> tuple[Workload, Data]:
    return tiny_classifier()


def test_one_population_estimate_flags_unresolved_and_decomposes():
    """population='eval': μ̂ is the gradient of the n_eval eval examples (|μ̂|² = |G|² computed
    here), so the numerator needs no correction; every B is either resolved (log-width ≤ 0.3)
    or listed as unresolved and kept out of the ratio; pred/meas = the three factors' product;
    the headline shows no ratio built from unresolved points."""
    wl, data = _workload()
    torch.manual_seed(0)
    model = wl.make_model()
    s = E.EstimateSettings(
        n_examples=1000,
        n_eval=150,
        probes=4,
        batch_sizes=(2, 16),
        n_batches=4,
        n_lrs=7,
        lr_span=64.0,
        lrs=None,
        lrs_sgd=None,
        n_boot=40,
        ci=0.9,
        hist_bins=10,
        chunk_floats=20_000_000,
        seed=0,
        measure=True,
        max_extend=2,
        noise_samples=8,
        population="eval",
        max_batches=12,
        max_log_width=0.3,
    )
    res = E.estimate_at_checkpoint(model, wl, data, s, step=0)
    summ, rows = res["summary"], res["per_batch"]
    G = full_gradient(model, LOSS, data.x_eval[:150], data.y_eval[:150])
    assert summ["n_examples"] == 150 and summ["numer_noise_frac"] == 0.0
    assert summ["g2_plugin"] == pytest.approx(float(G @ G), rel=1e-6)
    for r in rows:
        assert r["numer_thm2"] == pytest.approx(r["numer_thm2_plugin"], rel=1e-9)
        assert r["n_batches_sign"] <= 12
        assert r["resolved_sign"] == (r["lr_meas_sign_logwidth"] <= 0.3)
        prod = r["factor_marginals"] * r["factor_corr"] * r["factor_quad"]
        assert prod == pytest.approx(r["ratio_sign"], rel=1e-9)
        for k in ("vhv_meas", "vhv_shuf", "vhv_thm2"):
            assert math.isfinite(r[k])
    unresolved = [r["batch_size"] for r in rows if not r["resolved_sign"]]
    assert summ["unresolved_sign"] == unresolved
    good = [r["ratio_sign"] for r in rows if r["resolved_sign"]]
    want = math.exp(np.mean(np.log(good))) if good else math.nan
    assert summ["ratio_sign_geomean"] == pytest.approx(want, nan_ok=True)


def test_headline_omits_ratios_of_unresolved_points():
    """No resolved B: the ratio is NaN, no headline item carries it, and the verdict names the
    unresolved B."""
    row = {
        "batch_size": 4,
        "lr_pred_sign": 1e-3,
        "lr_meas_sign": 1e-4,
        "lr_meas_sign_lo": 1e-6,
        "lr_meas_sign_hi": 1e-2,
        "lr_meas_sign_edge": False,
        "resolved_sign": False,
    }
    summ = {
        "step": 0,
        "loss": 1.0,
        "ratio_sign_geomean": math.nan,
        "max_log_width": 0.3,
        "max_batches": 96,
        "checkpoints": [{"per_batch": [row]}],
    }
    items, verdicts = headline(summ, 0.9)
    assert "ratio_sign_geomean" not in {i["key"] for i in items}
    assert any("unresolved at B = 4" in v for v in verdicts)
