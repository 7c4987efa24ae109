"""``surgelab campaign prepare | run`` on a CPU with the ``tiny`` job list.

The campaign exists for GPU windows that cannot be debugged: here every path it takes there is
taken on a CPU — the time boxes, a job cut short keeping its finished units, resuming from the
files of an earlier output, the limits on what comes back (8 files, 16 MiB, no sub-folders)
and on what travels (64 MiB), the refusals of bad input (one line, exit status 2, nothing
written), the job-in-its-own-process path — plus the engine's out-of-memory fallback.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import torch

from surgelab import campaign
from surgelab.cli import main
from validate import engine

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["campaign", *args])
    out, err = capsys.readouterr()
    return code, out, err


def check_output_limits(out: Path) -> list[str]:
    """What comes back from a box: ≤ 8 plain files, each ≤ 16 MiB, none in a sub-folder."""
    entries = list(out.iterdir())
    assert all(e.is_file() for e in entries), [e.name for e in entries if not e.is_file()]
    assert len(entries) <= campaign.OUT_MAX_FILES
    assert all(e.stat().st_size <= campaign.OUT_MAX_BYTES for e in entries)
    return sorted(e.name for e in entries)


def store_units(archive: Path) -> dict[str, set[str]]:
    """{store file: unit ids} read straight from the SQLite files inside a job archive."""
    got: dict[str, set[str]] = {}
    with tarfile.open(archive) as tar:
        tmp = archive.parent / f".x{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for m in tar.getmembers():
                if m.name.endswith(".sqlite"):
                    p = tmp / Path(m.name).name
                    p.write_bytes(tar.extractfile(m).read())
                    db = sqlite3.connect(p)
                    got[p.name] = {u for (u,) in db.execute("SELECT unit_id FROM units")}
                    db.close()
        finally:
            shutil.rmtree(tmp)
    return got


def points(archive: Path) -> list[tuple]:
    with tarfile.open(archive) as tar:
        m = next(m for m in tar.getmembers() if m.name.endswith("points.csv"))
        lines = tar.extractfile(m).read().decode().splitlines()
    return sorted(tuple(line.split(",")) for line in lines[1:])


#: the windows' budget: the cut is by --max-units (deterministic); the budget leaves room for a
#: loaded 2-core machine (a run takes ~25 s idle) and is still asserted as a hard limit
BUDGET = 180


@pytest.fixture(scope="module")
def first_window(tmp_path_factory):
    """A tiny CPU window cut short: two units of mlp-adam, then stopped (--max-units 2)."""
    out = tmp_path_factory.mktemp("w") / "w1"
    t0 = time.monotonic()
    code = main(
        [
            "campaign",
            "run",
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--budget-s",
            str(BUDGET),
            "--jobs",
            "gpu-tests,kernel-bench,engine-bench,mlp-adam",
            "--max-units",
            "2",
            "--out",
            str(out),
        ]
    )
    return code, out, time.monotonic() - t0


def test_first_window_keeps_finished_units_and_meets_limits(first_window):
    """A cut job keeps exactly the units it finished; the budget and output limits hold."""
    code, out, wall = first_window
    assert code == 0
    assert wall < BUDGET
    names = check_output_limits(out)
    assert names == ["bench.json", "campaign.json", "mlp-adam.tar.gz"]
    state = json.loads((out / "campaign.json").read_text())
    jobs = state["jobs"]
    assert jobs["gpu-tests"]["status"] == "skipped" and "CUDA" in jobs["gpu-tests"]["reason"]
    assert jobs["kernel-bench"]["status"] == "done"
    assert jobs["mlp-adam"]["status"] == "cut" and "--max-units 2" in jobs["mlp-adam"]["reason"]
    # the tiny preset's block 0 is B = 64, 16, 4 (largest first): the first two are stored
    assert store_units(out / "mlp-adam.tar.gz") == {"seeds_000-000.sqlite": {"B64_s0", "B16_s0"}}
    proj = jobs["mlp-adam"]["projection"]
    assert (proj["units_done"], proj["units_total"]) == (2, 9)
    # every file is listed with its checksum (what --resume-from verifies)
    for name, info in state["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == info["sha256"]
    bench = json.loads((out / "bench.json").read_text())
    assert all(c["ok"] for c in bench["correctness"])
    assert {r["backend"] for r in bench["rows"]} == {"reference", "torch", "numba"}
    eng = jobs["engine-bench"]
    assert eng["status"] == "done" and eng["summary"]["same_steps"] is True
    # the MLP 16→32→32→10: 2·2·16·32 (first layer: no input gradient) + 3·2·(32·32 + 32·10)
    assert eng["summary"]["train_flops_per_example"] == 10112


def test_second_window_resumes_in_own_processes(first_window, tmp_path, capsys):
    """--resume-from continues the grid (the first window's points unchanged), reuses the
    benchmark, and runs each job in its own process (--isolate: the GPU path)."""
    _, w1, _ = first_window
    w2 = tmp_path / "w2"
    code, out, err = run_cli(
        capsys,
        "run",
        "--preset",
        "tiny",
        "--budget-s",
        str(BUDGET),
        "--jobs",
        "kernel-bench,engine-bench,mlp-adam",
        "--resume-from",
        str(w1),
        "--isolate",
        "--out",
        str(w2),
    )
    assert code == 0, err
    assert check_output_limits(w2) == ["bench.json", "campaign.json", "mlp-adam.tar.gz"]
    state = json.loads((w2 / "campaign.json").read_text())
    assert state["jobs"]["kernel-bench"]["reused"] is True
    assert state["jobs"]["engine-bench"]["reused"] is True
    assert (w2 / "bench.json").read_bytes() == (w1 / "bench.json").read_bytes()
    assert state["jobs"]["mlp-adam"]["status"] == "done"
    units = store_units(w2 / "mlp-adam.tar.gz")
    assert sum(len(v) for v in units.values()) == 9
    assert len(state["windows"]) == 2
    old = set(points(w1 / "mlp-adam.tar.gz"))
    new = set(points(w2 / "mlp-adam.tar.gz"))
    assert old and old <= new and len(new) == 3 * len(old) * 3 // 2
    assert "mlp-adam      done" in out


# ----------------------------------------------------------------------------- bad input


def _refused(capsys, out: Path, *args: str, flag: str) -> str:
    code, _, err = run_cli(capsys, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert flag in lines[0], lines[0]
    return lines[0]


def test_budget_too_small_for_any_job(tmp_path, capsys):
    out = tmp_path / "o"
    _refused(
        capsys,
        out,
        "run",
        "--preset",
        "tiny",
        "--budget-s",
        "3",
        "--out",
        str(out),
        flag="--budget-s",
    )
    assert not out.exists()


def test_out_must_be_new_or_empty(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _refused(capsys, out, "run", "--preset", "tiny", "--out", str(out), flag="--out")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_unknown_job_and_tf32_on_cpu(tmp_path, capsys):
    out = tmp_path / "o"
    _refused(
        capsys,
        out,
        "run",
        "--preset",
        "tiny",
        "--jobs",
        "fmnist-small",
        "--out",
        str(out),
        flag="--jobs",
    )
    _refused(capsys, out, "run", "--preset", "tiny", "--tf32", "--out", str(out), flag="--tf32")
    assert not out.exists()


def test_missing_and_partial_data(tmp_path, capsys):
    """An asked-for job whose data is absent, a partial dataset, a corrupt file: refused."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "o"
    args = ("run", "--preset", "paper", "--jobs", "fmnist-small", "--out", str(out))
    line = _refused(capsys, out, *args, "--data-dir", str(empty), flag="--data-dir")
    assert "fashion-mnist" in line
    part = tmp_path / "part" / "fashion-mnist"
    part.mkdir(parents=True)
    (part / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    line = _refused(capsys, out, *args, "--data-dir", str(part.parent), flag="--data-dir")
    assert "partial" in line and "t10k-images-idx3-ubyte.gz" in line
    for name in (
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        (part / name).write_bytes(b"x")
    line = _refused(capsys, out, *args, "--data-dir", str(part.parent), flag="--data-dir")
    assert "checksum" in line
    assert not out.exists()


def test_absent_data_skips_a_job_not_asked_for(tmp_path):
    """In the default list a job without its data is skipped with the reason recorded."""
    empty = tmp_path / "empty"
    empty.mkdir()
    jobs = campaign.jobs_of("paper")
    ok, skipped = campaign.check_data(jobs, str(empty), explicit=False)
    assert [j.name for j in ok] == ["gpu-tests", "kernel-bench", "engine-bench"]
    assert skipped["resnet"] == "data not found: tiny-imagenet-subset"


def test_resume_from_another_config_is_refused(first_window, tmp_path, capsys):
    """Another preset; a store whose key differs (named); an edited file: nothing written."""
    _, w1, _ = first_window
    out = tmp_path / "o"
    line = _refused(
        capsys,
        out,
        "run",
        "--preset",
        "paper",
        "--jobs",
        "gpu-tests",
        "--resume-from",
        str(w1),
        "--out",
        str(out),
        flag="--resume-from",
    )
    assert "--preset tiny" in line
    # a copy of the first window whose store was computed with another max_steps
    bad = tmp_path / "bad"
    shutil.copytree(w1, bad)
    work = tmp_path / "x"
    campaign.unpack(bad / "mlp-adam.tar.gz", work)
    db = sqlite3.connect(work / "seeds_000-000.sqlite")
    key = json.loads(db.execute("SELECT value FROM meta WHERE key='key'").fetchone()[0])
    key["grid"]["max_steps"] = 999
    db.execute("UPDATE meta SET value=? WHERE key='key'", (json.dumps(key, sort_keys=True),))
    db.commit()
    db.close()
    with tarfile.open(bad / "mlp-adam.tar.gz", "w:gz") as tar:
        tar.add(work / "seeds_000-000.sqlite", arcname="mlp-adam/seeds_000-000.sqlite")
    state = json.loads((bad / "campaign.json").read_text())
    state["files"]["mlp-adam.tar.gz"]["sha256"] = hashlib.sha256(
        (bad / "mlp-adam.tar.gz").read_bytes()
    ).hexdigest()
    (bad / "campaign.json").write_text(json.dumps(state))
    args = ("run", "--preset", "tiny", "--jobs", "mlp-adam", "--out", str(out))
    line = _refused(capsys, out, *args, "--resume-from", str(bad), flag="--resume-from")
    assert "grid.max_steps" in line
    # a file that no longer matches the checksum campaign.json lists
    (bad / "bench.json").write_text("{}")
    line = _refused(capsys, out, *args, "--resume-from", str(bad), flag="--resume-from")
    assert "bench.json" in line
    assert not out.exists()


# ----------------------------------------------------------------------------- time boxes


def test_boxes_split_what_is_left_by_share():
    jobs = campaign.jobs_of("paper")
    b = campaign.boxes(jobs, 100.0)
    assert abs(sum(b) - 100.0) < 1e-9
    assert b[0] == pytest.approx(25.0)  # gpu-tests: share 0.25 of 1.0
    # what a job leaves is split among the later ones by their shares
    assert [j.name for j in jobs[3:5]] == ["fmnist-small", "fmnist-large"]
    later = campaign.boxes(jobs[3:], 50.0)
    assert later[0] == pytest.approx(50.0 * 0.24 / 0.61)


def test_units_known_not_to_fit_are_left_for_later(tmp_path):
    """A unit whose batch size was cut after longer than the time left is not started."""
    job = campaign.job_named("tiny", "mlp-sign")
    cuts = {f"x/B{b}": {"batch_size": b, "after_s": 1e6} for b in (4, 16, 64)}
    spec = {
        "name": job.name,
        "kind": "sweep",
        "preset": "tiny",
        "device": "cpu",
        "data_dir": None,
        "tf32": False,
        "deadline": time.time() + 30.0,
        "folder": str(tmp_path / "j"),
        "cuts": cuts,
        "max_units": None,
    }
    res = campaign.run_sweep_job(spec)
    assert res["status"] == "cut" and res["units_run"] == []
    assert len(res["units_left"]) == 9  # 3 rounds × 3 batch sizes, none started
    assert all(u["lower_bound_s"] == 1e6 for u in res["units_left"])


def test_a_unit_cut_by_its_box_is_recorded_and_bounds_the_projection(tmp_path, monkeypatch):
    """A unit still running at its box end is stopped at an evaluation: nothing of it is
    stored, the cut records how long it ran and its rate, and the projection takes the rate
    × the step budget as the upper bound of that batch size's units."""

    def endless(*args, on_progress, **kw):  # a group that never finishes: 10 steps / 20 ms
        while True:
            time.sleep(0.02)
            on_progress(10)

    monkeypatch.setattr(engine, "train_group", endless)
    job = campaign.job_named("tiny", "mlp-adam")
    folder = tmp_path / "j"
    spec = {
        "name": job.name,
        "kind": "sweep",
        "preset": "tiny",
        "device": "cpu",
        "data_dir": None,
        "tf32": False,
        "deadline": time.time() + 2.5,  # a unit starts only with >= 1 s left
        "folder": str(folder),
        "cuts": {},
        "max_units": None,
    }
    res = campaign.run_sweep_job(spec)
    assert res["status"] == "cut" and res["units_run"] == []
    ((tag, cut),) = res["cuts"].items()
    assert tag == "seeds_000-000.sqlite/B64_s0" and cut["batch_size"] == 64
    assert 0.5 < cut["after_s"] < 2.5 and cut["steps"] >= 100
    assert 0.0019 < cut["s_per_step_after_first"] < 0.006  # 20 ms a stretch; sleep overshoots
    proj = campaign.projection(job, folder, res["cuts"])
    assert proj["units_done"] == 0 and proj["units_unknown"] == 9
    per_unit = cut["first_stretch_s"] + cut["s_per_step_after_first"] * 300  # max_steps 300
    assert proj["units_unknown_upper_bound_s"] == pytest.approx(3 * per_unit)  # 3 rounds of B64
    assert proj["units_unknown_lower_bound_s"] == pytest.approx(3 * cut["after_s"])


def test_ticker_stops_a_unit_before_the_deadline():
    tick = campaign._Ticker(time.time() + 3600)
    tick(10)
    assert tick.steps == 10
    tick.deadline = time.time() - 1
    with pytest.raises(campaign.OutOfTime):
        tick(10)


def test_estimates_from_history_and_cuts():
    hist = [{"batch_size": 8, "wall_s": 10.0}, {"batch_size": 8, "wall_s": 20.0}]
    cuts = {"a": {"batch_size": 16, "after_s": 40.0}}
    assert campaign.estimate_unit(8, hist, cuts) == (15.0, 0.0)
    assert campaign.estimate_unit(16, hist, cuts) == (None, 40.0)


def test_paper_output_fits_in_eight_files(tmp_path):
    """Every paper job with results packs into at most 8 flat files."""
    from surgelab.store import SweepStore

    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    jobs = campaign.jobs_of("paper")
    for job in jobs:
        (work / job.name).mkdir(parents=True)
        if job.kind == "sweep":
            with SweepStore(work / job.name / "seeds_000-009.sqlite", checkpoints=False) as st:
                st.bind({"grid": job.name})
    (work / "gpu-tests" / "log.txt").write_text("7 passed")
    (work / "kernel-bench" / "bench.json").write_text("{}")
    names = campaign.pack({"jobs": {}}, work, out, jobs)
    assert len(names) == 8 and check_output_limits(out) == sorted(names)


# ----------------------------------------------------------------------------- prepare


@pytest.fixture()
def prep_dir():
    """A prepare folder inside the checkout (only the checkout travels), removed after."""
    d = REPO / f".campaign-test-{uuid.uuid4().hex[:8]}"
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_prepare_copies_verified_data_and_prints_the_command(shared_data, prep_dir, capsys):
    code, out, err = run_cli(
        capsys,
        "prepare",
        "--jobs",
        "fmnist-small",
        "--out",
        str(prep_dir),
        "--data-dir",
        str(shared_data),
    )
    assert code == 0, err
    man = json.loads((prep_dir / "manifest.json").read_text())
    files = man["datasets"]["fashion-mnist"]["files"]
    assert len(files) == 4
    for f in files:  # an independent hash of the copy, against the official sum there
        p = prep_dir / "data" / "fashion-mnist" / f["name"]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"]
        assert (shared_data / "fashion-mnist" / "SHA256SUMS").read_text().count(f["sha256"]) == 1
    rel = prep_dir.name
    assert f"--data-dir {rel}/data --out $OUT --jobs fmnist-small" in out
    assert "PYTHONPATH=. python -m surgelab campaign run --device cuda --budget-s 500" in out
    assert f'carry: ["{rel}"]' in out
    # the test's prepare folder sits in the checkout and is not git-ignored (a user's
    # .campaign/ is), so tree_bytes already counts it once: what travels
    total = campaign.tree_bytes()
    assert total >= campaign.folder_bytes(prep_dir)
    assert total <= campaign.CARRY_LIMIT_BYTES
    # a prepared folder that lost a file is partial data for `run`
    (prep_dir / "data" / "fashion-mnist" / files[0]["name"]).unlink()
    code, _, err = run_cli(
        capsys,
        "run",
        "--preset",
        "paper",
        "--jobs",
        "gpu-tests",
        "--data-dir",
        str(prep_dir / "data"),
        "--out",
        str(prep_dir / "o"),
    )
    assert code == 2 and "partial data" in err and not (prep_dir / "o").exists()


def test_prepare_refuses_what_does_not_travel(shared_data, prep_dir, capsys):
    """Tiny-ImageNet (58 MiB) beside Fashion-MNIST exceeds 64 MiB; a low limit refuses too."""
    args = ("prepare", "--out", str(prep_dir), "--data-dir", str(shared_data))
    line = _refused(capsys, prep_dir, *args, "--jobs", "fmnist-small,resnet", flag="--jobs")
    assert "64 MiB" in line
    _refused(capsys, prep_dir, *args, "--jobs", "eli5-adam", "--limit-mib", "4", flag="--jobs")
    assert not prep_dir.exists()


def test_prepare_out_must_be_in_the_checkout(tmp_path, capsys):
    _refused(capsys, tmp_path, "prepare", "--out", str(tmp_path / "c"), flag="--out")


# ----------------------------------------------------------------------------- engine


def test_out_of_memory_halves_the_chunk_and_keeps_results(monkeypatch):
    """An out-of-memory error in a pass halves model_chunk; the rows are those of one pass."""
    from validate.workload import get_workload

    w = get_workload("synthetic-mlp", size="smoke")
    d = w.load_data(None, "cpu")
    kw = dict(targets=(2.1, 2.0), max_steps=40, eval_every=10)
    ref = engine.train_group(w, d, 16, [3e-3, 1e-2], [0, 1], **kw)
    real_vmap = engine.vmap
    calls = {"oom": 0}

    def fake_vmap(fn, in_dims):
        f = real_vmap(fn, in_dims=in_dims)

        def g(p, b, x, y):
            if in_dims[2] == 0 and x.shape[0] > 1:  # a training pass of > 1 model "OOMs"
                calls["oom"] += 1
                raise torch.OutOfMemoryError("fake")
            return f(p, b, x, y)

        return g

    monkeypatch.setattr(engine, "vmap", fake_vmap)
    got = engine.train_group(w, d, 16, [3e-3, 1e-2], [0, 1], **kw)
    assert calls["oom"] >= 2  # 4 models → 2 → 1 a pass
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(got) == strip(ref)


def test_precision_and_chunk_helpers():
    assert engine.set_tf32(False) == {"matmul_tf32": False, "cudnn_tf32": False}
    assert engine.chunk_for_memory(1000, 2e8, 4e10) == 200
    assert engine.chunk_for_memory(10, 2e8, 4e10) is None
    assert engine.chunk_for_memory(10, 5e10, 4e10) == 1
    from validate.workload import get_workload

    w = get_workload("synthetic-mlp", size="smoke")
    assert engine.auto_model_chunk(w, w.load_data(None, "cpu"), 16, 100, "cpu") is None
