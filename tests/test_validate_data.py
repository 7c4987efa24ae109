"""Data location, checksums and loaders (validate.data, which only reads); fetching a missing
dataset and the decoded-array cache (surgelab.datasets, the app layer's files).

Synthetic files in each format are written to tmp_path; the real datasets in ../shared/data
are checked when present (the ``shared_data`` fixture skips otherwise). The network is never
touched: downloads go through a monkeypatched ``surgelab.datasets.FETCH``.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surgelab import datasets as ds
from surgelab.cli import main
from validate import data as vd
from validate import workloads
from validate.data import ChecksumError, DataFile, DataNotFoundError


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads the user's real cache, $SURGELAB_DATA or the checkout's shared/data."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(vd.ENV_VAR, raising=False)
    monkeypatch.delenv("SURGELAB_DOWNLOAD", raising=False)
    monkeypatch.setattr(vd, "CHECKOUT_DATA", tmp_path / "no-checkout-data")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _register(monkeypatch, name: str, files: dict[str, bytes], url: str | None = None):
    """Point dataset ``name`` at these bytes' checksums (the loaders only accept known files)."""
    monkeypatch.setitem(
        vd.DATASETS,
        name,
        tuple(DataFile(n, _sha(b), None if url is None else url + n) for n, b in files.items()),
    )


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, b in files.items():
        (folder / n).write_bytes(b)
    return folder


# ----------------------------------------------------------------------------- IDX


def test_parse_idx_roundtrip_and_header():
    """IDX: magic type 0x08 (uint8), ndim, big-endian sizes; the array comes back unchanged."""
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(vd.parse_idx(_idx(a)), a)
    be = bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big") + np.array([1, -2], ">i4").tobytes()
    assert vd.parse_idx(be).tolist() == [1, -2]


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "payload"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated"),
    ],
)
def test_parse_idx_rejects_malformed(raw, match):
    with pytest.raises(ValueError, match=match):
        vd.parse_idx(raw)


def _fmnist_files(n: int = 6) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28))
    y = np.arange(n) % 10
    return {
        "train-images-idx3-ubyte.gz": gzip.compress(_idx(x)),
        "train-labels-idx1-ubyte.gz": gzip.compress(_idx(y)),
        "t10k-images-idx3-ubyte.gz": gzip.compress(_idx(x[:2])),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(_idx(y[:2])),
    }


def test_fashion_mnist_loader_on_synthetic_files(tmp_path, monkeypatch):
    files = _fmnist_files()
    _register(monkeypatch, "fashion-mnist", files)
    _write(tmp_path / "fashion-mnist", files)
    a = vd.load_fashion_mnist(tmp_path)
    assert a["x_train"].shape == (6, 28, 28) and a["x_train"].dtype == np.uint8
    assert a["y_train"].dtype == np.int64 and a["y_train"].tolist() == [0, 1, 2, 3, 4, 5]
    assert a["x_test"].shape == (2, 28, 28)


# ----------------------------------------------------------------------------- locations


def test_missing_dataset_error_names_paths_and_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv(vd.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError) as e:
        vd.find_dataset("tinyshakespeare")
    msg = str(e.value)
    for part in (
        "tinyshakespeare",
        str(tmp_path / "env"),
        str(tmp_path / "xdg" / "surgelab"),
        "--data-dir",
        "SURGELAB_DATA",
        "download",
    ):
        assert part in msg


def test_explicit_data_dir_is_used_alone(tmp_path, monkeypatch):
    """A data_dir that lacks the dataset is an error naming that folder, even when
    $SURGELAB_DATA and the cache hold a good copy (no silent fallback)."""
    files = {"input.txt": b"to be or not to be\n" * 10}
    _register(monkeypatch, "tinyshakespeare", files)
    env = tmp_path / "env"
    _write(env / "tinyshakespeare", files)
    _write(vd.cache_dir() / "tinyshakespeare", files)
    monkeypatch.setenv(vd.ENV_VAR, str(env))
    (tmp_path / "flag").mkdir()
    with pytest.raises(DataNotFoundError) as e:
        vd.find_dataset("tinyshakespeare", tmp_path / "flag")
    msg = str(e.value)
    assert str(tmp_path / "flag") in msg and str(env) not in msg
    assert vd.find_dataset("tinyshakespeare") == env / "tinyshakespeare"


