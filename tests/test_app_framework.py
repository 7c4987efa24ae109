"""The app layer's shared machinery: typed configs, generated flags, run folders, errors."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Literal

import pytest

from surgelab import cli, rundir
from surgelab.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    opt,
)


@dataclass(frozen=True)
class ToyConfig(Config):
    n: int = opt(3, "how many", lo=1, hi=1000)
    rate: float = opt(0.5, "a rate", lo=0.0, lo_open=True)
    sizes: tuple[int, ...] = opt((1, 2, 4), "sizes", lo=1, ascending=True, nonempty=True)
    mode: Literal["a", "b"] = opt("a", "the mode")
    name: str | None = opt(None, "a name")
    fast: bool = opt(False, "go fast")

    def check(self) -> None:
        if self.n > 10 and self.mode == "b":
            raise ConfigError("n", "must be <= 10 with --mode b")


CALLS: list = []


def _toy_run(cfg: ToyConfig, run: rundir.RunDir | None) -> int:
    CALLS.append(cfg)
    if cfg.name == "interrupt":
        (run.path / "part.csv").write_text("finished\n")
        raise KeyboardInterrupt
    if cfg.name == "missing":
        raise FileNotFoundError("dataset 'x' not found in --data-dir /nowhere")
    run.write_table("t.csv", [{"n": cfg.n, "rate": cfg.rate}])
    run.finish({"n": cfg.n})
    return 0


TOY = cli.Stage("toy", "a toy stage", {"go": cli.Command("go", "toy command", ToyConfig, _toy_run)})


def run_toy(argv, capsys):
    rc = cli.run_command(TOY, TOY.commands["go"], argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_defaults_come_from_the_dataclass():
    """A config built from no flags equals the dataclass default; help shows each default."""
    p = cli.build_parser(TOY, TOY.commands["go"])
    text = p.format_help()
    for piece in ("[default: 3]", "[default: 0.5]", "[default: 1,2,4]", "(one of a, b)"):
        assert piece in " ".join(text.split()), piece
    cfg = ToyConfig()
    assert (cfg.n, cfg.rate, cfg.sizes, cfg.mode, cfg.name, cfg.fast) == (
        3,
        0.5,
        (1, 2, 4),
        "a",
        None,
        False,
    )


def test_flags_parse_to_typed_values(tmp_path, capsys):
    """Comma lists become tuples of the field's type; 1e1 is accepted as the integer 10."""
    CALLS.clear()
    rc, _, err = run_toy(
        ["--n", "1e1", "--sizes", "2,8,32", "--mode", "b", "--fast", "--out", str(tmp_path / "r")],
        capsys,
    )
    assert rc == 0, err
    assert CALLS[-1] == ToyConfig(n=10, sizes=(2, 8, 32), mode="b", fast=True)
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["sizes"] == [2, 8, 32] and stored["n"] == 10
    assert config_from_dict(ToyConfig, stored) == CALLS[-1]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--n", "0"], "--n must be >= 1"),
        (["--n", "1e13"], "--n must be <= 1000"),
        (["--n", "2.5"], "--n"),
        (["--rate", "0"], "--rate must be > 0"),
        (["--rate", "nan"], "--rate must be finite"),
        (["--sizes", "4,2"], "--sizes must be strictly ascending"),
        (["--sizes", ""], "--sizes must list at least one value"),
        (["--sizes", "1,x"], "--sizes"),
        (["--mode", "c"], "--mode must be one of a, b"),
        (["--n", "20", "--mode", "b"], "--n must be <= 10 with --mode b"),
        (["--bogus", "1"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(argv, names, tmp_path, capsys):
    """Exit 2, one line that names the flag, no traceback, and nothing written."""
    out = tmp_path / "never"
    rc, _, err = run_toy([*argv, "--out", str(out)], capsys)
    assert rc == 2
    assert names in err
    assert "Traceback" not in err
    assert not out.exists()


def test_out_refuses_another_commands_folder_without_touching_it(tmp_path, capsys):
    """--out at another command's run folder is refused; its files stay byte-for-byte."""
    other = tmp_path / "other"
    rc = cli.main(["theory", "check", "--only", "erf_approx", "--out", str(other)])
    assert rc == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in other.iterdir()}
    capsys.readouterr()
    rc, _, err = run_toy(["--out", str(other)], capsys)
    assert rc == 2
    assert "--out" in err and "surgelab theory check" in err
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in other.iterdir()}
    assert after == before


