"""The gradient-noise-scale monitor (validate.monitor): unbiased two-batch estimates of |G|² and
tr(Σ) with separate EMAs, on one device (micro-batches) and under data parallelism."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch

from tests.tolerances import fp_tol, mc_close
from validate.monitor import NoiseScaleMonitor, grad_sq_norm


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one torch thread is fastest, and avoids spin contention on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_two_batch_estimates_are_exactly_unbiased_on_linear_regression():
    """Linear regression ½(w x − y)² at w = 1 on x = (1, 2, 3), y = (0, 1, 0): the per-example
    gradients (w x − y) x are g = (1, 2, 9), so |G|² = 4² = 16, tr Σ = mean g² − |G|² =
    86/3 − 16 = 38/3 and B_simple = 19/24. Every step draws two micro-batches of one example
    with replacement (B_small = 1, B_big = 2); averaged over all 9 equally likely draws, the
    monitor's per-step estimates read from .grad are exactly these values."""
    x = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64)
    model = torch.nn.Linear(1, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.fill_(1.0)
    mon = NoiseScaleMonitor(beta=0.0)
    est = []
    for i in range(3):
        for j in range(3):
            model.zero_grad()
            for m, k in enumerate((i, j)):
                (0.5 * (model(x[k : k + 1]) - y[k : k + 1]).pow(2).sum() / 2).backward()
                if m == 0:
                    mon.record_small(model, batch_size=1, scale=2)
            est.append(mon.update(model, batch_size=2))
    g2, tr = np.mean(est, axis=0)
    assert g2 == pytest.approx(16.0, rel=fp_tol(10))
    assert tr == pytest.approx(38 / 3, rel=fp_tol(10))
    assert tr / g2 == pytest.approx(19 / 24, rel=fp_tol(10))


def test_ema_reading_is_the_debiased_average_by_hand():
    """β = ½, two steps (B_small = 1, B_big = 2): |G_small|², |G_big|² = (5, 3) give per-step
    |G|² = 2·3 − 5 = 1, tr Σ = 2·(5 − 3) = 4; (10, 7) give 4 and 6. The debiased EMA is
    (¼ a₁ + ½ a₂)/(1 − ¼) = (a₁ + 2 a₂)/3: |G|² = 3, tr Σ = 16/3, B_simple = 16/9."""
    mon = NoiseScaleMonitor(beta=0.5)
    assert mon.observe(5.0, 3.0, 1, 2) == pytest.approx((1.0, 4.0), rel=fp_tol())
    assert mon.observe(10.0, 7.0, 1, 2) == pytest.approx((4.0, 6.0), rel=fp_tol())
    assert mon.g2 == pytest.approx(3.0, rel=fp_tol())
    assert mon.trace_sigma == pytest.approx(16 / 3, rel=fp_tol())
    assert mon.b_simple == pytest.approx(16 / 9, rel=fp_tol())
    assert mon.state() == {
        "steps": 2,
        "g2": mon.g2,
        "trace_sigma": mon.trace_sigma,
        "b_simple": mon.b_simple,
    }


def test_monitor_on_a_real_network_with_micro_batches():
    """synthetic-mlp at a fixed θ, micro-batches drawn with replacement: the monitor's per-step
    |G|² and tr Σ (read from .grad after accumulation) are unbiased for the training set's
    population values from per-example gradients (5 SE)."""
    from validate.workload import get_workload

    wl = get_workload("synthetic-mlp", size="smoke")
    data = wl.load_data(None, "cpu")
    torch.manual_seed(0)
    model = wl.make_model()
    x, y = data.x_train[:1024], data.y_train[:1024]
    # per-example gradients by torch.func, independently of the monitor (and of validate)
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        return wl.loss(functional_call(model, p, (xi[None],)), yi[None])

    per_ex = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([g.reshape(x.shape[0], -1) for g in per_ex.values()], 1).double()
    mu = flat.mean(0)
    g2_pop = float(mu @ mu)
    tr_pop = float(((flat - mu) ** 2).sum(1).mean())  # population (1/N) variance
    mon = NoiseScaleMonitor(beta=0.9)
    gen = torch.Generator().manual_seed(1)
    b, k = 4, 4
    est = []
    for _ in range(300):
        model.zero_grad()
        for j in range(k):
            idx = torch.randint(0, x.shape[0], (b,), generator=gen)
            (wl.loss(model(x[idx]), y[idx]) / k).backward()
            if j == 0:
                mon.record_small(model, batch_size=b, scale=k)
        est.append(mon.update(model, batch_size=b * k))
    est = np.array(est)
    assert mc_close(est[:, 0].mean(), g2_pop, est[:, 0].std(ddof=1) / math.sqrt(len(est)))
    assert mc_close(est[:, 1].mean(), tr_pop, est[:, 1].std(ddof=1) / math.sqrt(len(est)))
    assert math.isfinite(mon.b_simple)


def _two_rank_grads():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)) for _ in range(2)]
    grads = []
    for xb, yb in batches:
        model.zero_grad()
        torch.nn.functional.mse_loss(model(xb), yb).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    return model, grads


