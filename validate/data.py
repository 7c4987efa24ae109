"""Real datasets: where they live, checking them, and decoding them to arrays.

Where a dataset is looked for:

* with an explicit ``data_dir`` (the CLI's ``--data-dir``): there and nowhere else — a folder
  that lacks the dataset is an error, never a silent fallback to another copy;
* otherwise, first hit wins (every miss is listed in the error): the ``SURGELAB_DATA``
  environment variable (several folders separated by ``os.pathsep``), the user cache
  ``$XDG_CACHE_HOME/surgelab`` (default ``~/.cache/surgelab``), and for a development checkout
  ``shared/data`` beside the repository (``<repo>/../shared/data``) when that folder exists.

In each folder ``root`` a dataset ``name`` is found either as ``root/name/<files>`` (the layout
of ``../shared/data``) or as ``root/<files>`` (``data_dir`` pointing at the dataset folder
itself). Every file is checked against its official SHA-256 (:data:`DATASETS`, identical to the
``SHA256SUMS`` shipped with the data) before it is parsed; a mismatch is an error, never a
silent fallback.

This module only reads. Fetching a missing dataset (the command line's ``--download``, into
the user cache) is the app layer's job (:mod:`surgelab.datasets`), using the official URLs
and checksums of :data:`DATASETS`. Decoded arrays (the Tiny-ImageNet JPEGs) can be kept
between runs by passing a cache object (:class:`ArrayCache`) to :func:`load_tiny_imagenet`;
without one the loader decodes every time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

#: Environment variable naming extra data folders.
ENV_VAR = "SURGELAB_DATA"
#: A development checkout's data: ``shared/data`` beside the repository root.
CHECKOUT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its name, official SHA-256 and official URL (None: no download)."""

    name: str
    sha256: str
    url: str | None


_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_ELI5 = "https://jingshensn2.github.io/eli5c/datasets/"

#: The datasets this package reads. SHA-256 values are those of ../shared/data/*/SHA256SUMS
#: (for Fashion-MNIST and tinyshakespeare also the published official checksums).
DATASETS: dict[str, tuple[DataFile, ...]] = {
    "fashion-mnist": (
        DataFile(
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            _FMNIST + "train-images-idx3-ubyte.gz",
        ),
        DataFile(
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            _FMNIST + "train-labels-idx1-ubyte.gz",
        ),
        DataFile(
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            _FMNIST + "t10k-images-idx3-ubyte.gz",
        ),
        DataFile(
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            _FMNIST + "t10k-labels-idx1-ubyte.gz",
        ),
    ),
    # A subset built for this project (SOURCE.md there): no official URL serves these bytes.
    "tiny-imagenet-subset": (
        DataFile(
            "tiny-imagenet-200-subset.zip",
            "a7252b37e789a5c0e907929f17acb08b0696438ec2280463b3921b08b90abd27",
            None,
        ),
    ),
    "eli5-category": (
        DataFile(
            "eli5-category-test.json.gz",
            "a2f30aa666e1570adc34315de286a67a20eaede4ba82a040521a8571c05d4d7b",
            _ELI5 + "eli5-category-test.json.gz",
        ),
        DataFile(
            "eli5-category-validation-2.json.gz",
            "309b7d49de11494c7c7179980f710cbcb5c9a6ebed6f0a30fe2e02dca4f10009",
            _ELI5 + "eli5-category-validation-2.json.gz",
        ),
    ),
    "tinyshakespeare": (
        DataFile(
            "input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            "https://raw.githubusercontent.com/karpathy/char-rnn/"
            "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
        ),
    ),
}


class DataNotFoundError(FileNotFoundError):
    """A dataset is in none of the searched folders."""


class ChecksumError(ValueError):
    """A data file's SHA-256 differs from the official one."""


