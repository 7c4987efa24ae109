"""``surgelab validate run | bench | presets``: bad input, interrupts, kills, stale results.

Bad input runs in-process through ``surgelab.cli.main``: exit status 2, one line on stderr
naming the flag, no traceback, and nothing written. The reliability cases each fail on the
code before the app-layer port: Ctrl-C of a running sweep (exit 130, finished points kept, no
process left), SIGKILL of the sweep's parent (its pool workers die with it), an explicit
``--data-dir`` without the dataset (an error, not a silent fallback), and a store whose
results came from another workload definition (refused, never reused).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surgelab.cli import main
from surgelab.rundir import read_json, read_table
from validate import sweep
from validate.presets import PRESETS, get_preset

TINY = ["--workload", "synthetic-mlp", "--preset", "tiny"]

# (argv, the flag that stderr must name)
BAD = [
    (["validate"], "command"),
    (["validate", "nope"], "nope"),
    (["validate", "run", "--preset", "nope"], "--preset"),
    (["validate", "run", "--workload", "nope"], "--workload"),
    (["validate", "run", "--workers", "0"], "--workers"),
    (["validate", "run", "--seeds", "0"], "--seeds"),
    (["validate", "run", "--n-boot", "-1"], "--n-boot"),
    (["validate", "run", "--address", "10.0.0.1:6379"], "--address"),
    (["validate", "run", "--backend", "nope"], "--backend"),
    (["validate", "run", "--device", "bogus"], "--device"),
    (["validate", "run", "--device", "cpu:abc"], "--device"),
    (["validate", "run", "--data-dir", "{missing}"], "--data-dir"),
    (["validate", "run", "--data-dir", "{file}"], "--data-dir"),
    (["validate", "run", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["validate", "run", "--out", "{file}"], "--out"),
    (["validate", "run", "--bogus"], "--bogus"),
    (["validate", "run", "--engine", "single", "--capture", "compile"], "--engine"),
    (["validate", "run", "--engine", "fast"], "--engine"),
    (["validate", "run", "--seeds", "5", "--max-seeds", "3"], "--max-seeds"),
    (["validate", "run", "--seed-log-width", "0.5"], "--seed-log-width"),
    (["validate", "bench", "--lrs", "0.01,0.001"], "--lrs"),
    (["validate", "bench", "--lrs", "0.01,0.01"], "--lrs"),
    (["validate", "bench", "--lrs", "nan"], "--lrs"),
    (["validate", "bench", "--lrs", "0"], "--lrs"),
    (["validate", "bench", "--batch-size", "0"], "--batch-size"),
    (["validate", "bench", "--seeds", "0"], "--seeds"),
    (["validate", "bench", "--max-steps", "0"], "--max-steps"),
    (["validate", "bench", "--device", "bogus"], "--device"),
    (["validate", "bench", "--workload", "nope"], "--workload"),
    (["validate", "bench", "--out", "{file}"], "--out"),
]


def _argv(argv: list[str], tmp_path: Path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder\n")
    return [
        a.replace("{file}", str(tmp_path / "afile")).replace(
            "{missing}", str(tmp_path / "no-such-thing")
        )
        for a in argv
    ]


def _check_usage_error(argv, flag, tmp_path, monkeypatch, capsys) -> str:
    monkeypatch.chdir(tmp_path)  # nothing may be written, but never into the checkout
    rc = main(_argv(argv, tmp_path))
    err = capsys.readouterr().err
    assert rc == 2, f"exit code {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert flag in err, err
    assert not (tmp_path / "runs").exists(), "a run folder was made before the input was checked"
    return err


@pytest.mark.parametrize(("argv", "flag"), [pytest.param(*c, id=" ".join(c[0])) for c in BAD])
def test_bad_input_is_a_one_line_usage_error(argv, flag, tmp_path, monkeypatch, capsys):
    """Exit 2, the flag named on stderr, no traceback, no run folder."""
    err = _check_usage_error(argv, flag, tmp_path, monkeypatch, capsys)
    if argv[:2] in (["validate", "run"], ["validate", "bench"]) and "--bogus" not in argv:
        assert err.startswith(f"surgelab {argv[0]} {argv[1]}: error: "), err
        assert len(err.strip().splitlines()) == 1, err


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """``--device cuda`` where torch sees no GPU: exit 2 naming --device."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible to torch")
    for cmd in ("run", "bench"):
        err = _check_usage_error(
            ["validate", cmd, *TINY[:2], "--device", "cuda"],
            "--device",
            tmp_path,
            monkeypatch,
            capsys,
        )
        assert "no CUDA GPU" in err


