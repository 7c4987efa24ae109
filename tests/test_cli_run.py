"""``surgelab run`` (the main job) on bad input: exit 2, the argument named, no traceback.

Every case runs in-process through ``surgelab.main(argv)`` and fails at validation, before a
run folder is made or any compute starts. (Each stage's commands have their own file:
test_cli_sim_kernels.py, test_cli_validate.py, test_cli_estimate.py, test_cli_advise.py,
test_cli_nqm.py.) ``{file}`` is an existing plain file, ``{missing}`` a path that does not
exist.
"""

from __future__ import annotations

import pytest

import surgelab


def _no_cuda_torch() -> bool:
    import torch

    return not torch.cuda.is_available()


# (argv, text that must appear in stderr: the argument's name[, a skip mark])
CASES: list[tuple] = [
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
    (["run", "--device", "cuda", "--parts", "real"], "--device"),
    (["run", "--device", "cuda", "--parts", "estimate"], "--device"),
]


def _params(cases: list[tuple]) -> list:
    """One pytest.param per case, its id the command line."""
    return [pytest.param(c[0], c[1], marks=c[2:], id=" ".join(c[0]) or "(none)") for c in cases]


def _argv(argv: list[str], tmp_path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder\n")
    out = []
    for a in argv:
        out.append(
            a.replace("{tmp}", str(tmp_path))
            .replace("{file}", str(tmp_path / "afile"))
            .replace("{missing}", str(tmp_path / "no-such-thing"))
        )
    return out


def _run(argv: list[str]) -> int:
    return int(surgelab.main(argv) or 0)


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
def test_cuda_device_without_a_gpu_is_a_clear_usage_error(
    argv, name, tmp_path, monkeypatch, capsys
):
    """``--device cuda`` where torch sees no GPU: exit 2 naming --device."""
    if not _no_cuda_torch():
        pytest.skip("a CUDA GPU is visible to torch")
    _check(argv, name, tmp_path, monkeypatch, capsys)