def test_resolution_order_flag_env_cache(tmp_path, monkeypatch):
    """The explicit folder is searched alone; without it $SURGELAB_DATA beats the user cache."""
    files = {"input.txt": b"to be or not to be\n" * 10}
    _register(monkeypatch, "tinyshakespeare", files)
    flag, env, cache = tmp_path / "flag", tmp_path / "env", vd.cache_dir()
    assert vd.resolve_data_dir(flag) == [flag]
    monkeypatch.setenv(vd.ENV_VAR, str(env))
    assert vd.resolve_data_dir(flag) == [flag]
    assert vd.resolve_data_dir() == [env, cache]
    for root in (flag, env, cache):
        _write(root / "tinyshakespeare", files)
    assert vd.find_dataset("tinyshakespeare", flag) == flag / "tinyshakespeare"
    assert vd.find_dataset("tinyshakespeare") == env / "tinyshakespeare"
    monkeypatch.delenv(vd.ENV_VAR)
    assert vd.find_dataset("tinyshakespeare") == cache / "tinyshakespeare"
    # data_dir may also point at the dataset folder itself
    assert vd.find_dataset("tinyshakespeare", flag / "tinyshakespeare") == flag / "tinyshakespeare"


def test_checkout_shared_data_is_searched_last(tmp_path, monkeypatch):
    """A development checkout's ../shared/data is the last folder searched, after the cache."""
    files = {"input.txt": b"to be or not to be\n" * 10}
    _register(monkeypatch, "tinyshakespeare", files)
    shared = _write(tmp_path / "shared-data" / "tinyshakespeare", files).parent
    monkeypatch.setattr(vd, "CHECKOUT_DATA", shared)
    assert vd.resolve_data_dir() == [vd.cache_dir(), shared]
    assert vd.find_dataset("tinyshakespeare") == shared / "tinyshakespeare"
    _write(vd.cache_dir() / "tinyshakespeare", files)
    assert vd.find_dataset("tinyshakespeare") == vd.cache_dir() / "tinyshakespeare"


def test_download_is_an_explicit_argument(tmp_path, monkeypatch):
    """Only ensure(download=True) fetches a missing dataset; $SURGELAB_DOWNLOAD in the
    environment reaches neither the library nor ensure (the app layer passes a bool)."""
    good = {"input.txt": b"all the world's a stage\n"}
    _register(monkeypatch, "tinyshakespeare", good, url="https://example.invalid/")
    monkeypatch.setattr(ds, "FETCH", lambda url, dest: dest.write_bytes(good["input.txt"]))
    monkeypatch.setenv("SURGELAB_DOWNLOAD", "1")
    with pytest.raises(DataNotFoundError, match="--download"):
        vd.find_dataset("tinyshakespeare")
    with pytest.raises(DataNotFoundError, match="--download"):
        ds.ensure(["tinyshakespeare"])
    assert not vd.cache_dir().exists()
    got = ds.ensure(["tinyshakespeare"], download=True)
    assert got == {"tinyshakespeare": vd.cache_dir() / "tinyshakespeare"}


def test_library_loaders_take_no_download_argument():
    """The library only reads: no loader or finder can be asked to fetch."""
    for fn in (
        vd.find_dataset,
        vd.load_fashion_mnist,
        vd.load_tiny_imagenet,
        vd.load_eli5,
        vd.load_shakespeare,
    ):
        params = inspect.signature(fn).parameters
        assert not any("download" in p for p in params), fn.__name__
    assert not hasattr(vd, "download") and not hasattr(vd, "FETCH")


