"""validate.presets / sweep and surgelab.store: the paper's grids exactly, a resumable sweep
that loses nothing (finished units and, through checkpoints, the progress of a unit in flight),
stored results keyed on the workload's definition, both backends end to end on the real engine.
The command-line cases are in tests/test_cli_validate.py."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from decimal import Decimal

import pytest

from surgelab.store import SweepStore
from tests.tolerances import fp_tol
from validate import sweep
from validate.optimum import log_widths
from validate.presets import Preset, get_preset
from validate.sweep import MemoryStore, StaleResultsError

# ----------------------------------------------------------------------------- presets

TABLE1 = {  # name: (betas, lr first, lr last, n lrs, B first, B last, n B, seeds)
    "paper-fmnist-small": ((0.9, 0.999), "1e-4", "1e-3", 10, 1, 12, 12, 100),
    "paper-fmnist-large": ((0.9, 0.999), "1e-4", "1e-3", 10, 64, 1164, 12, 100),
    "paper-eli5-adam": ((0.9, 0.999), "1e-5", "1.09e-3", 10, 4, 114, 12, 30),
    "paper-eli5-sign": ((0.0, 0.0), "1e-5", "5.5e-4", 10, 4, 114, 12, 30),
    "paper-resnet-sign": ((0.0, 0.0), "1e-4", "7.876e-4", 10, 16, 376, 12, 100),
}
TABLE1_STEPS = {  # exact steps where Table 1 gives one (lr step, B step)
    "paper-fmnist-small": ("1e-4", 1),
    "paper-fmnist-large": ("1e-4", 100),
    "paper-eli5-adam": ("1.2e-4", 10),
    "paper-eli5-sign": ("6e-5", 10),
}


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_paper_presets_are_table1_exactly(name):
    """Each paper preset has Table 1's betas, endpoints, counts and seeds; where the table
    gives an exact step every lr equals start + i·step in decimal (no float drift); the
    ResNet row's rounded steps (≈7.65e-5, ≈33) are within the rounding of the paper."""
    betas, lo, hi, n_lr, b_lo, b_hi, n_b, n_seeds = TABLE1[name]
    p = get_preset(name)
    assert p.betas == betas and p.size == "paper"
    assert (len(p.lrs), p.lrs[0], p.lrs[-1]) == (n_lr, float(lo), float(hi))
    assert (len(p.batch_sizes), p.batch_sizes[0], p.batch_sizes[-1]) == (n_b, b_lo, b_hi)
    assert p.seeds == tuple(range(n_seeds))
    if name in TABLE1_STEPS:
        step, b_step = TABLE1_STEPS[name]
        assert p.lrs == tuple(float(Decimal(lo) + i * Decimal(step)) for i in range(n_lr))
        assert p.batch_sizes == tuple(range(b_lo, b_hi + 1, b_step))
    else:
        lr_steps = [b - a for a, b in zip(p.lrs, p.lrs[1:])]
        # 10 values from 1e-4 to 7.876e-4 force the step 6.876e-4 / 9 = 7.64e-5 (the paper's
        # "≈7.65e-5" is 0.13% off); differences of floats carry ~eps × lr/step rounding.
        assert lr_steps == pytest.approx([7.64e-5] * 9, rel=fp_tol(10.0))
        b_steps = [b - a for a, b in zip(p.batch_sizes, p.batch_sizes[1:])]
        assert set(b_steps) <= {32, 33}  # 360/11 = 32.7 rounded to integers


def test_paper_fmnist_lrs_have_no_float_drift():
    """0.0003 is the float literal 3e-4, not 0.00030000000000000003 (cumulative addition)."""
    assert get_preset("paper-fmnist-small").lrs[2] == 3e-4
    assert get_preset("paper-fmnist-small").lrs[6] == 7e-4


def test_preset_lookup_errors_list_the_valid_names():
    """A bad name, smoke without a workload, or a paper preset for another workload are
    ValueErrors that say what to use instead."""
    with pytest.raises(ValueError, match="paper-fmnist-small"):
        get_preset("nope")
    with pytest.raises(ValueError, match="needs a workload"):
        get_preset("smoke")
    with pytest.raises(ValueError, match="is for workload 'fmnist-cnn'"):
        get_preset("paper-fmnist-small", workload="eli5-gpt")
    with pytest.raises(ValueError, match="no 'smoke' preset for workload"):
        get_preset("smoke", workload="no-such-workload")
    with pytest.raises(ValueError, match="strictly ascending"):
        dataclasses.replace(get_preset("tiny", "synthetic-mlp"), lrs=(1e-3, 1e-4))


