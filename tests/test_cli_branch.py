"""``surgelab validate branch`` on the command line: bad input is one line and writes nothing; a
small run writes its folder and resumes; a user's checkpoint is checked against the model; and
``advise --from`` states the horizon.

Each case runs in-process through :func:`surgelab.cli.main`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from surgelab import cli

CASES = [
    (["--batch-sizes", "16,4"], "--batch-sizes"),
    (["--horizons", "0"], "--horizons"),
    (["--lrs", "0.1,0.01"], "--lrs"),
    (["--betas", "0.9"], "--betas"),
    (["--betas", "0.9,1.5"], "--betas"),
    (["--advise-horizon", "7"], "--advise-horizon"),
    (["--n-boot", "5"], "--n-boot"),
    (["--from-checkpoint", "{missing}"], "--from-checkpoint"),
    (["--workload", "nope"], "--workload"),
    (["--data-dir", "{missing}"], "--data-dir"),
    (["--adam-state", "keep"], "--adam-state"),
]


def _main(argv: list[str]) -> int:
    return cli.main(["validate", "branch", *argv])


@pytest.mark.parametrize(("argv", "name"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, name, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [a.replace("{missing}", str(tmp_path / "no-such-file")) for a in argv]
    assert _main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and name in err, err
    assert [ln for ln in err.splitlines() if ln.strip()][-1].startswith(
        "surgelab validate branch: error:"
    ), err
    assert not out.exists()


SMALL = [
    "--workload",
    "synthetic-mlp",
    "--at-steps",
    "10,30",
    "--batch-sizes",
    "4,16,64",
    "--lrs",
    "0.003,0.01,0.03,0.1,0.3",
    "--horizons",
    "1,4",
    "--horizon-examples",
    "64",
    "--n-boot",
    "20",
    "--max-extra-lrs",
    "1",
    "--threads",
    "1",
    "--workers",
    "1",
]


#: SMALL in two worker processes
TWO_WORKERS = ["2" if i and SMALL[i - 1] == "--workers" else a for i, a in enumerate(SMALL)]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("branch") / "run"
    assert _main([*SMALL, "--out", str(out)]) == 0
    return out


def test_a_small_run_writes_its_tables_and_verdicts(small_run):
    s = json.loads((small_run / "summary.json").read_text())
    assert [st["name"] for st in s["starts"]] == ["step10", "step30"]
    assert all(st["moments"] for st in s["starts"])
    assert s["horizons"] == [1, 4] and s["advice_from"] == {"checkpoint": "step30", "horizon": 4}
    assert any(v.startswith("horizon: resolved falls at K = 1") for v in s["verdicts"])
    assert any("E = 64 examples" in v for v in s["verdicts"])
    header = (small_run / "best_lr.csv").read_text().splitlines()[0].split(",")
    for col in ("checkpoint_step", "horizon", "batch_size", "lr", "lo", "hi", "censored"):
        assert col in header
    pts = (small_run / "points.csv").read_text().splitlines()
    assert {"loss_before", "loss_after"} <= set(pts[0].split(","))
    # 2 states × 3 batch sizes × >= 5 lrs × 5 seeds × 3 horizons (K = 1, 4; E = 64)
    assert len(pts) - 1 >= 2 * 3 * 5 * 5 * 3
    for f in ("best_lr_vs_batch.png", "peak_vs_checkpoint.png", "loo.csv", "peaks.csv"):
        assert (small_run / f).is_file()


def test_the_one_step_estimate_is_measured_at_each_state_and_compared_with_k1(small_run):
    est = (small_run / "estimate.csv").read_text().splitlines()
    header = est[0].split(",")
    for col in ("checkpoint", "batch_size", "lr_meas_sign", "lr_meas_sign_lo", "lr_pred_sign"):
        assert col in header
    assert len(est) - 1 == 2 * 3  # 2 states × 3 batch sizes
    s = json.loads((small_run / "summary.json").read_text())
    assert any("vs the one-step direct estimate" in v and "K = 1" in v for v in s["verdicts"])


def test_two_worker_processes_give_the_same_numbers_bit_for_bit(small_run, tmp_path):
    """Units run in parallel processes in any order: the rows, the grid extensions and the
    estimates are those of one process."""
    assert _main([*TWO_WORKERS, "--out", str(tmp_path / "w2")]) == 0
    for name in ("points.csv", "estimate.csv", "best_lr.csv"):
        assert (tmp_path / "w2" / name).read_bytes() == (small_run / name).read_bytes(), name


def test_rerun_resumes_without_recomputing(small_run, capsys):
    assert _main([*SMALL, "--out", str(small_run)]) == 0
    assert "already finished" in capsys.readouterr().out
    # an interrupted run (no .done) reuses the stored branches and the saved states
    (small_run / ".done").unlink()
    before = (small_run / "branches.jsonl").read_text()
    est = (small_run / "estimate.jsonl").read_text()
    assert _main([*SMALL, "--out", str(small_run)]) == 0
    assert (small_run / "branches.jsonl").read_text() == before
    assert (small_run / "estimate.jsonl").read_text() == est


def test_advise_from_a_branch_folder_states_the_horizon(small_run, capsys):
    assert cli.main(["advise", "--from", str(small_run), "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "validate branch from step30: the best lr over the next K = 4 steps" in out


def test_a_users_checkpoint_is_checked_against_the_model(tmp_path, capsys):
    from validate.workload import get_workload

    wrong = tmp_path / "wrong.pt"
    torch.save({"layer.weight": torch.zeros(3, 3)}, wrong)
    out = tmp_path / "run"
    rc = _main(["--workload", "synthetic-mlp", "--from-checkpoint", str(wrong), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "--from-checkpoint" in err and "does not match workload 'synthetic-mlp'" in err, err
    # a model state dict without an optimiser: carry is refused, reset runs
    model = get_workload("synthetic-mlp").make_model()
    ok = tmp_path / "ok.pt"
    torch.save(model.state_dict(), ok)
    argv = ["--workload", "synthetic-mlp", "--from-checkpoint", str(ok)]
    assert _main([*argv, "--out", str(tmp_path / "r1")]) == 2
    assert "no Adam state to carry" in capsys.readouterr().err
    small = ["--batch-sizes", "4,16,64", "--lrs", "0.001,0.01", "--horizons", "1", "--n-boot", "0"]
    rc = _main(
        [
            *argv,
            "--adam-state",
            "reset",
            *small,
            "--max-extra-lrs",
            "0",
            "--out",
            str(tmp_path / "r2"),
        ]
    )
    assert rc == 0
    s = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert s["starts"][0]["name"] == "user" and not s["starts"][0]["moments"]


def test_a_presentation_flag_reopens_a_finished_run_without_recomputing(
    small_run, tmp_path, capsys
):
    """--compare-sweep changes only the figures and verdicts: the finished run is reopened,
    re-analysed with the sweep beside it, and no branch is trained again."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "best_lr.csv").write_text(
        "target,batch_size,rule,lr,lo,hi,censored\n0.5,4,further,0.01,0.008,0.012,\n"
    )
    before = (small_run / "branches.jsonl").read_text()
    assert _main([*SMALL, "--compare-sweep", str(sweep), "--out", str(small_run)]) == 0
    assert "already finished" not in capsys.readouterr().out
    assert (small_run / "branches.jsonl").read_text() == before
    cfg = json.loads((small_run / "config.json").read_text())
    assert cfg["compare_sweep"] == str(sweep)
    # a folder without a sweep table is refused up front
    assert _main([*SMALL, "--compare-sweep", str(tmp_path), "--out", str(small_run)]) == 2
    assert "--compare-sweep" in capsys.readouterr().err