# ----------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/surgelab`` or ``~/.cache/surgelab``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "surgelab"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for datasets: ``data_dir`` alone when given, else
    ``$SURGELAB_DATA``, the user cache and a checkout's ``../shared/data``, in that order.

    Examples:
      >>> resolve_data_dir("/tmp/x")
      [PosixPath('/tmp/x')]
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    out: list[Path] = []
    env = os.environ.get(ENV_VAR, "")
    out += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    out.append(cache_dir())
    if CHECKOUT_DATA.is_dir():
        out.append(CHECKOUT_DATA)
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def dataset_files(name: str) -> tuple[DataFile, ...]:
    """The files of dataset ``name`` (:data:`DATASETS`); ``ValueError`` for an unknown name.

    Examples:
      >>> [f.name for f in dataset_files("tinyshakespeare")]
      ['input.txt']
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def verify_file(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``sha256(path) == expected`` (memoised per mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    got = _VERIFIED.get(key) or sha256_file(p)
    if got != expected:
        raise ChecksumError(
            f"checksum mismatch for {p}: sha256 {got}, expected {expected}. The file is "
            "corrupt, truncated or a different version; delete it and fetch the official "
            "file again (--download), or point --data-dir at a good copy"
        )
    _VERIFIED[key] = got


def find_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> Path:
    """The folder holding every file of dataset ``name``, checksums verified (``verify``).

    Searches :func:`resolve_data_dir` (``data_dir`` alone when given) and fetches nothing.

    Raises:
      DataNotFoundError: naming every folder searched and the fixes.
      ChecksumError: a file is there but is not the official one.

    Examples:
      >>> find_dataset("tinyshakespeare", "/nonexistent")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      validate.data.DataNotFoundError: '/nonexistent' does not hold dataset 'tinyshakespeare' ...
    """
    files = dataset_files(name)
    roots = resolve_data_dir(data_dir)
    searched: list[Path] = []
    for root in roots:
        for cand in (root / name, root):
            searched.append(cand)
            if all((cand / f.name).is_file() for f in files):
                if verify:
                    for f in files:
                        verify_file(cand / f.name, f.sha256)
                return cand
    needs = ", ".join(f.name for f in files)
    if data_dir is not None:
        raise DataNotFoundError(
            f"{str(data_dir)!r} does not hold dataset {name!r} (looked for {needs} in "
            f"{', '.join(str(s) for s in searched)}); give the folder that holds {name}/, "
            f"or leave the data folder out to search ${ENV_VAR} and the user cache"
        )
    raise DataNotFoundError(
        f"dataset {name!r} not found in {[str(s) for s in searched]} (needs {needs}); "
        f"pass --data-dir DIR (a folder holding {name}/), set {ENV_VAR}=DIR, or allow "
        f"download into the user cache (--download)"
    )


# ----------------------------------------------------------------------------- decoded cache


class ArrayCache(Protocol):
    """Where decoded arrays may be kept between runs (the app layer supplies one; the library
    never writes files itself).

    ``get(key)`` returns the arrays stored under ``key`` (or None: absent or unreadable);
    ``put(key, arrays)`` stores them (best effort: a cache that cannot write just forgets).
    """

    def get(self, key: str) -> dict[str, np.ndarray] | None: ...

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None: ...


# ----------------------------------------------------------------------------- parsers

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST format): magic 0x0000TTNN (type TT, NN dims), big-endian
    uint32 sizes, then the row-major data.

    Examples:
      >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
      [7, 9]
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("not an IDX file: the first two magic bytes must be zero")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"IDX type code {code:#04x} is not one of {sorted(_IDX_DTYPES)}")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"IDX header truncated or has {ndim} dimensions")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dt = np.dtype(_IDX_DTYPES[code])
    n = int(np.prod(shape))
    off = 4 + 4 * ndim
    if len(raw) - off != n * dt.itemsize:
        raise ValueError(
            f"IDX payload holds {len(raw) - off} bytes; header shape {shape} of "
            f"{dt} needs {n * dt.itemsize}"
        )
    return np.frombuffer(raw, dt, count=n, offset=off).reshape(shape).astype(dt.newbyteorder("="))


def read_idx_gz(path: str | os.PathLike) -> np.ndarray:
    """Read a gzip-compressed IDX file."""
    with gzip.open(path, "rb") as f:
        return parse_idx(f.read())


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> dict[str, np.ndarray]:
    """Fashion-MNIST as uint8 images (N, 28, 28) and int64 labels: 60k train, 10k test."""
    root = find_dataset("fashion-mnist", data_dir, verify=verify)
    out = {
        "x_train": read_idx_gz(root / "train-images-idx3-ubyte.gz"),
        "y_train": read_idx_gz(root / "train-labels-idx1-ubyte.gz").astype(np.int64),
        "x_test": read_idx_gz(root / "t10k-images-idx3-ubyte.gz"),
        "y_test": read_idx_gz(root / "t10k-labels-idx1-ubyte.gz").astype(np.int64),
    }
    for s in ("train", "test"):
        if out[f"x_{s}"].shape[0] != out[f"y_{s}"].shape[0] or out[f"x_{s}"].ndim != 3:
            raise ValueError(
                f"Fashion-MNIST {s}: images {out[f'x_{s}'].shape} and labels "
                f"{out[f'y_{s}'].shape} do not match"
            )
    return out


TINY_PREFIX = "tiny-imagenet-200/"


def decode_jpeg_rgb(raw: bytes) -> np.ndarray:
    """Decode a JPEG to (H, W, 3) uint8 RGB; grayscale (mode L) images are converted."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def tiny_imagenet_index(
    zf: zipfile.ZipFile,
) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """(wnids, [(train member, label)], [(val member, label)]) from a tiny-imagenet-200 zip."""
    names = set(zf.namelist())
    wnids = zf.read(TINY_PREFIX + "wnids.txt").decode().split()
    cls = {w: i for i, w in enumerate(wnids)}
    train = sorted(
        (n, cls[n.split("/")[2]])
        for n in names
        if n.startswith(TINY_PREFIX + "train/") and n.endswith(".JPEG") and n.split("/")[2] in cls
    )
    val = []
    for line in zf.read(TINY_PREFIX + "val/val_annotations.txt").decode().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] in cls:
            member = TINY_PREFIX + "val/images/" + parts[0]
            if member in names:
                val.append((member, cls[parts[1]]))
    return wnids, train, val


