"""The built-in workloads (:data:`BUILTIN`; :mod:`validate.workload` registers them).

| name | data | model | further steps |
|---|---|---|---|
| ``synthetic-mlp`` | generated (teacher network), no files | 2-hidden-layer MLP | 10 |
| ``fmnist-cnn`` | Fashion-MNIST | 5-layer CNN (2 conv + 3 fc) | 10 (paper) |
| ``tinyimagenet-resnet18`` | Tiny-ImageNet subset | ResNet-18, GroupNorm, 64×64 stem | 50 (paper) |
| ``eli5-gpt`` | ELI5-Category, bytes | simplified DistilGPT2 | 50 (paper) |
| ``shakespeare-gpt`` | tinyshakespeare, bytes | same GPT (fallback corpus) | 50 |

Every factory takes ``size="smoke"|"paper"`` (smoke: a tiny model on a data subset so CPU runs
take seconds; paper: the scale of THEORY.md's Table 1), ``data_dir=None`` and
``download=False``; ``load_data(data_dir, device)`` uses its own ``data_dir`` argument when
given, else the factory's. ``download`` is accepted for compatibility and ignored: this
package only reads, and the app layer (:mod:`surgelab.datasets`) fetches a missing dataset
before a workload loads it. Decoded arrays are kept between runs only inside
:func:`decoded_cache` (the app layer passes its disk cache there).

The held-in evaluation subset (``Data.x_eval``) is a fixed random subset of the training set
drawn with :data:`EVAL_SEED`, the same for every run.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from validate import data as vdata
from validate.contract import Data, Workload
from validate.models import CNN5, GPT, MLP, ResNet18, n_params

#: Seed of the fixed held-in evaluation subsets (and of the smoke-size training subsets).
EVAL_SEED = 20240917

SIZES = ("smoke", "paper")


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}; got {size=}")


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; (N, C) logits or (N, T, V) sequence logits with (N, T) targets."""
    if outputs.dim() == 3:
        outputs = outputs.reshape(-1, outputs.shape[-1])
        targets = targets.reshape(-1)
    return F.cross_entropy(outputs, targets.long())


def _subset(n: int, k: int, salt: int) -> np.ndarray:
    """A fixed sorted subset of ``k`` of ``range(n)`` (all of it when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([EVAL_SEED, salt]).choice(n, k, replace=False))


def _to_data(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    n_train: int | None,
    n_eval: int,
    device: Any,
) -> Data:
    tr = _subset(x_train.shape[0], n_train or x_train.shape[0], 1)
    x_train, y_train = x_train[tr], y_train[tr]
    ev = _subset(x_train.shape[0], n_eval, 2)
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return Data(t(x_train), t(y_train), t(x_train[ev]), t(y_train[ev]), t(x_test), t(y_test))


_DECODED_CACHE: contextvars.ContextVar[vdata.ArrayCache | None] = contextvars.ContextVar(
    "surgelab_decoded_cache", default=None
)


@contextlib.contextmanager
def decoded_cache(cache: vdata.ArrayCache | None) -> Iterator[None]:
    """Within this block the built-in workloads' ``load_data`` keep decoded arrays in ``cache``
    (a hashable :class:`validate.data.ArrayCache`; None: decode every time, the default).

    Examples:
      >>> with decoded_cache(None):
      ...     synthetic_mlp().load_data().n_train
      4096
    """
    token = _DECODED_CACHE.set(cache)
    try:
        yield
    finally:
        _DECODED_CACHE.reset(token)


@functools.lru_cache(maxsize=8)
def _parsed(kind: str, data_dir: str | None, cache: Any) -> dict[str, np.ndarray]:
    # One parse per process and dataset: a sweep calls load_data once per batch-size group.
    if kind == "tiny-imagenet-subset":
        return vdata.load_tiny_imagenet(data_dir, cache=cache)
    loader = {
        "fashion-mnist": vdata.load_fashion_mnist,
        "eli5-category": vdata.load_eli5,
        "tinyshakespeare": vdata.load_shakespeare,
    }[kind]
    return loader(data_dir)


def _cached_load(kind: str, data_dir: str | None) -> dict[str, np.ndarray]:
    cache = _DECODED_CACHE.get() if kind == "tiny-imagenet-subset" else None
    return _parsed(kind, data_dir, cache)


def _dir(arg: Any, default: Any) -> str | None:
    d = arg if arg is not None else default
    return None if d is None else os.fspath(d)


# ----------------------------------------------------------------------------- synthetic


def synthetic_arrays(
    n: int, d: int, n_classes: int, seed: int, temperature: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs labelled by sampling from a random teacher's softmax (Bayes loss > 0).

    x ~ N(0, I_d); logits = tanh(x W1) W2 · temperature; y ~ softmax(logits). Deterministic in
    ``seed``.
    """
    rng = np.random.default_rng([seed, 7])
    w1 = rng.normal(size=(d, 2 * d)) / math.sqrt(d)
    w2 = rng.normal(size=(2 * d, n_classes)) / math.sqrt(2 * d)
    x = rng.normal(size=(n, d)).astype(np.float32)
    logits = temperature * np.tanh(x @ w1) @ w2
    g = rng.gumbel(size=logits.shape)  # Gumbel-max = a draw from softmax(logits)
    y = np.argmax(logits + g, axis=1).astype(np.int64)
    return x, y