def test_a_users_workload_file_is_imported_and_branched_from_their_checkpoint(
    tmp_path, capsys, monkeypatch
):
    """--import my_workload.py registers the user's model; their checkpoint (model + Adam state)
    is branched; a broken file is one line naming --import."""
    from validate import workload

    # the file registers "user-mlp": keep it out of the registry other tests list
    monkeypatch.setattr(workload, "_REGISTRY", dict(workload._REGISTRY))
    mod = tmp_path / "my_workload.py"
    mod.write_text(
        "import torch\n"
        "from validate.workload import Data, Workload, register\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x = torch.randn(2048, 8, generator=g)\n"
        "y = (x[:, :3].sum(1) > 0).long()\n"
        "@register('user-mlp')\n"
        "def user_mlp(size='smoke', data_dir=None, download=False):\n"
        "    return Workload('user-mlp', lambda: torch.nn.Sequential(torch.nn.Linear(8, 16),\n"
        "        torch.nn.ReLU(), torch.nn.Linear(16, 2)), lambda d, dev: Data(x, y, x[:512],\n"
        "        y[:512]), torch.nn.functional.cross_entropy, 5, (0.5,))\n"
    )
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("user_copy", mod)
    m = importlib.util.module_from_spec(spec)
    sys.modules["user_copy"] = m
    spec.loader.exec_module(m)
    w = m.user_mlp()
    net = w.make_model()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        w.loss(net(m.x[:64]), m.y[:64]).backward()
        opt.step()
    ck = tmp_path / "ck.pt"
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": 20}, ck)
    argv = ["--import", str(mod), "--workload", "user-mlp", "--from-checkpoint", str(ck)]
    small = ["--batch-sizes", "8,32,128", "--lrs", "0.001,0.01,0.1", "--horizons", "1,5"]
    assert _main([*argv, *small, "--n-boot", "0", "--out", str(tmp_path / "r")]) == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["starts"] == [
        {"name": "user", "step": 20, "loss": s["starts"][0]["loss"], "moments": True}
    ]
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    assert _main(["--import", str(bad), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "--import" in err and "boom" in err and "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_branch_pool_keeps_finished_units_and_leaves_no_process(tmp_path):
    """SIGINT while two worker processes branch: exit 130 with how to resume, the finished
    units stay in branches.jsonl, no worker outlives the command."""
    from tests.test_cli_validate import INTERRUPTIBLE, _children, _wait_gone, interrupt

    out = tmp_path / "run"
    code = INTERRUPTIBLE + "sys.exit(surgelab.main(sys.argv[1:]))"
    env = {**os.environ, "SURGELAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(
        [sys.executable, "-c", code, "validate", "branch", *TWO_WORKERS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    store, t0 = out / "branches.jsonl", time.monotonic()
    while not (store.is_file() and store.read_text().count("\n") >= 1):
        if p.poll() is not None or time.monotonic() - t0 > 120:
            p.kill()
            pytest.fail(f"no unit stored within 120 s: {p.communicate()[1][-2000:]}")
        time.sleep(0.1)
    kids = _children(p.pid)
    err = interrupt(p)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "resume with: surgelab validate branch" in err
    assert store.read_text().count("\n") >= 1 and not (out / ".done").exists()
    assert _wait_gone(kids, 5.0) == [], "worker processes outlived the interrupted run"