def test_every_scaled_preset_exists_for_every_workload():
    """smoke and tiny exist for each registered workload (the CLI's --preset default)."""
    from validate.workload import available

    for wl in available():
        for kind in ("smoke", "tiny"):
            assert get_preset(kind, wl).workload == wl


# ----------------------------------------------------------------------------- fake trainer


def _fake_point(b: int, lr: float, seed: int, target: float) -> dict:
    steps = int(100 * (1 + 16 / b) * (1 + seed / 10))
    return dict(
        batch_size=b,
        lr=lr,
        seed=seed,
        target=target,
        reached=True,
        steps=steps,
        examples=b * steps,
        loss_at_target=target,
        loss_after_further=target - 0.1,
        loss_reduction=0.1 - (math.log(lr) + 7) ** 2 / 100,
        diverged=False,
        further_diverged=False,
        final_step=steps + 10,
        wall_s=0.0,
    )


class FakeTrainer:
    """A deterministic train_group stand-in that counts calls and can 'Ctrl-C' after N."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.calls: list[tuple[int, tuple[int, ...]]] = []
        self.interrupt_after = interrupt_after

    def __call__(self, workload, data, batch_size, lrs, seeds, *, targets=None, **kw):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append((batch_size, tuple(seeds)))
        tg = targets or workload.targets
        return [_fake_point(batch_size, lr, s, t) for lr in lrs for s in seeds for t in tg]


FAKE = Preset(
    "fake",
    "synthetic-mlp",
    "smoke",
    batch_sizes=(4, 16, 64, 256),
    lrs=(1e-3, 3e-3),
    seeds=(0, 1, 2, 3),
    targets=(2.0, 1.9),
    seeds_per_unit=2,
)


def _key(r):
    return (r["batch_size"], r["lr"], r["seed"], r["target"])


def test_units_cover_the_grid_once():
    """plan_units partitions (B, seed) chunks; every grid point is in exactly one unit."""
    units = sweep.plan_units(FAKE)
    assert len(units) == 4 * 2 and len({u.unit_id for u in units}) == len(units)
    cells = [(u.batch_size, s) for u in units for s in u.seeds]
    assert sorted(cells) == sorted((b, s) for b in FAKE.batch_sizes for s in FAKE.seeds)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in ("unit_id", "wall_s")} for r in rows]


def test_interrupted_sweep_resumes_losing_nothing(tmp_path):
    """Ctrl-C after 3 units keeps those 3; the rerun trains exactly the 5 missing units and
    the final table equals an uninterrupted sweep's."""
    with SweepStore(tmp_path / "full.sqlite") as st:
        full = sweep.run_sweep(FAKE, store=st, workers=1, trainer=FakeTrainer())
    first = FakeTrainer(interrupt_after=3)
    with SweepStore(tmp_path / "s.sqlite") as st, pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(FAKE, store=st, workers=1, trainer=first)
    with SweepStore(tmp_path / "s.sqlite") as st:
        assert len(st.done_units()) == 3 and len(st.rows()) == 3 * 2 * 2 * 2
        second = FakeTrainer()
        resumed = sweep.run_sweep(FAKE, store=st, workers=1, trainer=second)
    assert set(first.calls).isdisjoint(second.calls)
    assert len(first.calls) + len(second.calls) == len(sweep.plan_units(FAKE))
    assert _strip(resumed) == _strip(full)
    assert len(full) == FAKE.n_runs * 2
    # a third run has nothing left to do
    third = FakeTrainer()
    with SweepStore(tmp_path / "s.sqlite") as st:
        sweep.run_sweep(FAKE, store=st, workers=1, trainer=third)
    assert third.calls == []


def test_resume_with_another_grid_is_refused(tmp_path):
    """The store is keyed on the grid: other seeds are refused, naming grid.seeds, and
    nothing of the stored sweep is returned or trained."""
    path = tmp_path / "s.sqlite"
    with SweepStore(path) as st:
        sweep.run_sweep(FAKE, store=st, workers=1, trainer=FakeTrainer())
    t = FakeTrainer()
    with SweepStore(path) as st, pytest.raises(StaleResultsError, match=r"grid\.seeds"):
        sweep.run_sweep(FAKE.with_seeds(2), store=st, workers=1, trainer=t)
    assert t.calls == []


