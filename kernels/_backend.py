"""Capability detection in one place; importing it never fails (no cupy, no GPU, no numba).

``resolve(name)`` turns a requested backend into one that can run here, or raises a
``ValueError`` / ``RuntimeError`` that says what is missing.
"""

from __future__ import annotations

import functools
import importlib.util

BACKENDS = ("auto", "reference", "numba", "cuda")


@functools.lru_cache(maxsize=1)
def numba_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether numba imports (installed is not enough: a numba built for
    an older numpy raises ImportError at import, and ``auto`` must then fall back)."""
    if importlib.util.find_spec("numba") is None:
        return False, "numba is not installed"
    try:
        import numba
    except Exception as exc:  # ImportError from a numpy/numba version mismatch, and the like
        return False, f"numba is installed but does not import ({type(exc).__name__}: {exc})"
    return True, f"numba {numba.__version__} installed"


def has_numba() -> bool:
    """True when numba imports."""
    return numba_status()[0]


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether cupy is installed and sees a CUDA device, and why not."""
    if importlib.util.find_spec("cupy") is None:
        return False, (
            "cupy is not installed; install the GPU extra "
            "(pip install 'surgelab[gpu]', i.e. cupy-cuda12x) on a machine with an "
            "NVIDIA GPU"
        )
    try:
        import cupy

        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # driver missing / broken install: all mean "no usable device"
        return False, (
            f"cupy is installed but cannot reach a CUDA device ({type(exc).__name__}: {exc})"
        )
    if n == 0:
        return False, "cupy is installed but no CUDA device is visible (CUDA_VISIBLE_DEVICES?)"
    return True, f"{n} CUDA device(s) visible to cupy"


def has_cuda() -> bool:
    """True when the cuda backend can run (cupy installed and at least one device)."""
    return cuda_status()[0]


def available() -> dict[str, tuple[bool, str]]:
    """Every concrete backend with ``(usable, reason)``."""
    return {
        "reference": (True, "numpy (always available)"),
        "numba": numba_status(),
        "cuda": cuda_status(),
    }


def resolve(backend: str) -> str:
    """The concrete backend for ``backend``; ``auto`` is cuda if usable, else numba, else reference.

    Raises:
      ValueError: unknown name.  RuntimeError: a named backend that cannot run here (the
      message says what is missing).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got backend={backend!r}")
    if backend == "auto":
        if has_cuda():
            return "cuda"
        return "numba" if has_numba() else "reference"
    if backend == "reference":
        return backend  # numpy: nothing to probe (no numba / cupy import)
    ok, why = numba_status() if backend == "numba" else cuda_status()
    if not ok:
        raise RuntimeError(f"backend={backend!r} is not usable here: {why}")
    return backend
