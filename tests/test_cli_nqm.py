"""``surgelab simulate nqm``: bad input is one line naming the flag, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest

from surgelab.cli import main

SMALL = ["--k", "100", "--batch-sizes", "4,64,1024", "--n-lrs", "30"]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--k", "0"], "--k"),
        (["--target", "0"], "--target"),
        (["--target", "-0.5"], "--target"),
        (["--power", "-0.5"], "--power"),
        (["--momentum", "1"], "--momentum"),
        (["--momentum", "-0.1"], "--momentum"),
        (["--optimizers", "sgd,adam"], "--optimizers"),
        (["--batch-sizes", "64,16"], "--batch-sizes"),
        # every lr on the grid is unstable for SGD (α ≥ 2 = 2/h₁): no reachable point
        (["--lr-min", "2.5", "--lr-max", "3"], "--lr-min"),
        # a target below every noise floor at B = 4: no reachable point
        (["--lr-min", "0.5", "--lr-max", "1"], "--lr-min"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(argv, flag, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["simulate", "nqm", *SMALL, *argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("surgelab simulate nqm: error:") and flag in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_small_run_writes_tables_summary_and_figures(tmp_path, capsys):
    """A small run: the files of the issue, a headline and verdicts, MC within 5 SE."""
    out = tmp_path / "run"
    argv = [*SMALL, "--mc-seeds", "64", "--mc-steps", "300", "--out", str(out)]
    assert main(["simulate", "nqm", *argv]) == 0
    for f in ("nqm.csv", "curves.csv", "fits.csv", "summary.json", "steps.png", "lr.png"):
        assert (out / f).exists(), f
    header = (out / "nqm.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["optimizer", "batch_size", "lr", "steps", "method"]
    s = json.loads((out / "summary.json").read_text())
    assert {h["key"] for h in s["headline"]} >= {f"optimizers.{n}.b_crit" for n in ("sgd",)}
    assert s["verdicts"] and all(isinstance(v, str) for v in s["verdicts"])
    for info in s["optimizers"].values():
        assert info["mc"]["within_5se"]