def test_memory_store_refuses_another_key():
    """The in-memory store applies the same rule as the SQLite one."""
    st = MemoryStore()
    sweep.run_sweep(FAKE, store=st, workers=1, trainer=FakeTrainer())
    with pytest.raises(StaleResultsError, match=r"grid\.lrs"):
        sweep.run_sweep(
            dataclasses.replace(FAKE, lrs=(1e-3,)), store=st, workers=1, trainer=FakeTrainer()
        )


def test_a_unit_is_written_atomically(tmp_path):
    """A unit with a malformed row leaves nothing behind (one transaction per unit)."""
    with SweepStore(tmp_path / "s.sqlite") as st:
        good = _fake_point(4, 1e-3, 0, 2.0)
        with pytest.raises(ValueError, match="lacks key"):
            st.write_unit("u", 4, [1e-3], [0], [good, {**good, "seed": None}])
        assert st.rows() == [] and st.done_units() == set()
    db = sqlite3.connect(tmp_path / "s.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


# ----------------------------------------------------------------------------- real engine

TINY = get_preset("tiny", "synthetic-mlp")


@pytest.fixture(scope="module")
def local_pool_rows(tmp_path_factory):
    """The tiny synthetic-mlp sweep on the real engine through a 2-process spawn pool."""
    with SweepStore(tmp_path_factory.mktemp("local") / "s.sqlite") as st:
        return sweep.run_sweep(TINY, store=st, backend="local", workers=2, threads=1)


def test_local_pool_runs_the_whole_grid(local_pool_rows):
    """Every (B, lr, seed, target) of the grid is stored once, and most runs reach the first
    target (the tiny preset's targets are chosen to be reached in a few dozen steps)."""
    keys = {_key(r) for r in local_pool_rows}
    assert len(keys) == len(local_pool_rows) == TINY.n_runs * len(TINY.targets)
    assert (
        sum(r["reached"] for r in local_pool_rows if r["target"] == TINY.targets[0])
        >= TINY.n_runs // 2
    )


def test_ray_backend_matches_the_local_pool(tmp_path, local_pool_rows):
    """The same sweep on a local Ray instance (2 CPUs, one task per unit) stores the same
    table: same keys, same steps; loss reductions equal to float32 rounding (both run
    torch with 1 thread per unit)."""
    pytest.importorskip("ray")
    import ray

    assert not ray.is_initialized()
    with SweepStore(tmp_path / "ray.sqlite") as st:
        rows = sweep.run_sweep(TINY, store=st, backend="ray", workers=2, threads=1)
    assert not ray.is_initialized()  # the sweep shut down the instance it started
    assert [_key(r) for r in rows] == [_key(r) for r in local_pool_rows]
    assert [r["steps"] for r in rows] == [r["steps"] for r in local_pool_rows]
    for a, b in zip(rows, local_pool_rows):
        if a["loss_reduction"] is not None:
            assert a["loss_reduction"] == pytest.approx(b["loss_reduction"], abs=1e-5)


def test_diverging_lr_is_recorded_not_raised(tmp_path):
    """An absurd learning rate diverges: its rows are stored with diverged=True and the fits
    still run (the diverged lr simply never wins)."""
    from validate import fits

    p = dataclasses.replace(TINY, batch_sizes=(16, 64), lrs=(1e-2, 50.0))
    rows = sweep.run_sweep(p, workers=1)
    bad = [r for r in rows if r["lr"] == 50.0]
    assert bad and all(r["diverged"] and not r["reached"] for r in bad)
    s = fits.summarise(rows, n_boot=0)
    assert s["n_diverged"] == len(bad)
    assert all(d["lr"] == 1e-2 for d in s["best_lr"])


# ----------------------------------------------------------------------------- checkpoints


class _StopAfterSaves:
    """Checkpoints that 'Ctrl-C' right after the n-th save (the state is on disk by then)."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.saved = inner, n, 0

    def load(self, unit_id):
        return self.inner.load(unit_id)

    def save(self, unit_id, state):
        self.inner.save(unit_id, state)
        self.saved += 1
        if self.saved == self.n:
            raise KeyboardInterrupt

    def discard(self, unit_id):
        self.inner.discard(unit_id)


class _InterruptingStore(SweepStore):
    def bind(self, key):
        super().bind(key)
        self.checkpoints = _StopAfterSaves(self.checkpoints, 3)


def test_a_killed_unit_resumes_from_its_checkpoint(tmp_path):
    """A unit interrupted after its 3rd checkpoint restarts from that checkpoint (not from
    step 0) and the finished table equals an uninterrupted sweep's."""
    from validate.engine import train_group

    p = dataclasses.replace(TINY, batch_sizes=(16,))
    full = sweep.run_sweep(p, workers=1)
    resumed_at = []

    def recording(*a, resume=None, **kw):
        resumed_at.append(None if resume is None else resume["step"])
        return train_group(*a, resume=resume, **kw)

    with _InterruptingStore(tmp_path / "s.sqlite") as st, pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(p, store=st, workers=1, checkpoint_every=1e-9, trainer=recording)
    assert list((tmp_path / "s.checkpoints").glob("*.pt"))
    assert resumed_at == [None]
    resumed_at.clear()

    with SweepStore(tmp_path / "s.sqlite") as st:
        rows = sweep.run_sweep(p, store=st, workers=1, checkpoint_every=1e-9, trainer=recording)
    assert len(resumed_at) == 1 and resumed_at[0] is not None and resumed_at[0] > 0
    assert _strip(rows) == _strip(full)
    assert not list((tmp_path / "s.checkpoints").glob("*.pt")), "a stored unit drops its checkpoint"


def test_max_examples_caps_the_steps_of_large_batch_sizes():
    seen: dict[int, int | None] = {}

    class Recording(FakeTrainer):
        def __call__(self, workload, data, batch_size, lrs, seeds, *, max_steps=None, **kw):
            seen[batch_size] = max_steps
            return super().__call__(workload, data, batch_size, lrs, seeds, **kw)

    p = dataclasses.replace(FAKE, max_steps=500, max_examples=4000)
    assert "max_examples" in p.config() and "max_examples" not in FAKE.config()
    sweep.run_sweep(p, store=MemoryStore(), workers=1, trainer=Recording())
    assert seen == {4: 500, 16: 250, 64: 63, 256: 16}
    with pytest.raises(ValueError, match="max_examples"):
        dataclasses.replace(FAKE, max_examples=0)


# ----------------------------------------------------------------------------- the engine


def _slowed(fn, delay):
    import time

    def slow(*a, **kw):
        time.sleep(delay)
        return fn(*a, **kw)

    return slow


def test_the_engine_measured_faster_is_chosen():
    """measure_engines times every engine on a slice of the preset and names the faster: a
    trainer slowed by a sleep loses, whichever it is."""
    from validate.engine import train_group, train_single

    wl, data = sweep.load_workload(TINY)
    for slow in ("group", "single"):
        fns = {"group": train_group, "single": train_single}
        fns[slow] = _slowed(fns[slow], 0.25)
        r = sweep.measure_engines(TINY, wl, data, trainers=fns, steps=2, repeats=1)
        assert r["engine"] == ({"group", "single"} - {slow}).pop(), r
        assert r["ratio"] > 1 and r["batch_size"] in TINY.batch_sizes
        assert r["n_models"] == len(TINY.lrs) * len(TINY.seeds[: TINY.seeds_per_unit])


def test_an_unset_engine_is_measured_once_and_kept_by_the_store(tmp_path):
    """engine=None: a new store gets the measured engine; a resumed one keeps its stored engine
    without measuring; asking for the other engine on it is refused (results differ in the
    last bits, so the engine is part of the key)."""
    p = dataclasses.replace(TINY, batch_sizes=(16,))
    seen: list[dict] = []
    with SweepStore(tmp_path / "s.sqlite") as st:
        rows = sweep.run_sweep(p, store=st, workers=1, engine=None, on_engine=seen.append)
    assert seen[0]["how"] == "measured" and seen[0]["engine"] in sweep.ENGINES
    assert {r["engine"] for r in rows} == {"single" if seen[0]["engine"] == "single" else "batched"}
    with SweepStore(tmp_path / "s.sqlite") as st:
        again = sweep.run_sweep(p, store=st, workers=1, engine=None, on_engine=seen.append)
    assert seen[1] == {"engine": seen[0]["engine"], "how": "stored"} and again == rows
    other = ({"group", "single"} - {seen[0]["engine"]}).pop()
    with SweepStore(tmp_path / "s.sqlite") as st, pytest.raises(StaleResultsError, match="trainer"):
        sweep.run_sweep(p, store=st, workers=1, engine=other)


def test_the_single_engine_sweeps_with_checkpoints_and_matches_the_group_engine(tmp_path):
    """A store with checkpoints does not hand them to train_single (it takes none); its table
    has the group engine's steps and losses to float rounding."""
    p = dataclasses.replace(TINY, batch_sizes=(4, 16))
    with SweepStore(tmp_path / "s.sqlite") as st:
        single = sweep.run_sweep(p, store=st, workers=1, engine="single", checkpoint_every=1e-9)
    group = sweep.run_sweep(p, workers=1, engine="group")
    assert [_key(r) for r in single] == [_key(r) for r in group]
    assert [r["steps"] for r in single] == [r["steps"] for r in group]
    # same arithmetic in another order (per-model vs vmapped reductions): float32 rounding,
    # ~1e-6 on losses of order 1 in validate.bench's measurement; 1e-4 leaves room for it
    # to grow over a few hundred steps
    for a, b in zip(single, group):
        if a["reached"]:
            assert a["loss_at_target"] == pytest.approx(b["loss_at_target"], rel=1e-4, abs=1e-6)


# ----------------------------------------------------------------------------- adaptive seeds


class NoisyTrainer(FakeTrainer):
    """Loss reduction peaked at lr = e^-7 with seed noise whose scale falls with B."""

    def __call__(self, workload, data, batch_size, lrs, seeds, *, targets=None, **kw):
        import numpy as np

        rows = super().__call__(workload, data, batch_size, lrs, seeds, targets=targets, **kw)
        for r in rows:
            rng = np.random.default_rng([r["batch_size"], r["seed"], int(r["lr"] * 1e9)])
            r["loss_reduction"] += rng.normal(0.0, 0.006 * 4 / r["batch_size"])
        return rows


NOISY = dataclasses.replace(
    FAKE, lrs=(3e-4, 1e-3, 3e-3), max_seeds=10, seed_log_width=0.3, targets=(2.0,)
)


def test_adaptive_seeds_go_where_the_optimum_is_unsure_and_keep_curves_complete(tmp_path):
    """Seeds are added, a chunk per round at every lr tried, only at the noisy batch sizes and
    up to max_seeds; an interrupted adaptive sweep resumes to the same table."""
    with SweepStore(tmp_path / "full.sqlite") as st:
        full = sweep.run_sweep(NOISY, store=st, workers=1, trainer=NoisyTrainer())
    seeds = {b: {r["seed"] for r in full if r["batch_size"] == b} for b in NOISY.batch_sizes}
    assert len(seeds[4]) > len(NOISY.seeds) and len(seeds[4]) <= NOISY.max_seeds
    assert seeds[256] == set(NOISY.seeds)
    for b, ss in seeds.items():  # every seed has every lr tried at its batch size
        cells = {(r["lr"], r["seed"]) for r in full if r["batch_size"] == b}
        assert cells == {(lr, s) for lr in {c[0] for c in cells} for s in ss}
    w = log_widths(full)
    assert all(w[b] <= NOISY.seed_log_width or len(seeds[b]) == NOISY.max_seeds for b in w)
    first = NoisyTrainer(interrupt_after=9)
    with SweepStore(tmp_path / "s.sqlite") as st, pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(NOISY, store=st, workers=1, trainer=first)
    with SweepStore(tmp_path / "s.sqlite") as st:
        resumed = sweep.run_sweep(NOISY, store=st, workers=1, trainer=NoisyTrainer())
    assert _strip(resumed) == _strip(full)


def test_the_adaptive_seed_fields_enter_the_key_only_when_used():
    assert "max_seeds" not in FAKE.config() and "seed_log_width" not in FAKE.config()
    assert NOISY.config()["max_seeds"] == 10
    with pytest.raises(ValueError, match="max_seeds"):
        dataclasses.replace(FAKE, max_seeds=2)
