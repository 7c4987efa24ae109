"""``python -m kernels``: info and a smoke-sized bench that writes its run folder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kernels.__main__ import main
from theory import rundir


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("reference", "numba", "cuda", "auto"):
        assert name in out


def test_bench_smoke_writes_tables(tmp_path, capsys):
    """Correctness is checked first; every case has reference, torch and numba rows with
    positive throughput and the ratios the summary reports."""
    out = tmp_path / "run"
    assert main(["bench", "--preset", "smoke", "--backend", "numba", "--repeats", "1",
                 "--out", str(out)]) == 0
    doc = rundir.read_json(out / "bench.json")
    assert doc["correctness"] and all(c["ok"] for c in doc["correctness"])
    rows = rundir.read_table(out / "bench.csv")
    assert {r["backend"] for r in rows} == {"reference", "torch", "numba"}
    assert len(rows) == 3 * len(doc["config"]["cases"])
    for r in rows:
        assert r["updates_per_s"] > 0 and r["seconds"] > 0
        if r["backend"] == "reference":
            assert r["speedup_vs_reference"] == pytest.approx(1.0)
    for name in ("config.json", "meta.json", "summary.json"):
        assert (out / name).is_file()
    assert "wrote" in capsys.readouterr().out


def test_bench_rejects_bad_options():
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "nope"])
    with pytest.raises(SystemExit):
        main(["bench", "--repeats", "0"])


def test_bench_cuda_without_gpu_exits_with_reason(capsys):
    """--backend cuda on a CPU machine: exit code 2 and a message naming what is missing."""
    import kernels

    if kernels.available_backends()["cuda"][0]:
        pytest.skip("a GPU is available")
    assert main(["bench", "--preset", "smoke", "--backend", "cuda"]) == 2
    assert "cupy" in capsys.readouterr().err


def test_module_entry_point():
    """``python -m kernels info`` runs as a script and exits 0."""
    res = subprocess.run([sys.executable, "-m", "kernels", "info"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "numba" in res.stdout
