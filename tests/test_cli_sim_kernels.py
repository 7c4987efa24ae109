"""Bad input to ``surgelab kernels`` / ``surgelab simulate``: one line, exit 2, nothing written.

Every case runs in-process through ``surgelab.cli.main(argv)`` and must fail before anything
is written: exit status 2, exactly one line on stderr that names the argument, no traceback,
no run folder (neither the ``--out`` given nor ``runs/`` in the working directory). The cases
cover what ``tests/test_cli_errors.py`` had for these stages, plus the size bounds (a size the
machine cannot hold or finish is refused up front), ``--out`` folders of other commands or
configs (refused without touching their files), an unwritable ``--out``, and Ctrl-C during
``simulate train`` (finished chunks are kept and a rerun resumes from them).
"""

from __future__ import annotations

import importlib.util
import os
import time

import pytest

from surgelab.cli import main
from surgelab.cmd_simulate import SurgeConfig
from surgelab.cmd_theory import CheckConfig
from surgelab.rundir import open_run

NEEDS_NO_CUPY = pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None, reason="cupy is installed here"
)

# (argv, text that must appear in stderr: the argument's name[, a skip mark])
CASES: list[tuple] = [
    # kernels
    (["kernels", "bench", "--repeats", "0"], "--repeats"),
    (["kernels", "bench", "--d", "0"], "--d"),
    (["kernels", "bench", "--d", "-5"], "--d"),
    (["kernels", "bench", "--rank", "-1"], "--rank"),
    (["kernels", "bench", "--n-batch", "-2"], "--n-batch"),
    (["kernels", "bench", "--samples", "1"], "--samples"),
    (["kernels", "bench", "--samples", "1.5"], "--samples"),
    (["kernels", "bench", "--seed", "-1"], "--seed"),
    (["kernels", "bench", "--out", "{file}"], "--out"),
    (["kernels", "bench", "--out", "{file}/sub"], "--out"),
    (["kernels", "bench", "--preset", "nope"], "--preset"),
    (["kernels", "bench", "--backend", "bogus"], "--backend"),
    (["kernels", "bench", "--bogus"], "--bogus"),
    (["kernels", "bench", "--preset", "smoke", "--backend", "cuda"], "--backend", NEEDS_NO_CUPY),
    (
        ["kernels", "bench", "--preset", "smoke", "--backend", "numba,cuda"],
        "--backend",
        NEEDS_NO_CUPY,
    ),
    # kernels: sizes the machine cannot finish or hold
    (["kernels", "bench", "--samples", "1e13"], "--samples"),
    (["kernels", "bench", "--d", "1e12", "--samples", "2"], "--d"),
    # simulate surge
    (["simulate", "surge", "--seed", "-1"], "--seed"),
    (["simulate", "surge", "--d", "0"], "--d"),
    (["simulate", "surge", "--n-samples", "0"], "--n-samples"),
    (["simulate", "surge", "--n-batch", "0"], "--n-batch"),
    (["simulate", "surge", "--n-batch", "2"], "--n-batch"),
    (["simulate", "surge", "--b-min", "8", "--b-max", "8"], "--b-max"),
    (["simulate", "surge", "--b-min", "0"], "--b-min"),
    (["simulate", "surge", "--b-min", "nan"], "--b-min"),
    (["simulate", "surge", "--b-min", "100", "--b-max", "10"], "--b-max"),
    (["simulate", "surge", "--b-min", "1", "--b-max", "2"], "--b-max"),
    (["simulate", "surge", "--backend", "nope"], "--backend"),
    (["simulate", "surge", "--problem", "nope"], "--problem"),
    (["simulate", "surge", "--problem-kw", "foo=1"], "--problem-kw"),
    (["simulate", "surge", "--problem-kw", "coupling"], "--problem-kw"),
    (["simulate", "surge", "--problem-kw", "coupling=abc"], "--problem-kw"),
    (["simulate", "surge", "--problem", "correlated", "--problem-kw", "rho=1.5"], "--problem-kw"),
    (["simulate", "surge", "--problem", "negative-soff", "--d", "7"], "--d"),
    (["simulate", "surge", "--out", "{file}"], "--out"),
    (["simulate", "surge", "--bogus"], "--bogus"),
    (["simulate", "surge", "--backend", "cuda"], "--backend", NEEDS_NO_CUPY),
    # simulate surge: sizes
    (["simulate", "surge", "--d", "1e8"], "--d"),
    (["simulate", "surge", "--n-samples", "1e11"], "--n-samples"),
    (
        ["simulate", "surge", "--problem", "finite", "--problem-kw", "n_examples=1e9"],
        "--problem-kw",
    ),
    # simulate assumptions
    (["simulate", "assumptions", "--rhos", "1.5"], "--rhos"),
    (["simulate", "assumptions", "--rhos", "-0.1"], "--rhos"),
    (["simulate", "assumptions", "--n-examples", "1"], "--n-examples"),
    (["simulate", "assumptions", "--n-examples", "2"], "--n-examples"),
    (["simulate", "assumptions", "--rhos", "", "--n-examples", ""], "--rhos"),
    (["simulate", "assumptions", "--n-examples", "1e9"], "--n-examples"),
    (["simulate", "assumptions", "--n-samples", "1e12"], "--n-samples"),
    (["simulate", "assumptions", "--d", "1e7"], "--d"),
    # simulate train
    (["simulate", "train", "--batch", ""], "--batch"),
    (["simulate", "train", "--batch", "0,8"], "--batch"),
    (["simulate", "train", "--batch", "8"], "--batch"),
    (["simulate", "train", "--batch", "32,8"], "--batch"),
    (["simulate", "train", "--batch", "8,8"], "--batch"),
    (["simulate", "train", "--batch", "abc"], "--batch"),
    (["simulate", "train", "--lr-min", "0"], "--lr-min"),
    (["simulate", "train", "--lr-min", "1e-2", "--lr-max", "1e-4"], "--lr-max"),
    (["simulate", "train", "--n-lr", "0"], "--n-lr"),
    (["simulate", "train", "--n-lr", "1"], "--n-lr"),
    (["simulate", "train", "--seeds", "0"], "--seeds"),
    (["simulate", "train", "--max-steps", "0"], "--max-steps"),
    (["simulate", "train", "--targets", "0.1,0.3"], "--targets"),
    (["simulate", "train", "--targets", "1.5"], "--targets"),
    (["simulate", "train", "--beta1", "1"], "--beta1"),
    (["simulate", "train", "--optimizer", "lion"], "--optimizer"),
    (["simulate", "train", "--problem-kw", "cond=abc"], "--problem-kw"),
    (["simulate", "train", "--d", "1e6"], "--d"),
    (["simulate", "train", "--seeds", "1e9"], "--seeds"),
    (["simulate", "train", "--max-steps", "1e12"], "--max-steps"),
    # simulate momentum
    (["simulate", "momentum", "--betas", "0.9"], "--betas"),
    (["simulate", "momentum", "--betas", "0.9,1.0"], "--betas"),
    (["simulate", "momentum", "--target", "0"], "--target"),
    (["simulate", "momentum", "--target", "1"], "--target"),
    (["simulate", "momentum", "--n-lr", "2"], "--n-lr"),
    (["simulate", "momentum", "--batch", "256"], "--batch"),
    (["simulate", "momentum", "--seeds", "1e9"], "--seeds"),
    # simulate bench
    (["simulate", "bench", "--loop-subset", "0"], "--loop-subset"),
    (["simulate", "bench", "--d", "0"], "--d"),
    (["simulate", "bench", "--d", "1e9"], "--d"),
    (["simulate", "bench", "--max-steps", "1e12"], "--max-steps"),
    (["simulate", "bench", "--n-batch-sizes", "1000"], "--n-batch-sizes"),
]


