"""Direct estimation at a checkpoint (validate.estimate): estimators against known answers.

Tiny float64 networks give explicit Hessians (torch.autograd.functional.hessian); an exactly
quadratic "network" gives known μ, σ, H so Monte Carlo claims are checked to 5 SE.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from tests.tolerances import GRID_HALF_CELL, MC_SIGMAS, fp_tol, mc_close
from theory import sgd as sgd_law
from theory import sign as sign_law
from validate import estimate as E
from validate.workload import Data, Workload

LOSS = torch.nn.functional.cross_entropy


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one torch thread is fastest, and avoids spin contention on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                               torch.nn.Linear(4, 3)).double()


def _tiny_data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g))


def _dense_hessian(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    f = E._flat(model)
    theta = f.flatten(f.params)
    return torch.autograd.functional.hessian(
        lambda th: LOSS(functional_call(model, f.unflatten(th), (x,)), y), theta)


def _cond(h: torch.Tensor) -> float:
    return float(h.abs().max())


# ------------------------------------------------------------------ per-example statistics


def test_per_example_stats_equal_a_per_example_loop():
    """μ and σ² from vmap(grad) in small chunks equal those of an explicit per-example loop."""
    model = _tiny_mlp()
    x, y = _tiny_data()
    st = E.per_example_grad_stats(model, LOSS, x, y, chunk_floats=200)   # forces many chunks
    rows = []
    for i in range(x.shape[0]):
        g = torch.autograd.grad(LOSS(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    G = torch.stack(rows)
    scale = float(G.abs().max())
    assert torch.allclose(st.mu, G.mean(0), rtol=0, atol=fp_tol(scale * x.shape[0]))
    assert torch.allclose(st.var, G.var(0), rtol=0, atol=fp_tol(scale**2 * x.shape[0]))
    assert st.n == x.shape[0]


def test_per_example_stats_language_model_is_per_sequence():
    """For (N, T) token inputs one example is one sequence: loss is the mean over its tokens."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5)).double()

    def lm_loss(out: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return LOSS(out.reshape(-1, out.shape[-1]), tgt.reshape(-1))

    x = torch.randint(0, 5, (6, 4))
    y = torch.randint(0, 5, (6, 4))
    st = E.per_example_grad_stats(model, lm_loss, x, y)
    rows = [torch.cat([t.reshape(-1) for t in torch.autograd.grad(
        lm_loss(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))]) for i in range(6)]
    assert torch.allclose(st.mu, torch.stack(rows).mean(0), rtol=0, atol=fp_tol(10.0))


# ------------------------------------------------------------------ Hessian quantities


def test_hvp_equals_explicit_hessian_times_vector():
    """make_hvp (double backward, chunked eval set) equals H v with the dense Hessian."""
    model = _tiny_mlp()
    x, y = _tiny_data()
    H = _dense_hessian(model, x, y)
    V = torch.randn(5, H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    hv = E.make_hvp(model, LOSS, x, y, chunk=10)(V)
    assert torch.allclose(hv, V @ H, rtol=0, atol=fp_tol(_cond(H) * H.shape[0]))


def test_hutchinson_trace_and_diag_within_5_se():
    """Rademacher Hutchinson: tr(H) and every H_ii within 5 SE of the explicit Hessian's."""
    model = _tiny_mlp()
    x, y = _tiny_data()
    H = _dense_hessian(model, x, y)
    st = E.per_example_grad_stats(model, LOSS, x, y)
    hs = E.hessian_stats(E.make_hvp(model, LOSS, x, y), st, [1, 8], probes=64, seed=5)
    floor = fp_tol(_cond(H) * H.shape[0])   # rows without off-diagonal terms are exact
    assert hs.probes == 64
    assert mc_close(hs.tr_h, float(torch.trace(H)), hs.tr_h_se, floor=floor)
    assert mc_close(hs.diag_h.numpy(), torch.diag(H).numpy(), hs.diag_h_se.numpy(), floor=floor)
    assert hs.tr_h_se > 0


def test_hvp_quantities_equal_theory_sign_on_dense_hessian():
    """With the exact diag(H), the HVP-built S_off, Theorem 2's ε_opt(B), Theorem 3's (ε_max,
    B_noise), Theorem 4's limit and the SGD law equal theory.sign / theory.sgd on dense H."""
    model = _tiny_mlp(2)
    x, y = _tiny_data(64, 4)
    H = _dense_hessian(model, x, y)
    st = E.per_example_grad_stats(model, LOSS, x, y)
    B = [1.0, 4.0, 16.0, 64.0]
    hs = E.hessian_stats(E.make_hvp(model, LOSS, x, y), st, B, probes=4,
                         exact_diag=torch.diag(H))
    mu, sig, h = st.mu.numpy(), st.sigma.numpy(), H.numpy()
    tol = fp_tol(_cond(H) * h.shape[0] * 1e3)   # ratios of O(d)-term sums; 1e3 = |r|² scale
    assert math.isclose(hs.s_off, sign_law.s_off(mu, sig, h), rel_tol=tol, abs_tol=tol)
    eps, bn = E.thm3_params(hs.tr_h, hs.s_off, float(np.sum(mu**2 / sig)))
    eps_ref, bn_ref = sign_law.surge_params(mu, sig, h)
    assert math.isclose(eps, eps_ref, rel_tol=tol) and math.isclose(bn, bn_ref, rel_tol=tol)
    xi = E.expected_sign(st, B)
    lr2 = E.thm2_lr(st.mu, xi, hs.denom)
    assert np.allclose(lr2, sign_law.optimal_lr_exact(mu, sig, h, np.array(B)), rtol=tol, atol=0)
    assert math.isclose(E.thm4_lr(st.mu, hs.s_h_s), sign_law.large_batch_lr(mu, h), rel_tol=tol)
    e_s, b_s = E.sgd_params(float(mu @ mu), hs.mu_h_mu, hs.tr_h_sigma)
    e_ref, b_ref = sgd_law.params(mu, h, sig**2)
    assert math.isclose(e_s, e_ref, rel_tol=tol) and math.isclose(b_s, b_ref, rel_tol=tol)
    pred = E.laws(st, hs)
    assert math.isclose(pred["b_noise_thm3"], bn_ref, rel_tol=tol)
    g2 = float(mu @ mu) - float(np.sum(sig**2)) / st.n       # debiased |G|²
    assert math.isclose(pred["g2"], g2, rel_tol=tol, abs_tol=tol)
    expect = float(np.sum(sig**2)) / g2 if g2 > 0 else math.inf   # unresolved signal: inf
    assert pred["b_simple"] == pytest.approx(expect, rel=tol)


def test_thm3_params_without_positive_s_off_has_no_peak():
    """S_off ≤ 0: Theorem 3 has no peak (inf, inf), as theory.sign.surge_params; trH ≤ 0 raises."""
    assert E.thm3_params(1.0, -0.5, 2.0) == (math.inf, math.inf)
    with pytest.raises(ValueError, match="tr"):
        E.thm3_params(0.0, 1.0, 1.0)


# ------------------------------------------------------------------ an exactly quadratic problem


class _Quadratic(torch.nn.Module):
    """ℓ_n(θ) = ½ θᵀHθ − x_nᵀθ: gradient Hθ − x_n, Hessian H for every example (exact)."""

    def __init__(self, H: torch.Tensor, theta: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("H", H)
        self.theta = torch.nn.Parameter(theta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.theta @ self.H @ self.theta - x @ self.theta


def _mean_loss(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return out.mean()


def _quadratic_problem(d: int = 6, n: int = 20000, seed: int = 0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    H = torch.as_tensor((q * rng.uniform(0.5, 3.0, d)) @ q.T + 0.8)   # dense, positive S_off
    H = (H + H.T) / 2
    theta = torch.as_tensor(rng.normal(size=d))
    m = (H @ theta).numpy() - rng.choice([-1, 1], d) * rng.uniform(0.1, 0.3, d)
    sd = rng.uniform(1.0, 2.0, d)
    x = torch.as_tensor(m + sd * rng.standard_normal((n, d)))
    return _Quadratic(H, theta), H, x, torch.zeros(n)


def test_quadratic_problem_hutchinson_and_gradient_statistics():
    """On ℓ = ½θᵀHθ − xᵀθ, μ = Hθ − x̄ and σ² = var(x) exactly, and tr(H) is within 5 SE."""
    model, H, x, y = _quadratic_problem()
    st = E.per_example_grad_stats(model, _mean_loss, x, y)
    mu = (H @ model.theta.detach()) - x.mean(0)
    assert torch.allclose(st.mu, mu, rtol=0, atol=fp_tol(float(x.abs().max()) * x.shape[0]))
    assert torch.allclose(st.var, x.var(0), rtol=fp_tol(x.shape[0]), atol=0)
    hs = E.hessian_stats(E.make_hvp(model, _mean_loss, x[:100], y[:100]), st, [4], probes=32,
                         seed=1)
    assert mc_close(hs.tr_h, float(torch.trace(H)), hs.tr_h_se, floor=fp_tol(_cond(H) * 10))


def test_quadratic_problem_one_step_optimum_matches_lemma_1_and_theorem_2():
    """Independent Gaussian coordinates and an exactly quadratic loss: the measured E[Gᵀv]/E[vᵀHv]
    for sign steps is within 5 SE of Theorem 2 (theory.sign.optimal_lr_exact), for SGD steps of
    McCandlish's |G|²/(GᵀHG + tr(HΣ)/B); the true-loss grid optimum agrees with it."""
    model, H, x, y = _quadratic_problem()
    st = E.per_example_grad_stats(model, _mean_loss, x, y)
    # population of the finite training set: σ² with 1/N (batches are drawn from it)
    mu, var = st.mu.numpy(), st.var.numpy() * (st.n - 1) / st.n
    h = H.numpy()
    hvp = E.make_hvp(model, _mean_loss, x[:10], y[:10])
    g_eval = E.hvp_gradient(model, _mean_loss, x, y)
    gen = torch.Generator().manual_seed(2)
    for B in (2, 16):
        gb = E.minibatch_grads(model, _mean_loss, x, y, B, 1500, gen)
        lq, se = E.quad_model_lr(g_eval, torch.sign(gb), hvp(torch.sign(gb)))
        ref = sign_law.optimal_lr_exact(mu, np.sqrt(var), h, float(B))
        assert mc_close(lq, ref, se), (B, lq, ref, se)
        lq_sgd, se_sgd = E.quad_model_lr(g_eval, gb, hvp(gb))
        e, bn = sgd_law.params(mu, h, var)
        assert mc_close(lq_sgd, sgd_law.optimal_lr(float(B), e, bn), se_sgd)
    # the true loss is quadratic, so its grid optimum is the same point
    grid = lq * np.geomspace(0.25, 4.0, 13)
    gains = E.step_gains(model, _mean_loss, torch.sign(gb[:100]), grid, x[:500], y[:500])
    best = E.best_lr(grid, gains, n_boot=100, seed=0)
    cell = math.log(grid[1] / grid[0])
    assert abs(math.log(best["lr"] / lq)) <= GRID_HALF_CELL * cell + MC_SIGMAS * se / lq


# ------------------------------------------------------------------ the grid optimum


def test_best_lr_recovers_a_known_parabola_and_flags_the_edge():
    """Gains ε a − ½ ε² c (+ noise per mini-batch): best_lr finds a/c within half a grid cell
    and its interval covers it; a peak outside the grid is flagged as an edge."""
    rng = np.random.default_rng(0)
    a, c = 2.0, 50.0
    grid = np.geomspace(0.005, 0.5, 15)
    gains = grid * a - 0.5 * grid**2 * c + 0.01 * rng.standard_normal((64, 15))
    best = E.best_lr(grid, gains, n_boot=200, seed=1)
    cell = math.log(grid[1] / grid[0])
    assert abs(math.log(best["lr"] / (a / c))) <= GRID_HALF_CELL * cell
    assert best["lo"] <= best["lr"] <= best["hi"] and not best["edge"]
    low = E.best_lr(grid[:4], gains[:, :4], n_boot=20)
    assert low["edge"] and low["lr"] == grid[3]
    with pytest.raises(ValueError, match="increasing"):
        E.best_lr(grid[::-1], gains)


# ------------------------------------------------------------------ end to end, and bad input


def _workload() -> tuple[Workload, Data]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, generator=g)
    x = torch.randn(1200, 6, generator=g)
    yv = (x @ w + torch.randn(1200, 3, generator=g)).argmax(1)
    data = Data(x[:1000], yv[:1000], x[1000:], yv[1000:])
    wl = Workload("tiny", lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                                                      torch.nn.Linear(8, 3)),
                  lambda *_: data, LOSS, 5, (1.0,), eval_every=5, max_steps=200)
    return wl, data


SMALL = E.EstimateConfig(n_examples=128, n_eval=200, probes=4, batch_sizes=(2, 16),
                         n_batches=4, n_lrs=5, n_boot=20, noise_samples=8)


def test_estimate_at_checkpoint_end_to_end():
    """Every headline key is present and finite where the theory defines it; per-B rows carry
    predicted and measured learning rates with ordered intervals."""
    wl, data = _workload()
    torch.manual_seed(0)
    res = E.estimate_at_checkpoint(wl.make_model(), wl, data, SMALL, step=0)
    s = res["summary"]
    for k in ("loss", "tr_h", "b_simple", "b_noise_sgd", "regime_bound_median", "lr_thm4"):
        assert math.isfinite(s[k]), k
    assert s["regime_bound_floor"] == pytest.approx(math.pi * 128 / (2 * E.CHI2_1_MEDIAN))
    assert [r["batch_size"] for r in res["per_batch"]] == [2, 16]
    for r in res["per_batch"]:
        assert r["lr_meas_sign_lo"] <= r["lr_meas_sign"] <= r["lr_meas_sign_hi"]
        assert r["lr_meas_sgd"] > 0 and r["lr_pred_sign"] > 0
    assert {row["update"] for row in res["one_step"]} == {"sign", "sgd"}
    assert sum(h["count"] for h in res["histogram"]) == res["bounds"].size
    assert isinstance(s["notes"], list)
    r = res["per_batch"][0]     # Lemma 1's moments, measured and predicted, locate any miss
    assert r["m2_sign_meas"] > 0 and r["m2_sign_pred"] == pytest.approx(r["denom"])
    assert r["lr_quad_sign"] == pytest.approx(r["m1_sign_meas"] / r["m2_sign_meas"])


def test_train_checkpoints_yields_requested_steps_and_loss_levels():
    """Snapshots come at the requested steps, in order, and when the loss first falls below a
    requested level."""
    wl, data = _workload()
    got = [(s, lvl) for s, lvl, _ in E.train_checkpoints(wl, data, steps=(10, 0), losses=(5.0,),
                                                          lr=1e-2, batch_size=16)]
    assert got == [(0, None), (0, 5.0), (10, None)]
    with pytest.raises(ValueError, match="non-negative"):
        next(E.train_checkpoints(wl, data, steps=(-1,)))


def test_bad_input_raises_clear_errors():
    """A model without parameters, impossible configs and oversize batches name the problem."""
    wl, data = _workload()
    with pytest.raises(ValueError, match="no trainable parameters"):
        E.per_example_grad_stats(torch.nn.ReLU(), LOSS, data.x_train[:4], data.y_train[:4])
    with pytest.raises(ValueError, match="batch sizes must be positive"):
        E.EstimateConfig(batch_sizes=(0, 4))
    with pytest.raises(ValueError, match="probes"):
        E.EstimateConfig(probes=1)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="exceed"):
        E.estimate_at_checkpoint(wl.make_model(), wl, data,
                                 E.EstimateConfig(batch_sizes=(5000,)))


def _cli_args(tmp_path, **over) -> argparse.Namespace:
    from validate import estimate_cli

    p = argparse.ArgumentParser()
    estimate_cli.add_arguments(p)
    argv = ["--workload", "synthetic-mlp", "--checkpoints", "0,30", "--n-examples", "128",
            "--n-eval", "128", "--probes", "4", "--batch-sizes", "2,16", "--n-batches", "4",
            "--n-lrs", "5", "--n-boot", "20", "--out", str(tmp_path / "run"), "--quiet",
            "--threads", "1"]
    for k, v in over.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


def test_cli_writes_run_folder_with_summary_tables_and_figures(tmp_path, capsys):
    """`validate estimate` on synthetic-mlp writes config, tables, summary.json with the documented
    per-checkpoint keys, and the figures (drawn from the tables)."""
    from theory.rundir import read_table
    from validate import estimate_cli

    args = _cli_args(tmp_path)
    args.noise_samples = 8
    assert estimate_cli.run(args) == 0
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert [c["step"] for c in summary["checkpoints"]] == [0, 30]
    c = summary["checkpoints"][0]
    for k in ("loss", "b_noise_thm3", "eps_max_thm3", "b_simple", "b_noise_sgd"):
        assert k in c
    pb = c["per_batch"][0]
    for k in ("batch_size", "lr_pred_sign", "lr_meas_sign", "lr_meas_sign_lo", "lr_meas_sign_hi",
              "lr_pred_sgd", "lr_meas_sgd"):
        assert k in pb
    assert len(read_table(out / "per_batch.csv")) == 4
    for f in ("config.json", "meta.json", "checkpoints.csv", "one_step.csv", "regime_hist.csv",
              "lr_sign.png", "lr_sgd.png", "regime_hist.png", "b_noise_vs_loss.png"):
        assert (out / f).is_file(), f
    assert "B_noise(Thm3)" in capsys.readouterr().out


def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys):
    """Bad options exit with status 2 and a message naming the problem."""
    from validate import estimate_cli

    assert estimate_cli.main(["--batch-sizes", "0,4", "--out", str(tmp_path / "x")]) == 2
    assert "batch sizes must be positive" in capsys.readouterr().err
    assert estimate_cli.main(["--workload", "no-such-workload"]) == 2
    assert "unknown workload" in capsys.readouterr().err


def test_full_trace_h_sigma_uses_all_noise_samples(monkeypatch):
    """The full tr(HΣ) averages uᵀHu over ALL ``noise_samples`` per-example gradients, also
    when a model with few parameters and wide inputs makes group_grads yield them in several
    chunks (only the first chunk was used before)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 64, generator=g)
    yv = (x[:, :2] @ torch.ones(2, 2)).argmax(1)
    data = Data(x[:200], yv[:200], x[200:], yv[200:])
    wl = Workload("wide", lambda: torch.nn.Linear(64, 2), lambda *_: data, LOSS, 5, (1.0,),
                  eval_every=5, max_steps=10)
    seen = []
    real = E.hessian_stats

    def spy(*a, **kw):
        seen.append(int(kw["noise"].shape[0]))
        return real(*a, **kw)

    monkeypatch.setattr(E, "hessian_stats", spy)
    cfg = E.EstimateConfig(n_examples=64, n_eval=50, probes=2, batch_sizes=(2,), measure=False,
                           noise_samples=32)
    torch.manual_seed(0)
    E.estimate_at_checkpoint(wl.make_model(), wl, data, cfg)
    assert seen == [32]
