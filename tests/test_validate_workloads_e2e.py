"""One tiny end-to-end sweep per real workload, on the real data, through both sweep backends.

Skips (with the reason) when ../shared/data is absent. The `tiny` presets train a few dozen
steps of a smoke-size model; what is checked is the plumbing — data → workload → engine →
store → rows — not the science (that is `surgelab run`'s job).
"""

from __future__ import annotations

import pytest

from surgelab.store import SweepStore
from validate import sweep
from validate.presets import get_preset
from validate.workload import get_workload

REAL = ("fmnist-cnn", "tinyimagenet-resnet18", "eli5-gpt", "shakespeare-gpt")


def _grid_keys(preset) -> set[tuple]:
    targets = preset.targets or get_workload(preset.workload, size=preset.size).targets
    return {
        (b, lr, s, t)
        for b in preset.batch_sizes
        for lr in preset.lrs
        for s in preset.seeds
        for t in targets
    }


def _check_rows(rows, preset) -> None:
    keys = {(r["batch_size"], r["lr"], r["seed"], r["target"]) for r in rows}
    assert keys == _grid_keys(preset), "every (B, lr, seed, target) stored exactly once"
    assert len(rows) == len(keys)
    for r in rows:
        assert isinstance(r["diverged"], bool) and isinstance(r["reached"], bool)
        if r["reached"]:
            assert r["steps"] >= 1 and r["examples"] == r["steps"] * r["batch_size"]


@pytest.mark.parametrize("workload", REAL)
def test_tiny_sweep_local(workload, shared_data, tmp_path):
    """The tiny preset of each real workload runs in-process and stores the whole grid."""
    preset = get_preset("tiny", workload)
    with SweepStore(tmp_path / "s.sqlite") as store:
        rows = sweep.run_sweep(
            preset, store=store, backend="local", workers=1, threads=1, data_dir=str(shared_data)
        )
    _check_rows(rows, preset)


@pytest.mark.slow
@pytest.mark.parametrize("workload", REAL)
def test_tiny_sweep_ray(workload, shared_data, tmp_path):
    """The same through a local Ray instance (slow: one Ray start per workload)."""
    pytest.importorskip("ray")
    preset = get_preset("tiny", workload)
    with SweepStore(tmp_path / "r.sqlite") as store:
        rows = sweep.run_sweep(
            preset, store=store, backend="ray", workers=2, threads=1, data_dir=str(shared_data)
        )
    _check_rows(rows, preset)