def test_explicit_data_dir_is_never_downloaded_into_the_cache(tmp_path, monkeypatch):
    """--data-dir is used alone: with --download too, a folder without the dataset is an
    error (the cache it would go to is not searched), and nothing is fetched."""
    _register(monkeypatch, "tinyshakespeare", {"input.txt": b"x\n"}, url="https://x.invalid/")
    monkeypatch.setattr(ds, "FETCH", lambda url, dest: pytest.fail("must not fetch"))
    (tmp_path / "flag").mkdir()
    with pytest.raises(DataNotFoundError, match="searched only without --data-dir"):
        ds.ensure(["tinyshakespeare"], tmp_path / "flag", download=True)
    assert not vd.cache_dir().exists()


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    files = {"input.txt": b"hello world\n"}
    _register(monkeypatch, "tinyshakespeare", files)
    _write(tmp_path / "tinyshakespeare", {"input.txt": b"hello w0rld\n"})
    with pytest.raises(ChecksumError, match=r"checksum mismatch.*input\.txt"):
        vd.load_shakespeare(tmp_path)


def test_unknown_dataset_is_value_error():
    with pytest.raises(ValueError, match="unknown dataset"):
        vd.find_dataset("imagenet-21k")


# ----------------------------------------------------------------------------- download


def test_download_verifies_then_renames(tmp_path, monkeypatch):
    good = {"input.txt": b"the quick brown fox\n"}
    _register(monkeypatch, "tinyshakespeare", good, url="https://example.invalid/")
    calls = []

    def fetch(url: str, dest: Path) -> None:
        calls.append((url, dest.parent, dest.name))
        dest.write_bytes(good["input.txt"])

    monkeypatch.setattr(ds, "FETCH", fetch)
    with pytest.raises(DataNotFoundError):
        ds.ensure(["tinyshakespeare"])  # download not allowed: error
    root = ds.ensure(["tinyshakespeare"], download=True)["tinyshakespeare"]
    assert root == vd.cache_dir() / "tinyshakespeare"
    # fetched into a hidden temporary file beside the target, then renamed
    assert [(u, d) for u, d, _ in calls] == [("https://example.invalid/input.txt", root)]
    assert calls[0][2].startswith(".input.txt.") and calls[0][2].endswith(".part")
    assert sorted(p.name for p in root.iterdir()) == ["input.txt"]
    assert (root / "input.txt").read_bytes() == good["input.txt"]
    assert vd.load_shakespeare()["train"].tobytes() == good["input.txt"][: int(0.9 * 20)]
    ds.download_dataset("tinyshakespeare")  # present and valid: nothing fetched
    ds.ensure(["tinyshakespeare"], download=True)  # found: nothing fetched
    assert len(calls) == 1


def test_corrupt_download_leaves_nothing(tmp_path, monkeypatch):
    _register(monkeypatch, "tinyshakespeare", {"input.txt": b"real\n"}, url="https://x.invalid/")
    monkeypatch.setattr(ds, "FETCH", lambda url, dest: dest.write_bytes(b"fake\n"))
    with pytest.raises(ChecksumError):
        ds.download_dataset("tinyshakespeare", tmp_path)
    assert list((tmp_path / "tinyshakespeare").iterdir()) == []


def test_a_corrupt_cached_file_is_fetched_again(tmp_path, monkeypatch):
    good = {"input.txt": b"real data\n"}
    _register(monkeypatch, "tinyshakespeare", good, url="https://x.invalid/")
    _write(tmp_path / "tinyshakespeare", {"input.txt": b"truncat"})
    monkeypatch.setattr(ds, "FETCH", lambda url, dest: dest.write_bytes(good["input.txt"]))
    root = ds.download_dataset("tinyshakespeare", tmp_path)
    assert (root / "input.txt").read_bytes() == good["input.txt"]


