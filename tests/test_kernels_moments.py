"""kernels.update_moments: backends agree to rounding; estimates agree with the closed forms."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from strategies import kernel_problems
from tolerances import fp_tol, kernel_rounding_tol, mc_close

import kernels
from kernels.problem import centring
from theory import correlated, sgd, sign

CPU_BACKENDS = ("reference", "numba")


def _problem(mu, sigma, h, U, W):
    return kernels.QuadraticProblem(mu, sigma, h, U=U, W=W)


def _rounding_scales(p: kernels.QuadraticProblem, B, update: str) -> tuple[float, float]:
    """Bounds on Σ|terms| of x1 = μᵀv and x2 = vᵀHv (see tolerances.kernel_rounding_tol).

    |n_i| ≤ 7 (σ_i + Σ_t |W_it|) because the stream's normals never exceed 6.76 in magnitude.
    """
    if update == "sign":
        v = np.ones(p.d)
    else:
        v = np.abs(p.mu) + 7.0 * (p.sigma + np.abs(p.W).sum(1)) / np.sqrt(np.min(B))
    s1 = float(np.abs(p.mu) @ v)
    s2 = float(np.abs(p.h) @ v**2 + 4.0 * np.sum((np.abs(p.U).T @ v) ** 2))
    return s1, s2


def _theory_independent(p: kernels.QuadraticProblem, B, update: str):
    """Exact m1, m2 for independent noise (W = 0).

    sign (Theorem 2): m1 = Σ μ_i ξ_i, m2 = tr H + ξᵀHξ − Σ ξ_i² H_ii.
    sgd (McCandlish): m1 = |μ|², m2 = μᵀHμ + tr(HΣ)/B.
    """
    H = p.hessian()
    if update == "sign":
        xi = sign.expected_sign(p.mu, p.sigma, np.atleast_1d(B))
        m1 = xi @ p.mu
        m2 = np.trace(H) + np.einsum("bi,ij,bj->b", xi, H, xi) - xi**2 @ np.diag(H)
        return m1, m2
    m1 = np.full(np.size(B), p.mu @ p.mu)
    m2 = p.mu @ H @ p.mu + np.trace(H @ np.diag(p.sigma**2)) / np.asarray(B)
    return m1, m2


@pytest.mark.parametrize("update", ["sign", "sgd"])
@pytest.mark.parametrize("shape", [(1, 0, 0, 1), (5, 2, 0, 3), (9, 3, 2, 4), (17, 1, 3, 2)])
def test_numba_equals_reference(update, shape):
    """numba and the numpy reference draw the same stream: equal moments and SEs to rounding.

    Shapes cover d not a multiple of 4 (a partial last Philox block), r = 0, and W's ζ sharing
    a Philox block with the last coordinates. Unsorted, repeated-free batch sizes check the
    numba backend's internal sort.
    """
    d, r, k, nb = shape
    rng = np.random.default_rng(d * 100 + r * 10 + k)
    p = kernels.QuadraticProblem(
        rng.normal(size=d),
        rng.uniform(0.3, 3, d),
        rng.uniform(0.1, 2, d),
        rng.normal(size=(d, r)) if r else None,
        rng.normal(size=(d, k)) if k else None,
    )
    B = np.array([7.0, 1.0, 300.0, 2.5][:nb])
    n = 700  # not a multiple of numba's 64-sample chunks
    a = kernels.update_moments(p, B, n, update=update, seed=12345, backend="reference")
    b = kernels.update_moments(p, B, n, update=update, seed=12345, backend="numba")
    s1, s2 = _rounding_scales(p, B, update)
    assert np.allclose(a.m1, b.m1, rtol=0, atol=kernel_rounding_tol(s1, d + k + n))
    assert np.allclose(a.m2, b.m2, rtol=0, atol=kernel_rounding_tol(s2, d + k + n))
    # the shifted sums keep the variance to rounding when the shift is close to the mean:
    # relative error ≤ n eps (1 + (mean − K)²/var); K is within a few SE here, so 1e3 n eps
    k1, k2 = centring(p, B, update)
    for se_a, se_b, m, kk in ((a.m1_se, b.m1_se, a.m1, k1), (a.m2_se, b.m2_se, a.m2, k2)):
        var = se_a**2 * n
        cond = n * (1.0 + (m - kk) ** 2 / np.maximum(var, 1e-300))
        assert np.allclose(se_a, se_b, rtol=fp_tol(condition=float(np.max(cond)), c=1e3))
    assert np.allclose(a.cov12, b.cov12, rtol=1e-9, atol=1e-12 * float(a.m1_se @ a.m2_se))


@settings(max_examples=15)
@given(kernel_problems())
# found by hypothesis: r = 0 makes the sign m2 exactly Σh (SE = 0) while Theorem 2's
# tr H + ξᵀHξ − Σξ²H_ii rounds differently: the comparison needs a rounding floor
@example(case=(np.array([-1.0, -0.03125]), np.ones(2), np.ones(2), None, None, np.array([1.0])))
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("update", ["sign", "sgd"])
def test_independent_noise_matches_theory(backend, update, case):
    """Theorem 2 (sign) and the McCandlish law (sgd): estimates within 5 SE of the exact m1, m2.

    Also the optimum: m1/m2 within 5 delta-method SEs of theory.sign.optimal_lr_exact /
    theory.sgd's ε_max / (1 + B_noise/B).
    """
    mu, sigma, h, U, _, B = case
    p = _problem(mu, sigma, h, U, None)
    n = 3000 if backend == "numba" else 600
    m = kernels.update_moments(p, B, n, update=update, seed=7, backend=backend)
    t1, t2 = _theory_independent(p, B, update)
    # sgd's m1 = |μ|² + s μᵀn: its SE is never 0; sign's SE > 0 because every coordinate flips
    # with probability ≥ 1% at every B of the grid (strategies.kernel_problems)
    # floor: the closed forms' own rounding (m2 is exactly Σh when r = 0 and sign, SE = 0)
    s1, s2 = _rounding_scales(p, B, update)
    assert mc_close(m.m1, t1, m.m1_se, floor=fp_tol(condition=s1 * p.d))
    assert mc_close(m.m2, t2, m.m2_se, floor=fp_tol(condition=s2 * p.d))
    if update == "sign":
        lr = sign.optimal_lr_exact(mu, sigma, p.hessian(), B)
    else:
        eps_max, b_noise = sgd.params(mu, p.hessian(), sigma**2)
        lr = sgd.optimal_lr(B, eps_max, b_noise)
    assert mc_close(
        m.optimal_lr(), lr, m.optimal_lr_se(), floor=fp_tol(condition=(s1 + s2) * p.d) * np.abs(lr)
    )


@settings(max_examples=12)
@given(kernel_problems(correlated=True, d_max=4))
@pytest.mark.parametrize("update", ["sign", "sgd"])
def test_correlated_noise_matches_orthant_formula(update, case):
    """With Σ = diag(σ²) + W Wᵀ the numba estimates match the exact correlated moments.

    sign: theory.correlated (bivariate-normal orthant formula
    E[sign X sign Y] = 4Φ₂(a, b; ρ) − 2Φ(a) − 2Φ(b) + 1, pairwise); sgd: m2 = μᵀHμ + tr(HΣ)/B.
    """
    mu, sigma, h, U, W, B = case
    p = _problem(mu, sigma, h, U, W)
    m = kernels.update_moments(p, B, 4000, update=update, seed=99, backend="numba")
    H, S = p.hessian(), p.noise_cov()
    if update == "sign":
        t1 = correlated.sign_first_moment(mu, S, B)
        t2 = correlated.sign_second_moment(mu, S, B, H)
    else:
        t1 = np.full(B.size, mu @ mu)
        t2 = mu @ H @ mu + np.trace(H @ S) / B
    assert mc_close(m.m1, t1, m.m1_se)
    assert mc_close(m.m2, t2, m.m2_se)


def test_correlation_changes_m2():
    """The correlated test can fail: Theorem 2 (which ignores W) is far off in m2 here.

    Two coordinates with almost perfectly correlated noise and H = 11ᵀ: independence predicts
    E[v1 v2] = ξ1 ξ2 ≈ 0 at μ = 0, the truth is (2/π) arcsin ρ ≈ 0.94.
    """
    w = np.array([[3.0], [3.0]])
    p = kernels.QuadraticProblem([0.0, 0.0], [0.3, 0.3], [0.0, 0.0], U=[[1.0], [1.0]], W=w)
    m = kernels.update_moments(p, [4.0], 4000, update="sign", seed=1, backend="numba")
    rho = 9.0 / 9.09
    exact = 2.0 + 2.0 * (2.0 / np.pi) * np.arcsin(rho)
    assert mc_close(m.m2, exact, m.m2_se)
    assert not mc_close(m.m2, 2.0, m.m2_se)


def test_common_random_numbers_and_reproducibility():
    """Same seed → identical numbers; batch sizes share samples (order of B is irrelevant);
    disjoint sample ranges are independent draws that pool to the full-range estimate."""
    rng = np.random.default_rng(3)
    p = kernels.QuadraticProblem(
        rng.normal(size=6), np.ones(6), np.ones(6), rng.normal(size=(6, 2))
    )
    B = np.array([1.0, 10.0, 100.0])
    a = kernels.update_moments(p, B, 512, seed=5, backend="numba")
    b = kernels.update_moments(p, B[::-1], 512, seed=5, backend="numba")
    assert np.array_equal(a.m1, b.m1[::-1]) and np.array_equal(a.m2_se, b.m2_se[::-1])
    c = kernels.update_moments(p, B, 512, seed=6, backend="numba")
    assert not np.array_equal(a.m1, c.m1)
    lo = kernels.update_moments(p, B, 256, seed=5, backend="numba")
    hi = kernels.update_moments(p, B, 256, seed=5, backend="numba", first_sample=256)
    s1, s2 = _rounding_scales(p, B, "sign")
    assert np.allclose((lo.m1 + hi.m1) / 2, a.m1, rtol=0, atol=kernel_rounding_tol(s1, 512))
    assert np.allclose((lo.m2 + hi.m2) / 2, a.m2, rtol=0, atol=kernel_rounding_tol(s2, 512))


def test_result_helpers_against_closed_form_and_per_sample_values():
    """The helpers against numbers computed without them.

    d = 1 SGD: v = μ + σz/√B, so m1 = μ² and m2 = h(μ² + σ²/B) exactly; ε_opt = m1/m2 and
    ΔL_opt = μ⁴/(2 m2) must hold within 5 SE (their delta-method SEs), the (nB, nLR) table's
    maximum over a fine lr grid must sit at ε_opt (within one grid step), and the table's SEs
    must equal the spread of the per-sample gains ε x1 − ½ε² x2 of the reference stream
    (brute force over the same Philox samples) to rounding.
    """
    from kernels import reference

    mu, sig, h = 1.0, 1.5, 2.0
    B = np.array([1.0, 4.0, 64.0])
    p = kernels.QuadraticProblem([mu], [sig], [h])
    n = 4000
    m = kernels.update_moments(p, B, n, update="sgd", seed=3, backend="numba")
    m2 = h * (mu**2 + sig**2 / B)
    assert mc_close(m.optimal_lr(), mu**2 / m2, m.optimal_lr_se())
    assert mc_close(m.optimal_gain(), mu**4 / (2 * m2), m.optimal_gain_se())
    assert np.all(m.optimal_lr_se() > 0) and np.all(m.optimal_gain_se() > 0)
    lrs = np.linspace(0.0, 1.0, 4001)
    table = m.expected_gain(lrs)
    assert table.shape == (3, lrs.size)
    assert np.all(np.abs(lrs[table.argmax(axis=1)] - mu**2 / m2) <= lrs[1] + 5 * m.optimal_lr_se())
    x1, x2 = reference.per_sample(p, B, n, "sgd", 3, 0)
    e = np.array([0.1, 0.3, 0.7])
    gains = e * x1[..., None] - 0.5 * e**2 * x2[..., None]  # (n, nB, nLR)
    assert np.allclose(m.expected_gain(e), gains.mean(axis=0), rtol=fp_tol(n))
    assert np.allclose(
        m.expected_gain_se(e), gains.std(axis=0, ddof=1) / np.sqrt(n), rtol=fp_tol(n)
    )


def test_ratio_se_is_calibrated():
    """The delta-method SE of m1/m2 matches the spread of m1/m2 over independent sample ranges."""
    p = kernels.QuadraticProblem(
        [0.3, -0.2, 0.1, 0.4], [1.0, 1.0, 1.0, 1.0], [1.0] * 4, U=[[0.5], [0.5], [0.5], [0.5]]
    )
    reps = [
        kernels.update_moments(p, [2.0], 200, seed=11, backend="numba", first_sample=200 * i)
        for i in range(60)
    ]
    ratios = np.array([m.optimal_lr()[0] for m in reps])
    se = np.median([m.optimal_lr_se()[0] for m in reps])
    # the sample std of 60 draws is within ±30% of the true std with probability > 0.99
    assert 0.7 < ratios.std(ddof=1) / se < 1.3


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_sizes": [-1.0]}, "batch size"),
        ({"batch_sizes": [1.0, np.nan]}, "batch_sizes"),
        ({"batch_sizes": [[1.0]]}, "batch_sizes"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 1}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"n_samples": 2**64}, "n_samples"),  # was numpy's "Maximum allowed dimension exceeded"
        ({"update": "adam"}, "update"),
        ({"backend": "opencl"}, "backend"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"first_sample": -3}, "first_sample"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    """Each bad argument raises ValueError naming it."""
    p = kernels.QuadraticProblem([1.0], [1.0], [1.0])
    args = {"batch_sizes": [1.0], "n_samples": 10, "seed": 0, "backend": "reference", **kwargs}
    with pytest.raises(ValueError, match=name):
        kernels.update_moments(p, args.pop("batch_sizes"), args.pop("n_samples"), **args)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mu": [1.0, np.nan]}, "mu"),
        ({"mu": []}, "mu"),
        ({"sigma": [1.0]}, "sigma"),
        ({"sigma": [1.0, 0.0]}, "sigma"),
        ({"sigma": [1.0, -1.0]}, "sigma"),
        ({"h": [1.0, np.inf]}, "h"),
        ({"h": [1.0, 1.0, 1.0]}, "h"),
        ({"U": np.ones((3, 1))}, "U"),
        ({"U": [[np.nan], [1.0]]}, "U"),
        ({"W": np.ones((2, 2, 2))}, "W"),
    ],
)
def test_bad_problem_names_the_argument(kwargs, name):
    """QuadraticProblem validates shapes, finiteness and σ > 0, naming the argument."""
    args = {"mu": [1.0, 2.0], "sigma": [1.0, 1.0], "h": [1.0, 1.0], **kwargs}
    with pytest.raises(ValueError, match=name):
        kernels.QuadraticProblem(**args)


def test_problem_is_frozen_and_structured():
    """Frozen, read-only arrays; hessian()/noise_cov() are diag + low rank; vector U = 1 column."""
    p = kernels.QuadraticProblem([1.0, 2.0], [1.0, 2.0], [3.0, 4.0], U=[1.0, 1.0], W=[[0.5], [0.0]])
    assert (p.d, p.rank, p.noise_rank) == (2, 1, 1)
    assert np.array_equal(p.hessian(), [[4.0, 1.0], [1.0, 5.0]])
    assert np.array_equal(p.noise_cov(), [[1.25, 0.0], [0.0, 4.0]])
    with pytest.raises((AttributeError, TypeError)):
        p.mu = np.zeros(2)
    with pytest.raises(ValueError):
        p.mu[0] = 5.0


def test_cuda_without_gpu_says_what_is_missing():
    """backend='cuda' on a machine without cupy/GPU raises, naming cupy or the device."""
    if kernels.available_backends()["cuda"][0]:
        pytest.skip("a GPU is available: nothing is missing")
    p = kernels.QuadraticProblem([1.0], [1.0], [1.0])
    with pytest.raises(RuntimeError, match=r"cupy|device"):
        kernels.update_moments(p, [1.0], 10, seed=0, backend="cuda")
    m = kernels.update_moments(p, [1.0], 10, seed=0, backend="auto")
    assert m.backend == "numba"


def test_exact_ties_give_sign_zero():
    """G_est,i = 0 exactly (μ_i = −n_i/√B in floating point) gives v_i = 0, as np.sign does.

    numba finds the sign change by a threshold on fl(|n_i| s_b) vs |μ_i|; this pins the tie
    case against the reference (a wrong tie rule changes m1 by |μ_i|/n, far above rounding).
    """
    from kernels.philox import normals

    n = normals(4, np.arange(2, dtype=np.uint64), 3)
    B = np.array([4.0, 1.0])
    s = 1.0 / np.sqrt(B)
    mu = np.array([-(n[0, 0] * s[0]), -(n[0, 1] * s[1]), 0.7])  # ties in sample 0 only
    p = kernels.QuadraticProblem(mu, np.ones(3), np.ones(3), U=[[1.0], [2.0], [0.5]])
    a = kernels.update_moments(p, B, 2, seed=4, backend="reference")
    b = kernels.update_moments(p, B, 2, seed=4, backend="numba")
    assert np.allclose(a.m1, b.m1, rtol=0, atol=fp_tol(condition=np.abs(mu).sum()))
    assert np.allclose(a.m2, b.m2, rtol=0, atol=fp_tol(condition=30.0))
    assert np.sign(mu[0] + n[0, 0] * s[0]) == 0.0  # the tie really happens


def test_numba_memory_does_not_grow_with_samples_times_d():
    """16× the samples at d = 2·10⁴: the peak resident set rises by far less than a d × samples
    float64 array (8·n·d = 410 MB) would need — the backend streams samples, never stores them.
    """
    from kernels import bench
    from surgelab.cmd_kernels import _reset_peak_rss

    p = bench.make_problem(bench.Case(20_000, 4, 8, 200))
    B = bench.batch_grid(8)
    kernels.update_moments(p, B, 200, seed=0, backend="numba")  # JIT, thread pool
    before = _reset_peak_rss()
    if before is None:
        pytest.skip("peak RSS cannot be reset here (/proc/self/clear_refs is Linux-only)")
    kernels.update_moments(p, B, 3_200, seed=0, backend="numba")
    rise = bench._peak_rss_delta(before)
    assert rise is not None and rise < 8 * 3_200 * 20_000 / 20


def test_numba_sample_indices_beyond_2_63():
    """first_sample ≥ 2⁶³ (allowed: first_sample + n_samples ≤ 2⁶⁴) draws the reference's
    samples. The numba kernels used to take first_sample as a Python int: after any call with a
    small one (an int64 specialisation) a larger one raised OverflowError."""
    p = kernels.QuadraticProblem(
        [0.3, -0.2, 0.1],
        [1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0],
        U=[[1.0], [0.5], [0.2]],
        W=[0.3, 0.0, -0.4],
    )
    B = np.array([1.0, 10.0])
    s1, s2 = _rounding_scales(p, B, "sgd")
    for update in ("sign", "sgd"):
        kernels.update_moments(p, B, 8, update=update, seed=3, backend="numba")  # small first
        for first in (2**63 - 3, 2**63 + 5, 2**64 - 8):
            a = kernels.update_moments(
                p, B, 8, update=update, seed=3, backend="reference", first_sample=first
            )
            b = kernels.update_moments(
                p, B, 8, update=update, seed=3, backend="numba", first_sample=first
            )
            assert np.allclose(a.m1, b.m1, rtol=0, atol=kernel_rounding_tol(s1, 20))
            assert np.allclose(a.m2, b.m2, rtol=0, atol=kernel_rounding_tol(s2, 20))


@pytest.mark.parametrize(("update", "rank"), [("sign", 2100), ("sgd", 700)])
def test_auto_falls_back_to_cpu_when_the_kernels_cannot_take_the_problem(monkeypatch, update, rank):
    """backend="auto" on a GPU machine must not fail on a valid problem: ranks whose shared
    memory no cuda launch can hold (kernels.launch.geometry raises) run on numba instead."""
    from kernels import _backend, cuda_backend

    monkeypatch.setattr(_backend, "has_cuda", lambda: True)  # pretend cupy sees a GPU
    rng = np.random.default_rng(0)
    p = kernels.QuadraticProblem(
        [0.5, -0.2, 0.1], np.ones(3), np.ones(3), U=rng.normal(size=(3, rank)) * 0.01
    )
    m = kernels.update_moments(p, [1.0, 4.0], 16, update=update, seed=0)
    assert m.backend == "numba"
    assert not cuda_backend.supports(p, update)
    small = kernels.QuadraticProblem([0.5, -0.2, 0.1], np.ones(3), np.ones(3), U=np.ones((3, 8)))
    assert cuda_backend.supports(small, update)


def test_auto_survives_a_numba_that_does_not_import(tmp_path):
    """A numba that is installed but raises on import (built for another numpy: "Numba needs
    NumPy ..."): backend="auto" runs the reference instead of failing, and asking for numba
    says why it cannot."""
    import subprocess
    import sys

    fake = tmp_path / "numba"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise ImportError("Numba needs NumPy 1.0 or less")\n')
    code = (
        "import kernels\n"
        "p = kernels.QuadraticProblem([1.0, -0.5], [1.0, 1.0], [1.0, 1.0])\n"
        "print(kernels.update_moments(p, [1.0, 4.0], 8, seed=0).backend)\n"
        "try:\n"
        "    kernels.update_moments(p, [1.0], 8, seed=0, backend='numba')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    root = str(Path(kernels.__file__).resolve().parent.parent)
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])},
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "reference"
    assert "numba" in lines[1] and "Numba needs NumPy" in lines[1]