def synthetic_mlp(
    size: str = "smoke", data_dir: Any = None, download: bool = False, seed: int = 0
) -> Workload:
    """A teacher–student classification problem generated in memory (no files).

    Inputs x ∈ R^16 (smoke) / R^32 (paper), 10 classes sampled from a random teacher network's
    softmax; student MLP with two hidden ReLU layers. For tests, smoke runs and the engine's
    batched-vs-single check. ``data_dir``/``download`` are accepted and ignored.
    """
    _check_size(size)
    d, hidden, n, n_eval = (
        (16, (32, 32), 4096, 512) if size == "smoke" else (32, (128, 128), 50_000, 2048)
    )

    def load(_dir: Any = None, device: Any = "cpu") -> Data:
        x, y = synthetic_arrays(n + 2048, d, 10, seed)
        return _to_data(x[:n], y[:n], x[n:], y[n:], None, n_eval, device)

    make = lambda: MLP(d, hidden, 10)  # noqa: E731
    return Workload(
        name="synthetic-mlp",
        make_model=make,
        load_data=load,
        loss=cross_entropy,
        further_steps=10,
        targets=(1.6, 1.3, 1.1),
        eval_every=10,
        max_steps=3000,
        description=(
            f"MLP {d}→{'→'.join(map(str, hidden))}→10 (ReLU), {n_params(make())} "
            f"params, on {n} generated teacher-labelled examples (seed {seed}); "
            "initial loss ≈ ln 10 = 2.30"
        ),
        extra={"size": size, "seed": seed, "n_train": n, "n_eval": n_eval},
    )


# ----------------------------------------------------------------------------- Fashion-MNIST