def test_network_failure_is_a_one_line_error_and_leaves_nothing(tmp_path, monkeypatch):
    _register(monkeypatch, "tinyshakespeare", {"input.txt": b"real\n"}, url="https://x.invalid/")

    def offline(url, dest):
        dest.write_bytes(b"re")  # a partial file, then the connection drops
        raise OSError("Network is unreachable")

    monkeypatch.setattr(ds, "FETCH", offline)
    with pytest.raises(DataNotFoundError, match=r"could not fetch https://x\.invalid/input\.txt"):
        ds.download_dataset("tinyshakespeare", tmp_path)
    assert list((tmp_path / "tinyshakespeare").iterdir()) == []


def test_subset_without_url_cannot_download(monkeypatch):
    monkeypatch.setattr(ds, "FETCH", lambda url, dest: pytest.fail("must not fetch"))
    with pytest.raises(DataNotFoundError, match="no official download URL"):
        ds.download_dataset("tiny-imagenet-subset")
    with pytest.raises(DataNotFoundError, match="no official download URL"):
        ds.ensure(["tiny-imagenet-subset"], download=True)


def test_bench_download_fetches_before_the_workload_loads(tmp_path, monkeypatch, capsys):
    """``surgelab validate bench --download``: the app layer fetches the missing corpus into the
    user cache (the config check fetches nothing), then the library reads it from there."""
    rng = np.random.default_rng(0)
    text = rng.integers(97, 123, 4000).astype(np.uint8).tobytes()
    _register(monkeypatch, "tinyshakespeare", {"input.txt": text}, url="https://x.invalid/")
    calls = []

    def fetch(url, dest):
        calls.append(url)
        dest.write_bytes(text)

    monkeypatch.setattr(ds, "FETCH", fetch)
    workloads._parsed.cache_clear()
    argv = ["validate", "bench", "--workload", "shakespeare-gpt", "--lrs", "0.001"]
    argv += ["--seeds", "1", "--max-steps", "2", "--batch-size", "4"]
    assert main([*argv, "--out", str(tmp_path / "no")]) == 2  # no --download: one-line error
    assert "--data-dir" in capsys.readouterr().err and calls == []
    assert main([*argv, "--download", "--out", str(tmp_path / "b")]) == 0
    assert calls == ["https://x.invalid/input.txt"]
    assert (vd.cache_dir() / "tinyshakespeare" / "input.txt").read_bytes() == text
    workloads._parsed.cache_clear()


# ----------------------------------------------------------------------------- Tiny-ImageNet


def _jpeg(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tiny_zip() -> bytes:
    """2 classes × 2 train images and 2 val images; one train image is grayscale (mode L)."""
    p = vd.TINY_PREFIX
    wnids = ["n001", "n002"]
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(p + "wnids.txt", "\n".join(wnids) + "\n")
        for w in wnids:
            for k in range(2):
                if w == "n002" and k == 1:
                    img = _jpeg(np.full((64, 64), 200, np.uint8), "L")
                else:
                    img = _jpeg(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8), "RGB")
                z.writestr(f"{p}train/{w}/images/{w}_{k}.JPEG", img)
        ann = ""
        for i, w in enumerate(wnids[::-1]):
            z.writestr(
                f"{p}val/images/val_{i}.JPEG",
                _jpeg(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8), "RGB"),
            )
            ann += f"val_{i}.JPEG\t{w}\t0\t0\t63\t63\n"
        z.writestr(p + "val/val_annotations.txt", ann)
    return buf.getvalue()


