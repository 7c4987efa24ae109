"""theory.laws: the registry of batch-size → learning-rate laws, checked against values worked
by hand, the closed forms' limits, and fits that recover the parameters they were fed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.tolerances import LSQ_RTOL, fp_tol
from theory import laws


def test_registry_lists_every_law_once_with_one_line_docs():
    """Six laws, theory first; each has a label, a one-line description and fitting rule."""
    assert list(laws.LAWS) == ["adam", "sgd", "sgd_sqrt", "constant", "sqrt_rule", "linear_rule"]
    assert laws.THEORY == ("adam", "sgd", "sgd_sqrt")
    assert laws.BASELINES == ("constant", "sqrt_rule", "linear_rule")
    for name, law in laws.LAWS.items():
        assert law.name == name
        for text in (law.label, law.description, law.fitting):
            assert text and "\n" not in text
        assert law.n_free == (0 if name in laws.BASELINES else 2)
    with pytest.raises(ValueError, match="law must be one of"):
        laws.get("cosine")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # B = 25, B_noise = 100, ε_max = 1: ½(√4 + √¼) = 5/4 → 4/5
        ("adam", 0.8),
        # 1/(1 + 100/25) = 1/5
        ("sgd", 0.2),
        # 1/√(1 + 4) = 1/√5
        ("sgd_sqrt", 1 / math.sqrt(5)),
    ],
)
def test_theory_curves_by_hand(name, expected):
    """Each theory law at B = 25 with B_noise = 100, ε_max = 1, worked by hand."""
    assert laws.law_lr(name, 25.0, 1.0, 100.0) == pytest.approx(expected, rel=fp_tol())


def test_surge_law_limits():
    """Eq. 13: ε(B_noise) = ε_max (the peak), symmetric in log B about it, and for B ≪ B_noise
    ε ≈ (2 ε_max/√B_noise)√B (THEORY.md, Theorem 3). Exactly ε = 2 ε_max √(B/B_noise)/(1 +
    B/B_noise), so the small-B form is off by a relative B/B_noise (1e-8 here)."""
    assert laws.law_lr("adam", 50.0, 3.0, 50.0) == pytest.approx(3.0, rel=fp_tol())
    assert laws.law_lr("adam", 5.0, 1.0, 50.0) == pytest.approx(
        laws.law_lr("adam", 500.0, 1.0, 50.0), rel=fp_tol()
    )
    b, bn = 1e-6, 1e2
    small = 2.0 / math.sqrt(bn) * math.sqrt(b)
    assert laws.law_lr("adam", b, 1.0, bn) == pytest.approx(small, rel=2 * b / bn)


def test_eps_max_inverts_the_curve():
    """ε_max from points on a law's curve at its B_noise is that ε_max (Eq. 23 / 24)."""
    B = np.array([4.0, 32.0, 256.0])
    for name in laws.THEORY:
        lr = laws.law_lr(name, B, 2e-3, 40.0)
        assert laws.eps_max_given_b_noise(name, B, lr, 40.0) == pytest.approx(2e-3, rel=fp_tol())


def test_baselines_by_hand():
    """B₀ is the measured batch size nearest in log B (the smaller on a tie), ε₀ the geometric
    mean of its lrs: points (16: 0.01, 0.04 → ε₀ = 0.02), (256: 0.05). At B = 64 (equally near
    16 and 256 in log) B₀ = 16: constant 0.02, √(64/16)·0.02 = 0.04, 4·0.02 = 0.08. At B = 128
    B₀ = 256: 0.05, 0.05/√2, 0.025."""
    bm, lm = [16.0, 16.0, 256.0], [0.01, 0.04, 0.05]
    want = {
        "constant": (0.02, 0.05),
        "sqrt_rule": (0.04, 0.05 / math.sqrt(2)),
        "linear_rule": (0.08, 0.025),
    }
    for name, (at64, at128) in want.items():
        got = laws.baseline_lr(name, np.array([64.0, 128.0]), bm, lm)
        assert got == pytest.approx([at64, at128], rel=fp_tol())
    assert laws.nearest_batch_size(np.array([64.0, 128.0]), bm).tolist() == [16.0, 256.0]
    with pytest.raises(ValueError, match="theory law"):
        laws.baseline_lr("adam", 64.0, bm, lm)
    with pytest.raises(ValueError, match="no free parameters"):
        laws.fit("constant", bm, lm)


@pytest.mark.parametrize("name", laws.THEORY)
def test_fit_recovers_parameters_and_flags_what_the_data_cannot_support(name):
    """Noise-free points on each theory law: (B_noise, ε_max) come back to the solver's
    tolerance and the RMS is ~0; with two batch sizes (as many as free parameters) the RMS is
    NaN, not a misleading 0."""
    B = np.array([4.0, 16.0, 64.0, 256.0, 1024.0])
    f = laws.fit(name, B, laws.law_lr(name, B, 1e-3, 50.0))
    assert f.b_noise == pytest.approx(50.0, rel=LSQ_RTOL)
    assert f.eps_max == pytest.approx(1e-3, rel=LSQ_RTOL)
    assert f.rms < LSQ_RTOL and f.supported and not f.at_bound
    assert f.predict(50.0) == pytest.approx(laws.law_lr(name, 50.0, 1e-3, 50.0), rel=LSQ_RTOL)
    two = laws.fit(name, [8.0, 32.0], [1e-3, 2e-3])
    assert math.isnan(two.rms) and not two.supported and two.n_batch_sizes == 2


def test_surge_fit_on_points_that_never_turn_down_hits_its_bound():
    """Best lrs rising as √B everywhere: the surge law's peak lies beyond the data, so B_noise
    runs to the edge of its search box and the fit says so."""
    B = np.array([4.0, 16.0, 64.0, 256.0])
    f = laws.fit("adam", B, 1e-3 * np.sqrt(B))
    assert f.at_bound


@pytest.mark.parametrize(
    ("B", "lr", "match"),
    [
        ([], [], "no \\(batch_size, lr\\)"),
        ([8.0, 16.0], [1e-3], "one length"),
        ([8.0, -16.0], [1e-3, 1e-3], "batch sizes must be positive"),
        ([8.0, 16.0], [1e-3, math.inf], "learning rates must be positive"),
        ([8.0, 8.0], [1e-3, 2e-3], ">= 2 distinct"),
    ],
)
def test_fit_bad_input(B, lr, match):
    """Bad points raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        laws.fit("sgd", B, lr)


def test_fit_profile_reaches_the_least_squares_minimum_of_fit():
    """On noisy points at random batch-size sets, the profiled fit's squared log error is
    never above the multi-start solver's (same objective, same box)."""
    rng = np.random.default_rng(0)
    grid = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    for _ in range(25):
        B = np.sort(rng.choice(grid, size=int(rng.integers(3, 8)), replace=False)).astype(float)
        lr = 1e-3 * np.exp(rng.normal(0, 0.5, B.size)) * np.sqrt(B) / (1 + B / 100)
        for name in laws.THEORY:
            a, b = laws.fit(name, B, lr), laws.fit_profile(name, B, lr)
            ca = np.sum((np.log(a.predict(B)) - np.log(lr)) ** 2)
            cb = np.sum((np.log(b.predict(B)) - np.log(lr)) ** 2)
            assert cb <= ca + 1e-9, (name, B, ca, cb)
            assert b.n_batch_sizes == a.n_batch_sizes
