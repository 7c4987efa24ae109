"""End-to-end: `surgelab run` at a tiny scale gives a report true to its parts."""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from surgelab import cli
from surgelab import run as main_job

TINY = ["--workload", "synthetic-mlp", "--preset", "tiny", "--workers", "1"]


def _run(argv: list[str]) -> int:
    return cli.main(["run", *argv])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    rc = _run([*TINY, "--out", str(out)])
    assert rc == 0, "surgelab run failed at the tiny scale; see the report's part statuses"
    return out


def _json(path: Path):
    return json.loads(path.read_text())


def _headline_blob(page: str) -> list[dict]:
    m = re.search(r"<script type='application/json' id='headline'>(.*?)</script>", page, re.S)
    assert m, "report.html carries no headline JSON block"
    return json.loads(html.unescape(m.group(1)))


def test_report_files_exist_and_embed_every_figure(tiny_run):
    """report.md / report.html exist; the HTML embeds every PNG the parts drew (no links out)."""
    page = (tiny_run / "report.html").read_text()
    assert (tiny_run / "report.md").is_file()
    figures = sorted(tiny_run.glob("*/*.png"))
    assert figures, "the parts drew no figures"
    assert page.count("src='data:image/png;base64,") == len(figures)
    assert "http://" not in page and "https://" not in page, "the report must not need a network"
    md = (tiny_run / "report.md").read_text()
    for fig in figures:
        assert f"{fig.parent.name}/{fig.name}" in md
    for part in main_job.PART_KEYS:
        assert (tiny_run / part / ".done").is_file(), f"part {part} did not finish"


def test_headline_theory_count_is_the_registry_size(tiny_run):
    """The theory part's headline counts every derivation in the registry, none failing."""
    from theory import derive

    blob = {
        (h["part"], h["key"]): h["value"]
        for h in _headline_blob((tiny_run / "report.html").read_text())
    }
    summary = _json(tiny_run / "theory" / "summary.json")
    assert summary["n_results"] == len(derive.REGISTRY)
    assert summary["n_failed"] == 0
    assert blob[("theory", "n_results")] == len(derive.REGISTRY)


def test_headline_surge_numbers_match_an_independent_computation(tiny_run):
    """Theorem 3's B_noise in the surge headline equals the closed form on the same problem."""
    from simulate import problems
    from theory import sign

    blob = {
        (h["part"], h["key"]): h["value"]
        for h in _headline_blob((tiny_run / "report.html").read_text())
    }
    cfg = _json(tiny_run / "surge" / "config.json")
    p = problems.make(cfg["problem"], cfg["seed"])
    _, b_noise = sign.surge_params(p.mu, p.marginal_std(), p.H)
    assert blob[("surge", "b_noise_theory")] == pytest.approx(b_noise, rel=1e-12)