def decode_tiny_imagenet_zip(
    path: str | os.PathLike, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Decode a tiny-imagenet-200 zip: x_* (N, 64, 64, 3) uint8 RGB, y_* int64 class ids.

    ``limit`` decodes only the first ``limit`` images of each split (for quick checks).
    """
    with zipfile.ZipFile(path) as zf:
        wnids, train, val = tiny_imagenet_index(zf)
        out: dict[str, np.ndarray] = {"wnids": np.array(wnids)}
        for split, items in (("train", train), ("val", val)):
            items = items[:limit] if limit is not None else items
            imgs = [decode_jpeg_rgb(zf.read(m)) for m, _ in items]
            if any(im.shape != imgs[0].shape for im in imgs):
                raise ValueError(f"tiny-imagenet {split}: images differ in size")
            out[f"x_{split}"] = np.stack(imgs) if imgs else np.zeros((0, 64, 64, 3), np.uint8)
            out[f"y_{split}"] = np.array([c for _, c in items], dtype=np.int64)
    return out


#: The arrays :func:`load_tiny_imagenet` returns.
TINY_ARRAYS = ("wnids", "x_train", "y_train", "x_val", "y_val")


def tiny_imagenet_cache_key() -> str:
    """The cache key of the decoded subset: the zip's official checksum (a new file, a new key)."""
    (f,) = DATASETS["tiny-imagenet-subset"]
    return f"tiny-imagenet-subset-{f.sha256[:16]}"


def load_tiny_imagenet(
    data_dir: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    cache: ArrayCache | None = None,
) -> dict[str, np.ndarray]:
    """The Tiny-ImageNet subset: x_train (20000, 64, 64, 3), x_val (10000, …) uint8, labels.

    The 30k JPEG decode takes ~1 min on one core. With ``cache`` (:class:`ArrayCache`) the
    decoded arrays are read from it under :func:`tiny_imagenet_cache_key` when it holds all of
    :data:`TINY_ARRAYS`, else decoded and handed to ``cache.put``; without one, decoded.
    """
    (f,) = DATASETS["tiny-imagenet-subset"]
    root = find_dataset("tiny-imagenet-subset", data_dir, verify=verify)
    key = tiny_imagenet_cache_key()
    if cache is not None:
        got = cache.get(key)
        if got is not None and all(n in got for n in TINY_ARRAYS):
            return {n: got[n] for n in TINY_ARRAYS}
    arrays = decode_tiny_imagenet_zip(root / f.name)
    if cache is not None:
        cache.put(key, arrays)
    return arrays


def eli5_documents(records: list[dict]) -> list[bytes]:
    """One UTF-8 document per question: title, selftext, then each answer, newline-separated."""
    docs = []
    for r in records:
        parts = [r.get("title") or "", r.get("selftext") or ""]
        parts += list((r.get("answers") or {}).get("text") or [])
        docs.append(
            ("\n".join(p.strip() for p in parts if p and p.strip()) + "\n\n").encode("utf-8")
        )
    return docs


#: ELI5 split: train = all of the test file + the first 90% of validation-2's questions;
#: held-out test = the last 10% of validation-2's questions (split by question, never inside one).
ELI5_TEST_FRACTION = 0.1


def load_eli5(
    data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> dict[str, np.ndarray]:
    """ELI5-Category as byte-level token streams: ``train`` and ``test`` uint8 arrays.

    Each question becomes ``title\\nselftext\\nanswer1\\n…\\n\\n`` in UTF-8; tokens are the raw
    bytes (vocabulary 256, no downloaded tokenizer). Split: :data:`ELI5_TEST_FRACTION`.
    """
    root = find_dataset("eli5-category", data_dir, verify=verify)
    recs = {}
    for f in DATASETS["eli5-category"]:
        with gzip.open(root / f.name, "rb") as fh:
            recs[f.name] = json.load(fh)
    a = eli5_documents(recs["eli5-category-test.json.gz"])
    b = eli5_documents(recs["eli5-category-validation-2.json.gz"])
    cut = len(b) - max(1, round(ELI5_TEST_FRACTION * len(b)))
    return {
        "train": np.frombuffer(b"".join(a + b[:cut]), np.uint8).copy(),
        "test": np.frombuffer(b"".join(b[cut:]), np.uint8).copy(),
    }


def load_shakespeare(
    data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> dict[str, np.ndarray]:
    """tinyshakespeare as bytes: first 90% ``train``, last 10% ``test`` (nanoGPT's split)."""
    root = find_dataset("tinyshakespeare", data_dir, verify=verify)
    raw = np.frombuffer((root / "input.txt").read_bytes(), np.uint8).copy()
    cut = int(0.9 * raw.size)
    return {"train": raw[:cut], "test": raw[cut:]}
