"""The batched engine's alternative paths: the leaf-gradient Adam and the captured steps.

Every path must give the eager flat-Adam numbers (bit for bit where the arithmetic is the
same element by element, to float32 rounding where a compiler may reassociate), and a
captured path that cannot run must fall back to the eager steps and say so.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.tiny_models import _one_torch_thread, mlp  # noqa: F401 (fixtures)
from tests.tolerances import ADAM_REL_TOL
from validate import engine
from validate.engine import (
    _adam_leaves,
    _adam_step,
    _Batched,
    _batched_steps,
    _device_batch,
    _device_update,
    _Stacked,
    stream_seed,
    train_group,
)

LRS = (3e-3, 1e-2)
SEEDS = (1, 0)  # not sorted: the captured batch gather must follow model order
TARGETS = (1.6, 1.3)
KW = dict(targets=TARGETS, max_steps=200)
#: what must agree between two runs of the protocol (wall_s and the path's name differ)
SAME = ("steps", "loss_at_target", "loss_after_further", "diverged", "final_step", "reached")


@pytest.fixture(scope="module")
def eager_rows(mlp):
    w, d = mlp
    return train_group(w, d, 32, LRS, SEEDS, adam="flat", **KW)


def _same(a, b):
    return [{k: r[k] for k in SAME} for r in a] == [{k: r[k] for k in SAME} for r in b]


# ----------------------------------------------------------------------------- leaf Adam


def _random_stack(gen, m=3):
    shapes = {"w1": (4, 5), "b1": (4,), "w2": (2, 3, 3), "s": ()}
    params = {k: torch.randn(m, *s, generator=gen) for k, s in shapes.items()}
    return _Stacked.from_dicts(params, {}, torch.tensor([1e-3, 1e-2, 1e-1][:m]))


@pytest.mark.parametrize(
    "betas, eps", [((0.9, 0.999), 1e-8), ((0.0, 0.0), 0.0), ((0.5, 0.9), 1e-3)]
)
def test_leaf_adam_is_bitwise_the_flat_adam(betas, eps):
    """50 steps of the leaf-gradient Adam (also fed in two row chunks) leave parameters and
    moments bit-identical to the flat Adam's: the same float32 operations on each element.
    (A bound of 50 steps × float32 eps relative would also admit reassociation; the leaf
    update has none, so the test demands 0 ulps.)"""
    gen = torch.Generator().manual_seed(3)
    flat, leaf, chunked = (_random_stack(torch.Generator().manual_seed(7)) for _ in range(3))
    for _ in range(50):
        grads = [torch.randn(3, *p.shape[1:], generator=gen) for p in flat.params.values()]
        _adam_step(flat, flat.flatten(dict(zip(flat.params, grads))), *betas, eps)
        _adam_leaves(leaf, [(0, 3, grads)], *betas, eps)
        _adam_leaves(
            chunked, [(0, 1, [g[:1] for g in grads]), (1, 3, [g[1:] for g in grads])], *betas, eps
        )
    for other in (leaf, chunked):
        assert other.t == flat.t == 50
        for a, b in ((flat.flat, other.flat), (flat.m, other.m), (flat.v, other.v)):
            assert torch.equal(a, b)
    assert not torch.equal(flat.flat, _random_stack(torch.Generator().manual_seed(7)).flat)


def test_leaf_and_flat_adam_give_identical_rows(mlp, eager_rows):
    """The whole protocol with either Adam: identical steps to target and losses (bitwise)."""
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, adam="leaves", **KW)
    assert any(r["reached"] for r in rows) and _same(rows, eager_rows)


def test_leaf_adam_with_model_chunks_is_identical(mlp, eager_rows):
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, adam="leaves", model_chunk=3, **KW)
    assert _same(rows, eager_rows)


# ----------------------------------------------------------------------------- device step


def _group(w, d, seeds):
    from torch.func import stack_module_state

    models = [engine._init_model(w, s, "cpu") for s in seeds]
    template = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    lr = torch.tensor([3e-3 * (1 + i) for i in range(len(seeds))])
    return _Batched(w, template, d, 512, None), _Stacked.from_dicts(params, buffers, lr)


@pytest.mark.parametrize("functional", [False, True])
def test_device_step_equals_eager_steps(mlp, functional):
    """The captured/compiled step body run eagerly on a CPU: 30 steps with the step count on
    the device and the batch gathered in model order give the eager parameters bit for bit
    (autograd.grad and torch.func.grad run the same backward ops; the bias corrections in
    float64 rounded to float32 equal the Python-float scalars)."""
    w, d = mlp
    seed_of = [1, 0, 1]
    eng, ref = _group(w, d, seed_of)
    _, st = _group(w, d, seed_of)
    cfg = {"batch_size": 16}
    _batched_steps(eng, ref, seed_of, None, 30, cfg, None, 0.9, 0.999, 1e-8, "flat")
    keys = torch.tensor([stream_seed(s) for s in (0, 1)], dtype=torch.int64)
    gather = torch.tensor([1, 0, 1])
    t = torch.zeros((), dtype=torch.int64)
    for _ in range(30):
        x, y = _device_batch(16, d.x_train, d.y_train, False, t, keys, gather)
        _device_update(
            eng._loss, st.layout, 0.9, 0.999, 1e-8, functional, st.flat, st.m, st.v, st.lr,
            t, x, y, st.buffers,
        )  # fmt: skip
    assert int(t) == ref.t == 30
    assert torch.equal(st.flat, ref.flat) and torch.equal(st.v, ref.v)


# ----------------------------------------------------------------------------- capture paths


def _no_compile(fn, **_kw):
    """torch.compile's stand-in: the function itself (exercises the capture machinery)."""
    return fn


