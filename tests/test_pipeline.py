"""End-to-end: `surgelab run` at a tiny scale produces a report true to its parts' summaries."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from theory.rundir import read_json
from validate import pipeline
from validate.report import HEADLINE_KEYS, fmt, lookup

TINY = ["--workload", "synthetic-mlp", "--preset", "tiny", "--workers", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    rc = pipeline.main([*TINY, "--out", str(out)])
    assert rc == 0, "surgelab run failed at the tiny scale; see the report's part statuses"
    return out


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


def test_headline_numbers_equal_the_parts_summaries(tiny_run):
    """Every headline value equals the value in that part's summary.json, and is shown as such."""
    page = (tiny_run / "report.html").read_text()
    blob = _headline_blob(page)
    expected_keys = {(p, k) for p, k, _ in HEADLINE_KEYS}
    assert blob, "no headline numbers at all"
    parts_seen = {h["part"] for h in blob}
    assert {"theory", "surge", "train", "real", "estimate"} <= parts_seen
    for h in blob:
        assert (h["part"], h["key"]) in expected_keys
        summary = read_json(tiny_run / h["part"] / "summary.json")
        assert lookup(summary, h["key"]) == h["value"]
        assert html.escape(fmt(h["value"])) in page
    assert read_json(tiny_run / "headline.json") == {f"{h['part']}.{h['key']}": h["value"]
                                                     for h in blob}


def test_rerun_resumes_without_recomputing(tiny_run, capsys):
    """A second run into the same folder reuses every finished part."""
    mtimes = {p: p.stat().st_mtime for p in tiny_run.glob("*/summary.json")}
    assert pipeline.main([*TINY, "--out", str(tiny_run)]) == 0
    assert {p: p.stat().st_mtime for p in tiny_run.glob("*/summary.json")} == mtimes
    assert "finished earlier; resumed" in (tiny_run / "report.md").read_text()


def test_bad_part_name_is_a_clear_error(tmp_path, capsys):
    """An unknown --parts entry exits 2 and names the valid parts."""
    assert pipeline.main(["--parts", "theory,nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome")


@pytest.mark.browser
def test_report_opens_in_headless_browser(tiny_run, tmp_path):
    """Headless Chromium loads report.html, renders the headline table and every image."""
    exe = _browser()
    if exe is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium to run this test)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = (tiny_run / "report.html").resolve().as_uri()
    res = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "id=\"headline-table\"" in res.stdout
    assert res.stdout.count("<img") == len(sorted(tiny_run.glob("*/*.png")))
    shot = tmp_path / "shot.png"
    res = subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.stat().st_size > 10_000, res.stderr[-2000:]


def test_preset_paper_maps_to_the_workloads_table1_grid(tmp_path, monkeypatch):
    """`--preset paper` runs the workload's Table-1 preset; a workload without one is an error."""
    seen = []

    def fake_run_part(spec, args, root):
        seen.append((spec.key, spec.argv(args, root / spec.key)))
        raise KeyboardInterrupt  # stop after recording the first real-data command

    monkeypatch.setattr(pipeline, "run_part", fake_run_part)
    assert pipeline.main(["--preset", "paper", "--parts", "real", "--out", str(tmp_path)]) == 130
    argv = seen[0][1]
    assert argv[argv.index("--preset") + 1] == "paper-fmnist-large"
    assert pipeline.main(["--preset", "paper", "--workload", "synthetic-mlp",
                          "--out", str(tmp_path / "b")]) == 2


def test_rerun_with_other_flags_recomputes_the_changed_parts(tiny_run, tmp_path):
    """A part is reused only when its command line is unchanged: new flags rerun it."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    before = (copy / "theory" / "summary.json").stat().st_mtime
    real_before = (copy / "real" / "summary.json").stat().st_mtime
    assert pipeline.main([*TINY, "--parts", "theory,real", "--out", str(copy),
                          "--download"]) == 0
    # theory's command does not take --download: reused; the real part's changed: rerun
    assert (copy / "theory" / "summary.json").stat().st_mtime == before
    assert (copy / "real" / "summary.json").stat().st_mtime != real_before
