"""Results committed under results/ come from committed code and carry no machine paths."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METAS = sorted((ROOT / "results").glob("**/meta.json"))
ABSOLUTE = re.compile(r"(?<![\w.])/(?:home|root|work|tmp|Users|mnt|opt|var)/")


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("meta", METAS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_meta_names_a_clean_commit_and_no_paths(meta):
    data = json.loads(meta.read_text())
    commit = data.get("git_commit")
    assert isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit), (
        f"{meta}: git_commit {commit!r} is not a clean commit (made from a dirty tree?)"
    )
    for f in meta.parent.glob("*.json"):
        hit = ABSOLUTE.search(f.read_text())
        assert hit is None, f"{f} records a machine path near {hit.group(0)!r}"
    line = data.get("command_line", "")
    assert line.startswith("surgelab "), f"{meta}: command_line {line!r}"


@pytest.mark.parametrize("meta", METAS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_meta_commit_is_an_ancestor_of_head(meta):
    if _git("rev-parse", "HEAD").returncode != 0:
        pytest.skip("not a git checkout")
    commit = json.loads(meta.read_text()).get("git_commit", "")
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            pytest.skip("shallow clone: the commit's history is not here")
        pytest.fail(f"{meta}: commit {commit} is not in this repository")
    assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0
