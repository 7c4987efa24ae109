"""Bad command-line input: exit code 2, a message naming the argument, no traceback.

Every case runs in-process through ``surgelab.main(argv)`` (which calls the stage's
``main(argv)``) and fails at validation, before a run folder is made or any compute starts.
``{file}`` is an existing plain file, ``{missing}`` a path that does not exist, ``{csv:NAME}``
one of the CSV files of :data:`CSVS`, ``{dir:NAME}`` a folder holding the files of
:data:`DIRS` (malformed result folders for ``advise --from``).
"""

from __future__ import annotations

import importlib.util

import pytest

import surgelab

CSVS = {
    "empty": "",
    "header": "batch_size,lr\n",
    "cols": "b,x\n1,2\n",
    "nonnum": "batch_size,lr\n8,abc\n32,0.1\n",
    "good": "batch_size,lr\n8,0.01\n32,0.02\n128,0.015\n",
}
DIRS = {
    "badjson": {"summary.json": "not json"},
    "listjson": {"summary.json": "[1, 2]"},
    "nobest": {"best_lr.csv": "batch_size,best_lr\n"},
}


def _no_cupy() -> bool:
    return importlib.util.find_spec("cupy") is None


def _no_cuda_torch() -> bool:
    import torch

    return not torch.cuda.is_available()


NEEDS_NO_CUPY = pytest.mark.skipif(not _no_cupy(), reason="cupy is installed here")

