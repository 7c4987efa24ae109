"""Argument checks shared by every stage: each raises ``ValueError`` naming the argument.

Every message also says how to fix the value.

Kept in ``theory`` because it is the root of the import chain (theory <- kernels <- simulate
<- validate); it depends on numpy only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _finite(x: NDArray, name: str) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (no NaN or inf); got {x!r}")


def as_vector(
    x: ArrayLike, name: str, *, d: int | None = None, positive: bool = False, nonzero: bool = False
) -> NDArray[np.float64]:
    """A finite 1-D float64 vector, optionally of length ``d`` and strictly positive / nonzero."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers; got {x!r}") from exc
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {a.shape}")
    if d is not None and a.shape[0] != d:
        raise ValueError(f"{name} must have length d={d} to match mu; got length {a.shape[0]}")
    _finite(a, name)
    if positive and np.any(a <= 0):
        raise ValueError(f"{name} must be strictly positive; got min {a.min()!r}")
    if nonzero and np.any(a == 0):
        raise ValueError(f"{name} must have no zero entries; got {int(np.sum(a == 0))} zeros")
    return a


def as_batch_sizes(B: ArrayLike, name: str = "B") -> NDArray[np.float64]:
    """Batch sizes as a float64 array (scalar or 1-D), all finite and > 0."""
    try:
        b = np.asarray(B, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a positive number or 1-D array of them; got {B!r}"
        ) from exc
    if b.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D array; got shape {b.shape}")
    if b.size == 0:
        raise ValueError(f"{name} must not be empty")
    _finite(b, name)
    if np.any(b <= 0):
        raise ValueError(f"batch size must be positive, got {name}={B!r}")
    return b


def finite_scalar(x: float, name: str) -> float:
    """``float(x)``, or a ``ValueError`` naming ``name`` if it is not a finite number."""
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number; got {name}={x!r}") from exc
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {name}={x!r}")
    return v


def as_positive_scalar(x: float, name: str, *, allow_inf: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a positive number; got {x!r}") from exc
    if np.isnan(v) or (np.isinf(v) and not allow_inf) or v <= 0:
        raise ValueError(
            f"{name} must be a positive {'' if allow_inf else 'finite '}number; got {name}={x!r}"
        )
    return v


def as_hessian(
    H: ArrayLike, name: str = "H", *, d: int | None = None, psd: bool = False, rtol: float = 1e-10
) -> NDArray[np.float64]:
    """A finite, symmetric (d, d) matrix; with ``psd=True`` also positive semi-definite.

    Symmetry is checked to ``rtol * max|H|`` (round-off from a rotation ``Q diag(l) Qᵀ``
    is a few ulp of the largest entry).
    """
    try:
        h = np.asarray(H, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a (d, d) array of numbers; got {H!r}") from exc
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) matrix; got shape {h.shape}")
    if d is not None and h.shape[0] != d:
        raise ValueError(f"{name} must be ({d}, {d}) to match mu; got shape {h.shape}")
    _finite(h, name)
    scale = max(float(np.abs(h).max()), np.finfo(float).tiny)
    if not np.allclose(h, h.T, rtol=0.0, atol=rtol * scale * 10):
        raise ValueError(
            f"{name} must be symmetric; max |H - H.T| = {np.abs(h - h.T).max():.3g}. "
            f"Pass (H + H.T) / 2 if the asymmetry is round-off."
        )
    if psd:
        lam_min = float(np.linalg.eigvalsh((h + h.T) / 2).min())
        if lam_min < -1e-9 * scale * h.shape[0]:
            raise ValueError(
                f"{name} must be positive semi-definite; smallest eigenvalue {lam_min:.3g}"
            )
    return h


def as_covariance(Sigma: ArrayLike, name: str = "Sigma", *, d: int) -> NDArray[np.float64]:
    """Gradient-noise covariance as given: a (d,) vector of variances or a (d, d) PSD matrix."""
    s = np.asarray(Sigma, dtype=np.float64)
    if s.ndim == 1:
        return as_vector(s, name, d=d, positive=False) if np.all(s >= 0) else _neg(name, s)
    if s.ndim == 2:
        return as_hessian(s, name, d=d, psd=True)
    raise ValueError(
        f"{name} must be a (d,) vector of variances or a (d, d) covariance matrix; "
        f"got shape {s.shape}"
    )


def _neg(name: str, s: NDArray) -> NDArray:
    raise ValueError(f"{name} variances must be >= 0; got min {s.min()!r}")
