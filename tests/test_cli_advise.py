"""``surgelab advise`` on the command line: bad input is one line naming the argument, exit
status 2, no traceback and nothing written; good input prints the advice.

Runs in-process through ``surgelab.cli.main``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from surgelab.cli import main
from tests.tolerances import LSQ_RTOL, fp_tol
from theory.sign import surge_lr

B = np.array([4.0, 8, 16, 32, 64, 128, 256, 512, 1024])

CSVS = {
    "empty": "",
    "header": "batch_size,lr\n",
    "cols": "b,x\n1,2\n",
    "nonnum": "batch_size,lr\n8,abc\n32,0.1\n",
    "good": "batch_size,lr\n8,0.01\n32,0.02\n128,0.015\n",
    "nan": "batch_size,lr\n8,0.01\n16,nan\n32,0.02\n128,0.015\n",
    "inf": "batch_size,lr\n8,0.01\n16,inf\n32,0.02\n128,0.015\n",
    "nanb": "batch_size,lr\n8,0.01\nnan,0.01\n32,0.02\n128,0.015\n",
    "blankcell": "batch_size,lr\n8,0.01\n16,\n32,0.02\n128,0.015\n",
    "blankline": "batch_size,lr\n8,0.01\n\n32,0.02\n128,0.015\n",
    "short": "batch_size,lr\n8,0.01\n16\n32,0.02\n",
    "neg": "batch_size,lr\n-8,0.1\n16,0.2\n",
    "one": "batch_size,lr\n8,0.01\n",
    "targets": "target,batch_size,best_lr\n2,8,0.01\n2,32,0.02\n1,8,0.01\n1,32,0.03\n",
    "same": "batch_size,lr\n8,0.01\n8,0.02\n",
}
CSVS.update(
    {
        "mon_nocol": "step,grad_sq\n1,0.5\n",
        "mon_nan": "step,b_simple,grad_sq,trace_sigma\n1,40,1,2\n2,nan,1,2\n",
        "mon_inf": "step,b_simple\n1,40\n2,inf\n",
        "mon_blank": "step,b_simple\n1,40\n\n2,50\n",
        "mon_word": "step,b_simple\n1,40\n2,lots\n",
        "mon_short": "step,b_simple\n1,40\n",
        "tab_rising": "batch_size,steps\n8,100\n32,200\n128,400\n",
        "tab_one": "batch_size,steps\n8,100\n",
        "tab_nan": "batch_size,steps\n8,100\n32,nan\n128,40\n",
    }
)
DIRS = {
    "badjson": {"summary.json": "not json"},
    "listjson": {"summary.json": "[1, 2]"},
    "nobest": {"best_lr.csv": "batch_size,best_lr\n"},
    "nobnoise": {"summary.json": json.dumps({"checkpoints": [{"step": 3, "b_noise_thm3": None}]})},
}

GOOD = ["--b-noise", "100", "--eps-max", "1e-3"]
SC = ["--b-noise", "100"]
SHORT = ["--batch-size", "64", "--current-batch-size", "16", "--current-lr", "1e-3"]

# (argv, text that must appear in stderr: the argument's name, and for files the line)
CASES: list[tuple[list[str], list[str]]] = [
    (["--batch-size", "-5", *GOOD], ["--batch-size"]),
    (["--batch-size", "nan", *GOOD], ["--batch-size"]),
    (["--batch-size", "64", "--b-noise", "-1", "--eps-max", "1e-3"], ["--b-noise"]),
    (["--batch-size", "64", "--b-noise", "100"], ["--eps-max"]),
    (["--batch-size", "64", *GOOD, "--ci", "1.5"], ["--ci"]),
    (["--batch-size", "64", *GOOD, "--ci", "1"], ["--ci"]),
    (["--batch-size", "64", *GOOD, "--seed", "-1"], ["--seed"]),
    (["--batch-size", "64", "--points", "{csv:good}", "--n-boot", "-1"], ["--n-boot"]),
    (["--batch-size", "64", "--points", "{csv:good}", "--n-boot", "5"], ["--n-boot"]),
    (["--batch-size", "64", "--points", "{csv:good}", "--n-boot", "1e8"], ["--n-boot"]),
    (["--batch-size", "64", "--points", "{csv:good}", "--eps-max", "3"], ["--eps-max"]),
    (["--batch-size", "64", "--points", "{csv:good}", *GOOD], ["--b-noise"]),
    (["--batch-size", "64", "--points", "{missing}"], ["--points", "does not exist"]),
    (["--batch-size", "64", "--points", "{tmp}"], ["--points", "is not a file"]),
    (["--batch-size", "64", "--points", "{csv:empty}"], ["--points", "empty"]),
    (["--batch-size", "64", "--points", "{csv:header}"], ["--points", "no rows"]),
    (["--batch-size", "64", "--points", "{csv:cols}"], ["--points", "must have columns"]),
    (["--batch-size", "64", "--points", "{csv:nonnum}"], ["--points", "line 2", "'abc'"]),
    (["--batch-size", "64", "--points", "{csv:nan}"], ["--points", "nan.csv", "line 3"]),
    (["--batch-size", "64", "--points", "{csv:inf}"], ["--points", "inf.csv", "line 3"]),
    (["--batch-size", "64", "--points", "{csv:nanb}"], ["--points", "line 3", "batch_size"]),
    (["--batch-size", "64", "--points", "{csv:blankcell}"], ["--points", "line 3", "empty"]),
    (["--batch-size", "64", "--points", "{csv:blankline}"], ["--points", "line 3", "blank"]),
    (["--batch-size", "64", "--points", "{csv:short}"], ["--points", "line 3"]),
    (["--batch-size", "64", "--points", "{csv:neg}"], ["--points", "line 2", "positive"]),
    (["--batch-size", "64", "--points", "{csv:one}"], ["--points", ">= 2 distinct"]),
    (["--batch-size", "64", "--points", "{csv:targets}"], ["--points", "2 targets"]),
    (["--batch-size", "64", "--points", "{csv:same}"], ["--points", ">= 2 distinct"]),
    (["--batch-size", "64", "--from", "{missing}"], ["--from", "result folder"]),
    (["--batch-size", "64", "--from", "{file}"], ["--from", "not a folder"]),
    (["--batch-size", "64", "--from", "{tmp}"], ["--from", "result folder"]),
    (["--batch-size", "64", "--from", "{dir:badjson}"], ["--from", "summary.json"]),
    (["--batch-size", "64", "--from", "{dir:listjson}"], ["--from", "summary.json"]),
    (["--batch-size", "64", "--from", "{dir:nobest}"], ["--from", "best_lr.csv"]),
    (["--batch-size", "64", "--from", "{dir:nobnoise}"], ["--from", "Theorem 3"]),
    (["--batch-size", "64"], ["--points", "--from", "--b-noise"]),
    (GOOD, ["--batch-size"]),
    (["--batch-size", "64", *GOOD, "--out", "{tmp}/o"], ["--out"]),
    # the shortcut
    (
        ["--batch-size", "64", "--current-batch-size", "16", "--current-lr", "0", *SC],
        ["--current-lr"],
    ),
    (
        ["--batch-size", "64", "--current-batch-size", "16", "--current-lr", "-1e-3", *SC],
        ["--current-lr"],
    ),
    (
        ["--batch-size", "0", "--current-batch-size", "16", "--current-lr", "1e-3", *SC],
        ["--batch-size"],
    ),
    (
        ["--batch-size", "-8", "--current-batch-size", "16", "--current-lr", "1e-3", *SC],
        ["--batch-size"],
    ),
    (
        ["--batch-size", "64", "--current-batch-size", "0", "--current-lr", "1e-3", *SC],
        ["--current-batch-size"],
    ),
    (["--batch-size", "64", "--current-batch-size", "16", *SC], ["--current-lr"]),
    (["--batch-size", "64", "--current-lr", "1e-3", *SC], ["--current-batch-size"]),
    (["--current-batch-size", "16", "--current-lr", "1e-3", *SC], ["--batch-size"]),
    (
        ["--batch-size", "64", "--current-batch-size", "16", "--current-lr", "1e-3"],
        ["--b-noise", "--monitor-log"],
    ),
    ([*SHORT, "--b-noise", "100", "--table", "{csv:good}"], ["--table", "goes alone"]),
    ([*SHORT, "--b-noise", "100", "--eps-max", "1"], ["--eps-max"]),
    ([*SHORT, "--b-noise", "100", "--points", "{csv:good}"], ["--points"]),
    ([*SHORT, "--b-noise", "nan"], ["--b-noise"]),
    ([*SHORT, "--b-noise", "0"], ["--b-noise"]),
    (["--batch-size", "64", "--monitor-log", "{csv:mon_short}"], ["--monitor-log", "--current"]),
    (["--batch-size", "64", "--table", "{csv:tab_one}"], ["--table", "--current"]),
    ([*SHORT, "--monitor-log", "{missing}"], ["--monitor-log", "does not exist"]),
    ([*SHORT, "--monitor-log", "{csv:empty}"], ["--monitor-log", "empty"]),
    ([*SHORT, "--monitor-log", "{csv:mon_nocol}"], ["--monitor-log", "b_simple"]),
    ([*SHORT, "--monitor-log", "{csv:mon_nan}"], ["--monitor-log", "line 3", "nan"]),
    ([*SHORT, "--monitor-log", "{csv:mon_inf}"], ["--monitor-log", "line 3"]),
    ([*SHORT, "--monitor-log", "{csv:mon_blank}"], ["--monitor-log", "line 3", "blank"]),
    ([*SHORT, "--monitor-log", "{csv:mon_word}"], ["--monitor-log", "line 3", "'lots'"]),
    (
        [*SHORT, "--monitor-log", "{csv:mon_short}", "--monitor-last", "5"],
        ["--monitor-log", "--monitor-last 5"],
    ),
    ([*SHORT, "--monitor-log", "{csv:mon_short}", "--monitor-last", "0"], ["--monitor-last"]),
    ([*SHORT, "--table", "{csv:tab_rising}"], ["--table", "do not fall"]),
    ([*SHORT, "--table", "{csv:tab_one}"], ["--table", "one batch size"]),
    ([*SHORT, "--table", "{csv:tab_nan}"], ["--table", "line 3"]),
]


def _argv(argv: list[str], tmp_path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder\n")
    out = []
    for a in argv:
        if a.startswith("{csv:"):
            name = a[5:-1]
            a = str(tmp_path / f"{name}.csv")
            (tmp_path / f"{name}.csv").write_text(CSVS[name])
        if a.startswith("{dir:"):
            name = a[5:-1]
            folder = tmp_path / name
            folder.mkdir()
            for fname, text in DIRS[name].items():
                (folder / fname).write_text(text)
            a = str(folder)
        out.append(
            a.replace("{tmp}", str(tmp_path))
            .replace("{file}", str(tmp_path / "afile"))
            .replace("{missing}", str(tmp_path / "no-such-thing"))
        )
    return out


def _listing(path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize(("argv", "names"), [pytest.param(a, n, id=" ".join(a)) for a, n in CASES])
def test_bad_input_is_one_line_naming_the_argument(argv, names, tmp_path, monkeypatch, capsys):
    """Exit 2, one stderr line naming the argument (and the file's line), no traceback,
    nothing written (the folder holds only the inputs the test put there)."""
    monkeypatch.chdir(tmp_path)
    args = _argv(argv, tmp_path)
    before = _listing(tmp_path)
    rc = main(["advise", *args])
    out, err = capsys.readouterr()
    assert rc == 2, f"exit {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    # argparse's own errors (an unknown flag) come after its usage block; ours are one line
    usage = [ln for ln in err.splitlines() if ln.startswith(("usage:", " "))]
    lines = [ln for ln in err.splitlines() if ln.strip() and ln not in usage]
    assert len(lines) == 1 and lines[0].startswith("surgelab advise: error:"), err
    for name in names:
        assert name in lines[0], err
    assert out == ""
    assert _listing(tmp_path) == before


def test_points_json_matches_the_law(tmp_path, monkeypatch, capsys):
    """--points on the surge curve, --json: lr_adam is the law's value at the new batch size
    (to the solver's tolerance), every law is listed, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    lr = surge_lr(B, 2e-3, 50.0)
    f = tmp_path / "p.csv"
    f.write_text("batch_size,lr\n" + "".join(f"{b:g},{float(e)!r}\n" for b, e in zip(B, lr)) + "\n")
    rc = main(["advise", "--points", str(f), "--batch-size", "200", "--json", "--n-boot", "30"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lr_adam"] == pytest.approx(float(surge_lr(200.0, 2e-3, 50.0)), rel=LSQ_RTOL)
    assert [r["law"] for r in out["laws"]] == [
        "adam",
        "sgd",
        "sgd_sqrt",
        "constant",
        "sqrt_rule",
        "linear_rule",
    ]
    assert out["interval_adam"][0] <= out["lr_adam"] <= out["interval_adam"][1]
    assert any("SMALLER Adam learning rate" in w for w in out["warnings"])
    assert _listing(tmp_path) == {"p.csv"}


def test_two_points_print_no_fit_error_and_no_interval(tmp_path, capsys):
    """Two batch sizes: the advice prints, but with no RMS and no interval, and says why."""
    f = tmp_path / "p.csv"
    f.write_text("batch_size,lr\n8,0.001\n32,0.002\n")
    assert main(["advise", "--points", str(f), "--batch-size", "16"]) == 0
    text = capsys.readouterr().out
    assert "fit RMS" not in text and "% interval" not in text
    assert "only 2 batch sizes" in text
    assert main(["advise", "--points", str(f), "--batch-size", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rms_adam"] is None and out["interval_adam"] == [None, None]


def test_given_parameters_hand_computed(capsys):
    """--b-noise 100 --eps-max 1e-3 at B = 25: 1e-3/(½(√4 + √¼)) = 8e-4 (and the SGD law
    with --b-noise-sgd 20 --eps-max-sgd 0.1: 0.1/(1 + 20/25) = 1/18)."""
    argv = ["advise", "--batch-size", "25", *GOOD, "--b-noise-sgd", "20", "--eps-max-sgd", "0.1"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lr_adam"] == pytest.approx(8e-4, rel=fp_tol())
    assert out["lr_sgd"] == pytest.approx(1 / 18, rel=fp_tol())


def _sweep_summary(folder, b_noise=64.0):
    folder.mkdir(parents=True)
    lr = surge_lr(B, 1e-3, b_noise)
    best = [{"batch_size": b, "lr": e} for b, e in zip(B, lr)] + [{"batch_size": 2048, "lr": None}]
    (folder / "summary.json").write_text(json.dumps({"b_noise": b_noise, "best_lr": best}))


def test_from_a_sweep_an_estimate_and_the_main_jobs_run_root(tmp_path, capsys):
    """--from reads a sweep's summary (a batch size without a best lr is left out, and said
    so), an estimate's last checkpoint, and the run root of `surgelab run` (its real/ sweep,
    else its estimate/ part)."""
    _sweep_summary(tmp_path / "sweep")
    assert (
        main(
            [
                "advise",
                "--from",
                str(tmp_path / "sweep"),
                "--batch-size",
                "64",
                "--json",
                "--n-boot",
                "0",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["b_noise_adam"] == pytest.approx(64.0, rel=LSQ_RTOL)
    assert out["n_points"] == B.size
    assert any("have no best lr" in w for w in out["warnings"])

    est = {
        "checkpoints": [
            {
                "step": 0,
                "b_noise_thm3": 10.0,
                "eps_max_thm3": 0.01,
                "b_noise_sgd": 30.0,
                "eps_max_sgd": 1.0,
                "b_noise_sgd_full": 40.0,
                "eps_max_sgd_full": 2.0,
            }
        ]
    }
    (tmp_path / "est").mkdir()
    (tmp_path / "est" / "summary.json").write_text(json.dumps(est))
    assert main(["advise", "--from", str(tmp_path / "est"), "--batch-size", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["b_noise_adam"] == 10.0 and out["b_noise_sgd"] == 40.0

    root = tmp_path / "job"
    _sweep_summary(root / "real", b_noise=32.0)
    (root / "estimate").mkdir()
    (root / "estimate" / "summary.json").write_text(json.dumps(est))
    (root / "summary.json").write_text(json.dumps({"headline": [], "verdicts": []}))
    assert (
        main(["advise", "--from", str(root), "--batch-size", "64", "--json", "--n-boot", "0"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["b_noise_adam"] == pytest.approx(32.0, rel=LSQ_RTOL)
    assert "real" in out["source"]

    only_est = tmp_path / "job2"
    (only_est / "estimate").mkdir(parents=True)
    (only_est / "estimate" / "summary.json").write_text(json.dumps(est))
    assert main(["advise", "--from", str(only_est), "--batch-size", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["b_noise_adam"] == 10.0


def test_from_best_lr_csv_keeps_the_primary_target(tmp_path, capsys):
    """A sweep folder without a best_lr list in its summary: best_lr.csv's rows of the summary's
    primary target are the points."""
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"primary_target": 1.0}))
    rows = ["target,batch_size,best_lr"]
    rows += [f"2.0,{b:g},{float(surge_lr(b, 1e-3, 10.0))!r}" for b in B]
    rows += [f"1.0,{b:g},{float(surge_lr(b, 1e-3, 100.0))!r}" for b in B]
    (d / "best_lr.csv").write_text("\n".join(rows) + "\n")
    assert main(["advise", "--from", str(d), "--batch-size", "64", "--json", "--n-boot", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["b_noise_adam"] == pytest.approx(100.0, rel=LSQ_RTOL)
    assert not math.isnan(out["rms_adam"])


def test_the_n_boot_bound_counts_every_law_refitted():
    """The work bound on --n-boot counts one refit per theory law the bootstrap refits."""
    from surgelab import cmd_advise
    from validate.advise import LAWS

    assert cmd_advise.N_BOOT_LAWS == len(LAWS)


def test_shortcut_from_flags_hand_computed(capsys):
    """B0 = 100, LR0 = 1e-3, B_noise = 100, B1 = 400 (as in test_recommendation): the four
    rules side by side, each with its assumptions, in text and JSON."""
    argv = ["advise", "--batch-size", "400", "--current-batch-size", "100", "--current-lr", "1e-3"]
    assert main([*argv, "--b-noise", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    got = {r["law"]: r["lr"] for r in out["rows"]}
    assert got == pytest.approx(
        {"adam": 8e-4, "sgd": 1.6e-3, "sqrt_rule": 2e-3, "linear_rule": 4e-3}, rel=1e-12
    )
    assert main([*argv, "--b-noise", "100"]) == 0
    text = capsys.readouterr().out
    for word in ("Adam surge law", "SGD law", "square-root rule", "linear rule", "assumes:"):
        assert word in text


def test_shortcut_from_a_monitor_log_csv_and_jsonl(tmp_path, capsys):
    """B_noise from the log: the last row's b_simple, or the median of the last N rows (an
    early NaN row outside them is ignored)."""
    rows = [(1, float("nan")), (2, 10.0), (3, 30.0), (4, 20.0)]
    csvf = tmp_path / "m.csv"
    csvf.write_text(
        "step,b_simple,grad_sq,trace_sigma\n" + "".join(f"{s},{b},1,1\n" for s, b in rows)
    )
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"step": s, "b_simple": b, "grad_sq": 1.0}) + "\n" for s, b in rows[1:])
    )
    base = ["advise", "--batch-size", "64", "--current-batch-size", "16", "--current-lr", "1e-3"]
    for f, last, want in ((csvf, 1, 20.0), (csvf, 3, 20.0), (jsonl, 2, 25.0), (jsonl, 1, 20.0)):
        argv = [*base, "--monitor-log", str(f), "--monitor-last", str(last), "--json"]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["b_noise"] == pytest.approx(want)
        assert "B_simple" in out["b_noise_source"]


def test_shortcut_from_a_table_uses_the_fits_b_crit(tmp_path, capsys):
    """--table gives the same B_noise as `surgelab fit` on the same table (S–E B_crit = 100)."""
    f = tmp_path / "runs.csv"
    f.write_text(
        "batch_size,steps\n" + "".join(f"{b},{200 * (1 + 100 / b)!r}\n" for b in (8, 32, 128, 512))
    )
    argv = ["advise", "--batch-size", "64", "--current-batch-size", "16", "--current-lr", "1e-3"]
    assert main([*argv, "--table", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["b_noise"] == pytest.approx(100.0, rel=1e-6)
    # the surge law at the fitted B_noise, by hand: ε_max = 1e-3·½(√(100/16) + √(16/100))
    em = 1e-3 * 0.5 * (math.sqrt(100 / 16) + math.sqrt(16 / 100))
    assert out["rows"][0]["lr"] == pytest.approx(float(surge_lr(64.0, em, 100.0)), rel=1e-6)
