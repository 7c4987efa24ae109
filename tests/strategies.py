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


@st.composite
def correlated_problems(draw, d: int | None = None):
    """(mu, cov, H) with correlated noise: cov = diag(σ²) + W Wᵀ (PSD, positive diagonal)."""
    d = draw(dims(2, 6)) if d is None else d
    mu, sigma, h = draw(sign_problems(d))
    seed = draw(st.integers(0, 2**32 - 1))
    r = draw(st.integers(1, 3))
    w = np.random.default_rng(seed).normal(size=(d, r)) * draw(st.floats(0.1, 2.0))
    return mu, np.diag(sigma**2) + w @ w.T, h


@st.composite
def lemma1_problems(draw, d: int | None = None):
    """(G, mean_v, cov_v, H) for Lemma 1: arbitrary mean, PD covariance (so m2 > 0), PD H."""
    d = draw(dims(1, 8)) if d is None else d
    g = np.array(draw(st.lists(st.floats(-3.0, 3.0), min_size=d, max_size=d)))
    m = np.array(draw(st.lists(st.floats(-3.0, 3.0), min_size=d, max_size=d)))
    return g, m, draw(psd_hessians(d, 0.05, 4.0)), draw(psd_hessians(d))


@st.composite
def kernel_problems(draw, *, correlated: bool = False, d_max: int = 10, max_z: float = 1.65):
    """(mu, sigma, h, U, W, B) for ``kernels.QuadraticProblem`` + a batch-size grid.

    μ_i = a_i s_i with standardised means |a_i| ∈ [0.02, 1] (s_i the marginal noise std-dev);
    the grid runs from B = 1 up to the B where max_i √(B/2)|a_i| = ``max_z`` (erf(1.65) ≈ 0.98),
    so every coordinate's sign still flips with probability ≥ 1% and a few thousand samples
    estimate every standard error well (a never-flipping coordinate would give SE = 0).
    U has r ∈ {0..3} columns; W (only with ``correlated``) k ∈ {1, 2} columns.
    """
    d = draw(dims(2, d_max))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sigma = np.array(draw(st.lists(st.floats(0.2, 5.0), min_size=d, max_size=d)))
    h = np.array(draw(st.lists(st.floats(0.1, 10.0), min_size=d, max_size=d)))
    r = draw(st.integers(0, 3))
    U = rng.normal(size=(d, r)) * draw(st.floats(0.1, 2.0)) if r else None
    W = None
    if correlated:
        k = draw(st.integers(1, 2))
        W = rng.normal(size=(d, k)) * draw(st.floats(0.3, 2.0)) * sigma[:, None]
    s = np.sqrt(sigma**2 + (np.sum(W**2, axis=1) if W is not None else 0.0))
    mag = np.array(draw(st.lists(st.floats(0.02, 1.0), min_size=d, max_size=d)))
    sgn = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=d, max_size=d)))
    mu = mag * sgn * s
    b_max = 2.0 * (max_z / mag.max()) ** 2
    B = np.geomspace(1.0, b_max, draw(st.integers(1, 5)))
    return mu, sigma, h, U, W, B


@st.composite
def simulate_presets(draw):
    """A named simulate preset built from a drawn seed and (even) dimension: (name, problem)."""
    from simulate import problems

    name = draw(st.sampled_from(["surge", "dense", "diagonal", "negative-soff", "correlated"]))
    d = 2 * draw(st.integers(2, 12))
    return name, problems.make(name, draw(st.integers(0, 2**16)), d=d)
