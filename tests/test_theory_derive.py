"""The sympy derivations: every claim holds, every numeric function matches its derivation,
and the ``python -m theory`` commands work (and can fail)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp

from surgelab.cli import stage_main
from theory import derive, sign

NAMES = list(derive.REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_every_claim_verified(name):
    """Every symbolic claim made while deriving ``name`` was established by sympy."""
    der = derive.derive(name)
    assert der.claims, f"{name} establishes no claims"
    failed = [desc for desc, ok in der.claims if not ok]
    assert not failed, failed


@pytest.mark.parametrize("name", NAMES)
def test_numeric_function_matches_derivation(name):
    """The lambdified derived expression equals the numeric API at seeded random points."""
    r = derive.check(name, seed=1)
    assert r.max_deviation <= r.tol, (r.max_deviation, r.tol)
    assert r.ok


def test_derived_b_noise_is_symbolically_the_papers():
    """Theorem 3's derived B_noise is exactly π Σ H_ii / (2 S_off)."""
    der = derive.derive("theorem3")
    T, S = sp.symbols("T S_off", positive=True)
    assert sp.cancel(der.exprs["b_noise"] - sp.pi * T / (2 * S)) == 0


def test_check_detects_a_wrong_numeric_function(monkeypatch):
    """The checker is not vacuous: a numeric surge_params off by 1e-6 relative fails it."""
    good = sign.surge_params

    def bad(mu, sigma, H):
        e, n = good(mu, sigma, H)
        return e, n * (1 + 1e-6)

    monkeypatch.setattr(sign, "surge_params", bad)
    assert not derive.check("theorem3").ok


def main(argv: list[str]) -> int:
    """``python -m theory ...`` in-process."""
    return stage_main("theory", argv)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Commands write run folders under ./runs: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)


def test_check_command_exits_zero(capsys):
    """``python -m theory check`` re-derives everything, prints the table and exits 0."""
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert f"{len(NAMES)}/{len(NAMES)} ok" in out


def test_check_command_exits_nonzero_on_failure(monkeypatch, capsys):
    """A failing result makes ``check`` exit non-zero and print FAIL."""
    good = sign.large_batch_lr
    monkeypatch.setattr(sign, "large_batch_lr", lambda mu, H: 1.01 * good(mu, H))
    assert main(["check", "--only", "theorem4"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_check_command_unknown_name():
    """Asking for an unknown derivation is a usage error (exit 2), not a silent pass."""
    assert main(["check", "--only", "no_such_result"]) == 2


def test_check_command_writes_run_folder(tmp_path):
    """``check --out DIR`` writes config.json, meta.json, checks.csv and summary.json."""
    out = tmp_path / "run"
    assert main(["check", "--only", "lemma1,sgd_law", "--out", str(out)]) == 0
    for f in ("config.json", "meta.json", "checks.csv", "summary.json", ".done"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and summary["n_results"] == 2


def test_tex_writes_key_equations(tmp_path):
    """``tex --out DIR`` writes derivations.md with the key equations in LaTeX."""
    assert main(["tex", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "derivations.md").read_text(encoding="utf-8")
    for key in (
        r"\varepsilon_{opt}",
        "B_{noise}",
        r"\operatorname{erf}",
        "S_{off}",
        r"\arcsin",
        "B_{noise-2}",
        "## 1. Lemma 1",
    ):
        assert key in text, key
    assert text.count("$$") % 2 == 0
    assert "✗" not in text


def test_erf_rational_max_error_is_computed():
    """The rational erf approximation's worst error is ≈ 0.108 at z ≈ 1.33 (dense grid)."""
    z = np.linspace(0.0, 6.0, 600_001)
    err = np.abs(sign.erf_rational(z) - __import__("scipy").special.erf(z))
    assert abs(err.max() - 0.108) < 5e-4
    assert abs(z[err.argmax()] - 1.33) < 0.01


def test_symbolic_equality_helper_is_not_vacuous():
    """The zero test behind every claim rejects near-misses (wrong constants, wrong powers)."""
    from theory.derivations._base import B, equal

    assert equal(sp.erfc(B) + sp.erf(B), 1)
    assert equal(sp.sqrt(B / 2) * sp.sqrt(2), sp.sqrt(B))
    assert not equal(sp.sqrt(B / 2), sp.sqrt(B) / 2)
    assert not equal(sp.pi * B / 2, sp.pi * B / 4)
    assert not equal(sp.erf(B), B)


def test_surgelab_console_dispatch(capsys):
    """``surgelab theory check`` reaches the theory stage's check command."""
    import surgelab

    assert surgelab.main(["theory", "check", "--only", "theorem4"]) == 0
    assert "theorem4" in capsys.readouterr().out