def test_tiny_imagenet_loader_grayscale_and_cache(tmp_path, monkeypatch):
    files = {"tiny-imagenet-200-subset.zip": _tiny_zip()}
    _register(monkeypatch, "tiny-imagenet-subset", files)
    _write(tmp_path / "d" / "tiny-imagenet-subset", files)
    a = vd.load_tiny_imagenet(tmp_path / "d")
    assert a["x_train"].shape == (4, 64, 64, 3) and a["x_train"].dtype == np.uint8
    assert a["y_train"].tolist() == [0, 0, 1, 1]
    assert a["y_val"].tolist() == [1, 0]
    gray = a["x_train"][3]  # n002_1, stored as mode L
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert abs(int(gray.mean()) - 200) <= 2  # JPEG of a flat image decodes to ~the same level
    assert not (tmp_path / "xdg").exists()  # without a cache object the library writes nothing
    # the app layer's disk cache: five arrays under <cache>/decoded/<key>/
    cache = ds.disk_cache()
    b = vd.load_tiny_imagenet(tmp_path / "d", cache=cache)
    key = vd.tiny_imagenet_cache_key()
    folder = vd.cache_dir() / "decoded" / key
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.npy" for n in vd.TINY_ARRAYS)
    # the next load comes from the cache: decoding again would fail
    monkeypatch.setattr(
        vd,
        "decode_tiny_imagenet_zip",
        lambda *a, **k: pytest.fail("decoded twice despite the cache"),
    )
    c = vd.load_tiny_imagenet(tmp_path / "d", cache=cache)
    for n in vd.TINY_ARRAYS:
        np.testing.assert_array_equal(a[n], b[n])
        np.testing.assert_array_equal(a[n], c[n])


def test_tiny_imagenet_incomplete_cache_entry_is_decoded_again(tmp_path, monkeypatch):
    """An entry missing an array (an interrupted earlier write) is rebuilt, not returned."""
    files = {"tiny-imagenet-200-subset.zip": _tiny_zip()}
    _register(monkeypatch, "tiny-imagenet-subset", files)
    _write(tmp_path / "d" / "tiny-imagenet-subset", files)
    cache = ds.disk_cache()
    cache.put(vd.tiny_imagenet_cache_key(), {"x_train": np.zeros((1, 2), np.uint8)})
    a = vd.load_tiny_imagenet(tmp_path / "d", cache=cache)
    assert a["x_train"].shape == (4, 64, 64, 3)
    assert cache.get(vd.tiny_imagenet_cache_key())["x_train"].shape == (4, 64, 64, 3)


def test_disk_cache_is_atomic_and_forgiving(tmp_path):
    c = ds.DiskCache(tmp_path / "decoded")
    assert c.get("k") is None
    c.put("k", {"a": np.arange(3), "b": np.array(["x", "yz"])})
    got = c.get("k")
    assert got["a"].tolist() == [0, 1, 2] and got["b"].tolist() == ["x", "yz"]
    assert sorted(p.name for p in (tmp_path / "decoded" / "k").iterdir()) == ["a.npy", "b.npy"]
    (tmp_path / "decoded" / "k" / "a.npy").write_bytes(b"\x93NUMPY garbage")
    assert c.get("k") is None  # a damaged entry reads as absent
    (tmp_path / "ro").write_text("a file where the cache folder should be")
    ds.DiskCache(tmp_path / "ro").put("k", {"a": np.arange(3)})  # cannot write: no error


def test_workloads_use_the_cache_given_by_the_app_layer(tmp_path, monkeypatch):
    """The built-in Tiny-ImageNet workload decodes through the cache set by decoded_cache."""
    files = {"tiny-imagenet-200-subset.zip": _tiny_zip()}
    _register(monkeypatch, "tiny-imagenet-subset", files)
    _write(tmp_path / "d" / "tiny-imagenet-subset", files)
    seen = []

    class Spy:
        def get(self, key):
            seen.append(("get", key))
            return None

        def put(self, key, arrays):
            seen.append(("put", key))

    workloads._parsed.cache_clear()
    with workloads.decoded_cache(Spy()):
        workloads._cached_load("tiny-imagenet-subset", str(tmp_path / "d"))
    workloads._parsed.cache_clear()
    key = vd.tiny_imagenet_cache_key()
    assert seen == [("get", key), ("put", key)]


# ----------------------------------------------------------------------------- text