def test_reproduce_command_gives_the_same_numbers(tiny_run, tmp_path, capsys):
    """The command the report prints under "Reproduce" for the surge part, run on its own,
    writes the same summary (the Monte Carlo stream is keyed by the seed)."""
    md = (tiny_run / "report.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("surgelab simulate surge"))
    argv = shlex.split(line)[1:]
    assert cli.main([*argv, "--out", str(tmp_path / "again")]) == 0
    a = _json(tiny_run / "surge" / "summary.json")
    b = _json(tmp_path / "again" / "summary.json")
    for key in ("b_peak_mc", "eps_peak_mc", "b_noise_theory", "b_peak_exact"):
        assert np.isclose(a[key], b[key], rtol=1e-12), key


def test_every_headline_value_is_in_its_parts_summary(tiny_run):
    """Each headline entry is a top-level key of that part's summary.json (an element of it,
    with ``index``), with that value; headline.json holds the same list."""
    page = (tiny_run / "report.html").read_text()
    blob = _headline_blob(page)
    assert {"theory", "surge", "train", "real", "estimate"} <= {h["part"] for h in blob}
    for h in blob:
        summary = _json(tiny_run / h["part"] / "summary.json")
        listed = {(e["key"], e.get("index")): e["value"] for e in summary["headline"]}
        assert listed[h["key"], h.get("index")] == h["value"]
        value = summary[h["key"]]
        value = value[h["index"]] if "index" in h else value
        assert value == h["value"], (h["part"], h["key"])
    saved = _json(tiny_run / "headline.json")
    assert [(h["part"], h["key"]) for h in saved["headline"]] == [
        (h["part"], h["key"]) for h in blob
    ]
    assert saved["verdicts"], "no verdict lines"


def test_rerun_resumes_without_recomputing(tiny_run):
    """A second run into the same folder reuses every finished part."""
    mtimes = {p: p.stat().st_mtime_ns for p in tiny_run.glob("*/summary.json")}
    assert _run([*TINY, "--out", str(tiny_run)]) == 0
    assert {p: p.stat().st_mtime_ns for p in tiny_run.glob("*/summary.json")} == mtimes
    assert "finished earlier; reused" in (tiny_run / "report.md").read_text()


def test_rerun_with_other_flags_recomputes_the_changed_parts(tiny_run, tmp_path):
    """A part is reused only when its config is unchanged: new flags rerun it."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    theory_before = (copy / "theory" / "summary.json").stat().st_mtime_ns
    real_before = (copy / "real" / "summary.json").stat().st_mtime_ns
    flags = [*TINY[:-1], "2", "--parts", "theory,real", "--out", str(copy)]  # --workers 2
    assert _run(flags) == 0
    assert (copy / "theory" / "summary.json").stat().st_mtime_ns == theory_before
    assert (copy / "real" / "summary.json").stat().st_mtime_ns != real_before
    assert _json(copy / "real" / "config.json")["workers"] == 2


def test_preset_paper_maps_to_the_workloads_table1_grid():
    """`--preset paper` runs the workload's Table-1 preset; a workload without one is refused."""
    cfg = main_job.RunConfig(preset="paper", parts=("real",))
    real = next(p for p in main_job.PARTS if p.key == "real").make(cfg)
    assert real.preset == "paper-fmnist-large"
    surge = next(p for p in main_job.PARTS if p.key == "surge").make(cfg)
    assert surge.n_samples == main_job.SCALE_OVERRIDES["paper"]["surge"]["n_samples"]
    with pytest.raises(ValueError, match="--preset"):
        main_job.RunConfig(preset="paper", workload="synthetic-mlp")


def _browser() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


@pytest.mark.browser
def test_report_opens_in_headless_browser(tiny_run, tmp_path):
    """Headless Chromium loads report.html, renders the headline table and every image."""
    exe = _browser()
    if exe is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium to run this test)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (tiny_run / "report.html").resolve().as_uri()
    res = subprocess.run(
        [exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'id="headline-table"' in res.stdout
    assert res.stdout.count("<img") == len(sorted(tiny_run.glob("*/*.png")))
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [exe, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and shot.stat().st_size > 10_000, res.stderr[-2000:]
    shutil.copy(shot, Path(tempfile.gettempdir()) / "report_shot.png")  # for a person to read


def test_recommendation_leads_the_report_and_is_in_headline_json(tiny_run):
    """headline.json's recommendation: one row per default batch size with the issue's keys;
    report.md and report.html start with it."""
    from validate.advise import default_batch_sizes

    rec = _json(tiny_run / "headline.json")["recommendation"]
    best = _json(tiny_run / "real" / "summary.json")["best_lr"]
    measured = [b["batch_size"] for b in best]
    assert [r["batch_size"] for r in rec] == list(default_batch_sizes(measured))
    for r in rec:
        assert {"optimizer", "batch_size", "lr", "lo", "hi", "basis", "extrapolated"} <= set(r)
        assert r["lr"] > 0 and r["basis"]
        # at a measured batch size the answer is the sweep's own best lr there
        at = [b["lr"] for b in best if b["batch_size"] == r["batch_size"]]
        if at:
            assert r["lr"] == pytest.approx(at[0]) and r["law"] == "measured"
        assert r["extrapolated"] == (not min(measured) <= r["batch_size"] <= max(measured))
    md = (tiny_run / "report.md").read_text()
    assert md.index("## Recommendation") < md.index("## Verdicts")
    page = (tiny_run / "report.html").read_text()
    assert page.index("id='recommendation'") < page.index("<h2>Verdicts</h2>")


@pytest.mark.parametrize("where", ["", "real", "surge", "estimate"])
def test_advise_from_the_run_gives_the_reports_numbers(tiny_run, where, capsys):
    """`surgelab advise --from RUN` (the root or any part folder) recomputes the report's
    Recommendation: the same rows."""
    rec = _json(tiny_run / "headline.json")["recommendation"]
    assert cli.main(["advise", "--from", str(tiny_run / where), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["recommendation"]
    assert got == rec
    b = rec[-1]["batch_size"]
    assert cli.main(["advise", "--from", str(tiny_run), "--batch-size", str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recommendation"] == [rec[-1]]


def test_no_part_is_silent_longer_than_the_heartbeat(capsys):
    """A part that prints nothing still gets a "still running" line with part k/N, the
    elapsed time and an estimate of what is left, every heartbeat period."""
    import time

    p = main_job.Progress(["theory", "real"], "tiny", time.perf_counter(), k=2)
    p.t_part = time.perf_counter()
    with main_job.heartbeat(p, every=0.05):
        time.sleep(0.32)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "still running" in ln]
    assert len(lines) >= 3
    assert "part 2/2 real" in lines[0] and "elapsed" in lines[0] and "left" in lines[0]


def test_ctrl_c_in_a_part_stops_the_job_keeps_finished_parts(tmp_path, monkeypatch, capsys):
    """Ctrl-C inside a part: exit 130, earlier parts kept and marked done, a partial report,
    and the resume command printed; the interrupted part is not marked done."""
    from surgelab import cmd_simulate

    def interrupted(cfg, run_dir):
        (run_dir.path / "half.txt").write_text("in progress\n")
        raise KeyboardInterrupt

    monkeypatch.setitem(
        cmd_simulate.STAGE.commands,
        "surge",
        cmd_simulate.STAGE.commands["surge"].__class__(
            "surge", "interrupted", cmd_simulate.SurgeConfig, interrupted
        ),
    )
    out = tmp_path / "job"
    rc = _run([*TINY, "--parts", "theory,surge,train", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 130
    assert (out / "theory" / ".done").is_file()
    assert not (out / "surge" / ".done").exists() and (out / "surge" / "half.txt").exists()
    assert not (out / "train").exists(), "the job must stop at the first Ctrl-C"
    assert (out / "report.md").is_file()
    assert "interrupted" in err and f"--out {out}" in err