def fmnist_cnn(size: str = "smoke", data_dir: Any = None, download: bool = False) -> Workload:
    """5-layer CNN on Fashion-MNIST (THEORY.md Table 1 rows 1–2; further steps 10).

    paper: conv 16 → conv 32 → fc 128 → fc 64 → fc 10 (≈ 0.22 M params), all 60k training
    images, 2,000 held-in for the target loss. smoke: conv 4 → conv 8 → fc 32 → fc 32 → fc 10
    (≈ 14 k params) on a fixed 6,000-image subset, 500 held-in.

    ``download`` is ignored (kept for the factory signature): the app layer fetches first.
    """
    _check_size(size)
    if size == "smoke":
        arch, n_train, n_eval = dict(c1=4, c2=8, h1=32, h2=32), 6000, 500
        targets, max_steps = (1.0, 0.8, 0.7), 2000
    else:
        arch, n_train, n_eval = dict(c1=16, c2=32, h1=128, h2=64), None, 2000
        targets, max_steps = (0.8, 0.6, 0.5, 0.4, 0.35), 20_000

    def load(dd: Any = None, device: Any = "cpu") -> Data:
        a = _cached_load("fashion-mnist", _dir(dd, data_dir))
        return _to_data(
            a["x_train"], a["y_train"], a["x_test"], a["y_test"], n_train, n_eval, device
        )

    make = lambda: CNN5(**arch)  # noqa: E731
    return Workload(
        name="fmnist-cnn",
        make_model=make,
        load_data=load,
        loss=cross_entropy,
        further_steps=10,
        targets=targets,
        eval_every=10,
        max_steps=max_steps,
        description=(
            f"5-layer CNN (conv3×3 {arch['c1']} → pool → conv3×3 {arch['c2']} → pool "
            f"→ fc {arch['h1']} → fc {arch['h2']} → fc 10, ReLU), {n_params(make())} "
            "params; 2 conv + 3 fc keeps the paper's 5 layers while most weights sit "
            "in cheap dense layers. Inputs uint8, normalised in the model."
        ),
        extra={"size": size, "n_train": n_train or 60_000, "n_eval": n_eval},
        datasets=("fashion-mnist",),
    )


# ----------------------------------------------------------------------------- Tiny-ImageNet


def avg_pool_images(x: np.ndarray, k: int) -> np.ndarray:
    """Average-pool NHWC uint8 images by ``k``×``k`` (rounded back to uint8)."""
    n, h, w, c = x.shape
    y = x.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))
    return np.rint(y).astype(np.uint8)


def tinyimagenet_resnet18(
    size: str = "smoke", data_dir: Any = None, download: bool = False
) -> Workload:
    """ResNet-18 (GroupNorm) on the Tiny-ImageNet subset (Table 1 row 5; further steps 50).

    paper: width 64 (standard ResNet-18, ≈ 11.3 M params), 20,000 training images (100 per
    class; the paper draws 10k random images per epoch, our i.i.d. sampling draws from all
    20k), 2,000 held-in; targets from the paper's 5.213 → 4.633 (initial loss ln 200 = 5.30).
    smoke: width 8, one block per stage, the first 10 classes (1,000 training images), images
    average-pooled 2×2 to 32×32 (4× cheaper on a CPU), 100 held-in.

    ``download`` is ignored (kept for the factory signature): the app layer fetches first.
    """
    _check_size(size)
    if size == "smoke":
        width, blocks, n_classes, n_train, n_eval = 8, (1, 1, 1, 1), 10, None, 100
        targets, max_steps, pool = (2.2, 2.1), 1000, 2
    else:
        width, blocks, n_classes, n_train, n_eval = 64, (2, 2, 2, 2), 200, None, 2000
        targets, max_steps, pool = (5.213, 5.0, 4.8, 4.633), 20_000, 1

    def load(dd: Any = None, device: Any = "cpu") -> Data:
        a = _cached_load("tiny-imagenet-subset", _dir(dd, data_dir))
        xtr, ytr, xte, yte = a["x_train"], a["y_train"], a["x_val"], a["y_val"]
        if n_classes < 200:
            keep, keep_te = ytr < n_classes, yte < n_classes
            xtr, ytr, xte, yte = xtr[keep], ytr[keep], xte[keep_te], yte[keep_te]
        if pool > 1:
            xtr, xte = avg_pool_images(xtr, pool), avg_pool_images(xte, pool)
        return _to_data(xtr, ytr, xte, yte, n_train, n_eval, device)

    make = lambda: ResNet18(n_classes, width, blocks)  # noqa: E731
    return Workload(
        name="tinyimagenet-resnet18",
        make_model=make,
        load_data=load,
        loss=cross_entropy,
        further_steps=50,
        targets=targets,
        eval_every=10,
        max_steps=max_steps,
        description=(
            f"ResNet-18-style, width {width}, blocks {blocks}, {n_classes} classes, "
            f"{64 // pool}×{64 // pool} input, "
            f"{n_params(make())} params: 3×3 stride-1 stem, no max-pool (small images), "
            "GroupNorm instead of BatchNorm (no running-stat buffers under vmap, no "
            "coupling of examples within a batch)."
        ),
        extra={"size": size, "n_classes": n_classes, "n_eval": n_eval},
        datasets=("tiny-imagenet-subset",),
    )


