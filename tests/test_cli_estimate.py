"""``surgelab validate estimate`` on the command line: bad input is one line and writes nothing;
a small run writes its folder, ``headline`` and ``verdicts``, and resumes.

Each case runs in-process through :func:`surgelab.cli.main`.
"""

from __future__ import annotations

import json

import pytest

from surgelab import cli
from surgelab.cmd_estimate import ESTIMATE, EstimateConfig

CASES = [
    (["--checkpoints", "100,0"], "--checkpoints"),
    (["--checkpoints", "abc"], "--checkpoints"),
    (["--checkpoints", "-5"], "--checkpoints"),
    (["--batch-sizes", "16,4"], "--batch-sizes"),
    (["--batch-sizes", "0,4"], "--batch-sizes"),
    (["--seed", "-1"], "--seed"),
    (["--at-losses", "-1"], "--at-losses"),
    (["--at-losses", "nan"], "--at-losses"),
    (["--train-lr", "nan"], "--train-lr"),
    (["--train-lr", "0"], "--train-lr"),
    (["--probes", "1"], "--probes"),
    (["--n-batches", "1"], "--n-batches"),
    (["--lrs", "0.1,0.01,0.001"], "--lrs"),
    (["--lrs-sgd", "0.1,0.2"], "--lrs-sgd"),
    (["--ci", "1"], "--ci"),
    (["--chunk-floats", "1e15"], "--chunk-floats"),
    (["--device", "bogus"], "--device"),
    (["--workload", "nope"], "--workload"),
    (["--data-dir", "{missing}"], "--data-dir"),
    (["--data-dir", "{file}"], "--data-dir"),
    (["--out", "{file}"], "--out"),
    (["--bogus"], "--bogus"),
]


def _main(argv: list[str]) -> int:
    """``surgelab validate estimate ARGV`` (through the stage once it lists the command)."""
    stage = cli.stages()["validate"]
    if "estimate" in stage.commands:
        return cli.main(["validate", "estimate", *argv])
    return cli.run_command(cli.Stage("validate", "", {"estimate": ESTIMATE}), ESTIMATE, argv)


def _argv(argv: list[str], tmp_path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder\n")
    return [
        a.replace("{file}", str(tmp_path / "afile")).replace(
            "{missing}", str(tmp_path / "no-such-thing")
        )
        for a in argv
    ]


@pytest.mark.parametrize(("argv", "name"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, name, tmp_path, monkeypatch, capsys):
    """Exit 2, one line naming the flag, no traceback, no run folder (nor the --out folder)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    rc = _main([*_argv(argv, tmp_path), *([] if "--out" in argv else ["--out", str(out)])])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert name in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("surgelab validate estimate: error:") or "usage:" in err, err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    """``--device cuda`` where torch sees no GPU: exit 2 naming --device, nothing written."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible to torch")
    assert _main(["--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "--device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_defaults_are_the_documented_ones():
    """The one set of defaults is what `validate estimate` gave a user before the port
    (estimate_cli: 1024 examples, 500 eval, 16 probes, B 4..256, 12 batches, 9 lrs, span 64,
    checkpoints 0,100,400 on synthetic-mlp)."""
    c = EstimateConfig()
    assert (c.workload, c.checkpoints, c.n_examples, c.n_eval, c.probes) == (
        "synthetic-mlp",
        (0, 100, 400),
        1024,
        500,
        16,
    )
    assert (c.batch_sizes, c.n_batches, c.n_lrs, c.lr_span, c.n_boot) == (
        (4, 16, 64, 256),
        12,
        9,
        64.0,
        200,
    )
    s = c.settings()
    assert (s.n_eval, s.n_batches, s.n_lrs) == (500, 12, 9)


SMALL = [
    "--checkpoints",
    "0,30",
    "--n-examples",
    "128",
    "--n-eval",
    "128",
    "--probes",
    "4",
    "--batch-sizes",
    "2,16",
    "--n-batches",
    "4",
    "--n-lrs",
    "5",
    "--n-boot",
    "20",
    "--noise-samples",
    "8",
    "--threads",
    "1",
    "--quiet",
]


def test_run_writes_folder_headline_verdicts_and_resumes(tmp_path, capsys):
    """A small run on synthetic-mlp writes the tables, figures and a summary whose headline
    values are the last checkpoint's (each B-like quantity under its own name); the same
    command on the same --out is recognised as finished."""
    out = tmp_path / "run"
    assert _main([*SMALL, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [c["step"] for c in summary["checkpoints"]] == [0, 30]
    last = summary["checkpoints"][-1]
    labels = {h["key"]: h["label"] for h in summary["headline"]}
    assert "Theorem 3's B_noise" in labels["b_noise_thm3"]
    assert "SGD B_noise" in labels["b_noise_sgd_full"]
    assert "B_simple" in labels["b_simple"]
    for h in summary["headline"]:
        assert summary[h["key"]] == h["value"] == last[h["key"]]
    assert summary["verdicts"] and all(isinstance(v, str) for v in summary["verdicts"])
    for f in (
        "config.json",
        "meta.json",
        "checkpoints.csv",
        "per_batch.csv",
        "one_step.csv",
        "regime_hist.csv",
        "lr_sign.png",
        "lr_sgd.png",
        "regime_hist.png",
        "b_noise_vs_loss.png",
        ".done",
    ):
        assert (out / f).is_file(), f
    assert "Theorem 3's B_noise" in capsys.readouterr().out
    assert _main([*SMALL, "--out", str(out)]) == 0
    assert "already finished" in capsys.readouterr().out


def test_caveats_name_values_outside_a_laws_regime():
    """A Theorem 3 B_noise below 1, infinite or undefined, and an SGD B_noise below 1, carry
    a caveat; a value inside the regime carries none."""
    from surgelab.cmd_estimate import caveat_sgd, caveat_thm3

    assert "outside Theorem 3's regime" in caveat_thm3(0.4)
    assert "no peak" in caveat_thm3(float("inf"))
    assert "undefined" in caveat_thm3(float("nan"))
    assert "regime bound" in caveat_thm3(500.0, regime_q10=100.0)
    assert caveat_thm3(50.0, regime_q10=100.0) == ""
    assert "below 1" in caveat_sgd(0.3) and caveat_sgd(30.0) == ""