def test_update_distributed_with_an_injected_all_reduce():
    """Local vs global logic: with rank 1's tensors injected as the all-reduce partner, rank 0's
    monitor reads small = mean of the ranks' local |g|², big = |mean of the g|², B_big = 2 B_local,
    and leaves the averaged gradient in .grad."""
    model, grads = _two_rank_grads()
    other = [
        *grads[1],
        torch.tensor([sum(float(t.double().pow(2).sum()) for t in grads[1])], dtype=torch.float64),
    ]
    queue = list(other)

    def fake_all_reduce(t: torch.Tensor) -> None:
        t.add_(queue.pop(0).to(t.dtype))

    for p, g in zip(model.parameters(), grads[0]):
        p.grad = g.clone()
    mon = NoiseScaleMonitor(beta=0.0, all_reduce=fake_all_reduce, world_size=2)
    g2, tr = mon.update_distributed(model, local_batch_size=6)
    local = [sum(float(t.double().pow(2).sum()) for t in gr) for gr in grads]
    mean_g = [(a + b) / 2 for a, b in zip(*grads)]
    big = sum(float(t.double().pow(2).sum()) for t in mean_g)
    from theory.sgd import two_batch_estimates

    ref = two_batch_estimates(np.mean(local), big, 6, 12)
    assert math.isclose(g2, float(ref[0]), rel_tol=fp_tol(100))
    assert math.isclose(tr, float(ref[1]), rel_tol=fp_tol(100))
    for p, m in zip(model.parameters(), mean_g):
        assert torch.allclose(p.grad, m)
    assert not queue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model, _ = _two_rank_grads()
        model.zero_grad(set_to_none=True)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        mon = NoiseScaleMonitor(beta=0.0)
        ddp.register_comm_hook(None, mon.comm_hook)
        g = torch.Generator().manual_seed(5)
        batches = [
            (torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)) for _ in range(2)
        ]
        xb, yb = batches[rank]
        torch.nn.functional.mse_loss(ddp(xb), yb).backward()
        g2, tr = mon.update(ddp, batch_size=6)
        torch.save({"g2": g2, "tr": tr, "big": grad_sq_norm(ddp)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_comm_hook_two_gloo_ranks(tmp_path):
    """Real DDP, 2 gloo processes on CPU: the comm hook sees each rank's LOCAL gradient, so both
    ranks report the two-batch estimates of (mean local |g|², |global g|²) at (B, 2B)."""
    import torch.multiprocessing as mp

    from theory.sgd import two_batch_estimates

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    _, grads = _two_rank_grads()
    local = [sum(float(t.double().pow(2).sum()) for t in gr) for gr in grads]
    big = sum(float(((a + b) / 2).double().pow(2).sum()) for a, b in zip(*grads))
    ref = two_batch_estimates(np.mean(local), big, 6, 12)
    for r in range(2):
        res = torch.load(tmp_path / f"rank{r}.pt")
        assert math.isclose(res["big"], big, rel_tol=1e-6)  # float32 all-reduce rounding
        assert math.isclose(res["g2"], float(ref[0]), rel_tol=1e-5, abs_tol=1e-6)
        assert math.isclose(res["tr"], float(ref[1]), rel_tol=1e-5)


def test_monitor_bad_input():
    """Errors name the problem: no recorded small batch, no parameters, no gradients, bad beta."""
    model = torch.nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    with pytest.raises(ValueError, match="record_small"):
        NoiseScaleMonitor().update(model, batch_size=8)
    with pytest.raises(ValueError, match="no parameters"):
        grad_sq_norm(torch.nn.ReLU())
    with pytest.raises(ValueError, match="backward"):
        grad_sq_norm(torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match="beta"):
        NoiseScaleMonitor(beta=1.0)
    mon = NoiseScaleMonitor()
    mon.record_small(model, 4)
    with pytest.raises(ValueError, match="B_big must exceed B_small"):
        mon.update(model, batch_size=4)
    assert math.isnan(NoiseScaleMonitor().b_simple)