# (argv, text that must appear in stderr: the argument's name[, a skip mark])
CASES: list[tuple] = [
    # surgelab / theory
    (["theory", "check", "--seed", "-1"], "--seed"),
    (["theory", "check", "--only", "nope"], "--only"),
    (["theory", "check", "--out", "{file}"], "--out"),
    (["theory", "tex", "--out", "{file}/sub"], "--out"),
    (["theory", "check", "--bogus"], "--bogus"),
    # kernels
    (["kernels", "bench", "--repeats", "0"], "--repeats"),
    (["kernels", "bench", "--d", "0"], "--d"),
    (["kernels", "bench", "--d", "-5"], "--d"),
    (["kernels", "bench", "--rank", "-1"], "--rank"),
    (["kernels", "bench", "--n-batch", "-2"], "--n-batch"),
    (["kernels", "bench", "--samples", "1"], "--samples"),
    (["kernels", "bench", "--seed", "-1"], "--seed"),
    (["kernels", "bench", "--out", "{file}"], "--out"),
    (["kernels", "bench", "--preset", "nope"], "--preset"),
    (["kernels", "bench", "--preset", "smoke", "--backend", "cuda"], "--backend", NEEDS_NO_CUPY),
    # simulate
    (["simulate", "surge", "--seed", "-1"], "--seed"),
    (["simulate", "surge", "--d", "0"], "--d"),
    (["simulate", "surge", "--n-samples", "0"], "--n-samples"),
    (["simulate", "surge", "--n-batch", "0"], "--n-batch"),
    (["simulate", "surge", "--n-batch", "2"], "--n-batch"),
    (["simulate", "surge", "--b-min", "8", "--b-max", "8"], "--b-max"),
    (["simulate", "surge", "--b-min", "0"], "--b-min"),
    (["simulate", "surge", "--b-min", "nan"], "--b-min"),
    (["simulate", "surge", "--b-min", "100", "--b-max", "10"], "--b-max"),
    (["simulate", "surge", "--backend", "nope"], "--backend"),
    (["simulate", "surge", "--problem", "nope"], "problem"),
    (["simulate", "surge", "--out", "{file}"], "--out"),
    (["simulate", "surge", "--bogus"], "--bogus"),
    (["simulate", "surge", "--backend", "cuda"], "--backend", NEEDS_NO_CUPY),
    (["simulate", "assumptions", "--rhos", "1.5"], "--rhos"),
    (["simulate", "assumptions", "--n-examples", "1"], "--n-examples"),
    (["simulate", "assumptions", "--n-examples", "2"], "--n-examples"),
    (["simulate", "assumptions", "--rhos", "", "--n-examples", ""], "--rhos"),
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
    (["simulate", "train", "--targets", "0.1,0.3"], "targets"),
    (["simulate", "momentum", "--betas", "0.9"], "--betas"),
    (["simulate", "momentum", "--target", "0"], "--target"),
    (["simulate", "momentum", "--n-lr", "2"], "--n-lr"),
    (["simulate", "momentum", "--batch", "256"], "--batch"),
    (["simulate", "bench", "--loop-subset", "0"], "--loop-subset"),
    (["simulate", "bench", "--d", "0"], "--d"),
    # validate
    (["validate"], "command"),
    (["validate", "nope"], "nope"),
    (["validate", "run", "--preset", "nope"], "preset"),
    (["validate", "run", "--workload", "nope"], "workload"),
    (["validate", "run", "--workers", "0"], "--workers"),
    (["validate", "run", "--seeds", "0"], "--seeds"),
    (["validate", "run", "--n-boot", "-1"], "--n-boot"),
    (["validate", "run", "--address", "10.0.0.1:6379"], "--address"),
    (["validate", "run", "--device", "bogus"], "--device"),
    (["validate", "run", "--device", "cpu:abc"], "--device"),
    (["validate", "run", "--data-dir", "{missing}"], "--data-dir"),
    (["validate", "run", "--data-dir", "{file}"], "--data-dir"),
    (["validate", "run", "--out", "{file}"], "--out"),
    (["validate", "run", "--bogus"], "--bogus"),
    (["validate", "bench", "--lrs", "0.01", "0.001"], "--lrs"),
    (["validate", "bench", "--lrs", "0.01", "0.01"], "--lrs"),
    (["validate", "bench", "--lrs", "nan"], "--lrs"),
    (["validate", "bench", "--batch-size", "0"], "--batch-size"),
    (["validate", "bench", "--seeds", "0"], "--seeds"),
    (["validate", "bench", "--max-steps", "0"], "--max-steps"),
    (["validate", "bench", "--device", "bogus"], "--device"),
    (["validate", "bench", "--out", "{file}"], "--out"),
    (["validate", "estimate", "--checkpoints", "100,0"], "--checkpoints"),
    (["validate", "estimate", "--checkpoints", "abc"], "--checkpoints"),
    (["validate", "estimate", "--batch-sizes", "16,4"], "--batch-sizes"),
    (["validate", "estimate", "--seed", "-1"], "--seed"),
    (["validate", "estimate", "--at-losses", "-1"], "--at-losses"),
    (["validate", "estimate", "--at-losses", "nan"], "--at-losses"),
    (["validate", "estimate", "--train-lr", "nan"], "--train-lr"),
    (["validate", "estimate", "--device", "bogus"], "--device"),
    (["validate", "estimate", "--workload", "nope"], "workload"),
    (["validate", "estimate", "--data-dir", "{missing}"], "--data-dir"),
    (["validate", "estimate", "--out", "{file}"], "--out"),
    # advise
    (["advise", "--batch-size", "-5", "--b-noise", "100", "--eps-max", "1e-3"], "--batch-size"),
    (["advise", "--batch-size", "nan", "--b-noise", "100", "--eps-max", "1e-3"], "--batch-size"),
    (["advise", "--batch-size", "64", "--b-noise", "-1", "--eps-max", "1e-3"], "--b-noise"),
    (["advise", "--batch-size", "64", "--b-noise", "100"], "--eps-max"),
    (["advise", "--batch-size", "64", "--b-noise", "100", "--eps-max", "1e-3", "--ci", "1.5"],
     "--ci"),
    (["advise", "--batch-size", "64", "--b-noise", "100", "--eps-max", "1e-3", "--seed", "-1"],
     "--seed"),
    (["advise", "--batch-size", "64", "--points", "{csv:good}", "--n-boot", "-1"], "--n-boot"),
    (["advise", "--batch-size", "64", "--points", "{csv:good}", "--eps-max", "3"], "--eps-max"),
    (["advise", "--batch-size", "64", "--points", "{missing}"], "points file"),
    (["advise", "--batch-size", "64", "--points", "{csv:empty}"], "points file"),
    (["advise", "--batch-size", "64", "--points", "{csv:header}"], "points file"),
    (["advise", "--batch-size", "64", "--points", "{csv:cols}"], "points file"),
    (["advise", "--batch-size", "64", "--points", "{csv:nonnum}"], "points file"),
    (["advise", "--batch-size", "64", "--from", "{missing}"], "result folder"),
    (["advise", "--batch-size", "64", "--from", "{tmp}"], "result folder"),
    (["advise", "--batch-size", "64", "--from", "{dir:badjson}"], "--from"),
    (["advise", "--batch-size", "64", "--from", "{dir:listjson}"], "summary.json"),
    (["advise", "--batch-size", "64", "--from", "{dir:nobest}"], "best_lr.csv"),
    (["advise", "--batch-size", "64"], "--points"),
    # run (the main job)
    (["run", "--parts", "nonsense"], "--parts"),
    (["run", "--parts", ","], "--parts"),
    (["run", "--workers", "0"], "--workers"),
    (["run", "--address", "10.0.0.1:6379"], "--address"),
    (["run", "--backend", "nope"], "--backend"),
    (["run", "--preset", "nope", "--parts", "real"], "--preset"),
    (["run", "--preset", "paper", "--workload", "nope"], "workload"),
    (["run", "--workload", "nope", "--parts", "estimate"], "--workload"),
    (["run", "--device", "bogus", "--parts", "real"], "--device"),
    (["run", "--data-dir", "{missing}"], "--data-dir"),
    (["run", "--out", "{file}"], "--out"),
    (["run", "--bogus"], "--bogus"),
]