def test_compile_machinery_runs_and_agrees(mlp, eager_rows, monkeypatch):
    """capture="compile" with torch.compile replaced by the identity: the captured path runs
    (rows say so, no note) and the protocol's numbers equal the eager ones (ADAM_REL_TOL:
    same ops, so in fact equal; a real compile reassociates)."""
    monkeypatch.setattr(torch, "compile", _no_compile)
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, capture="compile", **KW)
    assert {r["engine"] for r in rows} == {"batched+compile"}
    assert {r["capture_note"] for r in rows} == {""}
    assert [r["steps"] for r in rows] == [r["steps"] for r in eager_rows]
    for a, b in zip(rows, eager_rows):
        if a["reached"]:
            assert a["loss_at_target"] == pytest.approx(b["loss_at_target"], rel=ADAM_REL_TOL)


def test_compile_that_raises_falls_back(mlp, eager_rows, monkeypatch):
    """torch.compile raising at setup (no compiler, no inductor): the eager steps run, the
    rows are the eager rows, and they say why."""

    def broken(*_a, **_kw):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, capture="compile", **KW)
    assert {r["engine"] for r in rows} == {"batched"}
    assert "no C++ compiler here" in rows[0]["capture_note"]
    assert _same(rows, eager_rows)


def test_compiled_step_that_fails_when_run_falls_back(mlp, eager_rows, monkeypatch):
    """A compiled function that raises at its first call (an inductor kernel error): the
    state is put back, the eager steps run from it, same rows."""

    def compile_bad(fn, **_kw):
        def run(*a, **k):
            a[6].sub_(1.0)  # corrupt flat first: the fall-back must undo it
            raise IndexError("index out of bounds in generated kernel")

        return run

    monkeypatch.setattr(torch, "compile", compile_bad)
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, capture="compile", **KW)
    assert rows[0]["engine"] == "batched" and "IndexError" in rows[0]["capture_note"]
    assert _same(rows, eager_rows)


def test_compiled_step_that_disagrees_falls_back(mlp, eager_rows, monkeypatch):
    """A compiled step that runs but computes something else (here: twice the lr) fails the
    first-step check against the eager step; the group runs eagerly from the saved state."""

    def compile_wrong(fn, **_kw):
        def run(*a):
            a = list(a)
            a[9] = a[9] * 2  # lr
            return fn(*a)

        return run

    monkeypatch.setattr(torch, "compile", compile_wrong)
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, capture="compile", **KW)
    assert (
        rows[0]["engine"] == "batched" and "differs from the eager step" in rows[0]["capture_note"]
    )
    assert _same(rows, eager_rows)


def test_compiled_step_failing_mid_run_hands_over_to_eager(mlp, eager_rows, monkeypatch):
    """A compiled step that fails after some good steps (a later recompile, a runtime
    error): the steps already taken count, the rest of the block runs eagerly, and the
    protocol's numbers are those of an uninterrupted run."""
    calls = [0]

    def compile_flaky(fn, **_kw):
        def run(*a):
            calls[0] += 1
            if calls[0] == 5:
                raise RuntimeError("recompile failed")
            return fn(*a)

        return run

    monkeypatch.setattr(torch, "compile", compile_flaky)  # call 1: the checked step
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, capture="compile", **KW)
    assert rows[0]["engine"] == "batched" and "after 4 steps" in rows[0]["capture_note"]
    assert _same(rows, eager_rows)


def test_graph_capture_falls_back_on_cpu(mlp, eager_rows):
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, capture="graph", **KW)
    assert rows[0]["engine"] == "batched" and "CUDA device" in rows[0]["capture_note"]
    assert _same(rows, eager_rows)


