"""Shared pytest setup: hypothesis profiles, the gpu / slow / browser markers, data locations.

Profiles: ``ci`` (deterministic, no deadline; the default, and what CI uses) and ``dev``
(random, fewer examples). Choose with ``HYPOTHESIS_PROFILE=dev``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=15)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def _has_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "no GPU"
        return False


def pytest_collection_modifyitems(config, items):
    gpu = None
    for item in items:
        if "gpu" in item.keywords:
            if gpu is None:
                gpu = _has_gpu()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible to cupy"))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never touch the network: downloads are off (restored after each test, so a test
    that passes ``--download`` cannot leak it) and the app layer's fetcher
    (``surgelab.datasets.FETCH``, the only one) refuses."""
    monkeypatch.setenv("SURGELAB_DOWNLOAD", "0")
    from surgelab import datasets

    def refuse(url, dest):
        raise AssertionError(f"a test tried to download {url}; tests never use the network")

    monkeypatch.setattr(datasets, "FETCH", refuse)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (real datasets); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present (only tests that need it skip)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nvcc() -> str:
    path = shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
    )
    if path is None:
        pytest.skip("nvcc not found on PATH or in /usr/local/cuda/bin")
    return path
