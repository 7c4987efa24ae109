"""A gradient-noise-scale monitor for any torch training loop (McCandlish et al. 2018, App. A).

Every step gives two gradients of the same parameters at two batch sizes: a SMALL one
(one micro-batch on a single device; the local rank's gradient under data parallelism) and a
BIG one (the accumulated step gradient; the all-reduced gradient). Since
E|G_B|² = |G|² + tr(Σ)/B for a batch mean of B independent examples, the two squared norms give
unbiased estimates of |G|² and tr(Σ) (:func:`theory.sgd.two_batch_estimates`):

    |G|² ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

Each is averaged with its own exponential moving average, and the simple noise scale is the
ratio of the averages, B_simple = EMA(tr Σ) / EMA(|G|²) (the ratio of per-step estimates is
biased and often negative). B_simple ≈ the critical batch size: batches much larger than it
waste examples; much smaller waste steps.

=============== =================== ==============================================
code            symbol              meaning
=============== =================== ==============================================
``g_small_sq``  |G_small|²          squared norm of the small-batch mean gradient
``g_big_sq``    |G_big|²            squared norm of the big-batch mean gradient
``b_small``     B_small             examples behind G_small
``b_big``       B_big               examples behind G_big (> B_small)
``g2``          |G|²                true-gradient squared norm (EMA, debiased)
``trace_sigma`` tr(Σ)               per-example gradient noise (EMA, debiased)
``b_simple``    B_simple            tr(Σ)/|G|² = ``trace_sigma / g2``
``beta``        β                   EMA memory: x̄ ← β x̄ + (1 − β) x
=============== =================== ==============================================

Usage, one device with gradient accumulation over k micro-batches of size b::

    mon = NoiseScaleMonitor(beta=0.95)
    for step in ...:
        for j, (x, y) in enumerate(micro_batches):
            (loss_fn(model(x), y) / k).backward()
            if j == 0:
                mon.record_small(model, batch_size=b, scale=k)   # grads hold g_1 / k
        mon.update(model, batch_size=k * b)                      # grads hold the mean over k
        opt.step(); opt.zero_grad()
    print(mon.b_simple)

Under DistributedDataParallel register the monitor's communication hook once,
``ddp_model.register_comm_hook(None, mon.comm_hook)`` (it records each rank's LOCAL gradient
norm, then all-reduces exactly like the default hook), and call
``mon.update(ddp_model, batch_size=local_batch)`` after ``backward()``. Without DDP (manual
data parallelism) call ``mon.update_distributed(model, local_batch)``: it all-reduces the
gradients itself (average) and reads both norms.

Reference: McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training",
arXiv 1812.06162, Appendix A.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from theory.sgd import two_batch_estimates

AllReduce = Callable[[torch.Tensor], None]


def grad_sq_norm(params: torch.nn.Module | Iterable[torch.nn.Parameter]) -> float:
    """Σ over parameters of |p.grad|² in float64 (parameters without a gradient are skipped).

    Raises ValueError if there are no parameters, or none holds a gradient.
    """
    ps = list(params.parameters() if isinstance(params, torch.nn.Module) else params)
    if not ps:
        raise ValueError("the model has no parameters; nothing to monitor")
    grads = [p.grad for p in ps if p.grad is not None]
    if not grads:
        raise ValueError("no parameter holds a gradient: call backward() before the monitor")
    return float(sum(g.detach().double().pow(2).sum() for g in grads))


@dataclass
class NoiseScaleMonitor:
    """Separate EMAs of the two-batch unbiased estimators of |G|² and tr(Σ).

    Attributes:
      beta: EMA memory in [0, 1); the EMAs are bias-corrected (÷ (1 − β^t)) like Adam's, so
        early readings are plain means rather than shrunk towards 0.
      process_group: torch.distributed group for the DDP paths (None: the default group).
      all_reduce: injectable in-place SUM all-reduce of a tensor across ranks (default
        ``torch.distributed.all_reduce`` on ``process_group``); tests inject their own.
      world_size: ranks in the group; default from torch.distributed when initialised.
    """

    beta: float = 0.95
    process_group: Any = None
    all_reduce: AllReduce | None = None
    world_size: int | None = None
    steps: int = 0
    _g2: float = 0.0
    _tr: float = 0.0
    _small_sq: float | None = field(default=None, repr=False)
    _small_b: float | None = field(default=None, repr=False)
    _hook_sq: float = field(default=0.0, repr=False)
    _hook_seen: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"beta must lie in [0, 1); got beta={self.beta!r}")

    # ------------------------------------------------------------------ core (no torch state)

    def observe(
        self, g_small_sq: float, g_big_sq: float, b_small: float, b_big: float
    ) -> tuple[float, float]:
        """Feed one step's squared norms; returns that step's unbiased ``(|G|², tr Σ)``.

        |G|² = (B_big |G_big|² − B_small |G_small|²)/(B_big − B_small) and
        tr Σ = (|G_small|² − |G_big|²)/(1/B_small − 1/B_big) (McCandlish et al., App. A.1).

        Examples:
          >>> mon = NoiseScaleMonitor(beta=0.5)
          >>> mon.observe(5.0, 3.0, 1, 2)  # (2·3 − 5, (5 − 3)/(1 − ½))
          (1.0, 4.0)
          >>> mon.observe(10.0, 7.0, 1, 2)
          (4.0, 6.0)
          >>> mon.g2, round(mon.b_simple, 6)  # debiased EMAs: (1 + 2·4)/3, (4 + 2·6)/3 / 3
          (3.0, 1.777778)
        """
        g2, tr = two_batch_estimates(g_small_sq, g_big_sq, b_small, b_big)
        g2, tr = float(g2), float(tr)
        self._g2 = self.beta * self._g2 + (1.0 - self.beta) * g2
        self._tr = self.beta * self._tr + (1.0 - self.beta) * tr
        self.steps += 1
        return g2, tr

    @property
    def _debias(self) -> float:
        return 1.0 - self.beta**self.steps if self.steps else math.nan

    @property
    def g2(self) -> float:
        """EMA of the unbiased |G|² estimates (bias-corrected); NaN before the first step."""
        return self._g2 / self._debias

    @property
    def trace_sigma(self) -> float:
        """EMA of the unbiased tr(Σ) estimates (bias-corrected); NaN before the first step."""
        return self._tr / self._debias

    @property
    def b_simple(self) -> float:
        """B_simple = EMA(tr Σ)/EMA(|G|²); ``inf`` while EMA(|G|²) ≤ 0 (signal not resolved)."""
        if self.steps == 0:
            return math.nan
        return self.trace_sigma / self.g2 if self.g2 > 0 else math.inf

    def state(self) -> dict[str, float]:
        """The current reading, for logging: steps, g2, trace_sigma, b_simple."""
        return {
            "steps": self.steps,
            "g2": self.g2,
            "trace_sigma": self.trace_sigma,
            "b_simple": self.b_simple,
        }

    # ------------------------------------------------------------------ one device

    def record_small(
        self,
        model: torch.nn.Module | Iterable[torch.nn.Parameter],
        batch_size: int,
        scale: float = 1.0,
    ) -> float:
        """Remember the small-batch gradient's squared norm (call after the first micro-batch).

        ``scale``: the factor the stored gradients must be multiplied by to be the micro-batch
        MEAN gradient (k when each micro-batch loss was divided by k for accumulation).
        """
        if not batch_size >= 1:
            raise ValueError(f"batch size must be positive, got batch_size={batch_size!r}")
        self._small_sq = grad_sq_norm(model) * float(scale) ** 2
        self._small_b = float(batch_size)
        return self._small_sq

    def update(
        self, model: torch.nn.Module | Iterable[torch.nn.Parameter], batch_size: int
    ) -> tuple[float, float]:
        """After the step's backward: the stored gradients are the BIG batch's mean gradient.

        Single device: needs :meth:`record_small` earlier in the step; ``batch_size`` is the
        big batch (all micro-batches). Under DDP with :meth:`comm_hook` registered,
        ``batch_size`` is the LOCAL batch per rank: small = each rank's local gradient (their
        squared norms averaged over ranks), big = the all-reduced gradient of world × local.
        """
        if not batch_size >= 1:
            raise ValueError(f"batch size must be positive, got batch_size={batch_size!r}")
        big = grad_sq_norm(model)
        if self._hook_seen:
            world = self._world()
            small = self._mean_over_ranks(self._hook_sq)
            self._hook_sq, self._hook_seen = 0.0, False
            return self.observe(small, big, float(batch_size), float(batch_size) * world)
        if self._small_sq is None or self._small_b is None:
            raise ValueError(
                "no small-batch gradient recorded this step: call "
                "record_small(model, micro_batch_size) after the first micro-batch "
                "(or register comm_hook under DDP)"
            )
        small, bs = self._small_sq, self._small_b
        self._small_sq = self._small_b = None
        return self.observe(small, big, bs, float(batch_size))

    # ------------------------------------------------------------------ data parallel

    def _world(self) -> int:
        if self.world_size is not None:
            return int(self.world_size)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(self.process_group)
        return 1

    def _reduce(self, t: torch.Tensor) -> None:
        if self.all_reduce is not None:
            self.all_reduce(t)
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(t, group=self.process_group)

    def _mean_over_ranks(self, x: float) -> float:
        # NCCL reduces only CUDA tensors: put the scalar where the process group can reduce it
        device = torch.device("cpu")
        if self.all_reduce is None:
            import torch.distributed as dist

            if (
                dist.is_available()
                and dist.is_initialized()
                and dist.get_backend(self.process_group) == "nccl"
            ):
                device = torch.device("cuda", torch.cuda.current_device())
        t = torch.tensor([x], dtype=torch.float64, device=device)
        self._reduce(t)
        return float(t[0]) / self._world()

    def update_distributed(
        self, model: torch.nn.Module | Iterable[torch.nn.Parameter], local_batch_size: int
    ) -> tuple[float, float]:
        """Manual data parallelism: the grads hold this rank's LOCAL mean gradient.

        Reads the local squared norm, all-reduces the gradients to their average across ranks
        IN PLACE (so the optimiser then steps on the global gradient), reads the global squared
        norm, and averages the local squared norms over ranks. B_small = local, B_big =
        world × local. Needs world size ≥ 2.
        """
        world = self._world()
        if world < 2:
            raise ValueError(
                f"update_distributed needs >= 2 ranks; world size is {world} "
                f"(on one device use record_small + update)"
            )
        ps = list(model.parameters() if isinstance(model, torch.nn.Module) else model)
        local = grad_sq_norm(ps)
        for p in ps:
            if p.grad is not None:
                self._reduce(p.grad)
                p.grad.div_(world)
        big = grad_sq_norm(ps)
        small = self._mean_over_ranks(local)
        return self.observe(small, big, float(local_batch_size), float(local_batch_size) * world)

    # No annotations here on purpose: DDP's register_comm_hook checks them and accepts only
    # dist.GradBucket / torch.futures.Future (strings under `from __future__` fail that check).
    def comm_hook(self, state, bucket):
        """DDP communication hook: record the bucket's LOCAL squared norm, then average it.

        Register with ``ddp_model.register_comm_hook(None, monitor.comm_hook)``. Behaves like
        DDP's default all-reduce hook (divide by world size, all-reduce sum). Returns the
        ``torch.futures.Future`` of the averaged bucket.
        """
        import torch.distributed as dist

        buf = bucket.buffer()
        self._hook_sq += float(buf.detach().double().pow(2).sum())
        self._hook_seen = True
        world = self._world()
        fut = dist.all_reduce(buf.div_(world), group=self.process_group, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])
