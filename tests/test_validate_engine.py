"""The batched training engine (validate.engine) and the built-in workloads (validate.workloads).

Kept fast: synthetic-mlp trains in about a second; every other workload is only built and
stepped a few times on random tensors of its input shape (no files needed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.tolerances import ADAM_REL_TOL
from validate.engine import (
    ROW_KEYS,
    _adam_step,
    _Stacked,
    batch_indices,
    stream_seed,
    train_group,
    train_single,
)
from validate.models import n_params
from validate.workload import Data, Workload, available, get_workload

LRS = (3e-3, 1e-2)
SEEDS = (1, 0)  # not sorted: the per-seed batch gather must follow model order
TARGETS = (1.6, 1.3)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: these models are tiny, and on the shared 2-core CI machine two
    torch threads contending with other processes run several times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mlp() -> tuple[Workload, Data]:
    w = get_workload("synthetic-mlp", size="smoke")
    return w, w.load_data(None, "cpu")


@pytest.fixture(scope="module")
def batched_rows(mlp):
    w, d = mlp
    return train_group(w, d, 32, LRS, SEEDS, targets=TARGETS, max_steps=400)


def test_rows_have_all_keys_and_grid_order(batched_rows):
    """One row per (lr, seed, target), in that nesting order, each with every documented key."""
    assert len(batched_rows) == len(LRS) * len(SEEDS) * len(TARGETS)
    grid = [(lr, s, t) for lr in LRS for s in SEEDS for t in TARGETS]
    assert [(r["lr"], r["seed"], r["target"]) for r in batched_rows] == grid
    for r in batched_rows:
        assert set(ROW_KEYS) <= set(r)
        assert r["batch_size"] == 32 and r["group_size"] == len(LRS) * len(SEEDS)


def test_reached_rows_are_consistent(batched_rows):
    """E = B·S, S is a multiple of eval_every, loss at target ≤ target, reduction = difference."""
    reached = [r for r in batched_rows if r["reached"]]
    assert reached, "synthetic-mlp should reach its first target within 400 steps"
    for r in reached:
        assert r["examples"] == r["batch_size"] * r["steps"]
        assert r["steps"] % 10 == 0 and r["steps"] <= r["final_step"]
        assert r["loss_at_target"] <= r["target"]
        assert r["loss_reduction"] == pytest.approx(r["loss_at_target"] - r["loss_after_further"])
        assert not r["diverged"]


def test_steps_grow_as_target_falls(batched_rows):
    """For each model, S(target) is non-decreasing as the target decreases, and grows overall."""
    grew = False
    for i in range(0, len(batched_rows), len(TARGETS)):
        s = [r["steps"] for r in batched_rows[i : i + len(TARGETS)]]
        assert all(x is not None for x in s), f"all targets should be reached: {s}"
        assert s == sorted(s)
        grew |= s[-1] > s[0]
    assert grew


def test_batched_equals_single(mlp, batched_rows):
    """The vmapped group and one-at-a-time torch.optim.Adam give the same S for each (lr, seed).

    Both consume the same init and data stream, and the batched Adam repeats torch's
    single-tensor arithmetic, so the only differences are float reassociation inside the
    vmapped matmuls: far too small to move an evaluation across a target on this problem.
    """
    w, d = mlp
    single = train_single(w, d, 32, LRS, SEEDS, targets=TARGETS, max_steps=400)
    assert [r["steps"] for r in single] == [r["steps"] for r in batched_rows]
    for a, b in zip(single, batched_rows):
        if a["reached"]:
            assert a["loss_at_target"] == pytest.approx(b["loss_at_target"], rel=ADAM_REL_TOL)
            assert a["loss_after_further"] == pytest.approx(
                b["loss_after_further"], rel=ADAM_REL_TOL
            )


def test_model_chunks_do_not_change_results(mlp, batched_rows):
    """Splitting the group into vmapped chunks of 3 models (and eval into chunks of 100
    examples) changes only summation order: same S, losses equal to float32 rounding."""
    w, d = mlp
    rows = train_group(
        w, d, 32, LRS, SEEDS, targets=TARGETS, max_steps=400, model_chunk=3, eval_chunk=100
    )
    assert [r["steps"] for r in rows] == [r["steps"] for r in batched_rows]
    for a, b in zip(rows, batched_rows):
        if a["reached"]:
            assert a["loss_at_target"] == pytest.approx(b["loss_at_target"], rel=ADAM_REL_TOL)


def test_common_random_numbers_same_seed_same_start(mlp):
    """Models that share a seed share the init: with one tiny lr they all start at one loss."""
    w, d = mlp
    rows = train_group(w, d, 8, [1e-6, 2e-6], [5], targets=(10.0,), max_steps=1)
    assert rows[0]["loss_at_target"] == rows[1]["loss_at_target"]


def test_diverging_lr_is_recorded_not_raised(mlp):
    """A huge Adam lr makes the loss blow up: rows say diverged, reached False; nothing raises."""
    w, d = mlp
    rows = train_group(w, d, 32, [1e-2, 50.0], [0], targets=(1.6,), max_steps=200)
    ok, bad = rows
    assert bad["diverged"] and not bad["reached"] and bad["steps"] is None
    assert ok["reached"] and not ok["diverged"]


def test_sign_adam_runs(mlp):
    """β1 = β2 = 0 (sign-like Adam) trains and reaches a target, batched and single alike."""
    w, d = mlp
    kw = dict(betas=(0.0, 0.0), targets=(1.6,), max_steps=200)
    rb = train_group(w, d, 32, [1e-2], [0], **kw)
    rs = train_single(w, d, 32, [1e-2], [0], **kw)
    assert rb[0]["reached"] and rb[0]["steps"] == rs[0]["steps"]


def test_adam_step_matches_torch_adam():
    """The stacked Adam equals torch.optim.Adam per model (different lr per model, 5 steps)."""
    gen = torch.Generator().manual_seed(0)
    lrs = torch.tensor([1e-3, 1e-2, 1e-1])
    for betas in ((0.9, 0.999), (0.0, 0.0), (0.5, 0.9)):
        p0 = torch.randn(3, 4, 5, generator=gen)
        grads = [torch.randn(3, 4, 5, generator=gen) for _ in range(5)]
        st = _Stacked.from_dicts({"w": p0.clone(), "b": p0[:, 0].clone()}, {}, lrs)
        for g in grads:
            _adam_step(st, st.flatten({"w": g, "b": g[:, 0]}), betas[0], betas[1], 1e-8)
        for i in range(3):
            p = torch.nn.Parameter(p0[i].clone())
            q = torch.nn.Parameter(p0[i, 0].clone())
            opt = torch.optim.Adam([p, q], lr=float(lrs[i]), betas=betas, eps=1e-8, foreach=False)
            for g in grads:
                p.grad, q.grad = g[i].clone(), g[i, 0].clone()
                opt.step()
            torch.testing.assert_close(st.params["w"][i], p.detach(), rtol=ADAM_REL_TOL, atol=0.0)
            torch.testing.assert_close(st.params["b"][i], q.detach(), rtol=ADAM_REL_TOL, atol=0.0)


def _splitmix_reference(key: int, step: int, b: int, n: int) -> np.ndarray:
    """The documented index generator in numpy uint64 (wrapping) arithmetic."""
    with np.errstate(over="ignore"):
        z = (
            np.uint64(key)
            + np.uint64(step) * np.uint64(0x9E3779B97F4A7C15)
            + np.arange(b, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(1)) % np.uint64(n)).astype(np.int64)


def test_batch_indices_match_uint64_reference_and_are_uniform():
    """torch int64 wrapping arithmetic reproduces the uint64 splitmix64 stream; counts are
    uniform (chi-square over 10 cells with 9 dof: P(χ² > 40) < 1e-5)."""
    keys = [stream_seed(s) for s in (0, 1, 7)]
    got = batch_indices(torch.tensor(keys), 123, 50, 1000)
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(got[i].numpy(), _splitmix_reference(k, 123, 50, 1000))
    assert not torch.equal(got[0], got[1])
    assert not torch.equal(got[0], batch_indices(torch.tensor(keys[:1]), 124, 50, 1000)[0])
    big = batch_indices(torch.tensor(keys[:1]), 5, 100_000, 10)[0].numpy()
    counts = np.bincount(big, minlength=10)
    chi2 = float(((counts - 10_000.0) ** 2 / 10_000.0).sum())
    assert big.min() >= 0 and chi2 < 40


def test_sign_descent_limit():
    """With β1 = β2 = 0 and ε = 0 one step moves every coordinate by exactly lr against sign(g)."""
    g = torch.tensor([[0.3, -2.0, 1e-5]])
    st = _Stacked.from_dicts({"w": torch.zeros(1, 3)}, {}, torch.tensor([0.25]))
    _adam_step(st, g, 0.0, 0.0, 0.0)
    assert st.params["w"].tolist() == [[-0.25, 0.25, -0.25]]


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(batch_size=0), "batch size"),
        (dict(batch_size=2.5), "batch size"),
        (dict(lrs=[]), "lrs"),
        (dict(lrs=[-1.0]), "learning rates"),
        (dict(seeds=[]), "seeds"),
        (dict(targets=(1.0, 2.0)), "targets"),
        (dict(betas=(1.0, 0.9)), "betas"),
        (dict(model_chunk=0), "model_chunk"),
    ],
)
def test_bad_arguments_raise_value_error(mlp, bad, match):
    """Bad grid arguments are a ValueError naming the argument, before any training."""
    w, d = mlp
    kw = dict(batch_size=8, lrs=[1e-3], seeds=[0]) | bad
    with pytest.raises(ValueError, match=match):
        train_group(w, d, kw.pop("batch_size"), kw.pop("lrs"), kw.pop("seeds"), **kw)


def test_unknown_workload_and_size():
    with pytest.raises(ValueError, match="unknown workload"):
        get_workload("no-such-workload")
    with pytest.raises(ValueError, match="size"):
        get_workload("fmnist-cnn", size="huge")


def test_batchnorm_model_is_rejected(mlp):
    """A model with BatchNorm running stats cannot be vmapped functionally: clear ValueError."""
    w, d = mlp
    bn = Workload(
        name="bn",
        make_model=lambda: torch.nn.Sequential(torch.nn.Linear(16, 10), torch.nn.BatchNorm1d(10)),
        load_data=w.load_data,
        loss=w.loss,
        further_steps=1,
        targets=(1.0,),
    )
    with pytest.raises(ValueError, match="GroupNorm"):
        train_group(bn, d, 8, [1e-3], [0], max_steps=1)


# ----------------------------------------------------------------------------- every workload

#: (input shape of one example, input dtype, label shape of one example, n classes / vocab)
SHAPES = {
    "synthetic-mlp": ((16,), torch.float32, (), 10),
    "fmnist-cnn": ((28, 28), torch.uint8, (), 10),
    "tinyimagenet-resnet18": ((32, 32, 3), torch.uint8, (), 10),
    "eli5-gpt": ((32,), torch.uint8, (32,), 256),
    "shakespeare-gpt": ((32,), torch.uint8, (32,), 256),
}


def _random_data(name: str, n: int) -> Data:
    shape, dtype, yshape, k = SHAPES[name]
    g = torch.Generator().manual_seed(1)
    x = (
        torch.randn((n, *shape), generator=g)
        if dtype == torch.float32
        else torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    )
    y = torch.randint(0, k, (n, *yshape), generator=g)
    return Data(x, y, x[: n // 2], y[: n // 2])


def test_registry_lists_all_builtins():
    assert set(SHAPES) <= set(available())


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_workload_builds_forwards_and_steps(name):
    """Each smoke workload: a documented model, right output shape, and 3 batched steps run."""
    w = get_workload(name, size="smoke")
    assert w.description and w.further_steps >= 1 and len(w.targets) >= 2
    model = w.make_model()
    assert n_params(model) > 0
    d = _random_data(name, 16)
    out = model(d.x_train[:4])
    k = SHAPES[name][3]
    want = (4, *SHAPES[name][2], k)
    assert tuple(out.shape) == want
    init = float(w.loss(out, d.y_train[:4]).detach())
    assert init == pytest.approx(math.log(k), rel=0.3), "fresh models predict near-uniformly"
    # target 100 is met at step 0 (exercises the fork), 0.01 never (runs to max_steps)
    rows = train_group(
        w,
        d,
        4,
        [1e-3, 1e-2],
        [0],
        targets=(100.0, 0.01),
        further_steps=1,
        max_steps=2,
        eval_every=2,
    )
    assert len(rows) == 4 and all(r["final_step"] == 2 for r in rows)
    assert [r["reached"] for r in rows] == [True, False, True, False]
    assert all(math.isfinite(r["loss_reduction"]) for r in rows[::2])
    assert all(not r["diverged"] for r in rows)


def test_paper_sizes_are_larger():
    """Paper-size models are the documented scale (parameter counts, no data needed)."""
    counts = {
        n: n_params(get_workload(n, size="paper").make_model())
        for n in ("fmnist-cnn", "eli5-gpt", "tinyimagenet-resnet18")
    }
    assert 1e5 < counts["fmnist-cnn"] < 1e6
    assert 1e6 < counts["eli5-gpt"] < 1e7
    assert 1e7 < counts["tinyimagenet-resnet18"] < 1.3e7  # ResNet-18 is ~11 M


def test_synthetic_is_deterministic():
    a = get_workload("synthetic-mlp").load_data(None, "cpu")
    b = get_workload("synthetic-mlp").load_data(None, "cpu")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_eval, b.y_eval)
    c = get_workload("synthetic-mlp", seed=1).load_data(None, "cpu")
    assert not torch.equal(a.x_train, c.x_train)
    assert np.unique(a.y_train.numpy()).size == 10


def test_bench_times_both_engines_on_one_grid():
    """The bench times both engines in one run, they agree on S, and the ratio is the quotient
    of the two wall times it reports."""
    from validate.bench import bench

    steps = []
    s, rows = bench(
        "synthetic-mlp",
        batch_size=16,
        lrs=(3e-3, 1e-2),
        seeds=(0,),
        targets=(1.6,),
        max_steps=60,
        torch_threads=1,
        on_progress=steps.append,
    )
    assert s["same_steps"] and s["n_models"] == 2 and s["single_s"] > 0 and s["batched_s"] > 0
    assert s["ratio"] == pytest.approx(s["single_s"] / s["batched_s"])
    assert sorted({r["engine"] for r in rows}) == ["batched", "single"] and len(rows) == 4
    # progress reports optimiser steps taken: per model one after another for the single
    # engine, once per step of the whole group for the batched one (its longest model)
    group_steps = max(r["final_step"] for r in rows if r["engine"] == "batched")
    assert sum(steps) == s["single_model_steps"] + group_steps
    with pytest.raises(ValueError, match="batch size"):
        bench("synthetic-mlp", batch_size=0)


def test_checkpoint_resume_gives_the_uninterrupted_rows(mlp):
    """A group resumed from any checkpoint it handed out ends with exactly the rows of the
    uninterrupted run (same steps, losses, forks): the batch stream is addressed by step and
    the state holds parameters, Adam moments and bookkeeping."""
    w, d = mlp
    states = []
    kw = dict(targets=TARGETS, max_steps=300)
    full = train_group(
        w, d, 32, LRS, SEEDS, checkpoint_every=0.0, on_checkpoint=states.append, **kw
    )
    assert len(states) >= 3
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    for st in (states[1], states[len(states) // 2], states[-1]):
        assert 0 < st["step"] <= 300
        assert strip(train_group(w, d, 32, LRS, SEEDS, resume=st, **kw)) == strip(full)
    with pytest.raises(ValueError, match="another group"):
        train_group(w, d, 16, LRS, SEEDS, resume=states[1], **kw)


def test_eval_interval_bounds_eval_overhead():
    """k·B·overhead·3 >= n_eval (eval ≤ overhead × training), never below the base interval."""
    from validate.engine import eval_interval

    for b in (1, 7, 64, 1000):
        k = eval_interval(b, 2000, base=10, max_overhead=0.5)
        assert k >= 10 and 3 * k * b * 0.5 >= 2000
        assert k == 10 or 3 * (k - 1) * b * 0.5 < 2000  # the smallest such k
    with pytest.raises(ValueError, match="batch_size"):
        eval_interval(0, 100)


def test_lm_windows_shift_targets_by_one():
    from validate.workloads import lm_windows

    toks = np.arange(23, dtype=np.uint8)
    x, y = lm_windows(toks, 5)
    assert x.shape == y.shape == (4, 5)
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(x.ravel(), toks[:20])
    with pytest.raises(ValueError, match="shorter"):
        lm_windows(toks[:5], 5)


def test_avg_pool_images():
    from validate.workloads import avg_pool_images

    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    y = avg_pool_images(x, 2)
    assert y.shape == (2, 2, 2, 3) and y.dtype == np.uint8
    assert y[0, 0, 0, 0] == round(x[0, :2, :2, 0].mean())


@pytest.mark.parametrize(
    "name, x_shape, y_shape",
    [
        ("fmnist-cnn", (28, 28), ()),
        ("shakespeare-gpt", (32,), (32,)),
        ("eli5-gpt", (32,), (32,)),
    ],
)
def test_real_workload_data(shared_data, name, x_shape, y_shape):
    """Smoke-size workloads load the real files: shapes, uint8 inputs, held-in ⊂ train."""
    w = get_workload(name, size="smoke", data_dir=shared_data)
    d = w.load_data(None, "cpu")
    assert d.x_train.dtype == torch.uint8 and tuple(d.x_train.shape[1:]) == x_shape
    assert tuple(d.y_train.shape[1:]) == y_shape and d.x_test is not None
    assert d.x_eval.shape[0] == w.extra["n_eval"]
    first = d.x_eval[0]
    assert (d.x_train == first).flatten(1).all(dim=1).any(), "held-in rows come from train"
