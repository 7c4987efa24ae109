"""Gradient-noise-scale callbacks for Lightning and the Hugging Face ``Trainer``.

Both put :class:`validate.monitor.NoiseScaleMonitor` inside a trainer the user already has.
Every optimizer step gives two mean gradients of the same parameters at two batch sizes, read
BEFORE gradient clipping (a clipped gradient's norm is the clip threshold, not a measurement):

================ ========================================= ======================================
setting          SMALL batch (B_small)                     BIG batch (B_big)
================ ========================================= ======================================
one process,     the first micro-batch's gradient          the accumulated step gradient
k ≥ 2 micro-     (examples of that micro-batch)            (all k micro-batches)
batches
DDP, W ranks     this rank's accumulated gradient, read    the all-reduced gradient
                 during backward before the all-reduce     (W × the rank's examples)
                 (squared norms averaged over ranks)
================ ========================================= ======================================

One process without accumulation has only one batch size per step: the callbacks then refuse
to start (set ``accumulate_grad_batches`` / ``gradient_accumulation_steps`` ≥ 2). Sharded
strategies (FSDP, DeepSpeed) are refused too: their ``.grad`` holds a shard, not the gradient.

Each step's squared norms go to :meth:`NoiseScaleMonitor.observe`; the smoothed reading is
logged to the trainer's logger under ``noise_scale/b_simple`` (B_simple = tr Σ/|G|²),
``noise_scale/grad_sq`` (|G|²) and ``noise_scale/trace_sigma`` (tr Σ), and appended to the
callback's ``.history`` as ``{"step", "b_simple", "grad_sq", "trace_sigma"}`` (``step``: the
trainer's global step after this optimizer step, 1 for the first; Lightning's loggers file
the same reading one lower, at the step count before the step). ``b_simple`` is ``inf`` while
the |G|² average is not yet positive (the signal is not resolved). Micro-batches of a step are
assumed equal in size (the last, short step of an epoch is weighted as if they were).

Where each framework is read (the installed sources, lightning 2.6 and transformers 5.24):

- Lightning: ``on_after_backward`` runs after every micro-batch's backward (gradients still
  scaled by an AMP GradScaler); ``on_before_optimizer_step`` runs once the gradients are
  accumulated, all-reduced and unscaled, and BEFORE ``configure_gradient_clipping``
  (``Precision._after_closure``). Lightning divides each micro-batch loss by
  ``accumulate_grad_batches``.
- Hugging Face: ``on_pre_optimizer_step`` runs AFTER clipping, and no callback event lies
  between the last micro-batch's backward and the clip. Every optimizer step, however, calls
  ``trainer.accelerator.clip_grad_norm_`` (with ``max_grad_norm``, or with ``inf`` just to
  measure the norm when clipping is off), on the all-reduced gradients before the AMP unscale.
  :class:`HFNoiseScale` wraps that method for the duration of ``train()`` and reads the big
  gradient there; the first micro-batch is read at ``on_substep_end``. The Trainer divides
  each micro-batch loss by the number of micro-batches in the step.

The per-rank gradient under DDP is read by post-accumulate-grad hooks on the parameters: they
run inside backward before DDP's reducer copies the gradient out, so ``.grad`` is still local.

Saving the history writes a file, so it lives in the app layer::

    from surgelab.monitor_log import save_history
    save_history(callback.history, "noise.csv")     # or .jsonl; `surgelab advise --monitor-log`

Usage (Lightning, then Hugging Face)::

    >>> from validate.callbacks import LightningNoiseScale  # doctest: +SKIP
    >>> noise = LightningNoiseScale(beta=0.95)  # doctest: +SKIP
    >>> lightning.Trainer(accumulate_grad_batches=4, gradient_clip_val=1.0,
    ...                   callbacks=[noise]).fit(module, loader)  # doctest: +SKIP
    >>> from validate.callbacks import HFNoiseScale  # doctest: +SKIP
    >>> noise = HFNoiseScale()  # doctest: +SKIP
    >>> Trainer(model, TrainingArguments(..., gradient_accumulation_steps=4),
    ...         train_dataset=ds, callbacks=[noise]).train()  # doctest: +SKIP
    >>> noise.history[-1]["b_simple"]  # doctest: +SKIP

``LightningNoiseScale`` subclasses ``lightning.pytorch.Callback`` (``pytorch_lightning.Callback``
when only that is installed) and ``HFNoiseScale`` subclasses ``transformers.TrainerCallback``;
both classes are built on first use, so importing this module needs neither package.

Reference: McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training",
arXiv 1812.06162, Appendix A.1.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from validate.monitor import NoiseScaleMonitor, grad_sq_norm

# the two callback classes are made by the module __getattr__ below, on first use
__all__ = ["HISTORY_COLUMNS", "METRIC_KEYS", "HFNoiseScale", "LightningNoiseScale"]  # noqa: F822

#: Columns of every ``.history`` row (and of the saved monitor log).
HISTORY_COLUMNS = ("step", "b_simple", "grad_sq", "trace_sigma")
#: Names the readings are logged under, in the order of ``HISTORY_COLUMNS[1:]``.
METRIC_KEYS = ("noise_scale/b_simple", "noise_scale/grad_sq", "noise_scale/trace_sigma")


def _world(group: Any = None) -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


def _mean_over_ranks(x: float, device: torch.device, group: Any = None) -> float:
    """All-reduce one float to its mean over ranks (on ``device``: NCCL takes no CPU tensors)."""
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64, device=device)
    dist.all_reduce(t, group=group)
    return float(t[0]) / _world(group)


def _first_len(args: tuple, kwargs: dict) -> int | None:
    """Leading dimension of the first tensor argument: the examples in a micro-batch."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor) and v.ndim >= 1:
            return int(v.shape[0])
    return None