def _params(cases: list[tuple]) -> list:
    return [pytest.param(c[0], c[1], marks=c[2:], id=" ".join(c[0])) for c in cases]


def _run(argv: list[str], tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)  # nothing may be written, but never into the checkout
    rc = main(argv)
    return rc, capsys.readouterr().err


def _assert_one_line_error(rc: int, err: str, name: str) -> None:
    assert rc == 2, f"exit status {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if lines and lines[0].startswith("usage:"):  # argparse's own errors come after its usage
        lines = [ln for ln in lines[1:] if not ln.startswith(" ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("surgelab "), err
    assert name in lines[0], err


@pytest.mark.parametrize(("argv", "name"), _params(CASES))
def test_bad_input_is_one_line_and_writes_nothing(argv, name, tmp_path, monkeypatch, capsys):
    """Exit 2, one line naming the argument, no traceback, no run folder."""
    (tmp_path / "afile").write_text("not a folder\n")
    argv = [a.replace("{file}", str(tmp_path / "afile")) for a in argv]
    out = tmp_path / "out"
    if "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    rc, err = _run(argv, tmp_path, monkeypatch, capsys)
    _assert_one_line_error(rc, err, name)
    assert not out.exists(), "the --out folder was made before the input was checked"
    assert not (tmp_path / "runs").exists()
    assert (tmp_path / "afile").read_text() == "not a folder\n"


@pytest.mark.parametrize(
    ("argv", "needs"),
    [
        (["simulate", "surge", "--d", "1e8"], "needs about"),
        (["simulate", "surge", "--n-samples", "1e11"], "allows"),
        (["kernels", "bench", "--samples", "1e13"], "allows"),
    ],
)
def test_sizes_are_bounded_up_front(argv, needs, tmp_path, monkeypatch, capsys):
    """The issue's cases: refused at once (no MemoryError after half a minute, no silent run)
    with what the size would need and what the machine allows."""
    t0 = time.perf_counter()
    rc, err = _run([*argv, "--out", str(tmp_path / "o")], tmp_path, monkeypatch, capsys)
    assert time.perf_counter() - t0 < 10.0
    _assert_one_line_error(rc, err, argv[-2])
    assert needs in err and "lower it" in err


def _snapshot(folder) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "surge"],
        ["simulate", "train"],
        ["kernels", "bench", "--preset", "smoke"],
    ],
)
def test_out_of_another_command_is_refused_untouched(argv, tmp_path, monkeypatch, capsys):
    """--out naming another command's run folder: refused, its config.json and meta.json keep
    their content and modification time."""
    other = tmp_path / "theory-run"
    open_run("theory", "check", CheckConfig(), other)
    before = _snapshot(other)
    time.sleep(0.01)
    rc, err = _run([*argv, "--out", str(other)], tmp_path, monkeypatch, capsys)
    _assert_one_line_error(rc, err, "--out")
    assert "surgelab theory check" in err
    assert _snapshot(other) == before


