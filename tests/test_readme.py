"""The README's promises: its plug-in snippet runs, and the commands it names exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", _section("Your own model"), re.S)
    assert len(blocks) == 1
    return blocks[0]


def _exec(code: str, monkeypatch) -> dict:
    import validate.workload as workload

    # the snippet registers "my-mlp": keep that out of the registry other tests list
    monkeypatch.setattr(workload, "_REGISTRY", dict(workload._REGISTRY))
    scope: dict = {"__name__": "readme_snippet"}
    exec(compile(code, "README.md", "exec"), scope)
    return scope


def test_plugin_snippet_runs_the_protocol_on_a_user_workload(tmp_path, monkeypatch):
    """The 'Your own model' snippet registers a workload, sweeps it and fits B_noise; a
    rerun reuses the stored points; after a change to the model the same store is refused
    (never the old results), and a fresh store computes new ones."""
    from validate.sweep import StaleResultsError

    monkeypatch.chdir(tmp_path)
    code = _snippet()
    scope = _exec(code, monkeypatch)
    summary = scope["summary"]
    assert (tmp_path / "my-sweep.sqlite").is_file()
    assert {r["batch_size"] for r in scope["rows"]} == {4, 16, 64}
    assert summary["n_points"] == 3 * 3 * 2 * 2
    assert summary["best_lr"], "the fit found a best learning rate per batch size"
    assert _exec(code, monkeypatch)["rows"] == scope["rows"]  # resumed: the stored points

    layer = "torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)"
    assert layer in code
    changed = code.replace(layer, "torch.nn.Linear(20, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)")
    with pytest.raises(StaleResultsError, match=r"workload\.model"):
        _exec(changed, monkeypatch)
    fresh = _exec(changed.replace("my-sweep.sqlite", "my-sweep-2.sqlite"), monkeypatch)
    steps = lambda rows: [r["steps"] for r in rows]  # noqa: E731
    assert steps(fresh["rows"]) != steps(scope["rows"]), "another model, other results"


@pytest.mark.parametrize(
    "command",
    [
        ["theory", "check", "--help"],
        ["theory", "tex", "--help"],
        ["kernels", "bench", "--help"],
        ["simulate", "surge", "--help"],
        ["simulate", "train", "--help"],
        ["simulate", "assumptions", "--help"],
        ["simulate", "momentum", "--help"],
        ["validate", "run", "--help"],
        ["validate", "estimate", "--help"],
        ["validate", "presets"],
        ["run", "--help"],
        ["advise", "--help"],
    ],
)
def test_readme_commands_exist(command):
    """Every `surgelab ...` command the README names parses its arguments."""
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "import surgelab, sys; sys.exit(surgelab.main(sys.argv[1:]))",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-1500:]
    assert f"surgelab {command[0]}" in README.read_text()