class _LocalGradTap:
    """|this rank's .grad|², read inside backward by post-accumulate-grad hooks.

    Under DDP the reducer copies a gradient into its bucket after the parameter's
    AccumulateGrad node (hooks included) has run and writes the all-reduced bucket back into
    ``.grad`` only when backward ends, so these hooks see the local accumulated gradient.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter]) -> None:
        self._sq: dict[int, torch.Tensor] = {}
        self._handles = [
            p.register_post_accumulate_grad_hook(self._hook(i))
            for i, p in enumerate(params)
            if p.requires_grad
        ]

    def _hook(self, i: int):
        def hook(p: torch.Tensor) -> None:
            if p.grad is not None:
                self._sq[i] = p.grad.detach().double().pow(2).sum()

        return hook

    def total(self) -> float:
        """Σ |p.grad|² as of the last backward (0 when no gradient was seen)."""
        return float(sum(self._sq.values())) if self._sq else 0.0

    def clear(self) -> None:
        self._sq.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._sq.clear()


class _StepPairs:
    """One optimizer step's two-batch pair, fed by the framework hooks, into a monitor.

    The hooks call :meth:`micro_batch` per micro-batch (its examples), :meth:`after_backward`
    after a micro-batch's backward, and :meth:`finish` with the pre-clip step gradient.
    ``divisor``: what each micro-batch loss was divided by (Lightning: ``accumulate_grad_batches``;
    Hugging Face: the micro-batches in this step); ``unscale``: the AMP loss scale the gradients
    still carry when read (1 without a GradScaler).

    Examples:
      One process, two micro-batches of one example, losses halved for accumulation; a scalar
      parameter whose per-example gradients are 1 and 3 (|G_small|² = 1, |G_big|² = 2² = 4):

      >>> p = torch.nn.Parameter(torch.zeros(()))
      >>> pairs = _StepPairs(beta=0.0, world=1)
      >>> for g in (1.0, 3.0):
      ...     pairs.micro_batch(1)
      ...     p.grad = torch.tensor(g / 2) if p.grad is None else p.grad + g / 2
      ...     pairs.after_backward([p], divisor=2)
      >>> row = pairs.finish([p], step=1, divisor=2)
      >>> row["grad_sq"], row["trace_sigma"]  # (2·4 − 1)/(2 − 1), (1 − 4)/(1 − ½)
      (7.0, -6.0)
    """

    def __init__(
        self,
        beta: float,
        world: int,
        group: Any = None,
        history: list[dict[str, float]] | None = None,
    ) -> None:
        self.monitor = NoiseScaleMonitor(beta=beta)
        self.history: list[dict[str, float]] = [] if history is None else history
        self.world = world
        self.group = group
        self.tap: _LocalGradTap | None = None
        self._sizes: list[int] = []
        self._small_sq: float | None = None

    def micro_batch(self, n_examples: int) -> None:
        self._sizes.append(int(n_examples))

    def after_backward(
        self, params: Iterable[torch.nn.Parameter], divisor: float, unscale: float = 1.0
    ) -> None:
        """After the FIRST micro-batch's backward on one process, keep |mean gradient|²."""
        if self.world == 1 and self._small_sq is None:
            self._small_sq = grad_sq_norm(params) * (divisor / unscale) ** 2

    def reset(self) -> None:
        self._sizes, self._small_sq = [], None
        if self.tap is not None:
            self.tap.clear()

    @property
    def open(self) -> bool:
        """True between a step's first micro-batch and :meth:`finish`."""
        return bool(self._sizes)

    def finish(
        self,
        params: Iterable[torch.nn.Parameter],
        step: int,
        divisor: float,
        unscale: float = 1.0,
        big_unscale: float | None = None,
    ) -> dict[str, float] | None:
        """``params`` hold the step's pre-clip gradient: observe the pair, return the new row.

        ``big_unscale`` (default ``unscale``): the loss scale the step gradient carries now.
        Returns None (nothing observed) when the step has no pair (one micro-batch on one
        process) or a norm is not finite (an AMP overflow step, which the GradScaler skips).
        """
        params = list(params)
        m, local = len(self._sizes), sum(self._sizes)
        big_unscale = unscale if big_unscale is None else big_unscale
        try:
            if m == 0:
                return None
            # each micro-batch gradient was divided by `divisor`; the step's mean is over m
            big_sq = grad_sq_norm(params) * (divisor / m / big_unscale) ** 2
            if self.world > 1:
                if self.tap is None:
                    raise RuntimeError("internal: DDP without a gradient tap")
                device = next((p.grad.device for p in params if p.grad is not None), "cpu")
                local_sq = self.tap.total() * (divisor / m / unscale) ** 2
                small_sq = _mean_over_ranks(local_sq, torch.device(device), self.group)
                b_small, b_big = local, local * self.world
            else:
                if m < 2 or self._small_sq is None:
                    return None
                small_sq, b_small, b_big = self._small_sq, self._sizes[0], local
            if not (math.isfinite(small_sq) and math.isfinite(big_sq)):
                return None
            self.monitor.observe(small_sq, big_sq, b_small, b_big)
        finally:
            self.reset()
        mon = self.monitor
        row = {
            "step": int(step),
            "b_simple": mon.b_simple,
            "grad_sq": mon.g2,
            "trace_sigma": mon.trace_sigma,
        }
        self.history.append(row)
        return row