# ----------------------------------------------------------------------------- language models


def lm_windows(tokens: np.ndarray, ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows: x = tokens[i·ctx : (i+1)·ctx], y = x shifted by one token."""
    n = (tokens.size - 1) // ctx
    if n < 1:
        raise ValueError(f"token stream of {tokens.size} bytes is shorter than ctx+1 = {ctx + 1}")
    x = tokens[: n * ctx].reshape(n, ctx)
    y = tokens[1 : n * ctx + 1].reshape(n, ctx)
    return x, y


def _gpt_workload(
    name: str,
    kind: str,
    size: str,
    data_dir: Any,
    targets_paper: tuple[float, ...],
    targets_smoke: tuple[float, ...],
) -> Workload:
    _check_size(size)
    if size == "smoke":
        arch, n_train, n_eval = dict(ctx=32, d=32, n_layer=2, n_head=2), 4000, 128
        targets, max_steps = targets_smoke, 2000
    else:
        arch, n_train, n_eval = dict(ctx=128, d=256, n_layer=4, n_head=4), None, 512
        targets, max_steps = targets_paper, 20_000

    def load(dd: Any = None, device: Any = "cpu") -> Data:
        a = _cached_load(kind, _dir(dd, data_dir))
        xtr, ytr = lm_windows(a["train"], arch["ctx"])
        xte, yte = lm_windows(a["test"], arch["ctx"])
        return _to_data(xtr, ytr, xte, yte, n_train, n_eval, device)

    make = lambda: GPT(256, **arch)  # noqa: E731
    return Workload(
        name=name,
        make_model=make,
        load_data=load,
        loss=cross_entropy,
        further_steps=50,
        targets=targets,
        eval_every=10,
        max_steps=max_steps,
        description=(
            f"simplified DistilGPT2: {arch['n_layer']} pre-LN blocks, width "
            f"{arch['d']}, {arch['n_head']} heads, context {arch['ctx']}, byte-level "
            f"vocabulary 256 (no tokenizer download), tied embeddings, "
            f"{n_params(make())} params; initial loss ≈ ln 256 = 5.55"
        ),
        extra={"size": size, "n_eval": n_eval, **arch},
        datasets=(kind,),
    )


def eli5_gpt(size: str = "smoke", data_dir: Any = None, download: bool = False) -> Workload:
    """Simplified DistilGPT2 on ELI5-Category bytes (Table 1 rows 3–4; further steps 50).

    Train/test split: :data:`validate.data.ELI5_TEST_FRACTION` (by question).

    ``download`` is ignored (kept for the factory signature): the app layer fetches first.
    """
    return _gpt_workload(
        "eli5-gpt",
        "eli5-category",
        size,
        data_dir,
        targets_paper=(2.6, 2.3, 2.0, 1.8),
        targets_smoke=(3.2, 3.0),
    )


def shakespeare_gpt(size: str = "smoke", data_dir: Any = None, download: bool = False) -> Workload:
    """The same GPT on tinyshakespeare bytes (a small character-level fallback corpus).

    ``download`` is ignored (kept for the factory signature): the app layer fetches first.
    """
    return _gpt_workload(
        "shakespeare-gpt",
        "tinyshakespeare",
        size,
        data_dir,
        targets_paper=(2.4, 2.1, 1.9, 1.7),
        targets_smoke=(3.0, 2.8),
    )


#: The built-in workload factories by name (the registry starts from these).
BUILTIN = {
    "synthetic-mlp": synthetic_mlp,
    "fmnist-cnn": fmnist_cnn,
    "tinyimagenet-resnet18": tinyimagenet_resnet18,
    "eli5-gpt": eli5_gpt,
    "shakespeare-gpt": shakespeare_gpt,
}
