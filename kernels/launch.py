"""Launch geometry of the CUDA kernels (kernels/moments.cu): pure Python, tested without a GPU.

sign kernel — one thread block per sample at a time (grid-stride over samples):
  - a *pair* is (batch size b, column j) with j < r a column of U and j = r the μ column; the
    block's threads own pairs p = tid, tid + block, …: ``pairs_per_thread`` = ⌈nB(r+1)/block⌉
    accumulators in registers.
  - the coordinates are walked in tiles of ``tile`` = 4·block: each thread draws one Philox
    block (4 normals) and stages, per coordinate, μ_i, sign(n_i), sign(μ_i) (doubles) and the
    two sign-change thresholds (ints) in shared memory; then every pair folds in the whole
    tile. Shared memory: 32·tile + 8·(pairs + max(k, 1) + nB) bytes.
  - the epilogue has one thread per batch size: nB ≤ block.
  - block = the pair count rounded up to a warp, clamped to [64, 256]: at least 64 threads so
    a tile draws 256 coordinates at once, at most 256 so several blocks fit on an SM.
sgd kernel — per sample, threads stride over coordinate blocks, each accumulating the r + 3
  per-sample statistics, then a warp-shuffle + shared-memory reduction: block = 256.

grid = min(n_samples, SMs × resident blocks per SM): one wave of resident blocks, each looping
over samples; the per-block partial sums (grid × nB × 5 doubles) are added on the host.
"""

from __future__ import annotations

import dataclasses
import math

#: static shared memory available to one block without opt-in (bytes)
SHARED_LIMIT = 48 * 1024
WARP = 32
MAX_THREADS_PER_SM = 2048


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A launch: ``grid`` blocks of ``block`` threads, and the #defines the source needs."""

    block: int
    grid: int
    tile: int
    pairs_per_thread: int
    shared_bytes: int

    def defines(self) -> dict[str, int]:
        """Compile-time constants injected into moments.cu as ``-D`` options."""
        return {
            "SURGE_BLOCK": self.block,
            "SURGE_TILE": self.tile,
            "SURGE_PPT": self.pairs_per_thread,
        }


def _check(name: str, value: int, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {name}={value!r}")
    return value


def geometry(
    d: int,
    n_samples: int,
    n_batch: int,
    rank: int,
    *,
    update: str = "sign",
    noise_rank: int = 0,
    sm_count: int = 132,
    max_threads_per_sm: int = MAX_THREADS_PER_SM,
) -> Geometry:
    """Block, grid, tile and shared memory for one ``update_moments`` call on the GPU.

    Args:
      d: coordinates.  n_samples: samples.  n_batch: batch sizes.  rank: r (columns of U).
      update: "sign" or "sgd".  noise_rank: k (columns of W).
      sm_count: the device's streaming multiprocessors (132 on an H100 SXM).
      max_threads_per_sm: resident threads per SM (2048 on sm_80 / sm_90).

    Returns:
      A :class:`Geometry`.

    Raises:
      ValueError: a bad size, or a problem whose per-block shared memory exceeds 48 KiB (use
      the numba backend for it).

    Examples:
      >>> g = geometry(10_000, 10_000, 16, 8)
      >>> g.block, g.tile, g.pairs_per_thread
      (160, 640, 1)
    """
    _check("d", d, 1)
    _check("n_samples", n_samples, 1)
    _check("n_batch", n_batch, 1)
    _check("rank", rank, 0)
    _check("noise_rank", noise_rank, 0)
    _check("sm_count", sm_count, 1)
    _check("max_threads_per_sm", max_threads_per_sm, WARP)
    if update not in ("sign", "sgd"):
        raise ValueError(f"update must be 'sign' or 'sgd'; got update={update!r}")
    zeta_bytes = 8 * max(noise_rank, 1)
    if update == "sign":
        pairs = n_batch * (rank + 1)
        block = min(256, max(64, WARP * math.ceil(pairs / WARP)))
        tile = 4 * block
        ppt = math.ceil(pairs / block)
        shared = 32 * tile + 8 * pairs + zeta_bytes + 8 * n_batch
    else:
        block = 256
        tile = 4 * block
        ppt = 1
        shared = 8 * (block // WARP) * (rank + 3) + 8 * (rank + 3) + zeta_bytes
    if n_batch > block:
        raise ValueError(
            f"the cuda kernels take at most {block} batch sizes per launch "
            f"(one epilogue thread each); got n_batch={n_batch} (the backend "
            f"splits larger grids into several launches)"
        )
    if shared > SHARED_LIMIT:
        raise ValueError(
            f"the cuda backend needs {shared} bytes of shared memory per block for "
            f"n_batch={n_batch}, rank={rank}, noise_rank={noise_rank} "
            f"(limit {SHARED_LIMIT}); use fewer batch sizes per launch or "
            f"backend='numba'"
        )
    per_sm = max(1, max_threads_per_sm // block)
    grid = min(n_samples, sm_count * per_sm)
    return Geometry(block=block, grid=grid, tile=tile, pairs_per_thread=ppt, shared_bytes=shared)
