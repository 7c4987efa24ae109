"""``surgelab simulate``: every command writes its run folder (small settings here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulate.momentum import refined_best_lr, su_fall_threshold
from surgelab.cli import main
from surgelab.rundir import read_json, read_table


def _summary(out) -> dict:
    return read_json(out / "summary.json")


def test_surge_command(tmp_path, capsys):
    """``surge`` writes surge.csv (one row per B), summary.json with the headline keys, and the
    figure; the headline and the verdicts quote the summary's own numbers."""
    out = tmp_path / "surge"
    assert (
        main(["simulate", "surge", "--n-samples", "3000", "--n-batch", "15", "--out", str(out)])
        == 0
    )
    s = _summary(out)
    for k in (
        "b_noise_theory",
        "b_peak_exact",
        "b_peak_mc",
        "eps_max_theory",
        "eps_peak_mc",
        "max_rel_err_mc_vs_exact",
        "surge_detected",
        "b_simple",
        "sgd_b_noise",
    ):
        assert k in s
    assert s["surge_detected"] is True
    table = read_table(out / "surge.csv")
    assert len(table) == 15 == len(s["batch_sizes"])
    lr = [r["lr_mc"] for r in table]
    assert s["eps_peak_mc"] >= max(lr) * (1 - 1e-12)  # the refined peak is >= the grid max
    assert {h["key"] for h in s["headline"]} >= {"b_noise_theory", "b_peak_exact", "b_peak_mc"}
    for h in s["headline"]:
        assert h["value"] == s[h["key"]] and h["label"]
    assert f"B = {s['b_peak_mc']:.3g} (Monte Carlo)" in s["verdicts"][0]
    assert s["verdicts"][1].startswith("surge detected")
    assert (out / "surge.png").stat().st_size > 0
    assert (out / ".done").exists()
    assert "peak predicted" in capsys.readouterr().out


def test_train_command_resumes(tmp_path):
    """``train`` writes runs/cells/best/fits tables, summary and figures; rerunning into the
    unfinished folder reuses every finished chunk (none recomputed, files untouched)."""
    out = tmp_path / "train"
    argv = [
        "simulate",
        "train",
        "--problem",
        "surge",
        "--d",
        "8",
        "--batch",
        "4,32,256",
        "--n-lr",
        "4",
        "--seeds",
        "2",
        "--targets",
        "0.5,0.2",
        "--max-steps",
        "300",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    s = _summary(out)
    assert s["chunks_reused"] == []
    assert len(read_table(out / "runs.csv")) == 3 * 4 * 2 * 2
    for f in ("heatmap.png", "se_fit.png", "bnoise_targets.png", "fits.csv", "best.csv"):
        assert (out / f).exists()
    fits = s["b_noise_fit_per_target"]
    assert [h["value"] for h in s["headline"] if h["key"] == "b_noise_fit_per_target"] == fits
    assert any("steps–examples fit" in v for v in s["verdicts"])
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("chunk_*.npz")}
    assert len(mtimes) == 3
    (out / ".done").unlink()  # as if killed before the end
    assert main(argv) == 0
    assert _summary(out)["chunks_reused"] == [0, 1, 2]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("chunk_*.npz")} == mtimes


def test_momentum_assumptions_and_bench_commands(tmp_path):
    """``momentum`` reports per (β1, β2) the best lr per B and a verdict; ``assumptions`` one
    summary per case; ``bench`` writes bench.json with the vectorised time and the loop
    estimate."""
    out = tmp_path / "mom"
    assert (
        main(
            [
                "simulate",
                "momentum",
                "--d",
                "8",
                "--batch",
                "64,1024,16384",
                "--n-lr",
                "5",
                "--horizons",
                "1,10",
                "--branch-seeds",
                "16",
                "--seeds",
                "1",
                "--target",
                "0.3",
                "--max-steps",
                "300",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    s = _summary(out)
    assert set(s["configs"]) == {"beta1=0,beta2=0.999", "beta1=0.9,beta2=0.999"}
    rows = read_table(out / "momentum.csv")
    assert {str(r["horizon"]) for r in rows} == {"1", "10", "whole"}
    assert len(rows) == 2 * 3 * 3
    assert any(v.startswith("β1=0.9, β2=0.999: K = 1 (one-step optimum") for v in s["verdicts"])
    assert any("whole run" in v for v in s["verdicts"])
    assert (out / "momentum.png").exists()
    out = tmp_path / "assume"
    assert (
        main(
            [
                "simulate",
                "assumptions",
                "--rhos",
                "0.3",
                "--n-examples",
                "32",
                "--d",
                "8",
                "--n-samples",
                "500",
                "--n-samples-finite",
                "100",
                "--n-batch",
                "6",
                "--backend",
                "reference",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert set(_summary(out)["cases"]) == {"correlated rho=0.3", "finite N=32"}
    assert {r["case"] for r in read_table(out / "assumptions.csv")} == set(_summary(out)["cases"])
    out = tmp_path / "bench"
    assert (
        main(
            [
                "simulate",
                "bench",
                "--d",
                "32",
                "--n-lr",
                "2",
                "--n-batch-sizes",
                "3",
                "--seeds",
                "2",
                "--loop-subset",
                "2",
                "--max-steps",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    b = read_json(out / "bench.json")
    assert b["n_runs"] == 12 and b["vectorised_s"] > 0 and b["loop_estimated_full_s"] > 0


def test_su_threshold_and_refined_lr():
    """Su's fall threshold is B_simple/17 at β1 = 0.9 and absent for β1 ≤ 1/3; the refined best
    lr is exact for steps quadratic in log lr, NaN when no lr reached the target."""
    assert su_fall_threshold(0.9, 1700.0) == pytest.approx(100.0)
    assert math.isinf(su_fall_threshold(0.2, 1700.0))
    with pytest.raises(ValueError, match="beta1"):
        su_fall_threshold(1.0, 1.0)
    lrs = np.geomspace(1e-3, 1e-1, 9)
    steps = 50 + (np.log(lrs) - math.log(7e-3)) ** 2
    assert refined_best_lr(lrs, steps) == pytest.approx(7e-3, rel=1e-9)
    assert math.isnan(refined_best_lr(lrs, np.full(9, np.nan)))
    steps[4] = np.nan  # a neighbour missing: grid point
    assert refined_best_lr(lrs, steps) in set(lrs)