def test_eli5_loader_documents_and_split(tmp_path, monkeypatch):
    """Title, selftext and answers make one UTF-8 document per question; split by question."""

    def q(i: int) -> dict:
        return {
            "q_id": str(i),
            "title": f"why {i}?",
            "selftext": "" if i % 2 else "body é",
            "answers": {"a_id": ["a", "b"], "text": [f"ans{i}a", f"ans{i}b"], "score": [1, 2]},
        }

    files = {
        "eli5-category-test.json.gz": gzip.compress(json.dumps([q(0), q(1)]).encode()),
        "eli5-category-validation-2.json.gz": gzip.compress(
            json.dumps([q(i) for i in range(2, 12)]).encode()
        ),
    }
    _register(monkeypatch, "eli5-category", files)
    _write(tmp_path / "eli5-category", files)
    a = vd.load_eli5(tmp_path)
    assert a["train"].dtype == np.uint8
    train, test = a["train"].tobytes().decode(), a["test"].tobytes().decode()
    assert train.startswith("why 0?\nbody é\nans0a\nans0b\n\nwhy 1?\nans1a\nans1b\n\n")
    assert test == "why 11?\nans11a\nans11b\n\n"  # last 10% of validation-2's 10 questions
    assert "why 10?" in train


def test_shakespeare_split(tmp_path, monkeypatch):
    text = bytes(range(32, 127)) * 3
    _register(monkeypatch, "tinyshakespeare", {"input.txt": text})
    _write(tmp_path / "tinyshakespeare", {"input.txt": text})
    a = vd.load_shakespeare(tmp_path)
    assert a["train"].tobytes() + a["test"].tobytes() == text
    assert a["train"].size == int(0.9 * len(text))


# ----------------------------------------------------------------------------- real data


def test_real_checksums_match_shipped_sha256sums(shared_data):
    """The SHA-256s in code equal each SHA256SUMS file, and the files verify against them."""
    for name, files in vd.DATASETS.items():
        sums = dict(
            reversed(line.split())
            for line in (shared_data / name / "SHA256SUMS").read_text().splitlines()
            if line
        )
        assert sums == {f.name: f.sha256 for f in files}
        assert vd.find_dataset(name, shared_data) == shared_data / name


def test_real_fashion_mnist(shared_data):
    a = vd.load_fashion_mnist(shared_data)
    assert a["x_train"].shape == (60_000, 28, 28) and a["x_train"].dtype == np.uint8
    assert a["x_test"].shape == (10_000, 28, 28)
    assert np.bincount(a["y_train"]).tolist() == [6000] * 10
    assert np.bincount(a["y_test"]).tolist() == [1000] * 10


def test_real_tiny_imagenet_listing_and_a_few_decodes(shared_data):
    """Index of the zip: 200 classes, 20k train, 10k val; a few images decode to 64×64 RGB."""
    path = shared_data / "tiny-imagenet-subset" / "tiny-imagenet-200-subset.zip"
    with zipfile.ZipFile(path) as z:
        wnids, train, val = vd.tiny_imagenet_index(z)
        assert len(wnids) == 200 and len(train) == 20_000 and len(val) == 10_000
        assert np.bincount([c for _, c in train]).tolist() == [100] * 200
        assert np.bincount([c for _, c in val]).tolist() == [50] * 200
        gray = next(m for m, _ in train[:2000] if Image.open(io.BytesIO(z.read(m))).mode == "L")
        for m in [train[0][0], val[0][0], gray]:
            im = vd.decode_jpeg_rgb(z.read(m))
            assert im.shape == (64, 64, 3) and im.dtype == np.uint8


@pytest.mark.slow
def test_real_tiny_imagenet_full_decode(shared_data):
    a = vd.load_tiny_imagenet(shared_data)
    assert a["x_train"].shape == (20_000, 64, 64, 3) and a["x_val"].shape == (10_000, 64, 64, 3)


def test_real_text_corpora(shared_data):
    s = vd.load_shakespeare(shared_data)
    assert s["train"].size + s["test"].size == 1_115_394
    e = vd.load_eli5(shared_data)
    n = e["train"].size + e["test"].size
    # ~13.7 M characters of title+selftext+answers (SOURCE.md), a little more as UTF-8 bytes
    # with separators
    assert 13.7e6 < n < 14.5e6
    assert 0.02 < e["test"].size / n < 0.06  # 10% of validation-2 (~31% of the corpus)
