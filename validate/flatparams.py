"""A network's trainable parameters as one flat vector θ ∈ R^d, for ``torch.func`` calls.

Every direct-estimation module (per-example statistics, Hessian-vector products, the one-step
measurement) works on flat (…, d) vectors; this module maps them to and from the model's
named parameters, and holds the two small helpers they share (eval mode, chunk sizes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class FlatParams:
    """The trainable parameters (detached) and buffers of a model, in a fixed order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]

    @property
    def d(self) -> int:
        """Number of trainable scalars."""
        return sum(math.prod(s) for s in self.shapes)

    def flatten(self, tensors: dict[str, Tensor] | Sequence[Tensor], lead: int = 0) -> Tensor:
        """dict (or sequence in order) of (…, *shape) → (…, d); ``lead`` leading dims kept."""
        seq = [tensors[n] for n in self.names] if isinstance(tensors, dict) else list(tensors)
        return torch.cat([t.reshape(*t.shape[:lead], -1) for t in seq], dim=lead)

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        """(…, d) → dict of (…, *shape), viewing ``vec``."""
        out, i = {}, 0
        lead = vec.shape[:-1]
        for n, s in zip(self.names, self.shapes):
            k = math.prod(s)
            out[n] = vec[..., i : i + k].reshape(*lead, *s)
            i += k
        return out


def flat_view(model: torch.nn.Module) -> FlatParams:
    """The :class:`FlatParams` of ``model``; a model without trainable parameters is an error.

    Examples:
      >>> f = flat_view(torch.nn.Linear(3, 2))
      >>> f.names, f.d
      (('weight', 'bias'), 8)
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(
            f"model {type(model).__name__} has no trainable parameters "
            f"(requires_grad=True); nothing to estimate"
        )
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    return FlatParams(tuple(params), tuple(p.shape for p in params.values()), params, buffers)


def flat_params(model: torch.nn.Module) -> Tensor:
    """The trainable parameters as one detached flat vector θ ∈ R^d (model dtype)."""
    f = flat_view(model)
    return f.flatten(f.params)


def chunk_rows(budget: int, per_item: int) -> int:
    """Rows of ``per_item`` floats that fit a budget of ``budget`` floats (at least 1).

    Examples:
      >>> chunk_rows(100, 30), chunk_rows(10, 30)
      (3, 1)
    """
    return max(1, budget // max(per_item, 1))


class eval_mode:
    """Context manager: ``model.eval()`` inside, the previous mode restored after."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> torch.nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was)
