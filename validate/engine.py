"""The batched training engine: every learning rate × seed of one batch size as ONE program.

The Surge protocol (THEORY.md, "The paper's experiments") trains, for each (batch size B,
learning rate η, seed), a fresh model with Adam until the held-in training loss first reaches a
target, records the optimiser steps S and examples E = B·S it took, then trains
``further_steps`` more steps and records the loss reduction. The best η per B is the one with
the largest reduction.

:func:`train_group` runs all (η, seed) models of one batch size at once: their parameters are
stacked along a leading "model" axis into one flat (M, P) tensor, the per-model losses come
from ``vmap(functional_call(...))`` and their gradients from one ordinary backward of the
summed loss (the models are independent, so row m of the gradient is model m's own), and Adam
is a hand-written update with a per-model learning rate: the moments from the per-parameter
gradients autograd returns (no flat gradient is assembled), the parameter update on the flat
stack. The main runs' steps can also run compiled or as a CUDA graph (``capture``), falling
back to these eager steps when that cannot be set up. On a GPU this turns
hundreds of tiny kernels into a few large ones. :func:`train_single` is the same protocol one
model at a time with a plain ``torch.optim.Adam`` loop: the baseline of :mod:`validate.bench`
and the correctness reference (same seed and η → same S, up to floating-point reassociation).

Semantics shared by both (the contract the sweep relies on):

* **Init**: model ``(η, seed)`` is built by ``workload.make_model()`` right after
  ``torch.manual_seed(seed)`` (inside ``torch.random.fork_rng``, so the caller's global RNG is
  untouched): models with the same seed start from the same weights whatever their η.
* **Data stream (common random numbers)**: each seed owns a data stream keyed by
  :func:`stream_seed`; optimiser step t draws B training indices uniformly WITH replacement
  (i.i.d. minibatches, the sampling the theory assumes) from the counter-based
  :func:`batch_indices` (key, t). Every model with that seed sees the same batches at the same
  steps, whatever its η, so differences between learning rates are not blurred by sampling
  noise. A workload's random ``batch_transform`` gets a per-seed ``torch.Generator`` (seeded
  with the same key) that is likewise shared by the seed's models.
* **Evaluation**: every ``eval_every`` steps (and at step 0), the mean loss on the fixed held-in
  subset ``data.x_eval`` (chunked, so memory stays bounded). The first evaluated step where it
  is ≤ target k is S_k (so S has a resolution of ``eval_every``). ``eval_schedule="relative"``
  evaluates only on a geometric subset of that grid (:func:`eval_gap`), so the number of
  evaluations grows like log S instead of S, and S is resolved within ``eval_rel`` · S.
* **Further steps (fork)**: when a model crosses target k at step S, a COPY of its parameters
  and Adam state trains ``further_steps`` more steps on batches S+1, S+2, … of its seed's
  stream (exactly the batches the main run sees next; a transform generator is cloned too);
  the loss reduction is ``loss_at_target − loss_after_further`` on the same held-in set. The
  main run continues toward the next target unchanged. A model that crosses several targets
  at one evaluation forks once and the result is recorded for each of them.
* **Divergence**: a non-finite held-in loss, or one above ``diverge_factor`` × the model's
  initial loss, marks the model diverged and freezes it; nothing raises.
* **Stop**: when every model has reached every target or diverged, or at ``max_steps``.
* **Checkpoints**: :func:`train_group` can hand its whole state (stacked parameters, Adam
  moments, rows, step) to an ``on_checkpoint`` callback every ``checkpoint_every`` seconds, at
  an evaluation boundary; ``resume=state`` continues from such a state and gives the rows an
  uninterrupted run gives (the batch stream is addressed by step, so nothing is replayed).
  The library never writes the state anywhere itself.
* **Progress**: ``on_progress(n)`` is called with the optimiser steps just taken (the app
  layer passes a progress bar's ``update``); the engine prints nothing.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from validate.contract import Data, Workload

#: Keys of every row returned by :func:`train_group` / :func:`train_single`.
ROW_KEYS = (
    "batch_size",
    "lr",
    "seed",
    "target",
    "reached",
    "steps",
    "examples",
    "loss_at_target",
    "loss_after_further",
    "loss_reduction",
    "diverged",
    "further_diverged",
    "final_step",
    "wall_s",
    "group_size",
    "engine",
)

#: A held-in loss this many times the initial loss counts as divergence. Cross-entropy starts
#: near log(classes); Adam runs that blow up go far past 3× that, while healthy runs never
#: climb back above their starting loss by that much.
DIVERGE_FACTOR = 3.0

#: Held-in examples evaluated per forward pass (per model): bounds eval memory for big groups.
EVAL_CHUNK = 512


def set_tf32(enabled: bool) -> dict[str, bool]:
    """Let float32 matmuls and cuDNN convolutions on a GPU use TF32 (``enabled``) or not.

    TF32 rounds the inputs of a float32 product to 10 mantissa bits: several times faster on
    tensor cores, but the results are not those of float32 arithmetic, so it is an explicit
    choice that a caller records with its results (and keys stored results on). torch's own
    defaults differ (matmuls off, cuDNN convolutions on); this sets both. No effect on a CPU.

    Returns:
      The settings now in force: ``{"matmul_tf32": bool, "cudnn_tf32": bool}``.

    Examples:
      >>> set_tf32(False)
      {'matmul_tf32': False, 'cudnn_tf32': False}
    """
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
    return {
        "matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32),
    }


def chunk_for_memory(n_models: int, per_model_bytes: float, free_bytes: float) -> int | None:
    """Models per vmapped pass so that their activations fit in ``free_bytes`` (None: all fit).

    Examples:
      >>> chunk_for_memory(1000, 2e8, 4e10), chunk_for_memory(10, 2e8, 4e10)
      (200, None)
    """
    if n_models < 1 or not per_model_bytes > 0 or not free_bytes > 0:
        raise ValueError(
            f"need n_models >= 1 and positive sizes; got {n_models=} {per_model_bytes=} "
            f"{free_bytes=}"
        )
    fit = int(free_bytes // per_model_bytes)
    return None if fit >= n_models else max(1, fit)


# ----------------------------------------------------------------------------- validation


def stream_seed(seed: int) -> int:
    """The data-stream seed for model seed ``seed`` (decorrelated from the init seed).

    A SeedSequence hash, so seeds 0, 1, 2 … give unrelated streams and the stream never equals
    the ``torch.manual_seed(seed)`` stream used for the weights.
    """
    return int(
        np.random.SeedSequence([int(seed), 0x5EED]).generate_state(1, np.uint64)[0] % (2**63 - 1)
    )


def eval_interval(batch_size: int, n_eval: int, base: int = 10, max_overhead: float = 0.5) -> int:
    """Steps between held-in evaluations so evaluation costs at most ``max_overhead`` × training.

    One evaluation forwards ``n_eval`` examples, about n_eval/3 training-example equivalents
    (a forward is ~1/3 of forward + backward); k steps train k·B examples. So
    k ≥ n_eval / (3·B·max_overhead), and never below ``base`` (the workload's resolution of S).
    At small batch sizes (the paper's B = 1 … 12) a fixed interval of 10 would spend most of
    the time evaluating; S is then large, so a coarser interval costs little relative precision.

    Examples:
      >>> eval_interval(64, 2000), eval_interval(1, 2000)
      (21, 1334)
    """
    if batch_size < 1 or n_eval < 1 or base < 1 or not max_overhead > 0:
        raise ValueError(
            f"need batch_size, n_eval, base >= 1 and max_overhead > 0; got "
            f"{batch_size=} {n_eval=} {base=} {max_overhead=}"
        )
    return max(int(base), math.ceil(n_eval / (3.0 * batch_size * max_overhead)))


#: The evaluation schedules of :func:`train_group` / :func:`train_single` (:func:`eval_gap`).
EVAL_SCHEDULES = ("fixed", "relative")

#: Default relative resolution of S under ``eval_schedule="relative"``.
EVAL_REL = 0.05


def eval_gap(step: int, eval_every: int, schedule: str = "fixed", rel: float = EVAL_REL) -> int:
    """Steps from an evaluation at ``step`` to the next one.

    ``"fixed"``: ``eval_every`` (the grid 0, e, 2e, …). ``"relative"``:
    g = e·⌈max(e, ⌊rel·step⌋) / e⌉, the smallest multiple of e that is ≥ max(e, ⌊rel·step⌋),
    so every evaluation stays on the fixed grid, the gaps grow geometrically once
    rel·step > e, and an evaluation count of about 1/rel + log(S·rel/e)/log(1+rel) reaches
    step S (instead of S/e).

    The guarantee (same batches, same arithmetic, so the losses at the shared grid steps are
    those of the fixed schedule): let S_f be the first fixed-grid step with loss ≤ target and
    t_a < S_f the last relative evaluation before it. The next relative evaluation t_b
    satisfies S_f ≤ t_b and t_b − S_f ≤ g − e < rel·t_a < rel·S_f (t_b = S_f when g = e).
    Hence, if the loss is still ≤ target at t_b (it is for a loss that stays below the target
    once it has crossed it), the relative schedule's S_r = t_b and

        S_f ≤ S_r < (1 + rel)·S_f.

    Always S_r ≥ S_f. The condition is not free: at small batch sizes the held-in loss
    fluctuates around a target for a while, and a dip below it that the relative grid misses
    makes S_r a later crossing (seen on the paper CNN at B = 4; the test on synthetic-mlp
    checks the bound where it holds and S_r ≥ S_f where it does not). A run cut at
    ``max_steps`` is evaluated there under both schedules.

    Examples:
      >>> eval_gap(0, 10, "relative"), eval_gap(400, 10, "relative"), eval_gap(400, 10)
      (10, 20, 10)
      >>> eval_gap(1010, 10, "relative", 0.05)  # floor(50.5) = 50
      50
    """
    if schedule == "fixed":
        return int(eval_every)
    if schedule != "relative":
        raise ValueError(f"eval_schedule must be one of {EVAL_SCHEDULES}; got {schedule!r}")
    e = int(eval_every)
    g = max(e, math.floor(rel * step))
    return e * -(-g // e)


def _check_args(
    workload: Workload,
    data: Data,
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    betas: tuple[float, float],
    adam_eps: float,
    targets: Sequence[float] | None,
    further_steps: int | None,
    max_steps: int | None,
    eval_every: int | None,
    eval_schedule: str = "fixed",
    eval_rel: float = EVAL_REL,
) -> dict[str, Any]:
    if not isinstance(workload, Workload):
        raise ValueError(f"workload must be a validate.workload.Workload; got {type(workload)}")
    if not isinstance(data, Data):
        raise ValueError(f"data must be a validate.workload.Data; got {type(data)}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size=}")
    lrs = [float(x) for x in lrs]
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate; got an empty sequence")
    if any(not (math.isfinite(x) and x > 0) for x in lrs):
        raise ValueError(f"learning rates must be positive and finite; got {lrs=}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed; got an empty sequence")
    b1, b2 = (float(b) for b in betas)
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"Adam betas must lie in [0, 1); got {betas=}")
    if not (adam_eps >= 0 and math.isfinite(adam_eps)):
        raise ValueError(f"adam_eps must be finite and >= 0; got {adam_eps=}")
    tg = tuple(float(t) for t in (workload.targets if targets is None else targets))
    if not tg or any(not (t > 0) for t in tg) or list(tg) != sorted(tg, reverse=True):
        raise ValueError(f"targets must be positive and descending; got {targets=}")
    fs = workload.further_steps if further_steps is None else int(further_steps)
    ms = workload.max_steps if max_steps is None else int(max_steps)
    ee = workload.eval_every if eval_every is None else int(eval_every)
    if fs < 1:
        raise ValueError(f"further_steps must be >= 1; got {further_steps=}")
    if ms < 1:
        raise ValueError(f"max_steps must be >= 1; got {max_steps=}")
    if ee < 1:
        raise ValueError(f"eval_every must be >= 1; got {eval_every=}")
    if eval_schedule not in EVAL_SCHEDULES:
        raise ValueError(f"eval_schedule must be one of {EVAL_SCHEDULES}; got {eval_schedule=}")
    if isinstance(eval_rel, bool) or not (0.0 < float(eval_rel) < 1.0):
        raise ValueError(f"eval_rel must lie in (0, 1); got {eval_rel=}")
    cfg = dict(
        batch_size=int(batch_size),
        lrs=lrs,
        seeds=seeds,
        betas=(b1, b2),
        targets=tg,
        further_steps=fs,
        max_steps=ms,
        eval_every=ee,
    )
    if eval_schedule != "fixed":  # "fixed" keeps the cfg (and checkpoint identity) of before
        cfg.update(eval_schedule=eval_schedule, eval_rel=float(eval_rel))
    return cfg


def _gap(cfg: dict[str, Any], step: int) -> int:
    """Steps to train from ``step`` to the next evaluation (never past ``max_steps``)."""
    g = eval_gap(
        step, cfg["eval_every"], cfg.get("eval_schedule", "fixed"), cfg.get("eval_rel", EVAL_REL)
    )
    return min(g, cfg["max_steps"] - step)


def _check_model(model: torch.nn.Module) -> None:
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            raise ValueError(
                f"{type(mod).__name__} keeps running statistics, which a vmapped functional "
                "training step cannot update; use GroupNorm/LayerNorm or "
                "track_running_stats=False in the workload's model"
            )


def _init_model(workload: Workload, seed: int, device: str) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = workload.make_model()
    _check_model(model)
    return model.to(device)


def _new_row(cfg: dict[str, Any], lr: float, seed: int, target: float) -> dict[str, Any]:
    return {
        "batch_size": cfg["batch_size"],
        "lr": lr,
        "seed": seed,
        "target": target,
        "reached": False,
        "steps": None,
        "examples": None,
        "loss_at_target": None,
        "loss_after_further": None,
        "loss_reduction": None,
        "diverged": False,
        "further_diverged": False,
        "final_step": 0,
        "wall_s": 0.0,
        "group_size": 0,
        "engine": "",
    }


def _record_cross(row: dict[str, Any], step: int, batch_size: int, loss: float) -> None:
    row["reached"] = True
    row["steps"] = int(step)
    row["examples"] = int(step) * batch_size
    row["loss_at_target"] = float(loss)


def _record_further(
    row: dict[str, Any], after: float, at: float, init: float, factor: float
) -> None:
    row["loss_after_further"] = float(after)
    row["loss_reduction"] = float(at - after)
    row["further_diverged"] = bool(not math.isfinite(after) or after > factor * init)


def _i64(c: int) -> int:
    """A uint64 constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return c - (1 << 64) if c >= 1 << 63 else c


_K_STEP, _K_POS = _i64(0x9E3779B97F4A7C15), _i64(0xD1B54A32D192ED03)
_MIX1, _MIX2 = _i64(0xBF58476D1CE4E5B9), _i64(0x94D049BB133111EB)


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def batch_indices(
    keys: torch.Tensor, step: int | torch.Tensor, batch_size: int, n: int
) -> torch.Tensor:
    """Training indices of optimiser step ``step`` for each data stream: shape (len(keys), B).

    A counter-based generator: index j of step t of stream k is
    ``splitmix64(k + t·φ + j·c) >> 1 mod n`` (64-bit wrapping arithmetic; the bias of the final
    ``mod n`` is below n / 2⁶³). Every (stream, step) pair is addressable directly, so all the
    seeds of a group draw in one vectorised call, a fork resumes a stream by its step count,
    and the batched and the one-at-a-time engines see identical batches on any device.
    ``step`` may be a 0-dim integer tensor on the device (a captured step reads its counter
    there; the indices are the same).
    """
    j = torch.arange(batch_size, dtype=torch.int64, device=keys.device)
    if isinstance(step, torch.Tensor):  # a device-side step counter (captured steps)
        t = step.to(torch.int64)
    else:
        t = torch.full((), int(step), dtype=torch.int64, device=keys.device)
    z = keys.to(torch.int64)[:, None] + t * _K_STEP + j[None, :] * _K_POS
    z = (z ^ _srl(z, 30)) * _MIX1
    z = (z ^ _srl(z, 27)) * _MIX2
    z = z ^ _srl(z, 31)
    return _srl(z, 1) % int(n)


def _sample(
    data: Data,
    keys: torch.Tensor,
    step: int,
    batch_size: int,
    transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    gens: Sequence[torch.Generator] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of step ``step`` for each stream key: x (S, B, ...), y (S, B, ...)."""
    idx = batch_indices(keys, step, batch_size, data.n_train).to(data.x_train.device)
    x, y = data.x_train[idx], data.y_train[idx]
    if transform is not None:
        assert gens is not None
        x = torch.stack([transform(x[i], g) for i, g in enumerate(gens)])
    return x, y


def _clone_gen(gen: torch.Generator) -> torch.Generator:
    g = torch.Generator(device=gen.device)
    g.set_state(gen.get_state())
    return g


# ----------------------------------------------------------------------------- batched engine


class _Stacked:
    """Parameters, buffers and Adam moments of M models, stacked on a leading model axis.

    All parameters of a model live in ONE row of a flat (M, P) tensor and ``params`` are views
    into it, so the Adam update is a handful of whole-tensor operations whatever the number
    of parameter tensors (ResNet-18 has 62): few kernel launches per step on a GPU.
    """

    def __init__(
        self,
        flat: torch.Tensor,
        layout: list[tuple[str, tuple[int, ...], int, int]],
        buffers: dict[str, torch.Tensor],
        m: torch.Tensor,
        v: torch.Tensor,
        lr: torch.Tensor,
        t: int,
    ) -> None:
        self.flat, self.layout, self.buffers = flat, layout, buffers
        self.m, self.v, self.lr, self.t = m, v, lr, t
        n = flat.shape[0]
        self.params = {k: flat[:, a : a + size].view(n, *shape) for k, shape, a, size in layout}

    @classmethod
    def from_dicts(
        cls, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], lr: torch.Tensor
    ) -> _Stacked:
        """Stack already-stacked parameter dicts (each (M, ...)) into the flat layout."""
        layout, a = [], 0
        for k, p in params.items():
            size = int(p[0].numel())
            layout.append((k, tuple(p.shape[1:]), a, size))
            a += size
        n = int(lr.shape[0])
        flat = torch.cat([p.detach().reshape(n, -1) for p in params.values()], dim=1).clone()
        return cls(
            flat,
            layout,
            {k: b.detach().clone() for k, b in buffers.items()},
            torch.zeros_like(flat),
            torch.zeros_like(flat),
            lr,
            0,
        )

    def leaves(self, t: torch.Tensor, i: int = 0, j: int | None = None) -> list[torch.Tensor]:
        """Per-parameter (j−i, ...) views of rows i:j of a flat (M, P) tensor, in layout order."""
        rows = t[i:j]
        n = rows.shape[0]
        return [rows[:, a : a + size].view(n, *shape) for _, shape, a, size in self.layout]

    def flatten(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-parameter (M, ...) gradients → one (M, P) tensor in the flat layout."""
        n = self.flat.shape[0]
        return torch.cat([grads[k].reshape(n, -1) for k, _, _, _ in self.layout], dim=1)

    def select(self, idx: torch.Tensor) -> _Stacked:
        """The sub-stack of models ``idx`` (a copy: index_select never aliases)."""
        return _Stacked(
            self.flat.index_select(0, idx),
            self.layout,
            {k: b.index_select(0, idx) for k, b in self.buffers.items()},
            self.m.index_select(0, idx),
            self.v.index_select(0, idx),
            self.lr.index_select(0, idx),
            self.t,
        )


def _adam_step(st: _Stacked, grads: torch.Tensor, b1: float, b2: float, eps: float) -> None:
    """Adam on the flat (M, P) stack, the same arithmetic as ``torch.optim.Adam`` (single-tensor).

    m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
    p ← p − (η/(1−β1ᵗ)) · m / (√v/√(1−β2ᵗ) + ε), with η a per-model (per-row) learning rate.
    With β1 = β2 = 0 this is p ← p − η g/(|g| + ε): sign descent as ε → 0.
    """
    st.t += 1
    bc1 = 1.0 - b1**st.t
    bc2_sqrt = math.sqrt(1.0 - b2**st.t)
    st.m.lerp_(grads, 1.0 - b1)
    st.v.mul_(b2).addcmul_(grads, grads, value=1.0 - b2)
    denom = (st.v.sqrt() / bc2_sqrt).add_(eps)
    st.flat.sub_((st.lr / bc1)[:, None] * st.m / denom)


def _adam_leaves(
    st: _Stacked,
    parts: list[tuple[int, int, list[torch.Tensor]]],
    b1: float,
    b2: float,
    eps: float,
) -> None:
    """:func:`_adam_step` fed with per-parameter ("leaf") gradients, bit for bit the same.

    ``parts`` holds, per chunk of rows i:j, the gradients of the parameters in layout order,
    each (j−i, ...), as autograd returns them: the moments are updated through views of
    the flat m and v, so the flat (M, P) gradient is never assembled (no zero-filled slice
    gradients summed in the backward, no concatenation). Every element goes through the same
    float32 operations in the same order as in :func:`_adam_step` (elementwise arithmetic
    does not depend on the tensor it sits in), so the parameters are identical; the last
    update reuses one temporary instead of three.
    """
    st.t += 1
    bc1 = 1.0 - b1**st.t
    bc2_sqrt = math.sqrt(1.0 - b2**st.t)
    for i, j, grads in parts:
        m, v = st.leaves(st.m, i, j), st.leaves(st.v, i, j)
        torch._foreach_lerp_(m, grads, 1.0 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - b2)
    denom = st.v.sqrt().div_(bc2_sqrt).add_(eps)
    upd = torch.mul((st.lr / bc1)[:, None], st.m).div_(denom)
    st.flat.sub_(upd)


class _Batched:
    """The vmapped loss/gradient and held-in evaluation of one workload's architecture."""

    def __init__(
        self,
        workload: Workload,
        template: torch.nn.Module,
        data: Data,
        eval_chunk: int,
        model_chunk: int | None,
    ) -> None:
        self.data, self.eval_chunk, self.model_chunk = data, eval_chunk, model_chunk
        self.shrunk = 0  # times model_chunk was halved after an out-of-memory error

        def loss_fn(p, b, x, y):
            return workload.loss(functional_call(template, (p, b), (x,)), y)

        self._loss = vmap(loss_fn, in_dims=(0, 0, 0, 0))
        self._eval = vmap(loss_fn, in_dims=(0, 0, None, None))
        self._loss_one = loss_fn

    def grads(self, st: _Stacked, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-model gradients in the flat (M, P) layout.

        The models are independent, so the gradient of the SUM of their losses with respect to
        the flat stack is, row by row, each model's own gradient: one vmapped forward and one
        ordinary backward, cheaper than ``vmap(grad(...))`` (no per-op functorch transform in
        the backward) and the result lands in the flat layout with no concatenation.
        """
        while True:
            try:
                return self._grads(st, x, y)
            except torch.OutOfMemoryError:
                pass  # leave the except block first: its traceback holds the failed pass
            # nothing was updated yet: retry with half the models a pass
            self._shrink(st)

    def _grads(self, st: _Stacked, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = torch.empty_like(st.flat)
        for i, j in self._chunks(st):
            flat = st.flat[i:j].detach().requires_grad_(True)
            params = {
                k: flat[:, a : a + size].view(j - i, *shape) for k, shape, a, size in st.layout
            }
            buffers = {k: b[i:j] for k, b in st.buffers.items()}
            losses = self._loss(params, buffers, x[i:j], y[i:j])
            (g[i:j],) = torch.autograd.grad(losses.sum(), flat)
        return g

    def leaf_grads(
        self, st: _Stacked, x: torch.Tensor, y: torch.Tensor
    ) -> list[tuple[int, int, list[torch.Tensor]]]:
        """Per-model gradients as autograd returns them: per chunk of rows i:j, one
        (j−i, ...) tensor per parameter (the input of :func:`_adam_leaves`)."""
        while True:
            try:
                return self._leaf_grads(st, x, y)
            except torch.OutOfMemoryError:
                pass  # leave the except block first: its traceback holds the failed pass
            self._shrink(st)

    def _leaf_grads(
        self, st: _Stacked, x: torch.Tensor, y: torch.Tensor
    ) -> list[tuple[int, int, list[torch.Tensor]]]:
        parts = []
        for i, j in self._chunks(st):
            leaves = [p.detach().requires_grad_(True) for p in st.leaves(st.flat, i, j)]
            params = {k: p for (k, _, _, _), p in zip(st.layout, leaves)}
            buffers = {k: b[i:j] for k, b in st.buffers.items()}
            losses = self._loss(params, buffers, x[i:j], y[i:j])
            parts.append((i, j, list(torch.autograd.grad(losses.sum(), leaves))))
        return parts

    def _shrink(self, st: _Stacked) -> None:
        """After an out-of-memory error: halve the models per pass (results do not change:
        the models are independent), or re-raise when one model a pass does not fit."""
        n = st.flat.shape[0]
        current = min(self.model_chunk or n, n)
        if current <= 1:
            raise torch.OutOfMemoryError(
                "one model a pass does not fit in the device memory; use a smaller batch size"
            )
        self.model_chunk = max(1, current // 2)
        self.shrunk += 1
        if st.flat.device.type == "cuda":
            torch.cuda.empty_cache()

    def _chunks(self, st: _Stacked) -> list[tuple[int, int]]:
        """Row ranges of at most ``model_chunk`` models (all at once when None)."""
        n = st.flat.shape[0]
        c = n if not self.model_chunk else self.model_chunk
        return [(i, min(i + c, n)) for i in range(0, n, c)]

    @torch.no_grad()
    def eval(self, st: _Stacked) -> torch.Tensor:
        """Mean held-in loss per model, shape (n_models,), as float64 on the CPU.

        On a CPU the models are evaluated one after another: with an unbatched input, vmap
        turns the model axis of a convolution into a grouped convolution, which oneDNN runs
        2–3× slower than separate ones (measured on fmnist-cnn). On a GPU the vmapped
        evaluation is one big launch per layer and wins.
        """
        while True:
            try:
                return self._eval_all(st)
            except torch.OutOfMemoryError:
                pass  # leave the except block first: its traceback holds the failed pass
            # nothing was updated yet: retry with half the models a pass
            self._shrink(st)

    def _eval_all(self, st: _Stacked) -> torch.Tensor:
        xe, ye = self.data.x_eval, self.data.y_eval
        n = int(xe.shape[0])
        tot = torch.zeros(st.lr.shape[0], dtype=torch.float64, device=st.flat.device)
        if st.flat.device.type == "cpu":
            for m in range(st.flat.shape[0]):
                params = {k: p[m] for k, p in st.params.items()}
                buffers = {k: v[m] for k, v in st.buffers.items()}
                for i in range(0, n, self.eval_chunk):
                    xc, yc = xe[i : i + self.eval_chunk], ye[i : i + self.eval_chunk]
                    tot[m] += self._loss_one(params, buffers, xc, yc).double() * xc.shape[0]
            return tot / n
        for a, b in self._chunks(st):
            params = {k: p[a:b] for k, p in st.params.items()}
            buffers = {k: v[a:b] for k, v in st.buffers.items()}
            for i in range(0, n, self.eval_chunk):
                xc, yc = xe[i : i + self.eval_chunk], ye[i : i + self.eval_chunk]
                tot[a:b] += self._eval(params, buffers, xc, yc).double() * xc.shape[0]
        return (tot / n).cpu()


def auto_model_chunk(
    workload: Workload,
    data: Data,
    batch_size: int,
    n_models: int,
    device: str,
    *,
    memory_fraction: float = 0.7,
) -> int | None:
    """``model_chunk`` for :func:`train_group` from the device's free memory (None on a CPU).

    Measures the peak memory of one model's training step at this batch size on ``device``
    (a probe, ~2 steps), subtracts what the group keeps resident (parameters, Adam moments,
    gradients: 4 copies of n_models × P floats, plus a fork's copy), and fits the rest:
    :func:`chunk_for_memory` with ``memory_fraction`` of the free memory. ``train_group``
    also halves its chunk after an out-of-memory error, so this is a starting point.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    model = _init_model(workload, 0, device)
    template = copy.deepcopy(model).to("meta")
    params, buffers = stack_module_state([model])
    lr = torch.ones(1, device=device, dtype=next(iter(params.values())).dtype)
    st = _Stacked.from_dicts(params, buffers, lr)
    data = data.to(device) if data.x_train.device != dev else data
    eng = _Batched(workload, template, data, EVAL_CHUNK, None)
    keys = torch.tensor([stream_seed(0)], dtype=torch.int64, device=device)
    x, y = _sample(data, keys, 0, int(batch_size), None, None)
    eng.leaf_grads(st, x, y)  # warm-up: kernels, workspaces
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    eng.leaf_grads(st, x, y)
    torch.cuda.synchronize(dev)
    per_model = max(1, torch.cuda.max_memory_allocated(dev) - base)
    n_params = int(st.flat.shape[1]) * st.flat.element_size()
    del st, eng, params, buffers, model, x, y
    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info(dev)
    room = memory_fraction * free - 5 * n_models * n_params
    if room <= per_model:
        return 1
    return chunk_for_memory(int(n_models), float(per_model), float(room))


#: The ways :func:`train_group` can run its main training steps (``capture=``).
CAPTURES = ("none", "compile", "graph")


def _device_batch(
    batch_size: int,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    identity: bool,
    t: torch.Tensor,
    keys: torch.Tensor,
    gather: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of step ``t`` (a 0-dim device tensor) for each model: x (M, B, ...), y."""
    idx = batch_indices(keys, t, batch_size, x_train.shape[0])
    x, y = x_train[idx], y_train[idx]
    if not identity:  # replicate each seed's batch to its models (in model order)
        x, y = x.index_select(0, gather), y.index_select(0, gather)
    return x, y


def _device_update(
    loss: Callable[..., torch.Tensor],
    layout: list[tuple[str, tuple[int, ...], int, int]],
    b1: float,
    b2: float,
    eps: float,
    functional: bool,
    flat: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    lr: torch.Tensor,
    t: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    buffers: dict[str, torch.Tensor],
) -> None:
    """Gradients and :func:`_adam_leaves` with the step count ``t`` on the device: the part
    of a step that is compiled (``torch.compile``) or captured (a CUDA graph).

    ``t`` is a 0-dim int64 tensor incremented here; Adam's bias corrections at the new t are
    computed in float64 and rounded to float32 as the Python-float scalars of the eager step
    are, so no host value enters the step. ``functional``: gradients by ``torch.func.grad``
    (traceable by ``torch.compile``) instead of ``torch.autograd.grad`` (capturable by a
    CUDA graph). Updates ``flat``, ``m``, ``v`` and ``t`` in place.
    """
    n = flat.shape[0]
    names = [k for k, _, _, _ in layout]

    def views(z: torch.Tensor) -> list[torch.Tensor]:
        return [z[:, a : a + size].view(n, *shape) for _, shape, a, size in layout]

    if functional:

        def total(ps: list[torch.Tensor]) -> torch.Tensor:
            return loss(dict(zip(names, ps)), buffers, x, y).sum()

        grads = list(torch.func.grad(total)(views(flat)))
    else:
        leaves = [p.detach().requires_grad_(True) for p in views(flat)]
        grads = list(
            torch.autograd.grad(loss(dict(zip(names, leaves)), buffers, x, y).sum(), leaves)
        )
    t.add_(1)
    tf = t.to(torch.float64)
    bc1 = (1.0 - torch.pow(b1, tf)).to(lr.dtype)
    bc2_sqrt = torch.sqrt(1.0 - torch.pow(b2, tf)).to(lr.dtype)
    mv, vv = views(m), views(v)
    torch._foreach_lerp_(mv, grads, 1.0 - b1)
    torch._foreach_mul_(vv, b2)
    torch._foreach_addcmul_(vv, grads, grads, value=1.0 - b2)
    denom = v.sqrt().div_(bc2_sqrt).add_(eps)
    upd = torch.mul((lr / bc1)[:, None], m).div_(denom)
    flat.sub_(upd)


class _Capture:
    """The captured main-run step of one group: ``"compile"`` or ``"graph"``, or the eager
    steps after a clean fall-back.

    ``"compile"``: :func:`_device_update` under ``torch.compile`` (``mode="reduce-overhead"``
    on a GPU, whose CUDA graphs cut the launches; inductor's C++ code on a CPU); the batch
    is drawn eagerly (:func:`_device_batch`: its wrapping int64 arithmetic is left out of
    generated code, where signed overflow is undefined).
    ``"graph"``: :func:`_device_batch` + :func:`_device_update` captured in a
    ``torch.cuda.CUDAGraph`` per stack
    (recaptured when finished models are dropped) and replayed once per step; a GPU only.
    Either is set up at its first use and checked there against the eager step on a copy of
    the state (same batch, one step): any exception while setting up, or a step that differs
    by more than :data:`CAPTURE_CHECK_RTOL` relative to the update, disables it for the rest of
    the group and the eager steps run instead. ``used`` says what ran (``"none"`` after a
    fall-back), ``note`` why it fell back. Forks (further steps) always run eagerly.
    """

    def __init__(self, mode: str, eng: _Batched, workload: Workload, cfg: dict, b1, b2, eps):
        self.mode, self.used, self.note = mode, mode, ""
        self.eng, self.cfg, self.b = eng, cfg, (b1, b2, eps)
        self.transform = workload.batch_transform
        self._fn: Callable[..., None] | None = None
        self._graph: Any = None
        self._graph_for: Any = None
        self._checked: set[tuple[int, int]] = set()
        self._loss = eng._loss

    def fall_back(self, why: str) -> None:
        self.used, self.note = "none", why
        self._fn = self._graph = self._graph_for = None

    def _batch(self, identity: bool, t, keys, gather):
        d = self.eng.data
        return _device_batch(
            self.cfg["batch_size"], d.x_train, d.y_train, identity, t, keys, gather
        )

    def steps(
        self, st: _Stacked, keys: torch.Tensor, gather: torch.Tensor, identity: bool, n: int
    ) -> int:
        """Run up to ``n`` captured steps on ``st``; returns how many ran (``n``, or fewer
        when it falls back: the caller runs the rest eagerly)."""
        if self.used == "none":
            return 0
        why = self._unsupported(st)
        if why:
            self.fall_back(why)
            return 0
        try:
            if self.mode == "compile":
                self._compiled_steps(st, keys, gather, identity, n)
            else:
                self._graph_steps(st, keys, gather, identity, n)
        except _CheckFailed as exc:
            self.fall_back(str(exc))
            return exc.done
        return n

    def _unsupported(self, st: _Stacked) -> str:
        dev = st.flat.device
        if self.mode == "graph" and dev.type != "cuda":
            return f"CUDA graphs need a CUDA device; the group runs on {dev.type}"
        if self.transform is not None:
            return "the workload's random batch_transform is not captured"
        if self.eng.model_chunk is not None and self.eng.model_chunk < st.flat.shape[0]:
            return f"model_chunk {self.eng.model_chunk} < {st.flat.shape[0]} models"
        return ""

    # -- torch.compile
    def _compiled_steps(self, st, keys, gather, identity, n) -> None:
        dev = st.flat.device
        if self._fn is None:
            try:
                mode = "reduce-overhead" if dev.type == "cuda" else None
                self._fn = torch.compile(_device_update, mode=mode, dynamic=None)
            except Exception as exc:  # no inductor, no compiler, unsupported platform
                raise _CheckFailed(f"torch.compile: {type(exc).__name__}: {exc}") from None
        t = torch.full((), st.t, dtype=torch.int64, device=dev)
        b1, b2, eps = self.b
        head = (self._loss, st.layout, b1, b2, eps, True)

        def one(flat, m, v, lr, t, keys, gather, buffers) -> None:
            x, y = self._batch(identity, t, keys, gather)
            if dev.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            self._fn(*head, flat, m, v, lr, t, x, y, buffers)

        key = (st.flat.shape[0], int(identity))
        start = 0
        if key not in self._checked:  # first call at this shape: compile, then compare
            self._check(st, keys, gather, identity, t, one)
            self._checked.add(key)
            start = 1
        done = start
        try:
            for _ in range(start, n):
                one(st.flat, st.m, st.v, st.lr, t, keys, gather, st.buffers)
                done += 1
        except Exception as exc:  # a later compile (new shape guard) or run failed
            st.t += done
            raise _CheckFailed(
                f"compile: {type(exc).__name__} after {done} steps: {exc}", done
            ) from None
        st.t += n

    # -- torch.cuda.graphs
    def _graph_steps(self, st, keys, gather, identity, n) -> None:
        done = 0
        if self._graph_for is not st:
            self._graph = None  # free the previous stack's graph and its memory pool
            done = self._capture(st, keys, gather, identity)
        g, t, static_keys, static_gather = self._graph
        t.fill_(st.t + done)
        static_keys.copy_(keys)
        static_gather.copy_(gather)
        for _ in range(done, n):
            g.replay()
        st.t += n

    def _capture(self, st, keys, gather, identity) -> int:
        """Capture the step of stack ``st``; returns the steps taken by the check (0 or 1)."""
        dev = st.flat.device
        t = torch.full((), st.t, dtype=torch.int64, device=dev)
        sk, sg = keys.clone(), gather.clone()
        b1, b2, eps = self.b

        def body() -> None:
            x, y = self._batch(identity, t, sk, sg)
            _device_update(
                self._loss,
                st.layout,
                b1,
                b2,
                eps,
                False,
                st.flat,
                st.m,
                st.v,
                st.lr,
                t,
                x,
                y,
                st.buffers,
            )

        saved = [z.clone() for z in (st.flat, st.m, st.v)]
        try:
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up: library handles, workspaces, autograd streams
                    body()
            torch.cuda.current_stream(dev).wait_stream(side)
            for z, s in zip((st.flat, st.m, st.v), saved):
                z.copy_(s)
            t.fill_(st.t)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                body()
        except Exception as exc:
            for z, s in zip((st.flat, st.m, st.v), saved):
                z.copy_(s)
            raise _CheckFailed(f"CUDA graph capture: {type(exc).__name__}: {exc}") from None
        self._graph, self._graph_for = (g, t, sk, sg), st
        key = (st.flat.shape[0], int(identity))
        if key in self._checked:
            return 0

        def replay_once(*_a) -> None:
            g.replay()

        t.fill_(st.t)
        self._check(st, keys, gather, identity, t, replay_once)
        self._checked.add(key)
        return 1

    def _check(self, st, keys, gather, identity, t, run_one) -> None:
        """One captured step (``run_one``) against one eager step from the same state.

        On agreement the captured step's result stands (the caller counts the step); on a
        disagreement or an exception the state is put back as it was and ``_CheckFailed``
        raised, so the eager steps start from exactly where the captured ones would have.
        """
        b1, b2, eps = self.b
        saved = [z.clone() for z in (st.flat, st.m, st.v)]

        def restore() -> None:
            for z, s in zip((st.flat, st.m, st.v), saved):
                z.copy_(s)

        try:
            run_one(st.flat, st.m, st.v, st.lr, t, keys, gather, st.buffers)
        except Exception as exc:
            restore()
            raise _CheckFailed(f"{self.mode}: {type(exc).__name__}: {exc}") from None
        ref = _Stacked(
            *(z.clone() for z in saved[:1]),
            st.layout,
            st.buffers,
            saved[1].clone(),
            saved[2].clone(),
            st.lr,
            st.t,
        )
        x, y = _sample(self.eng.data, keys, st.t, self.cfg["batch_size"], None, None)
        if not identity:
            x, y = x.index_select(0, gather), y.index_select(0, gather)
        _adam_leaves(ref, self.eng.leaf_grads(ref, x, y), b1, b2, eps)
        update = float((saved[0] - ref.flat).abs().amax())
        err = float((ref.flat - st.flat).abs().amax()) / max(update, 1e-30)
        if not math.isfinite(err) or err > CAPTURE_CHECK_RTOL:
            restore()
            raise _CheckFailed(
                f"{self.mode}: the captured step differs from the eager step by {err:.3g} of "
                f"the update (> {CAPTURE_CHECK_RTOL}); running eagerly"
            )


#: A captured step may differ from the eager one by reassociated float32 sums (fused kernels):
#: a few ulps of the gradients, which Adam turns into a relative change of the update of the
#: same order (m/√v is a ratio); 1e-3 of the largest update is ~10⁴ float32 ulps of room while
#: a wrong batch, step count or learning rate changes the update by O(1).
CAPTURE_CHECK_RTOL = 1e-3


class _CheckFailed(Exception):
    """A captured path could not be set up, disagreed with the eager step, or failed after
    ``done`` steps had run."""

    def __init__(self, message: str, done: int = 0) -> None:
        super().__init__(message)
        self.done = done


def _batched_steps(
    eng: _Batched,
    st: _Stacked,
    seed_of: list[int],
    gens: dict[int, torch.Generator] | None,
    n: int,
    cfg: dict[str, Any],
    transform,
    b1: float,
    b2: float,
    eps: float,
    adam: str = "leaves",
    capture: _Capture | None = None,
) -> None:
    """``n`` Adam steps on the stack; model i draws from the data stream of ``seed_of[i]``.

    Each distinct seed's batch is drawn once per step and gathered to its models, so models
    that share a seed see the same examples (common random numbers). ``adam``: ``"leaves"``
    (:func:`_adam_leaves`) or ``"flat"`` (:func:`_adam_step`), the same numbers;
    ``capture``: run the steps captured when it can (:class:`_Capture`).
    """
    uniq = sorted(set(seed_of))
    pos = {s: j for j, s in enumerate(uniq)}
    dev = st.lr.device
    gather = torch.tensor([pos[s] for s in seed_of], device=dev)
    keys = torch.tensor([stream_seed(s) for s in uniq], dtype=torch.int64, device=dev)
    glist = None if gens is None else [gens[s] for s in uniq]
    identity = list(seed_of) == uniq
    done = 0 if capture is None else capture.steps(st, keys, gather, identity, n)
    for _ in range(n - done):
        x, y = _sample(eng.data, keys, st.t, cfg["batch_size"], transform, glist)
        if not identity:  # replicate each seed's batch to its models (in model order)
            x, y = x.index_select(0, gather), y.index_select(0, gather)
        if adam == "leaves":
            _adam_leaves(st, eng.leaf_grads(st, x, y), b1, b2, eps)
        else:
            _adam_step(st, eng.grads(st, x, y), b1, b2, eps)


def train_group(
    workload: Workload,
    data: Data,
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    targets: Sequence[float] | None = None,
    further_steps: int | None = None,
    max_steps: int | None = None,
    eval_every: int | None = None,
    eval_schedule: str = "fixed",
    eval_rel: float = EVAL_REL,
    device: str = "cpu",
    on_progress: Callable[[int], None] | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
    eval_chunk: int = EVAL_CHUNK,
    model_chunk: int | None = None,
    checkpoint_every: float | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
    adam: str = "leaves",
    capture: str = "none",
) -> list[dict[str, Any]]:
    """Train every (lr, seed) model of one batch size as one vmapped program.

    Args:
      workload: the model/loss/protocol constants (:class:`validate.workload.Workload`).
      data: in-memory tensors (moved to ``device`` here if they are elsewhere).
      batch_size: B, examples per optimiser step.
      lrs, seeds: the grid; one model per (lr, seed) pair.
      betas, adam_eps: Adam's (β1, β2) and ε; β1 = β2 = 0 with tiny ε is sign descent.
      targets: held-in loss targets, descending (default ``workload.targets``).
      further_steps, max_steps, eval_every: default to the workload's values.
      eval_schedule: ``"fixed"`` evaluates the held-in loss every ``eval_every`` steps;
        ``"relative"`` only on the subset of that grid given by :func:`eval_gap` (gaps of
        about ``eval_rel`` · step), which resolves S within ``eval_rel`` · S (the guarantee
        is stated there) at a number of evaluations that grows like log S.
      eval_rel: the relative resolution of the ``"relative"`` schedule, in (0, 1).
      device: torch device for the whole group.
      on_progress: called with the number of optimiser steps just taken (main runs).
      diverge_factor: loss above this multiple of the initial loss = diverged.
      eval_chunk: held-in examples per evaluation forward pass.
      model_chunk: at most this many models per vmapped forward/backward (None: all at
        once). Bounds activation memory for big groups on a GPU; results do not change.
      checkpoint_every: seconds between calls of ``on_checkpoint`` (None: never).
      on_checkpoint: called with the group's whole state (a dict of tensors and lists, on the
        CPU) at an evaluation boundary; pass it back as ``resume`` to continue from there.
      resume: a state from ``on_checkpoint`` of the same group (same workload, batch size,
        lrs, seeds and protocol; a different one is a ``ValueError``).
      adam: ``"leaves"`` updates the Adam moments from the per-parameter gradients autograd
        returns (:func:`_adam_leaves`); ``"flat"`` assembles the flat (M, P) gradient first
        (:func:`_adam_step`). Bit-identical results; "leaves" is faster (no gradient copies).
      capture: how the main runs' steps execute: ``"none"`` (eager), ``"compile"``
        (``torch.compile``, CUDA graphs on a GPU) or ``"graph"`` (a CUDA graph per stack,
        GPU only). A path that cannot be set up, or whose first step disagrees with the
        eager step, falls back to eager steps (:class:`_Capture`); the rows say what ran.

    Returns:
      One dict per (lr, seed, target), in that nesting order, with the keys ``ROW_KEYS``:
      ``steps`` S (None if not reached), ``examples`` E = B·S, ``loss_at_target``,
      ``loss_after_further``, ``loss_reduction``, ``diverged`` (diverged before reaching this
      target), ``further_diverged`` (the forked further-steps copy diverged), ``final_step``
      (where the model's main run stopped), ``wall_s`` (wall-clock seconds of the whole group,
      the same in each of its rows), ``group_size`` (models trained together), ``engine``
      (``"batched"``, or ``"batched+compile"`` / ``"batched+graph"`` when the main steps ran
      captured); with a ``capture`` other than "none" also ``capture_note`` (why it fell
      back; "" when it ran).

    Examples:
      >>> from validate.workload import get_workload
      >>> w = get_workload("synthetic-mlp", size="smoke")
      >>> rows = train_group(w, w.load_data(None, "cpu"), 32, [1e-3, 3e-3], [0])
      >>> len(rows) == 2 * len(w.targets)
      True
    """
    cfg = _check_args(
        workload,
        data,
        batch_size,
        lrs,
        seeds,
        betas,
        adam_eps,
        targets,
        further_steps,
        max_steps,
        eval_every,
        eval_schedule,
        eval_rel,
    )
    if model_chunk is not None and model_chunk < 1:
        raise ValueError(f"model_chunk must be >= 1 or None; got {model_chunk=}")
    if eval_chunk < 1:
        raise ValueError(f"eval_chunk must be >= 1; got {eval_chunk=}")
    if adam not in ("leaves", "flat"):
        raise ValueError(f"adam must be 'leaves' or 'flat'; got {adam=}")
    if capture not in CAPTURES:
        raise ValueError(f"capture must be one of {CAPTURES}; got {capture=}")
    t0 = time.perf_counter()
    b1, b2 = cfg["betas"]
    eps = float(adam_eps)
    tg, B, F = cfg["targets"], cfg["batch_size"], cfg["further_steps"]
    data = data.to(device) if data.x_train.device != torch.device(device) else data
    models = [(lr, s) for lr in cfg["lrs"] for s in cfg["seeds"]]
    n_models = len(models)
    rows = [[_new_row(cfg, lr, s, t) for t in tg] for lr, s in models]

    inits = {s: _init_model(workload, s, device) for s in cfg["seeds"]}
    template = copy.deepcopy(inits[cfg["seeds"][0]]).to("meta")
    params, buffers = stack_module_state([inits[s] for _, s in models])
    dtypes = {p.dtype for p in params.values()}
    if len(dtypes) != 1:
        raise ValueError(f"the model's parameters must share one dtype; got {dtypes}")
    lr_t = torch.tensor([lr for lr, _ in models], device=device, dtype=dtypes.pop())
    st = _Stacked.from_dicts(params, buffers, lr_t)
    del inits, params, buffers
    eng = _Batched(workload, template, data, eval_chunk, model_chunk)
    cap = None
    if capture != "none":
        cap = _Capture(capture, eng, workload, cfg, b1, b2, eps)
    gens = None  # torch generators only for a workload's random batch_transform
    if workload.batch_transform is not None:
        gens = {s: torch.Generator(device=device).manual_seed(stream_seed(s)) for s in cfg["seeds"]}

    ident = _group_identity(cfg, st)
    active = list(range(n_models))  # model ids still training, in stack order
    next_t = [0] * n_models  # index of the next target each model must reach
    final_step = [0] * n_models
    step, spent = 0, 0.0
    if resume is not None:
        if resume.get("identity") != ident:
            raise ValueError(
                "resume holds the state of another group (batch size, lrs, seeds, "
                "protocol or model layout differ); start this group afresh"
            )
        st, active, next_t, final_step, step, rows, init_loss, gens = _restore(resume, st, device)
        spent = float(resume["wall_s"])
        losses = None  # the bookkeeping of this evaluation was done before the checkpoint
    else:
        init_loss = eng.eval(st).tolist()
        losses = init_loss
    last_ckpt = time.perf_counter()
    while True:
        if losses is not None:
            # -- bookkeeping at an evaluation: divergence, crossings, forks, compaction
            crossed: list[int] = []  # stack positions that crossed >= 1 target now
            keep: list[int] = []
            for pos, mid in enumerate(active):
                loss = losses[pos]
                final_step[mid] = step
                if not math.isfinite(loss) or loss > diverge_factor * init_loss[mid]:
                    for k in range(next_t[mid], len(tg)):
                        rows[mid][k]["diverged"] = True
                    next_t[mid] = len(tg)
                    continue
                k0 = next_t[mid]
                while next_t[mid] < len(tg) and loss <= tg[next_t[mid]]:
                    _record_cross(rows[mid][next_t[mid]], step, B, loss)
                    next_t[mid] += 1
                if next_t[mid] > k0:
                    crossed.append(pos)
                if next_t[mid] < len(tg):
                    keep.append(pos)
            if crossed:
                idx = torch.tensor(crossed, device=device)
                fork = st.select(idx)
                fseeds = [models[active[p]][1] for p in crossed]
                fgens = None if gens is None else {s: _clone_gen(gens[s]) for s in set(fseeds)}
                _batched_steps(
                    eng, fork, fseeds, fgens, F, cfg, workload.batch_transform, b1, b2, eps, adam
                )
                after = eng.eval(fork).tolist()
                for j, pos in enumerate(crossed):
                    mid = active[pos]
                    for row in rows[mid]:
                        if row["reached"] and row["loss_after_further"] is None:
                            _record_further(
                                row, after[j], row["loss_at_target"], init_loss[mid], diverge_factor
                            )
                del fork
            if len(keep) < len(active):
                if not keep:
                    break
                st = st.select(torch.tensor(keep, device=device))
                active = [active[p] for p in keep]
            if step >= cfg["max_steps"]:
                break
        now = time.perf_counter()
        if (
            on_checkpoint is not None
            and checkpoint_every is not None
            and now - last_ckpt >= checkpoint_every
        ):
            on_checkpoint(
                _snapshot(
                    ident,
                    st,
                    active,
                    next_t,
                    final_step,
                    step,
                    rows,
                    init_loss,
                    gens,
                    spent + now - t0,
                )
            )
            last_ckpt = time.perf_counter()
        # -- train to the next evaluation
        n = _gap(cfg, step)
        _batched_steps(
            eng,
            st,
            [models[m][1] for m in active],
            gens,
            n,
            cfg,
            workload.batch_transform,
            b1,
            b2,
            eps,
            adam,
            cap,
        )
        step += n
        if on_progress is not None:
            on_progress(n)
        losses = eng.eval(st).tolist()
    wall = spent + time.perf_counter() - t0
    used = "none" if cap is None else cap.used
    note = "" if cap is None else cap.note
    out = []
    for mid in range(n_models):
        for row in rows[mid]:
            row.update(
                final_step=final_step[mid],
                wall_s=wall,
                group_size=n_models,
                engine="batched" if used == "none" else f"batched+{used}",
            )
            if cap is not None:
                row["capture_note"] = note
            out.append(row)
    return out


def train_group_compile(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`train_group` with ``capture="compile"`` (an importable trainer for sweeps: its
    name goes into :func:`validate.sweep.sweep_key`, so its results are stored apart)."""
    return train_group(*args, **kwargs, capture="compile")


def train_group_graph(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`train_group` with ``capture="graph"`` (an importable trainer, as
    :func:`train_group_compile`)."""
    return train_group(*args, **kwargs, capture="graph")


#: The trainer of each ``capture`` setting (what ``surgelab validate run --capture`` uses).
TRAINERS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "none": train_group,
    "compile": train_group_compile,
    "graph": train_group_graph,
}


def _group_identity(cfg: dict[str, Any], st: _Stacked) -> dict[str, Any]:
    """What a checkpoint must match to be resumed by this group."""
    return {
        "cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "layout": [[k, list(shape), a, size] for k, shape, a, size in st.layout],
        "buffers": sorted(st.buffers),
    }


def _snapshot(
    ident: dict[str, Any],
    st: _Stacked,
    active: list[int],
    next_t: list[int],
    final_step: list[int],
    step: int,
    rows: list[list[dict[str, Any]]],
    init_loss: list[float],
    gens: dict[int, torch.Generator] | None,
    wall_s: float,
) -> dict[str, Any]:
    """The group's whole state as CPU tensors and plain lists (picklable, device-free)."""
    return {
        "identity": ident,
        "step": step,
        "t": st.t,
        "wall_s": wall_s,
        "active": list(active),
        "next_t": list(next_t),
        "final_step": list(final_step),
        "init_loss": list(init_loss),
        "rows": copy.deepcopy(rows),
        "flat": st.flat.cpu().clone(),
        "m": st.m.cpu().clone(),
        "v": st.v.cpu().clone(),
        "lr": st.lr.cpu().clone(),
        "buffers": {k: b.cpu().clone() for k, b in st.buffers.items()},
        "gens": None if gens is None else {s: g.get_state() for s, g in gens.items()},
    }


def _restore(state: dict[str, Any], like: _Stacked, device: str):
    """Inverse of :func:`_snapshot` (``like`` supplies the layout)."""
    st = _Stacked(
        state["flat"].to(device),
        like.layout,
        {k: b.to(device) for k, b in state["buffers"].items()},
        state["m"].to(device),
        state["v"].to(device),
        state["lr"].to(device),
        int(state["t"]),
    )
    gens = None
    if state["gens"] is not None:
        gens = {}
        for s, g_state in state["gens"].items():
            g = torch.Generator(device=device)
            g.set_state(g_state)
            gens[int(s)] = g
    return (
        st,
        list(state["active"]),
        list(state["next_t"]),
        list(state["final_step"]),
        int(state["step"]),
        copy.deepcopy(state["rows"]),
        list(state["init_loss"]),
        gens,
    )


# ----------------------------------------------------------------------------- single engine


@torch.no_grad()
def _eval_single(workload: Workload, model: torch.nn.Module, data: Data, chunk: int) -> float:
    n = int(data.x_eval.shape[0])
    tot = 0.0
    for i in range(0, n, chunk):
        xc, yc = data.x_eval[i : i + chunk], data.y_eval[i : i + chunk]
        tot += float(workload.loss(model(xc), yc).double()) * xc.shape[0]
    return tot / n


def _single_steps(
    workload: Workload,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    data: Data,
    batch_size: int,
    key: torch.Tensor,
    t0: int,
    gen: torch.Generator | None,
    n: int,
) -> int:
    """``n`` optimiser steps from step count ``t0``; returns the new step count."""
    for t in range(t0, t0 + n):
        x, y = _sample(
            data, key, t, batch_size, workload.batch_transform, None if gen is None else [gen]
        )
        opt.zero_grad(set_to_none=True)
        workload.loss(model(x[0]), y[0]).backward()
        opt.step()
    return t0 + n


def train_single(
    workload: Workload,
    data: Data,
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    targets: Sequence[float] | None = None,
    further_steps: int | None = None,
    max_steps: int | None = None,
    eval_every: int | None = None,
    eval_schedule: str = "fixed",
    eval_rel: float = EVAL_REL,
    device: str = "cpu",
    on_progress: Callable[[int], None] | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
    eval_chunk: int = EVAL_CHUNK,
) -> list[dict[str, Any]]:
    """The protocol of :func:`train_group`, one model at a time with ``torch.optim.Adam``.

    Same arguments, rows and semantics (init, data stream, evaluation, forks, divergence);
    ``wall_s`` is the wall-clock time of that one model and ``group_size`` is 1. It exists as
    the baseline of :mod:`validate.bench` and as the reference the batched engine is tested
    against.
    """
    cfg = _check_args(
        workload,
        data,
        batch_size,
        lrs,
        seeds,
        betas,
        adam_eps,
        targets,
        further_steps,
        max_steps,
        eval_every,
        eval_schedule,
        eval_rel,
    )
    tg, B, F = cfg["targets"], cfg["batch_size"], cfg["further_steps"]
    data = data.to(device) if data.x_train.device != torch.device(device) else data
    out = []
    pairs = [(lr, s) for lr in cfg["lrs"] for s in cfg["seeds"]]
    for lr, seed in pairs:
        t0 = time.perf_counter()
        rows = [_new_row(cfg, lr, seed, t) for t in tg]
        model = _init_model(workload, seed, device)
        # foreach=False: the single-tensor path, whose arithmetic _adam_step mirrors
        opt = torch.optim.Adam(
            model.parameters(), lr=lr, betas=cfg["betas"], eps=adam_eps, foreach=False
        )
        key = torch.tensor([stream_seed(seed)], dtype=torch.int64, device=device)
        gen = None
        if workload.batch_transform is not None:
            gen = torch.Generator(device=device).manual_seed(stream_seed(seed))
        init = loss = _eval_single(workload, model, data, eval_chunk)
        nxt, step = 0, 0
        while True:
            if not math.isfinite(loss) or loss > diverge_factor * init:
                for r in rows[nxt:]:
                    r["diverged"] = True
                break
            k0 = nxt
            while nxt < len(tg) and loss <= tg[nxt]:
                _record_cross(rows[nxt], step, B, loss)
                nxt += 1
            if nxt > k0:
                fm, fo = copy.deepcopy((model, opt))
                _single_steps(
                    workload,
                    fm,
                    fo,
                    data,
                    B,
                    key,
                    step,
                    None if gen is None else _clone_gen(gen),
                    F,
                )
                after = _eval_single(workload, fm, data, eval_chunk)
                for r in rows[k0:nxt]:
                    _record_further(r, after, r["loss_at_target"], init, diverge_factor)
                del fm, fo
            if nxt >= len(tg) or step >= cfg["max_steps"]:
                break
            n = _gap(cfg, step)
            step = _single_steps(workload, model, opt, data, B, key, step, gen, n)
            if on_progress is not None:
                on_progress(n)
            loss = _eval_single(workload, model, data, eval_chunk)
        wall = time.perf_counter() - t0
        for r in rows:
            r.update(final_step=step, wall_s=wall, group_size=1, engine="single")
        out.extend(rows)
    return out
