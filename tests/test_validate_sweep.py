"""validate.presets / store / sweep / CLI: the paper's grids exactly, a resumable sweep that
loses nothing, both backends end to end on the real engine, clear errors for bad input."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from decimal import Decimal

import pytest

from tests.tolerances import fp_tol
from theory.rundir import read_json, read_table
from validate import sweep
from validate.__main__ import SUBCOMMANDS, main
from validate.presets import PRESETS, Preset, get_preset
from validate.store import ConfigMismatchError, Store

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


def test_interrupted_sweep_resumes_losing_nothing(tmp_path):
    """Ctrl-C after 3 units keeps those 3; the rerun trains exactly the 5 missing units and
    the final table equals an uninterrupted sweep's."""
    full = sweep.run_sweep(
        FAKE, store_path=tmp_path / "full.sqlite", workers=1, trainer=FakeTrainer(), progress=False
    )
    first = FakeTrainer(interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(
            FAKE, store_path=tmp_path / "s.sqlite", workers=1, trainer=first, progress=False
        )
    with Store(tmp_path / "s.sqlite", FAKE.config(), FAKE.config_hash()) as st:
        assert len(st.done_units()) == 3 and len(st.rows()) == 3 * 2 * 2 * 2
    second = FakeTrainer()
    resumed = sweep.run_sweep(
        FAKE, store_path=tmp_path / "s.sqlite", workers=1, trainer=second, progress=False
    )
    assert set(first.calls).isdisjoint(second.calls)
    assert len(first.calls) + len(second.calls) == len(sweep.plan_units(FAKE))
    strip = [{k: v for k, v in r.items() if k != "unit_id"} for r in resumed]
    assert strip == [{k: v for k, v in r.items() if k != "unit_id"} for r in full]
    assert len(full) == FAKE.n_runs * 2
    # a third run has nothing left to do
    third = FakeTrainer()
    sweep.run_sweep(
        FAKE, store_path=tmp_path / "s.sqlite", workers=1, trainer=third, progress=False
    )
    assert third.calls == []


def test_resume_with_another_config_is_a_clear_error(tmp_path):
    """The store remembers the preset's hash; a different grid names the differing keys."""
    path = tmp_path / "s.sqlite"
    sweep.run_sweep(FAKE, store_path=path, workers=1, trainer=FakeTrainer(), progress=False)
    other = FAKE.with_seeds(2)
    with pytest.raises(ConfigMismatchError, match="seeds: stored"):
        sweep.run_sweep(other, store_path=path, workers=1, trainer=FakeTrainer(), progress=False)


def test_a_unit_is_written_atomically(tmp_path):
    """A unit with a malformed row leaves nothing behind (one transaction per unit)."""
    with Store(tmp_path / "s.sqlite", FAKE.config(), FAKE.config_hash()) as st:
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
    path = tmp_path_factory.mktemp("local") / "s.sqlite"
    return sweep.run_sweep(
        TINY, store_path=path, backend="local", workers=2, threads=1, progress=False
    )


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
    rows = sweep.run_sweep(
        TINY,
        store_path=tmp_path / "ray.sqlite",
        backend="ray",
        workers=2,
        threads=1,
        progress=False,
    )
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
    rows = sweep.run_sweep(p, store_path=tmp_path / "d.sqlite", workers=1, progress=False)
    bad = [r for r in rows if r["lr"] == 50.0]
    assert bad and all(r["diverged"] and not r["reached"] for r in bad)
    s = fits.summarise(rows, n_boot=0)
    assert s["n_diverged"] == len(bad)
    assert all(d["lr"] == 1e-2 for d in s["best_lr"])


# ----------------------------------------------------------------------------- CLI


def test_cli_run_writes_the_run_folder_and_resumes(tmp_path, capsys):
    """`validate run` writes config/meta/points/fits/summary/figures; rerunning into the same
    folder trains nothing new; another --seeds there exits 2 with the mismatch."""
    out = tmp_path / "run"
    argv = [
        "run",
        "--workload",
        "synthetic-mlp",
        "--preset",
        "tiny",
        "--workers",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--n-boot",
        "20",
    ]
    assert main(argv) == 0
    for f in (
        "config.json",
        "meta.json",
        "sweep.sqlite",
        "points.csv",
        "fits.csv",
        "best_lr.csv",
        "summary.json",
        "se_fit.png",
        "b_noise_vs_target.png",
    ):
        assert (out / f).is_file(), f
    assert len(list(out.glob("heatmap_target*.png"))) == len(TINY.targets)
    s = read_json(out / "summary.json")
    for k in (
        "b_noise",
        "eps_max_adam",
        "fit_err_adam",
        "fit_err_sgd",
        "fit_err_sgd_sqrt",
        "loo_err_adam",
        "loo_err_sgd",
        "loo_err_sgd_sqrt",
        "best_lr",
        "b_noise_by_target",
        "wall_s",
        "primary_target",
    ):
        assert k in s, k
    assert {d["target"] for d in s["b_noise_by_target"]} == set(TINY.targets)
    assert read_json(out / "meta.json")["device"].startswith("cpu")
    pts = read_table(out / "points.csv")
    assert len(pts) == TINY.n_runs * len(TINY.targets)
    finished = (
        sqlite3.connect(out / "sweep.sqlite")
        .execute("SELECT unit_id, finished_utc FROM units")
        .fetchall()
    )
    assert s["n_units_trained"] == s["n_units"] == len(sweep.plan_units(TINY))
    assert main(argv) == 0  # resume: every unit already there
    assert read_json(out / "summary.json")["n_units_trained"] == 0
    again = (
        sqlite3.connect(out / "sweep.sqlite")
        .execute("SELECT unit_id, finished_utc FROM units")
        .fetchall()
    )
    assert sorted(again) == sorted(finished)
    assert read_table(out / "points.csv") == pts
    capsys.readouterr()
    assert main([*argv, "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--workload", "fmnist-cnn", "--preset", "no-such"], "unknown preset"),
        (["run", "--workload", "no-such", "--preset", "paper-fmnist-small"], "is for workload"),
        (["run", "--workload", "no-such", "--preset", "smoke"], "no 'smoke' preset"),
        (
            ["run", "--workload", "synthetic-mlp", "--preset", "tiny", "--workers", "0"],
            "--workers must be >= 1",
        ),
        (["frobnicate"], "is unknown"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(argv, needle, capsys, tmp_path):
    """Bad presets, workloads, options and commands: exit 2, one message, no traceback."""
    assert main([*argv, "--out", str(tmp_path / "o")] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_missing_data_exits_2(tmp_path, capsys, monkeypatch):
    """fmnist-cnn with an empty data folder (and no env / cache fallback): exit 2, the data
    module's message, and no run folder work done."""
    monkeypatch.delenv("SURGELAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    from validate import data as vdata

    monkeypatch.setattr(vdata, "CHECKOUT_DATA", tmp_path / "no-checkout-data")
    (tmp_path / "empty").mkdir()  # a --data-dir that does not exist is a usage error of its own
    rc = main(
        [
            "run",
            "--workload",
            "fmnist-cnn",
            "--preset",
            "tiny",
            "--data-dir",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "fashion-mnist" in err.lower() and "Traceback" not in err
    assert not (tmp_path / "o" / "sweep.sqlite").exists()


def test_cli_presets_lists_every_preset(capsys):
    """`validate presets` prints every preset name; the registry keeps room for `estimate`."""
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)
    assert SUBCOMMANDS["estimate"][0] == "validate.estimate_cli"


def test_cli_bench_writes_its_run_folder(tmp_path, capsys):
    """`validate bench` runs validate.bench.run_bench and reports the speed-up ratio."""
    out = tmp_path / "bench"
    rc = main(
        [
            "bench",
            "--workload",
            "synthetic-mlp",
            "--max-steps",
            "20",
            "--seeds",
            "1",
            "--lrs",
            "1e-3",
            "3e-3",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert read_json(out / "summary.json")["n_models"] == 2
    assert "ratio:" in capsys.readouterr().out


def test_cli_cuda_without_a_gpu_exits_2(tmp_path, capsys):
    """--device cuda on a machine without one: exit 2 with what is missing."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible; this checks the message on CPU-only machines")
    rc = main(
        [
            "run",
            "--workload",
            "synthetic-mlp",
            "--preset",
            "tiny",
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "no CUDA GPU" in capsys.readouterr().err