def test_out_refuses_same_command_with_other_config(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_toy(["--out", str(out)], capsys)[0] == 0
    cfg_before = (out / "config.json").read_bytes()
    rc, _, err = run_toy(["--n", "7", "--out", str(out)], capsys)
    assert rc == 2 and "--n differ" in err
    assert (out / "config.json").read_bytes() == cfg_before


def test_out_resumes_same_config(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_toy(["--out", str(out)], capsys)[0] == 0
    assert rundir.is_finished(out, ToyConfig())
    assert not rundir.is_finished(out, ToyConfig(n=4))
    assert run_toy(["--out", str(out)], capsys)[0] == 0


def test_out_refuses_a_file_and_a_foreign_folder(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc, _, err = run_toy(["--out", str(f / "sub")], capsys)
    assert rc == 2 and "is an existing file" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    rc, _, err = run_toy(["--out", str(foreign)], capsys)
    assert rc == 2 and "holds no surgelab run" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_out_where_nothing_can_be_written(capsys):
    """A folder no user can create (under /proc) is one line naming --out, not a traceback."""
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this system")
    rc, _, err = run_toy(["--out", "/proc/surgelab-test/run"], capsys)
    assert rc == 2 and "--out" in err and "Traceback" not in err


def test_out_unwritable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores permissions (root)")
        rc, _, err = run_toy(["--out", str(locked / "r")], capsys)
        assert rc == 2 and "not writable" in err and "Traceback" not in err
    finally:
        locked.chmod(0o700)


def test_interrupt_keeps_results_and_says_how_to_resume(tmp_path, capsys):
    """Ctrl-C: exit 130, what finished stays, the message gives the resume command."""
    out = tmp_path / "r"
    rc, _, err = run_toy(["--name", "interrupt", "--out", str(out)], capsys)
    assert rc == 130
    assert (out / "part.csv").read_text() == "finished\n"
    assert "interrupted" in err and f"--out {out}" in err and "--name interrupt" in err


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    rc, _, err = run_toy(["--name", "missing", "--out", str(tmp_path / "r")], capsys)
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith("surgelab toy go: error: dataset 'x'")


def test_meta_records_no_machine_paths(tmp_path, capsys):
    """meta.json: the command line starts with `surgelab`, omits --out, and no absolute path."""
    out = tmp_path / "r"
    assert run_toy(["--n", "5", "--out", str(out)], capsys)[0] == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["command_line"] == "surgelab toy go --n 5"
    text = (out / "meta.json").read_text() + (out / "config.json").read_text()
    assert str(tmp_path) not in text and os.path.expanduser("~") + "/" not in text
    assert meta["stage"] == "toy"
    assert meta["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", meta["git_commit"])


def test_config_round_trip_and_command_line():
    cfg = ToyConfig(n=9, sizes=(3, 5), fast=True, name="x y")
    assert config_from_dict(ToyConfig, json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    assert rundir.command_line("surgelab toy go", cfg) == (
        "surgelab toy go --n 9 --sizes 3,5 --name 'x y' --fast"
    )
    with pytest.raises(ValueError, match="unknown config key"):
        config_from_dict(ToyConfig, {"nope": 1})


def test_dispatch_errors(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert cli.main(["theory", "nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
    assert cli.main(["theory", "check", "--help"]) == 0
    assert "[default: 0]" in capsys.readouterr().out


def test_stage_commands_have_documented_defaults():
    """Every command's config can be built from defaults alone (unless a field is required),
    and every field has a why."""
    import dataclasses

    for stage in cli.stages().values():
        for cmd in stage.commands.values():
            try:
                cmd.config()  # defaults are valid
            except ConfigError as exc:
                assert "is required" in str(exc), (stage.name, cmd.name, str(exc))
            for f in dataclasses.fields(cmd.config):
                assert f.metadata.get("why"), f"{stage.name} {cmd.name}: {f.name} has no why"
