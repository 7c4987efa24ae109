"""Small workloads and fixtures shared by the engine and estimate tests."""

from __future__ import annotations

import pytest
import torch

from validate.workload import Data, Workload, get_workload

LOSS = torch.nn.functional.cross_entropy


def tiny_classifier() -> tuple[Workload, Data]:
    """A 6→8→3 tanh MLP on 1,000 + 200 Gaussian examples with linear-softmax labels."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, generator=g)
    x = torch.randn(1200, 6, generator=g)
    yv = (x @ w + torch.randn(1200, 3, generator=g)).argmax(1)
    data = Data(x[:1000], yv[:1000], x[1000:], yv[1000:])
    wl = Workload(
        "tiny",
        lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)),
        lambda *_: data,
        LOSS,
        5,
        (1.0,),
        eval_every=5,
        max_steps=200,
    )
    return wl, data


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread per test module (timings and results do not depend on the machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mlp():
    """The synthetic-mlp smoke workload and its data on the CPU."""
    w = get_workload("synthetic-mlp", size="smoke")
    return w, w.load_data(None, "cpu")


class QuadModel(torch.nn.Module):
    """θ ∈ R^d; the output for example x is θ − x (the quadratic workload's residual)."""

    def __init__(self, d: int, theta0: float = 1.0) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.full((d,), float(theta0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta - x


def quadratic_workload(
    d: int = 16, n: int = 4096, noise: float = 2.0, seed: int = 0
) -> tuple[Workload, Data, torch.Tensor]:
    """A diagonal quadratic with Gaussian per-example gradients, the eval set = the population.

    Per-example loss ½ Σ_i h_i (θ_i − x_i)²: the population gradient is G = h ⊙ (θ − x̄), the
    per-example gradient noise has standard deviation σ_i = h_i · std(x_i) (population), the
    Hessian is diag(h). The eval set is the training set, so the measured loss change is the
    population's (Lemma 1's setting). Returns ``(workload, data, h)``.
    """
    g = torch.Generator().manual_seed(seed)
    h = torch.logspace(0, -1, d)
    x = noise * torch.randn(n, d, generator=g)
    x = x - x.mean(0)  # population optimum at θ = 0
    y = torch.zeros(n)

    def loss(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (h * out**2).sum(-1).mean()

    data = Data(x, y, x, y)
    wl = Workload("quadratic", lambda: QuadModel(d), lambda *_: data, loss, 1, (1.0,))
    return wl, data, h
