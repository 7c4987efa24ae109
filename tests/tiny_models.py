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