def test_bench_lrs_are_comma_separated(tmp_path, monkeypatch, capsys):
    """``--lrs 1e-3,3e-3`` (commas, like every other list); the old space-separated form is
    rejected with a usage error, not half-parsed."""
    out = tmp_path / "bench"
    argv = ["validate", "bench", "--max-steps", "20", "--seeds", "1", "--lrs", "1e-3,3e-3"]
    assert main([*argv, "--out", str(out)]) == 0
    s = read_json(out / "summary.json")
    assert s["n_models"] == 2 and s["lrs"] == [1e-3, 3e-3]
    assert "ratio:" in capsys.readouterr().out
    rows = read_table(out / "bench.csv")
    assert sorted({r["engine"] for r in rows}) == ["batched", "single"]
    assert main(["validate", "bench", "--lrs", "1e-3", "3e-3", "--out", str(tmp_path / "b2")]) == 2
    assert not (tmp_path / "b2").exists()


def test_data_dir_without_the_dataset_is_an_error(tmp_path, monkeypatch, capsys, shared_data):
    """An existing but empty ``--data-dir`` is used alone: one line naming --data-dir and the
    folder, exit 2, nothing written — even though the dataset IS in $SURGELAB_DATA (the old
    code silently used that copy while config.json recorded the empty folder)."""
    monkeypatch.setenv("SURGELAB_DATA", str(shared_data))
    (tmp_path / "empty").mkdir()
    argv = ["validate", "run", "--workload", "fmnist-cnn", "--preset", "tiny"]
    argv += ["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    err = _check_usage_error(argv, "--data-dir", tmp_path, monkeypatch, capsys)
    assert str(tmp_path / "empty") in err and "fashion-mnist" in err
    assert not (tmp_path / "o").exists()


def test_presets_lists_every_preset(capsys):
    """`validate presets` prints every preset name and writes nothing."""
    assert main(["validate", "presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)


# ----------------------------------------------------------------------------- a whole run


def test_an_adaptive_run_analyses_under_its_rule(tmp_path, capsys):
    """With --max-seeds the analysis knows the rule: here no interval is wider than the
    (huge) --seed-log-width, so no seed is added, every batch size stopped below max_seeds and
    each interior optimum with an interval gets one at least that wide, flagged "width"."""
    out = tmp_path / "run"
    argv = ["validate", "run", *TINY, "--seeds", "5", "--max-seeds", "6"]
    argv += ["--seed-log-width", "20", "--engine", "group", "--workers", "1", "--n-boot", "20"]
    assert main([*argv, "--out", str(out)]) == 0
    assert set(read_json(out / "summary.json")["seeds_by_batch_size"].values()) == {5}
    rows = [r for r in read_table(out / "best_lr.csv") if not r["censored"] and r["lo"]]
    assert rows
    for r in rows:
        assert "width" in r["floor"] and math.log(r["hi"] / r["lo"]) >= 20 - 1e-9


def test_run_writes_the_folder_resumes_and_refuses_a_changed_workload(
    tmp_path, monkeypatch, capsys
):
    """`validate run` writes config/meta/store/tables/summary/figures with a headline and
    verdicts; a rerun into the same --out trains nothing; after the workload's model changes
    (same name, same flags) the stored results are refused naming --out and the model, and
    the folder's tables are untouched."""
    out = tmp_path / "run"
    argv = ["validate", "run", *TINY, "--workers", "1", "--n-boot", "20", "--out", str(out)]
    assert main(argv) == 0
    for f in ("config.json", "meta.json", "sweep.sqlite", "points.csv", "fits.csv")[:5]:
        assert (out / f).is_file(), f
    for f in ("best_lr.csv", "summary.json", "se_fit.png", "b_noise_vs_target.png"):
        assert (out / f).is_file(), f
    tiny = get_preset("tiny", "synthetic-mlp")
    assert len(list(out.glob("heatmap_target*.png"))) == len(tiny.targets)
    s = read_json(out / "summary.json")
    assert s["n_units_trained"] == s["n_units"] == len(sweep.plan_units(tiny))
    keys = {h["key"] for h in s["headline"]}
    assert "b_noise" in keys and all(h["key"] in s for h in s["headline"])
    by_key = {h["key"]: h["value"] for h in s["headline"]}
    assert by_key["b_noise"] == s["b_noise"]
    # the measured peak is the batch size with the largest best lr (censored on an edge)
    best = {d["batch_size"]: d["lr"] for d in s["best_lr"]}
    top = max(best, key=best.get)
    if top in (min(best), max(best)):
        assert by_key["peak_batch_size"] == top and s["peak_censored"]
    assert s["verdicts"] and all(isinstance(v, str) and "\n" not in v for v in s["verdicts"])
    assert json.loads((out / "config.json").read_text())["download"] is False
    pts = read_table(out / "points.csv")
    assert len(pts) == tiny.n_runs * len(tiny.targets)

    assert main(argv) == 0  # resume: every unit already stored
    assert read_json(out / "summary.json")["n_units_trained"] == 0
    assert read_table(out / "points.csv") == pts

    # the same name now builds another model: the stored results must not be reused
    import torch

    import validate.workload as workload

    original = workload.factory("synthetic-mlp")

    def wider(**kw):
        import dataclasses

        w = original(**kw)
        return dataclasses.replace(
            w,
            make_model=lambda: torch.nn.Sequential(
                torch.nn.Linear(16, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10)
            ),
        )

    monkeypatch.setattr(workload, "_REGISTRY", {**workload._REGISTRY, "synthetic-mlp": wider})
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "workload.model" in err and "Traceback" not in err
    errors = [ln for ln in err.replace("\r", "\n").splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("surgelab validate run: error: --out")
    assert read_table(out / "points.csv") == pts


# ----------------------------------------------------------------------------- interrupts


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (its reaper may be slow in a container)


def _stored_units(path: Path) -> int:
    try:
        db = sqlite3.connect(path, timeout=1.0)
        try:
            return int(db.execute("SELECT count(*) FROM units").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


#: The child's Ctrl-C raises KeyboardInterrupt even when the test runs in a background job: a
#: shell starts background commands with SIGINT ignored, that disposition is inherited, and a
#: Python started with SIGINT ignored installs no KeyboardInterrupt handler (so the signal the
#: test sends would be lost and the run would go on to the end).
INTERRUPTIBLE = (
    "import signal, sys, surgelab; signal.signal(signal.SIGINT, signal.default_int_handler); "
)


def _start_sweep(out: Path) -> subprocess.Popen:
    """`surgelab validate run` on the synthetic smoke grid with 2 pool workers (6 units of
    2–20 s each on 2 cores), in its own process."""
    code = INTERRUPTIBLE + "sys.exit(surgelab.main(sys.argv[1:]))"
    argv = ["validate", "run", "--workload", "synthetic-mlp", "--preset", "smoke"]
    argv += ["--workers", "2", "--out", str(out)]
    env = {**os.environ, "SURGELAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_first_unit(p: subprocess.Popen, store: Path, timeout: float = 120.0) -> list[int]:
    t0 = time.monotonic()
    while _stored_units(store) < 1:
        if p.poll() is not None or time.monotonic() - t0 > timeout:
            p.kill()
            pytest.fail(f"no unit stored within {timeout} s: {p.communicate()[1][-2000:]}")
        time.sleep(0.1)
    kids = _children(p.pid)
    assert len(kids) >= 2, "the pool's workers are running"
    return kids


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [q for q in pids if _alive(q)]
        if not alive:
            return []
        time.sleep(0.1)
    return [q for q in pids if _alive(q)]


def interrupt(p: subprocess.Popen, seconds: float = 15.0) -> str:
    """Send SIGINT (Ctrl-C) to ``p``; its stderr once it has stopped, within ``seconds``."""
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"the command did not stop within {seconds:g} s of Ctrl-C")
    assert time.monotonic() - t0 < seconds
    return err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_sweep_keeps_points_and_leaves_no_process(tmp_path):
    """SIGINT after the first unit is stored: exit 130 within a few seconds, a one-line
    message that says how to resume, the stored units kept, every child process gone."""
    out = tmp_path / "run"
    p = _start_sweep(out)
    kids = _wait_for_first_unit(p, out / "sweep.sqlite")
    n_before = _stored_units(out / "sweep.sqlite")
    err = interrupt(p)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "AttributeError" not in err
    assert "resume with: surgelab validate run" in err and f"--out {out}" in err
    assert _stored_units(out / "sweep.sqlite") >= n_before >= 1
    assert not (out / ".done").exists()
    assert _wait_gone(kids, 5.0) == [], "worker processes outlived the interrupted sweep"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL of the sweep's process (no chance to clean up): its pool workers exit within a
    few seconds instead of training on as orphans."""
    out = tmp_path / "run"
    p = _start_sweep(out)
    kids = _wait_for_first_unit(p, out / "sweep.sqlite")
    p.kill()
    p.communicate(timeout=10)
    assert _wait_gone(kids, 5.0) == [], "orphaned workers are still running"