def _metrics(row: dict[str, float]) -> dict[str, float]:
    return {k: float(row[c]) for k, c in zip(METRIC_KEYS, HISTORY_COLUMNS[1:])}


def _two_batches_or_raise(world: int, accumulation: int, knob: str) -> None:
    if world == 1 and accumulation < 2:
        raise ValueError(
            f"the noise-scale callback needs two batch sizes per step: set {knob} >= 2 "
            f"(got {accumulation}) or train on >= 2 processes (DDP)"
        )


# --------------------------------------------------------------------------- Lightning


def _lightning_package():
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl
        except ImportError as e:
            raise ImportError(
                "LightningNoiseScale needs Lightning: pip install 'surgelab[lightning]'"
            ) from e
    return pl


def _make_lightning():
    pl = _lightning_package()
    from importlib import import_module

    extract_batch_size = import_module(pl.__name__ + ".utilities.data").extract_batch_size

    class LightningNoiseScale(pl.Callback):
        """Gradient noise scale B_simple of a Lightning run, from pre-clip gradients.

        Needs ``accumulate_grad_batches >= 2`` on one device, or DDP. Reads the first
        micro-batch in ``on_after_backward`` and the accumulated pre-clip gradient in
        ``on_before_optimizer_step``; logs ``noise_scale/*`` with ``pl_module.log_dict``
        (so ``log_every_n_steps`` applies) and appends each step to ``.history``.

        Args:
          beta: EMA memory of the monitor (see :class:`validate.monitor.NoiseScaleMonitor`).
          log: also log the readings to the trainer's loggers (``.history`` is kept anyway).

        Examples:
          >>> noise = LightningNoiseScale(beta=0.95)  # doctest: +SKIP
          >>> trainer = lightning.Trainer(accumulate_grad_batches=4, gradient_clip_val=1.0,
          ...                             callbacks=[noise])  # doctest: +SKIP
          >>> trainer.fit(module, loader)  # doctest: +SKIP
          >>> from surgelab.monitor_log import save_history  # doctest: +SKIP
          >>> save_history(noise.history, "noise.csv")  # doctest: +SKIP
        """

        def __init__(self, beta: float = 0.95, log: bool = True) -> None:
            super().__init__()
            NoiseScaleMonitor(beta=beta)  # checks beta now, not at fit time
            self.beta = beta
            self.log_readings = log
            self._pairs: _StepPairs | None = None
            self._history: list[dict[str, float]] = []

        @property
        def history(self) -> list[dict[str, float]]:
            """One row per observed optimizer step: step, b_simple, grad_sq, trace_sigma."""
            return self._history

        @property
        def monitor(self) -> NoiseScaleMonitor | None:
            """The monitor of the current (or last) fit; None before training starts."""
            return None if self._pairs is None else self._pairs.monitor

        def on_train_start(self, trainer, pl_module) -> None:
            if not pl_module.automatic_optimization:
                raise ValueError(
                    "LightningNoiseScale supports automatic optimization only "
                    "(it needs to know how each micro-batch loss was scaled)"
                )
            strategy = type(trainer.strategy).__name__
            if "FSDP" in strategy or "DeepSpeed" in strategy or "ModelParallel" in strategy:
                raise ValueError(
                    f"LightningNoiseScale cannot read full gradients under {strategy}: "
                    f"use a single device or DDP"
                )
            self._remove_tap()  # a previous fit that raised may have left it
            world = _world()
            _two_batches_or_raise(world, trainer.accumulate_grad_batches, "accumulate_grad_batches")
            self._pairs = _StepPairs(self.beta, world, history=self._history)
            if world > 1:
                self._pairs.tap = _LocalGradTap(pl_module.parameters())

        def on_train_end(self, trainer, pl_module) -> None:
            self._remove_tap()

        def on_exception(self, trainer, pl_module, exception) -> None:
            self._remove_tap()

        def _remove_tap(self) -> None:
            if self._pairs is not None and self._pairs.tap is not None:
                self._pairs.tap.remove()
                self._pairs.tap = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if self._pairs is not None:
                self._pairs.micro_batch(extract_batch_size(batch))

        @staticmethod
        def _loss_scale(trainer) -> float:
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            if scaler is not None and scaler.is_enabled():
                return float(scaler.get_scale())
            return 1.0

        def on_after_backward(self, trainer, pl_module) -> None:
            if self._pairs is not None and self._pairs.open:
                self._pairs.after_backward(
                    pl_module.parameters(),
                    divisor=trainer.accumulate_grad_batches,
                    unscale=self._loss_scale(trainer),
                )

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            # gradients here: accumulated, all-reduced, unscaled, not yet clipped
            if self._pairs is None or not self._pairs.open:
                return
            row = self._pairs.finish(
                pl_module.parameters(),
                step=trainer.global_step + 1,
                divisor=trainer.accumulate_grad_batches,
                unscale=self._loss_scale(trainer),  # the tap read scaled gradients
                big_unscale=1.0,
            )
            if row is not None and self.log_readings:
                pl_module.log_dict(_metrics(row), on_step=True, on_epoch=False)

    # picklable by name (ddp_spawn pickles callbacks): validate.callbacks.LightningNoiseScale
    LightningNoiseScale.__module__, LightningNoiseScale.__qualname__ = (
        __name__,
        "LightningNoiseScale",
    )
    return LightningNoiseScale