def test_out_of_the_same_command_with_another_config_is_refused(tmp_path, monkeypatch, capsys):
    """A simulate surge folder rerun with other flags: refused naming the differing flag, files
    untouched (rerunning with the same flags would resume)."""
    other = tmp_path / "surge-run"
    open_run("simulate", "surge", SurgeConfig(n_samples=500), other)
    before = _snapshot(other)
    rc, err = _run(
        ["simulate", "surge", "--n-samples", "600", "--out", str(other)],
        tmp_path,
        monkeypatch,
        capsys,
    )
    _assert_one_line_error(rc, err, "--out")
    assert "--n-samples" in err
    assert _snapshot(other) == before


@pytest.mark.parametrize("argv", [["simulate", "surge"], ["kernels", "bench"]])
@pytest.mark.parametrize("sub", [True, False], ids=["inside", "itself"])
def test_unwritable_out_is_one_line(argv, sub, tmp_path, monkeypatch, capsys):
    """--out in (or at) a folder the user cannot write: one line naming --out, no traceback."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores permissions (root): cannot test")
        target = locked / "run" if sub else locked
        rc, err = _run([*argv, "--out", str(target)], tmp_path, monkeypatch, capsys)
        _assert_one_line_error(rc, err, "--out")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_train_interrupted_keeps_chunks_and_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C during ``simulate train``: exit 130, the finished chunk kept, a line saying how to
    resume; the rerun with the same --out computes only the missing chunks."""
    import simulate.train as train

    out = tmp_path / "t"
    argv = [
        "simulate",
        "train",
        "--problem",
        "surge",
        "--d",
        "8",
        "--batch",
        "4,64",
        "--n-lr",
        "3",
        "--seeds",
        "1",
        "--targets",
        "0.5",
        "--max-steps",
        "100",
        "--out",
        str(out),
    ]
    real = train.run_runs
    calls = []

    def interrupt_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(train, "run_runs", interrupt_second)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"--out {out}" in err
    assert sorted(p.name for p in (out / "chunks").glob("chunk_*.npz")) == ["chunk_0000.npz"]
    assert not (out / ".done").exists()
    monkeypatch.setattr(train, "run_runs", real)
    assert main(argv) == 0
    from surgelab.rundir import read_json

    assert read_json(out / "summary.json")["chunks_reused"] == [0]
    assert (out / ".done").exists()


def test_help_shows_the_defaults(capsys):
    """The help page shows each default (the config class is their only source)."""
    assert main(["simulate", "surge", "--help"]) == 0
    out = capsys.readouterr().out
    assert "[default: 20000]" in out and "[default: 8192]" in out
    assert main(["simulate", "train", "--help"]) == 0
    assert "[default: 3000]" in capsys.readouterr().out
