"""``python -m simulate``: every subcommand writes its run folder (small settings here)."""

from __future__ import annotations

import json
import math

import pytest

from simulate.__main__ import main
from simulate.momentum import refined_best_lr, su_fall_threshold
from theory import rundir


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_surge_command(tmp_path):
    """``surge`` writes surge.csv (one row per B), summary.json with the headline keys, and the
    figure; the summary agrees with the table it was computed beside."""
    out = tmp_path / "surge"
    assert main(["surge", "--n-samples", "3000", "--n-batch", "15", "--out", str(out)]) == 0
    s = _summary(out)
    for k in ("b_noise_theory", "b_peak_exact", "b_peak_mc", "eps_max_theory", "eps_peak_mc",
              "max_rel_err_mc_vs_exact", "surge_detected"):
        assert k in s
    assert s["surge_detected"] is True
    table = rundir.read_table(out / "surge.csv")
    assert len(table) == 15
    assert max(r["lr_mc"] for r in table) <= s["eps_peak_mc"] * (1 + 1e-9) or s["peak_interior"]
    assert (out / "surge.png").stat().st_size > 0
    assert (out / "config.json").exists() and (out / "meta.json").exists()


def test_train_command_resumes(tmp_path):
    """``train`` writes runs/cells/best/fits tables, summary and figures; rerunning into the
    same folder reuses every finished chunk (none recomputed, files untouched)."""
    out = tmp_path / "train"
    argv = ["train", "--problem", "surge", "--d", "8", "--batch", "4,32,256", "--n-lr", "4",
            "--seeds", "2", "--targets", "0.5,0.2", "--max-steps", "300", "--out", str(out)]
    assert main(argv) == 0
    s = _summary(out)
    assert s["chunks_reused"] == []
    assert len(rundir.read_table(out / "runs.csv")) == 3 * 4 * 2 * 2
    for f in ("heatmap.png", "se_fit.png", "bnoise_targets.png", "fits.csv", "best.csv"):
        assert (out / f).exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("chunk_*.npz")}
    assert len(mtimes) == 3
    assert main(argv) == 0
    assert _summary(out)["chunks_reused"] == [0, 1, 2]
    assert {p.name: p.stat().st_mtime_ns
            for p in (out / "chunks").glob("chunk_*.npz")} == mtimes


def test_momentum_and_bench_commands(tmp_path):
    """``momentum`` reports per (β1, β2) the best lr per B and a verdict; ``bench`` writes
    bench.json with the vectorised time and the loop estimate."""
    out = tmp_path / "mom"
    assert main(["momentum", "--d", "8", "--batch", "64,1024,16384", "--n-lr", "5",
                 "--seeds", "1", "--target", "0.3", "--max-steps", "300",
                 "--out", str(out)]) == 0
    s = _summary(out)
    assert set(s["configs"]) == {"beta1=0,beta2=0", "beta1=0,beta2=0.999",
                                 "beta1=0.9,beta2=0.999"}
    assert (out / "momentum.png").exists()
    out = tmp_path / "bench"
    assert main(["bench", "--d", "32", "--n-lr", "2", "--n-batch-sizes", "3", "--seeds", "2",
                 "--loop-subset", "2", "--max-steps", "50", "--out", str(out)]) == 0
    b = json.loads((out / "bench.json").read_text())
    assert b["n_runs"] == 12 and b["vectorised_s"] > 0 and b["loop_estimated_full_s"] > 0


def test_bad_cli_input_names_argument(tmp_path, capsys):
    """A ValueError from the library is reported on stderr (naming the argument), exit code 2."""
    rc = main(["train", "--targets", "0.1,0.3", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "targets" in capsys.readouterr().err


def test_su_threshold_and_refined_lr():
    """Su's fall threshold is B_simple/17 at β1 = 0.9 and absent for β1 ≤ 1/3; the refined best
    lr is exact for steps quadratic in log lr."""
    assert su_fall_threshold(0.9, 1700.0) == pytest.approx(100.0)
    assert math.isinf(su_fall_threshold(0.2, 1700.0))
    with pytest.raises(ValueError, match="beta1"):
        su_fall_threshold(1.0, 1.0)
    import numpy as np

    lrs = np.geomspace(1e-3, 1e-1, 9)
    steps = 50 + (np.log(lrs) - math.log(7e-3)) ** 2
    assert refined_best_lr(lrs, steps) == pytest.approx(7e-3, rel=1e-9)
