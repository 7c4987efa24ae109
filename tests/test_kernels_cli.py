"""``surgelab kernels``: info and a smoke-sized bench that writes its run folder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from surgelab.cli import main
from surgelab.rundir import read_json, read_table


def test_info_lists_backends(capsys, tmp_path, monkeypatch):
    """``info`` names every backend and what ``auto`` resolves to, and writes nothing."""
    monkeypatch.chdir(tmp_path)
    assert main(["kernels", "info"]) == 0
    out = capsys.readouterr().out
    for name in ("reference", "numba", "cuda", "auto"):
        assert name in out
    assert list(tmp_path.iterdir()) == []


def test_bench_smoke_writes_tables(tmp_path, capsys):
    """Correctness is checked first; every case has reference, torch and numba rows with
    positive throughput and the ratios the summary reports."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "kernels",
                "bench",
                "--preset",
                "smoke",
                "--backend",
                "numba",
                "--repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = read_json(out / "bench.json")
    assert doc["correctness"] and all(c["ok"] for c in doc["correctness"])
    rows = read_table(out / "bench.csv")
    assert {r["backend"] for r in rows} == {"reference", "torch", "numba"}
    assert len(rows) == 3 * len(doc["config"]["cases"])
    for r in rows:
        assert r["updates_per_s"] > 0 and r["seconds"] > 0
        if r["backend"] == "reference":
            assert r["speedup_vs_reference"] == pytest.approx(1.0)
    for name in ("config.json", "meta.json", "summary.json", ".done"):
        assert (out / name).is_file()
    assert read_json(out / "config.json")["backend"] == ["numba"]
    assert "wrote" in capsys.readouterr().out


def test_bench_overrides_reach_the_cases(tmp_path):
    """--d / --rank / --n-batch / --samples override every case of the preset."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "kernels",
                "bench",
                "--preset",
                "smoke",
                "--backend",
                "numba",
                "--repeats",
                "1",
                "--d",
                "12",
                "--rank",
                "1",
                "--n-batch",
                "2",
                "--samples",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cases = read_json(out / "bench.json")["config"]["cases"]
    assert {(c["d"], c["rank"], c["n_batch"], c["n_samples"]) for c in cases} == {(12, 1, 2, 64)}


def test_module_entry_point():
    """``python -m kernels info`` runs as a script and exits 0."""
    res = subprocess.run(
        [sys.executable, "-m", "kernels", "info"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "numba" in res.stdout
