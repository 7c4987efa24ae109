"""kernels.launch.geometry: the CUDA launch shape, checked without a GPU."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from kernels.launch import SHARED_LIMIT, WARP, geometry


@pytest.mark.parametrize(
    ("n_batch", "rank", "block"),
    [
        (1, 0, 64),  # 1 pair: the 64-thread floor (a tile still draws 256 coordinates)
        (16, 8, 160),  # the shape: 144 pairs -> 5 warps
        (16, 15, 256),  # 256 pairs exactly
        (32, 31, 256),  # 1024 pairs: capped at 256 threads, 4 pairs per thread
    ],
)
def test_sign_block_covers_every_pair(n_batch, rank, block):
    """block = pairs rounded up to a warp in [64, 256]; block · pairs_per_thread ≥ pairs."""
    g = geometry(1000, 10_000, n_batch, rank)
    pairs = n_batch * (rank + 1)
    assert g.block == block and g.block % WARP == 0
    assert g.pairs_per_thread == math.ceil(pairs / g.block)
    assert g.block * g.pairs_per_thread >= pairs > g.block * (g.pairs_per_thread - 1)
    assert g.tile == 4 * g.block


def test_grid_is_one_wave_but_never_more_blocks_than_samples():
    """grid = min(samples, SMs × resident blocks per SM)."""
    assert geometry(100, 10**6, 16, 8, sm_count=132).grid == 132 * (2048 // 160)
    assert geometry(100, 7, 16, 8, sm_count=132).grid == 7
    assert geometry(100, 10**6, 4, 2, update="sgd", sm_count=10).grid == 10 * 8


def test_sgd_geometry():
    """sgd: 256 threads, one pair per thread."""
    g = geometry(50, 100, 3, 5, update="sgd", noise_rank=4, sm_count=1)
    assert (g.block, g.pairs_per_thread) == (256, 1)


_C_SIZES = {"double": 8, "int": 4, "float": 4, "unsigned int": 4, "unsigned long long": 8}


def _shared_bytes_in_source(update: str, consts: dict[str, int]) -> int:
    """Bytes of the ``__shared__`` arrays the moments.cu kernel of ``update`` declares, with the
    source's own ``#define``s expanded for the given compile-time constants (a parse of the .cu
    file, independent of kernels.launch)."""
    from kernels.cuda_backend import SOURCE, kernel_name

    src = re.sub(r"//[^\n]*", "", SOURCE.read_text())
    macros = dict(re.findall(r"#define\s+(SURGE_\w+)\s+(.+)", src))

    def value(expr: str) -> int:
        for _ in range(10):  # expand macros (they nest a few levels)
            expr = re.sub(
                r"\bSURGE_\w+\b",
                lambda m: str(consts.get(m[0], f"({macros.get(m[0], m[0])})")),
                expr,
            )
        # C's (c ? a : b) and integer division, for the non-negative sizes used here
        expr = re.sub(r"\(([^()?]+)\?([^():]+):([^()]+)\)", r"((\2) if (\1) else (\3))", expr)
        return int(eval(expr.replace("/", "//"), {"__builtins__": {}}))

    starts = [m.start() for m in re.finditer(r"__global__", src)]
    name = kernel_name(update)
    body = next(src[a:b] for a, b in zip(starts, [*starts[1:], len(src)]) if name in src[a:b])
    total = 0
    for ctype, _, dims in re.findall(r"__shared__\s+([\w ]+?)\s+(\w+)((?:\[[^\]]+\])+)", body):
        n = 1
        for dim in re.findall(r"\[([^\]]+)\]", dims):
            n *= value(dim)
        total += _C_SIZES[ctype] * n
    assert total > 0, f"no __shared__ array found in {name}"
    return total


def test_kernels_use_only_static_shared_memory():
    """No ``extern __shared__`` (dynamic) arrays: the static declarations are the whole budget,
    so the geometry's shared_bytes can be checked against them."""
    from kernels.cuda_backend import SOURCE

    assert not re.search(r"extern\s+__shared__", SOURCE.read_text())


@pytest.mark.parametrize(
    ("d", "n_batch", "rank", "noise_rank", "update"),
    [
        (1000, 1, 0, 0, "sign"),
        (1000, 16, 8, 0, "sign"),
        (37, 5, 3, 2, "sign"),
        (10, 32, 31, 4, "sign"),
        (50, 3, 5, 4, "sgd"),
        (50, 3, 0, 0, "sgd"),
        (9, 200, 31, 1, "sgd"),
    ],
)
def test_shared_bytes_match_the_cu_declarations(d, n_batch, rank, noise_rank, update):
    """geometry().shared_bytes equals the bytes of the kernel's ``__shared__`` arrays in
    moments.cu, with the same -D constants the backend compiles with (cuda_backend)."""
    g = geometry(d, 1000, n_batch, rank, update=update, noise_rank=noise_rank)
    consts = {
        "SURGE_D": d,
        "SURGE_R": rank,
        "SURGE_K": noise_rank,
        "SURGE_NB": n_batch,
        **g.defines(),
    }
    assert g.shared_bytes == _shared_bytes_in_source(update, consts)
    assert g.shared_bytes <= SHARED_LIMIT


def test_defines_are_the_compile_time_constants():
    g = geometry(10, 10, 2, 1)
    assert g.defines() == {
        "SURGE_BLOCK": g.block,
        "SURGE_TILE": g.tile,
        "SURGE_PPT": g.pairs_per_thread,
    }


