"""Hypothesis strategies that *construct* valid inputs (../shared/STYLE.md): no ``assume()``.

PSD Hessians are built from drawn eigenvalues and a random rotation; σ is drawn positive;
μ is drawn with magnitudes bounded away from zero and independent signs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def rotations(draw, d: int) -> np.ndarray:
    """A Haar-ish random orthogonal (d, d) matrix from a drawn seed (QR of a Gaussian)."""
    seed = draw(st.integers(0, 2**32 - 1))
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@st.composite
def psd_hessians(draw, d: int, lo: float = 0.1, hi: float = 10.0) -> np.ndarray:
    """Symmetric positive definite H = Q diag(λ) Qᵀ with λ drawn in [lo, hi]."""
    lam = np.array(draw(st.lists(st.floats(lo, hi), min_size=d, max_size=d)))
    q = draw(rotations(d))
    h = (q * lam) @ q.T
    return (h + h.T) / 2


@st.composite
def dims(draw, lo: int = 2, hi: int = 12) -> int:
    return draw(st.integers(lo, hi))


@st.composite
def sign_problems(draw, d: int | None = None, *, diag_h: bool = False):
    """(mu, sigma, H) for the sign-update theorems: μ_i ≠ 0, σ_i > 0, H PSD."""
    d = draw(dims()) if d is None else d
    mag = np.array(draw(st.lists(st.floats(0.05, 2.0), min_size=d, max_size=d)))
    sgn = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=d, max_size=d)))
    sigma = np.array(draw(st.lists(st.floats(0.2, 5.0), min_size=d, max_size=d)))
    if diag_h:
        h = np.diag(draw(st.lists(st.floats(0.1, 10.0), min_size=d, max_size=d)))
    else:
        h = draw(psd_hessians(d))
    return mag * sgn, sigma, h


@st.composite
def surge_problems(draw, d: int | None = None):
    """Problems with a surge: μ aligned with a dominant, all-positive low-rank curvature.

    H = diag(h) + c·u uᵀ with u ∝ μ/σ, so S_off ≈ c (Σ r_i²)² > 0 is large and B_noise is
    well inside Theorem 3's regime (σ_i/|μ_i| large).
    """
    d = draw(dims(4, 16)) if d is None else d
    mu = np.array(draw(st.lists(st.floats(0.02, 0.2), min_size=d, max_size=d)))
    mu *= np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=d, max_size=d)))
    sigma = np.array(draw(st.lists(st.floats(2.0, 6.0), min_size=d, max_size=d)))
    hd = np.array(draw(st.lists(st.floats(0.5, 2.0), min_size=d, max_size=d)))
    c = draw(st.floats(5.0, 50.0))
    u = np.sign(mu)
    return mu, sigma, np.diag(hd) + c * np.outer(u, u) / d
