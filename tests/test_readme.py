"""The README's promises: its plug-in snippet runs, and the commands it names exist."""

from __future__ import annotations

import re
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


def _readme_commands() -> list[list[str]]:
    """Every ``surgelab <stage> [<command>]`` the README names, as an argv."""
    import re

    from surgelab.cli import stages

    found: dict[tuple[str, ...], None] = {}
    all_stages = stages()
    for stage, word in re.findall(r"surgelab ([a-z]+)(?: ([a-z]+))?", README.read_text()):
        if stage not in all_stages:
            continue  # prose ("surgelab derives ...")
        found[(stage,) if all_stages[stage].single else (stage, word)] = None
    return [list(k) for k in found]


@pytest.mark.parametrize("command", _readme_commands(), ids=" ".join)
def test_readme_commands_exist(command, capsys):
    """Every `surgelab ...` command the README names exists and prints its help."""
    from surgelab import cli

    assert cli.main([*command, "--help"]) == 0, capsys.readouterr().err
    assert "usage: surgelab" in capsys.readouterr().out


def test_readme_names_every_command():
    """Every command the CLI has appears in the README."""
    from surgelab.cli import stages

    text = README.read_text()
    for stage in stages().values():
        for name in stage.commands:
            words = f"surgelab {stage.name}" if stage.single else f"surgelab {stage.name} {name}"
            alt = f"`{name}`" if not stage.single else words
            assert words in text or alt in text, f"README does not mention {words}"