def test_too_much_shared_memory_is_refused():
    """A shape whose shared memory exceeds 48 KiB raises, pointing at the numba backend."""
    with pytest.raises(ValueError, match="numba"):
        geometry(10, 10, 64, 31)
    assert geometry(10, 10, 32, 31).shared_bytes <= SHARED_LIMIT


def test_more_batch_sizes_than_threads_is_refused():
    """One epilogue thread per batch size: n_batch > block raises."""
    with pytest.raises(ValueError, match="n_batch"):
        geometry(10, 10, 300, 0)
    with pytest.raises(ValueError, match="n_batch"):
        geometry(10, 10, 257, 0, update="sgd")


@pytest.mark.parametrize(
    ("n_batch", "rank", "update", "n_groups"),
    [
        (16, 8, "sign", 1),
        (300, 0, "sign", 2),
        (1000, 3, "sgd", 4),
        (64, 31, "sign", 2),
        (1, 0, "sign", 1),
    ],
)
def test_batch_groups_cover_the_grid_in_launchable_pieces(n_batch, rank, update, n_groups):
    """cuda_backend.batch_groups: consecutive, covering, each group a valid launch."""
    from kernels.cuda_backend import batch_groups
    from kernels.problem import QuadraticProblem

    p = QuadraticProblem([1.0] * 5, [1.0] * 5, [1.0] * 5, U=[[1.0] * rank] * 5 if rank else None)
    groups = batch_groups(p, n_batch, 100, update)
    assert groups[0].start == 0 and groups[-1].stop == n_batch
    assert all(a.stop == b.start for a, b in itertools.pairwise(groups))
    for g in groups:
        geometry(5, 100, g.stop - g.start, rank, update=update)  # does not raise
    assert len(groups) == n_groups


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"d": 0}, "d"),
        ({"n_samples": -1}, "n_samples"),
        ({"n_batch": 0}, "n_batch"),
        ({"rank": -1}, "rank"),
        ({"noise_rank": 1.5}, "noise_rank"),
        ({"sm_count": 0}, "sm_count"),
        ({"update": "adam"}, "update"),
    ],
)
def test_bad_sizes_name_themselves(kwargs, name):
    args = {"d": 10, "n_samples": 10, "n_batch": 2, "rank": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        geometry(
            args.pop("d"), args.pop("n_samples"), args.pop("n_batch"), args.pop("rank"), **args
        )


#: C parameter type in moments.cu -> what launch_args must pass (cupy sends a numpy scalar as
#: its own dtype, a Python int as 8 bytes whatever the parameter is)
_C_SCALARS = {"double": np.float64, "unsigned long long": np.uint64, "unsigned int": np.uint32}


def _kernel_params(name: str) -> list[str]:
    """The parameter types of ``name`` as declared in moments.cu ("ptr" for a pointer)."""
    from kernels.cuda_backend import SOURCE

    m = re.search(rf"\b{name}\s*\(([^)]*)\)", SOURCE.read_text())
    assert m, name
    out = []
    for param in m.group(1).split(","):
        decl = " ".join(param.replace("__restrict__", " ").split())
        out.append("ptr" if "*" in decl else decl.rsplit(" ", 1)[0])
    return out


@pytest.mark.parametrize("update", ["sign", "sgd"])
@pytest.mark.parametrize(("r", "k"), [(0, 0), (3, 2)])
def test_launch_args_match_the_kernel_signature(update, r, k):
    """Every argument has the exact type of its moments.cu parameter, in order: device arrays
    (float64, C-contiguous, non-empty) for pointers, numpy scalars of the declared width for
    scalars — a Python int or a wrong width would shift every later parameter on the GPU."""
    from kernels.cuda_backend import kernel_name, launch_args
    from kernels.problem import QuadraticProblem

    d, nb = 5, 3
    rng = np.random.default_rng(0)
    p = QuadraticProblem(
        rng.normal(size=d),
        np.ones(d),
        np.ones(d),
        rng.normal(size=(d, r)) if r else None,
        rng.normal(size=(d, k)) if k else None,
    )
    B = np.array([1.0, 2.0, 8.0])
    out = np.zeros((4, nb, 5))
    args = launch_args(
        p, B, 100, update, 2**40 + 7, np.ones(nb), np.ones(nb), 2**33, out, np.ascontiguousarray
    )
    params = _kernel_params(kernel_name(update))
    assert len(args) == len(params)
    for a, c in zip(args, params, strict=True):
        if c == "ptr":
            assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.size > 0
            assert a.flags.c_contiguous
        else:
            assert type(a) is _C_SCALARS[c], (c, a)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    sizes = {
        "mu": d,
        "sigma": d,
        "h": d,
        "U": max(d * r, 1),
        "W": max(d * k, 1),
        "sb": nb,
        "k1s": nb,
        "k2s": nb,
        "umu": max(r, 1),
        "out": out.size,
    }
    names = [
        "mu",
        "sigma",
        *(["h"] if update == "sgd" else []),
        "U",
        "W",
        "sb",
        "k1s",
        "k2s",
        *(["umu"] if update == "sgd" else []),
        "out",
    ]
    assert [a.size for a in arrays] == [sizes[n] for n in names]
    assert np.array_equal(arrays[names.index("sb")], 1.0 / np.sqrt(B))