def test_named_trainers_and_bad_values(mlp):
    """Each capture has an importable trainer (its name keys stored sweeps); bad values raise."""
    assert engine.TRAINERS["none"] is train_group
    assert engine.TRAINERS["graph"].__qualname__ == "train_group_graph"
    w, d = mlp
    with pytest.raises(ValueError, match="capture"):
        train_group(w, d, 8, [1e-3], [0], capture="cuda-graph")
    with pytest.raises(ValueError, match="adam"):
        train_group(w, d, 8, [1e-3], [0], adam="fused")


@pytest.mark.slow
def test_real_torch_compile_on_cpu_agrees(mlp, eager_rows):
    """torch.compile with inductor's C++ backend (about a minute to compile on a small CPU):
    same steps to target, losses to float32 rounding (ADAM_REL_TOL), or a clean fall-back."""
    w, d = mlp
    rows = train_group(w, d, 32, LRS, SEEDS, capture="compile", **KW)
    if rows[0]["engine"] == "batched":
        pytest.skip(f"torch.compile unavailable here: {rows[0]['capture_note']}")
    assert rows[0]["engine"] == "batched+compile"
    assert [r["steps"] for r in rows] == [r["steps"] for r in eager_rows]
    for a, b in zip(rows, eager_rows):
        if a["reached"]:
            assert a["loss_at_target"] == pytest.approx(b["loss_at_target"], rel=ADAM_REL_TOL)


# ----------------------------------------------------------------------------- bench


def test_bench_reports_capture_and_bandwidth_fields():
    """The bench records the capture asked for and the one that ran, and the activation
    traffic (None peak on a CPU)."""
    from validate.bench import ACTIVATION_TRAFFIC, bench

    s, _rows = bench(
        "synthetic-mlp", batch_size=8, lrs=(1e-2,), seeds=(0,), targets=(1.6,), max_steps=20,
        torch_threads=1, capture="graph",
    )  # fmt: skip
    assert s["capture"] == "graph" and s["capture_used"] == "none" and "CUDA" in s["capture_note"]
    assert s["activation_bytes_per_example"] == 4 * (32 + 32 + 10)
    want = ACTIVATION_TRAFFIC * 4 * 74 * s["batched_model_examples_per_s"]
    assert s["batched_activation_bytes_per_s"] == pytest.approx(want)
    assert s["memory_bandwidth_peak"] is None and s["fraction_of_bandwidth_peak"] is None


def test_bandwidth_table_by_name():
    from validate.bench import memory_bandwidth_peak

    assert memory_bandwidth_peak("NVIDIA H200") == 4.8e12
    assert memory_bandwidth_peak("NVIDIA H100 PCIe") == 2.0e12
    assert memory_bandwidth_peak("NVIDIA A100-SXM4-40GB") == 1.555e12
    assert memory_bandwidth_peak("NVIDIA A100 80GB PCIe") == 1.935e12
    assert memory_bandwidth_peak("NVIDIA L40S") == 0.864e12
    assert memory_bandwidth_peak("NVIDIA L4") == 0.3e12
    assert memory_bandwidth_peak("Some New GPU") is None and memory_bandwidth_peak(None) is None


# ----------------------------------------------------------------------------- command line


def test_cli_capture_flag(tmp_path, monkeypatch, capsys):
    """``--capture`` on validate bench / run: recorded, falls back on a CPU, keys the store
    (its trainer name), and a bad value is a one-line usage error with nothing written."""
    import json
    import sqlite3

    from surgelab.cli import main
    from surgelab.rundir import read_json

    monkeypatch.chdir(tmp_path)
    bench = ["validate", "bench", "--max-steps", "10", "--seeds", "1", "--lrs", "1e-2"]
    assert main([*bench, "--capture", "graph", "--out", str(tmp_path / "b")]) == 0
    s = read_json(tmp_path / "b" / "summary.json")
    assert s["capture"] == "graph" and s["capture_used"] == "none"
    assert "capture_used: none" in capsys.readouterr().out
    run = ["validate", "run", "--workload", "synthetic-mlp", "--preset", "tiny", "--n-boot", "0"]
    assert main([*run, "--capture", "graph", "--out", str(tmp_path / "r")]) == 0
    db = sqlite3.connect(tmp_path / "r" / "sweep.sqlite")
    key = json.loads(db.execute("SELECT value FROM meta WHERE key='key'").fetchone()[0])
    engines = {e for (e,) in db.execute("SELECT DISTINCT engine FROM points")}
    db.close()
    assert key["engine"]["trainer"] == "validate.engine.train_group_graph"
    assert engines == {"batched"}  # fell back on a CPU, and says so in the rows
    capsys.readouterr()
    assert main([*bench, "--capture", "cuda", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "--capture" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