# --------------------------------------------------------------------------- Hugging Face


def _calling_trainer(trainer_cls: type) -> Any:
    """The ``transformers.Trainer`` whose ``train()`` is running this callback event."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            obj = frame.f_locals.get("self")
            if isinstance(obj, trainer_cls):
                return obj
            frame = frame.f_back
    finally:
        del frame
    return None


def _make_hf():
    try:
        import transformers
    except ImportError as e:
        raise ImportError("HFNoiseScale needs transformers: pip install 'surgelab[hf]'") from e

    class HFNoiseScale(transformers.TrainerCallback):
        """Gradient noise scale B_simple of a Hugging Face ``Trainer`` run, from pre-clip gradients.

        Needs ``gradient_accumulation_steps >= 2`` on one process, or DDP (``torchrun``).
        Reads the first micro-batch at ``on_substep_end`` and the step gradient inside
        ``trainer.accelerator.clip_grad_norm_`` (wrapped during ``train()``), i.e. before the
        clip and before the AMP unscale (the loss scale is divided out). On the Trainer's
        logging steps the reading is logged with ``trainer.log`` (so every ``report_to``
        integration and ``trainer.state.log_history`` get it); every step goes to ``.history``.

        Micro-batch sizes are the leading dimension of the first tensor the model is called
        with (e.g. ``input_ids``): examples, not tokens. The Trainer running the callback is
        found on the call stack at ``on_train_begin``; pass ``trainer=`` if you drive the
        training loop some other way.

        Args:
          beta: EMA memory of the monitor (see :class:`validate.monitor.NoiseScaleMonitor`).
          log: also log the readings through ``trainer.log``.
          trainer: the Trainer (default: found at ``on_train_begin``).

        Examples:
          >>> noise = HFNoiseScale()  # doctest: +SKIP
          >>> args = TrainingArguments(
          ...     "out", gradient_accumulation_steps=4, max_grad_norm=1.0
          ... )  # doctest: +SKIP
          >>> Trainer(model, args, train_dataset=ds, callbacks=[noise]).train()  # doctest: +SKIP
          >>> from surgelab.monitor_log import save_history  # doctest: +SKIP
          >>> save_history(noise.history, "noise.jsonl")  # doctest: +SKIP
        """

        def __init__(self, beta: float = 0.95, log: bool = True, trainer: Any = None) -> None:
            NoiseScaleMonitor(beta=beta)  # checks beta now, not at train time
            self.beta = beta
            self.log_readings = log
            self._given_trainer = trainer
            self.trainer: Any = None
            self._history: list[dict[str, float]] = []
            self._pairs: _StepPairs | None = None
            self._handles: list[Any] = []
            self._accelerator: Any = None
            self._fresh: dict[str, float] | None = None
            self._state: Any = None
            self._first_param: torch.nn.Parameter | None = None
            self._warned = False

        @property
        def history(self) -> list[dict[str, float]]:
            """One row per observed optimizer step: step, b_simple, grad_sq, trace_sigma."""
            return self._history

        @property
        def monitor(self) -> NoiseScaleMonitor | None:
            """The monitor of the current (or last) run; None before training starts."""
            return None if self._pairs is None else self._pairs.monitor

        # ---------------------------------------------------------------- set up, tear down

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._teardown()  # a previous train() that raised left its hooks in place
            trainer = self._given_trainer or _calling_trainer(transformers.Trainer)
            if trainer is None:
                raise RuntimeError(
                    "HFNoiseScale could not find the Trainer running it: pass trainer=..."
                )
            self.trainer, self._state = trainer, state
            acc = trainer.accelerator
            if str(acc.distributed_type).rsplit(".", 1)[-1] in ("DEEPSPEED", "FSDP"):
                raise ValueError(
                    f"HFNoiseScale cannot read full gradients under {acc.distributed_type}: "
                    f"use one process or DDP"
                )
            if getattr(args, "n_gpu", 1) > 1:
                raise ValueError(
                    "HFNoiseScale does not support torch.nn.DataParallel (n_gpu > 1 in one "
                    "process): launch with torchrun (DDP) instead"
                )
            world = _world()
            _two_batches_or_raise(
                world, args.gradient_accumulation_steps, "gradient_accumulation_steps"
            )
            self._pairs = _StepPairs(self.beta, world, history=self._history)
            params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                raise ValueError("HFNoiseScale: the model has no trainable parameters")
            self._first_param = params[0]
            if world > 1:
                self._pairs.tap = _LocalGradTap(params)
            self._handles.append(
                model.register_forward_pre_hook(self._count_examples, with_kwargs=True)
            )
            self._wrap_clip(acc)

        def on_train_end(self, args, state, control, **kwargs):
            self._teardown()

        def _teardown(self) -> None:
            for h in self._handles:
                h.remove()
            self._handles = []
            if self._pairs is not None and self._pairs.tap is not None:
                self._pairs.tap.remove()
                self._pairs.tap = None
            acc = self._accelerator
            if acc is not None and getattr(acc.__dict__.get("clip_grad_norm_"), "_noise", 0):
                del acc.clip_grad_norm_  # the class's method shows through again
            self._accelerator = None

        def _wrap_clip(self, acc: Any) -> None:
            original = acc.clip_grad_norm_

            def clip_grad_norm_(parameters, *args, **kwargs):
                parameters = list(parameters)
                self._finish(parameters)
                return original(parameters, *args, **kwargs)

            clip_grad_norm_._noise = self  # marks the wrapper, for on_train_end
            acc.clip_grad_norm_ = clip_grad_norm_
            self._accelerator = acc

        # ---------------------------------------------------------------- per step

        def _count_examples(self, module, args, kwargs):
            if module.training and torch.is_grad_enabled() and self._pairs is not None:
                n = _first_len(args, kwargs)
                if n is not None:
                    self._pairs.micro_batch(n)

        def _loss_scale(self) -> float:
            scaler = getattr(self._accelerator, "scaler", None)
            if scaler is not None and scaler.is_enabled():
                return float(scaler.get_scale())
            return 1.0

        def on_step_begin(self, args, state, control, **kwargs):
            if self._pairs is not None:
                self._pairs.reset()

        def on_substep_end(self, args, state, control, model=None, **kwargs):
            # a micro-batch that is not the step's last: .grad holds (its mean gradient)/m
            if self._pairs is not None and self._pairs.open:
                self._pairs.after_backward(
                    model.parameters(), divisor=self._divisor(args), unscale=self._loss_scale()
                )

        def _divisor(self, args) -> int:
            # what the Trainer divided each micro-batch loss by: the step's micro-batch count
            # (older versions: gradient_accumulation_steps); a loss normalised by the step's
            # item count (num_items_in_batch) is the same for equal micro-batches
            return getattr(
                self.trainer,
                "current_gradient_accumulation_steps",
                args.gradient_accumulation_steps,
            )

        def _finish(self, parameters: list) -> None:
            pairs = self._pairs
            if pairs is None or not pairs.open:
                return
            if not any(p is self._first_param for p in parameters):
                return  # the accelerator clipping some other model
            row = pairs.finish(
                parameters,
                step=self._state.global_step + 1,
                divisor=self._divisor(self.trainer.args),
                unscale=self._loss_scale(),
            )
            if row is not None:
                self._fresh = row

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            # reached only if clip_grad_norm_ was not called this step (older transformers
            # skip it when max_grad_norm is 0): without clipping these gradients are pre-clip
            if self._pairs is None or not self._pairs.open:
                return
            if not args.max_grad_norm:
                self._finish([p for p in model.parameters()])
                return
            self._pairs.reset()
            if not self._warned:
                self._warned = True
                warnings.warn(
                    "HFNoiseScale: the Trainer clipped without accelerator.clip_grad_norm_, so "
                    "the pre-clip gradient was not seen; no noise-scale readings this run",
                    RuntimeWarning,
                    stacklevel=2,
                )

        def on_step_end(self, args, state, control, **kwargs):
            row, self._fresh = self._fresh, None
            # DefaultFlowCallback (first in the list) has set should_log for this step
            if row is not None and self.log_readings and control.should_log:
                self.trainer.log(_metrics(row))
                # the handler's on_log cleared should_log; the Trainer's own log of this step
                # (loss, grad_norm, learning_rate) comes after on_step_end and needs it
                control.should_log = True

    # picklable by name (ddp_spawn pickles callbacks): validate.callbacks.HFNoiseScale
    HFNoiseScale.__module__, HFNoiseScale.__qualname__ = __name__, "HFNoiseScale"
    return HFNoiseScale


_FACTORIES = {"LightningNoiseScale": _make_lightning, "HFNoiseScale": _make_hf}


def __getattr__(name: str) -> Any:
    # Built on first use: importing lightning or transformers takes seconds, and neither is
    # a core dependency (extras `lightning`, `hf`).
    if name in _FACTORIES:
        cls = _FACTORIES[name]()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