CUDA_CASES = [
    (["validate", "run", "--device", "cuda"], "--device"),
    (["validate", "estimate", "--device", "cuda"], "--device"),
    (["run", "--device", "cuda", "--parts", "real"], "--device"),
]


def _params(cases: list[tuple]) -> list:
    """One pytest.param per case, its id the command line."""
    return [pytest.param(c[0], c[1], marks=c[2:], id=" ".join(c[0]) or "(none)") for c in cases]


def _argv(argv: list[str], tmp_path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder\n")
    out = []
    for a in argv:
        if a.startswith("{csv:"):
            name = a[5:-1]
            path = tmp_path / f"{name}.csv"
            path.write_text(CSVS[name])
            a = str(path)
        if a.startswith("{dir:"):
            name = a[5:-1]
            folder = tmp_path / name
            folder.mkdir()
            for fname, text in DIRS[name].items():
                (folder / fname).write_text(text)
            a = str(folder)
        out.append(a.replace("{tmp}", str(tmp_path))
                   .replace("{file}", str(tmp_path / "afile"))
                   .replace("{missing}", str(tmp_path / "no-such-thing")))
    return out


def _run(argv: list[str]) -> int:
    try:
        return int(surgelab.main(argv) or 0)
    except SystemExit as exc:  # argparse's usage errors in theory / kernels / simulate / run
        return exc.code if isinstance(exc.code, int) else 1


def _check(argv, name, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written, but never into the checkout
    rc = _run(_argv(argv, tmp_path))
    err = capsys.readouterr().err
    assert rc == 2, f"exit code {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert name in err, err
    assert not (tmp_path / "runs").exists(), "a run folder was made before the input was checked"


@pytest.mark.parametrize(("argv", "name"), _params(CASES))
def test_bad_input_is_a_clear_usage_error(argv, name, tmp_path, monkeypatch, capsys):
    """Exit 2, the argument named on stderr, no traceback, no run folder."""
    _check(argv, name, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize(("argv", "name"), _params(CUDA_CASES))
def test_cuda_device_without_a_gpu_is_a_clear_usage_error(argv, name, tmp_path, monkeypatch,
                                                          capsys):
    """``--device cuda`` where torch sees no GPU: exit 2 naming --device."""
    if not _no_cuda_torch():
        pytest.skip("a CUDA GPU is visible to torch")
    _check(argv, name, tmp_path, monkeypatch, capsys)
