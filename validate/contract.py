"""The workload contract: what every real-data experiment needs from a model and its data.

A :class:`Workload` is a small frozen object anyone can copy to plug in their own model and
data: a model factory, in-memory tensors, a loss, and the protocol's constants. Everything in
``validate`` (the sweep protocol, direct estimation, the monitor) talks to workloads only
through this interface. The registry of named workloads is :mod:`validate.workload`; the
built-in ones are in :mod:`validate.workloads` (which imports only this module, so the three
import one way: contract <- workloads <- workload).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Data:
    """Whole datasets in memory, on the device that trains (no per-step Python pipeline).

    ``x_eval``/``y_eval`` is a FIXED held-in subset of the training set: the "training loss"
    the protocol compares with its targets is the mean loss on this subset, evaluated every
    ``eval_every`` steps (a robust, low-variance stand-in for the full training loss).

    Inputs may stay in their storage dtype (uint8 images, uint8 byte tokens): the built-in
    models convert and normalise inside ``forward``, which keeps whole datasets small on the
    device and makes the batched engine's per-model batch gather cheap.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def to(self, device: str | torch.device) -> Data:
        mv = {k: (None if v is None else v.to(device)) for k, v in self.__dict__.items()}
        return Data(**mv)


@dataclass(frozen=True)
class Workload:
    """One real (or synthetic) training problem.

    Attributes:
      name: registry key, e.g. ``"fmnist-cnn"``.
      make_model: ``make_model()`` -> a freshly initialised ``torch.nn.Module``; the caller
        seeds torch before calling it (``torch.manual_seed(seed)``).
      load_data: ``load_data(data_dir, device)`` -> :class:`Data`; ``data_dir`` may be None
        (resolved by :func:`validate.data.resolve_data_dir`).
      loss: ``loss(outputs, targets)`` -> scalar mean loss (cross-entropy for all built-ins;
        for language models outputs are (N, T, V) logits and targets (N, T) token ids).
      further_steps: steps trained after the target is reached (paper: CNN 10, ResNet 50, GPT 50).
      targets: default training-loss targets, descending; several so B_noise can be tracked.
      eval_every: steps between evaluations of the held-in loss.
      max_steps: budget: a run that has not reached the last target by then is "not reached".
      description: architecture and why, for the report.
      batch_transform: optional ``f(x, generator)`` applied to each sampled batch on device
        (e.g. random crops / flips); None for none.
      extra: free-form facts for the report (size, number of examples, ...).
      datasets: names of the :data:`validate.data.DATASETS` that ``load_data`` reads (empty for
        generated data); lets a command check a ``data_dir`` before it starts.
    """

    name: str
    make_model: Callable[[], torch.nn.Module]
    load_data: Callable[[Any, Any], Data]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    further_steps: int
    targets: tuple[float, ...]
    eval_every: int = 10
    max_steps: int = 5000
    description: str = ""
    batch_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.further_steps < 1:
            raise ValueError(f"further_steps must be >= 1; got {self.further_steps}")
        if not self.targets or any(t <= 0 for t in self.targets):
            raise ValueError(
                f"targets must be a non-empty tuple of positive losses; got {self.targets}"
            )
        if list(self.targets) != sorted(self.targets, reverse=True):
            raise ValueError(f"targets must be in descending order; got {self.targets}")
