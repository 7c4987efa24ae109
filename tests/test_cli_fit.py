"""``surgelab fit --table``: bad tables are one line naming the argument and the line, exit 2,
nothing written; a good table writes fit.csv, summary.json and the figure, and recovers B_crit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surgelab.cli import main

GOOD = "batch_size,steps\n" + "".join(
    f"{b},{200 * (1 + 100 / b):.3f}\n" for b in (8, 16, 32, 64, 128, 256, 512)
)

TABLES = {
    "nan": "batch_size,steps\n8,2700\n16,nan\n32,800\n",
    "inf": "batch_size,steps\n8,2700\n16,inf\n32,800\n",
    "blank": "batch_size,steps\n8,2700\n\n32,800\n",
    "blankcell": "batch_size,steps\n8,2700\n16,\n32,800\n",
    "neg": "batch_size,steps\n8,2700\n-16,1400\n32,800\n",
    "word": "batch_size,steps\n8,2700\n16,many\n32,800\n",
    "short": "batch_size,steps\n8,2700\n16\n32,800\n",
    "one": "batch_size,steps\n8,2700\n",
    "onebatch": "batch_size,steps\n8,2700\n8,2600\n",
    "rising": "batch_size,steps\n8,100\n16,150\n32,300\n",
    "cols": "b,s\n8,100\n",
    "empty": "",
    "header": "batch_size,steps\n",
    "tokens": "batch_size,steps,tokens_per_example\n8,2700,128\n16,1400,256\n32,800,128\n",
}

CASES = [
    ("nan", ["line 3", "steps"]),
    ("inf", ["line 3"]),
    ("blank", ["line 3", "blank"]),
    ("blankcell", ["line 3", "empty"]),
    ("neg", ["line 3", "batch_size"]),
    ("word", ["line 3", "'many'"]),
    ("short", ["line 3"]),
    ("one", ["one batch size"]),
    ("onebatch", ["one batch size"]),
    ("rising", ["do not fall"]),
    ("cols", ["must have columns"]),
    ("empty", ["empty"]),
    ("header", ["no rows"]),
    ("tokens", ["tokens_per_example"]),
]


@pytest.mark.parametrize(("name", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_table_is_one_line_naming_the_argument(name, words, tmp_path, capsys):
    f = tmp_path / f"{name}.csv"
    f.write_text(TABLES[name])
    out = tmp_path / "out"
    rc = main(["fit", "--table", str(f), "--out", str(out), "--n-boot", "0"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("surgelab fit: error: --table"), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], err
    assert not out.exists(), "a refused table must leave nothing behind"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--table", "{missing}"], "--table"),
        (["--table", "{good}", "--ci", "1"], "--ci"),
        (["--table", "{good}", "--n-boot", "3"], "--n-boot"),
        (["--table", "{good}", "--overhead", "0"], "--overhead"),
        ([], "--table"),
    ],
)
def test_bad_flags_name_the_flag(argv, flag, tmp_path, capsys):
    (tmp_path / "good.csv").write_text(GOOD)
    args = [
        a.replace("{missing}", str(tmp_path / "nope.csv")).replace(
            "{good}", str(tmp_path / "good.csv")
        )
        for a in argv
    ]
    out = tmp_path / "out"
    assert main(["fit", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("surgelab fit: error:") and flag in err and "\n" not in err
    assert not out.exists()


def test_good_table_writes_the_run_folder_and_recovers_b_crit(tmp_path, capsys):
    """Exact S = 200(1 + 100/B): both fits give B_crit = 100 (to the 3 decimals written), the
    overhead batch size is 20, the advice line is printed, x-axis in tokens when given."""
    f = tmp_path / "runs.csv"
    f.write_text(
        "batch_size,steps,tokens_per_example\n"
        + "".join(f"{b},{200 * (1 + 100 / b):.6f},512\n" for b in (8, 16, 32, 64, 128, 256, 512))
    )
    out = tmp_path / "out"
    assert main(["fit", "--table", str(f), "--out", str(out), "--n-boot", "50"]) == 0
    text = capsys.readouterr().out
    assert "at B_crit you pay 2× the minimum steps and 2× the minimum examples" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["b_crit"] == pytest.approx(100, rel=1e-5)
    assert s["b_crit_eq22"] == pytest.approx(100, rel=1e-5)
    assert s["s_min"] == pytest.approx(200, rel=1e-5)
    assert s["b_overhead"] == pytest.approx(20, rel=1e-5)
    assert s["b_crit_tokens"] == pytest.approx(100 * 512, rel=1e-5)
    assert s["b_crit_lo"] <= s["b_crit"] <= s["b_crit_hi"]
    rows = (out / "fit.csv").read_text().splitlines()
    assert rows[0].startswith("batch_size,steps,examples,steps_fit,resid_log")
    assert len(rows) == 8
    assert (out / "steps_examples.png").stat().st_size > 5000
    assert (out / ".done").is_file()


def test_targets_are_fitted_separately(tmp_path, capsys):
    """Two targets with B_crit 50 and 400: each recovered; the primary is the lower target."""
    b = np.geomspace(4, 4096, 8)
    lines = ["target,batch_size,steps"]
    lines += [f"2.0,{x:g},{float(100 * (1 + 50 / x))!r}" for x in b]
    lines += [f"1.0,{x:g},{float(300 * (1 + 400 / x))!r}" for x in b]
    f = tmp_path / "t.csv"
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    assert main(["fit", "--table", str(f), "--out", str(out), "--n-boot", "0"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["primary_target"] == 1.0 and s["b_crit"] == pytest.approx(400, rel=1e-6)
    by = {t["target"]: t["b_crit"] for t in s["targets"]}
    assert by[2.0] == pytest.approx(50, rel=1e-6)
