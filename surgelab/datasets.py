"""Dataset files the app layer writes: fetching a missing dataset, and the decoded-array cache.

The library (:mod:`validate.data`) only searches and reads; the official URLs and SHA-256s are
its :data:`validate.data.DATASETS`. Commands that load real data call :func:`ensure_workload`
in their run function, before any worker starts (sweep workers are separate processes: they
find what the parent fetched in the user cache):

* a dataset found where the library looks (``--data-dir`` alone when given) is used as it is;
* a missing one is fetched into the user cache (:func:`validate.data.cache_dir`) when
  ``download`` is true and no ``--data-dir`` was given: each file goes to a temporary file in
  the destination folder, is checked against its official SHA-256, and only then renamed into
  place, so an interrupted or corrupt download never leaves a file that looks valid;
* otherwise the library's :class:`validate.data.DataNotFoundError` (naming ``--data-dir`` and
  ``--download``) stands.

:class:`DiskCache` keeps decoded arrays (the Tiny-ImageNet JPEGs, ~1 min to decode) as
``.npy`` under ``<cache>/decoded/<key>/``; pass it to
:func:`validate.workloads.decoded_cache` or :func:`validate.sweep.run_sweep`.
Tests never touch the network: they replace :data:`FETCH`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from validate import data as vdata


def _default_fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        while block := r.read(1 << 20):
            f.write(block)


#: The function :func:`download_dataset` uses to fetch ``url`` into a local file (tests replace it).
FETCH: Callable[[str, Path], None] = _default_fetch


def download_dataset(name: str, dest_root: str | os.PathLike | None = None) -> Path:
    """Fetch dataset ``name`` from its official URLs into ``dest_root/name`` (default: the user
    cache); files already there and valid are kept. Returns the dataset folder.

    Raises:
      DataNotFoundError: the dataset has no official URL (a subset built for this project).
      ChecksumError: a fetched file is not the official one (nothing is kept).
    """
    files = vdata.dataset_files(name)
    no_url = [f.name for f in files if f.url is None]
    if no_url:
        raise vdata.DataNotFoundError(
            f"dataset {name!r} has no official download URL for {no_url} (it is a subset built "
            "for this project); copy the folder from the project's shared data and pass "
            f"--data-dir or set {vdata.ENV_VAR}"
        )
    dest = Path(dest_root if dest_root is not None else vdata.cache_dir()) / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = dest / f.name
        if target.is_file():
            try:
                vdata.verify_file(target, f.sha256)
                continue
            except vdata.ChecksumError:
                target.unlink()
        fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".part", dir=dest)
        os.close(fd)
        try:
            try:
                FETCH(str(f.url), Path(tmp))
            except OSError as exc:  # URLError, timeouts, a full disk: one line, not a traceback
                raise vdata.DataNotFoundError(
                    f"could not fetch {f.url} ({exc}); check the network, or copy dataset "
                    f"{name!r} and pass --data-dir"
                ) from None
            vdata.verify_file(tmp, f.sha256)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return dest


def ensure(
    names: Iterable[str], data_dir: str | os.PathLike | None = None, *, download: bool = False
) -> dict[str, Path]:
    """Each dataset's folder (checksums verified), fetching a missing one into the user cache
    when ``download`` is true and no ``data_dir`` is given (an explicit folder is used alone).

    Raises the library's ``DataNotFoundError`` / ``ChecksumError`` otherwise.
    """
    out: dict[str, Path] = {}
    for name in names:
        try:
            out[name] = vdata.find_dataset(name, data_dir)
        except vdata.DataNotFoundError as exc:
            if not download:
                raise
            if data_dir is not None:
                raise vdata.DataNotFoundError(
                    f"{exc}; --download fetches into the user cache, which is searched only "
                    "without --data-dir"
                ) from None
            out[name] = vdata.find_dataset(name, download_dataset(name))
    return out


def ensure_workload(
    workload: str, size: str, data_dir: str | os.PathLike | None, download: bool
) -> dict[str, Path]:
    """:func:`ensure` for the datasets a registered workload reads (``Workload.datasets``)."""
    from validate.workload import get_workload

    return ensure(get_workload(workload, size=size).datasets, data_dir, download=download)


@dataclass(frozen=True)
class DiskCache:
    """Decoded arrays as ``<root>/<key>/<name>.npy`` (a :class:`validate.data.ArrayCache`).

    Each array is written to a temporary file and renamed, so a reader never sees half a file;
    a folder that cannot be written (read-only cache) only means decoding again next time.
    Picklable: sweep workers receive it.
    """

    root: Path

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        folder = self.root / key
        if not folder.is_dir():
            return None
        try:
            return {
                p.name[: -len(".npy")]: np.load(p)
                for p in sorted(folder.glob("*.npy"))
                if not p.name.startswith(".")
            } or None
        except (OSError, ValueError):  # a damaged entry: decode again
            return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        folder = self.root / key
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n, a in arrays.items():
                tmp = folder / f".{n}.tmp.npy"
                np.save(tmp, a)
                os.replace(tmp, folder / f"{n}.npy")
        except OSError:  # read-only cache: decoding again next time is the only cost
            pass


def disk_cache() -> DiskCache:
    """The decoded-array cache of this user: ``<user cache>/decoded``."""
    return DiskCache(vdata.cache_dir() / "decoded")


@contextlib.contextmanager
def decoded_arrays() -> Iterator[DiskCache]:
    """Within this block the built-in workloads keep decoded arrays in :func:`disk_cache`."""
    from validate.workloads import decoded_cache

    cache = disk_cache()
    with decoded_cache(cache):
        yield cache
