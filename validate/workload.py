"""Named workloads: the registry, and the fingerprint that keys stored results.

The contract itself (:class:`Data`, :class:`Workload`) is :mod:`validate.contract`; the built-in
workloads are :mod:`validate.workloads`. Imports flow one way: contract <- workloads <- workload.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import torch

from validate.contract import Data, Workload
from validate.workloads import BUILTIN

__all__ = [
    "Data",
    "Workload",
    "available",
    "factory",
    "fingerprint",
    "get_workload",
    "register",
]

_REGISTRY: dict[str, Callable[..., Workload]] = dict(BUILTIN)


def register(name: str) -> Callable[[Callable[..., Workload]], Callable[..., Workload]]:
    """Register a workload factory ``factory(size=..., data_dir=..., download=...) -> Workload``.

    ``download`` is accepted for compatibility and should be ignored: the app layer fetches a
    missing dataset (listed in ``Workload.datasets``) before ``load_data`` runs.
    """

    def deco(factory: Callable[..., Workload]) -> Callable[..., Workload]:
        _REGISTRY[name] = factory
        return factory

    return deco


def get_workload(name: str, **options: Any) -> Workload:
    """Build a registered workload; an unknown name is a ``ValueError`` listing the known ones.

    Examples:
      >>> get_workload("synthetic-mlp").name
      'synthetic-mlp'
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown workload {name!r}; choose one of {sorted(_REGISTRY)} "
            f"(or register your own with validate.workload.register)"
        )
    return _REGISTRY[name](**options)


def factory(name: str) -> Callable[..., Workload] | None:
    """The factory registered under ``name`` (None if there is none)."""
    return _REGISTRY.get(name)


def available() -> list[str]:
    """Names of the registered workloads, sorted."""
    return sorted(_REGISTRY)


# ----------------------------------------------------------------------------- fingerprint


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _source(obj: Any) -> str:
    """Source text of a user-defined class or function ('' for torch's own or unavailable)."""
    mod = getattr(obj, "__module__", "") or ""
    if mod == "torch" or mod.startswith("torch."):
        return ""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _callable_name(fn: Any) -> str:
    if fn is None:
        return "none"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', None) or type(fn).__module__}.{name}"


def fingerprint(workload: Workload, data: Data, *, seed: int = 0) -> dict[str, Any]:
    """What determines a workload's results, as short digests (keys stored sweep results).

    ``model``: the module's ``repr``, every parameter / buffer name, shape and dtype, and the
    source of each user-defined module class (a changed ``forward`` changes it); ``init``: the
    bytes of the initial parameters built after ``torch.manual_seed(seed)``; ``data``: shapes,
    dtypes and bytes of the training and held-in tensors; ``loss`` / ``transform``: qualified
    names (and source, when user-defined); ``protocol``: the workload's targets, further steps,
    evaluation interval and step budget.

    Examples:
      >>> w = get_workload("synthetic-mlp")
      >>> a = fingerprint(w, w.load_data(None, "cpu"))
      >>> sorted(a)
      ['data', 'init', 'loss', 'model', 'name', 'protocol', 'transform']
      >>> w2 = get_workload("synthetic-mlp", seed=1)  # other generated data, same model
      >>> b = fingerprint(w2, w2.load_data(None, "cpu"))
      >>> (a["model"] == b["model"], a["data"] == b["data"])
      (True, False)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = workload.make_model()
    state = list(model.named_parameters()) + list(model.named_buffers())
    layout = ";".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in state)
    classes = sorted({type(m) for m in model.modules()}, key=lambda c: c.__qualname__)
    sources = "".join(_source(c) for c in classes)
    tensors = [("x_train", data.x_train), ("y_train", data.y_train)]
    tensors += [("x_eval", data.x_eval), ("y_eval", data.y_eval)]
    return {
        "name": workload.name,
        "model": _digest(repr(model), layout, sources),
        "init": _digest(*(_tensor_bytes(v) for _, v in state)),
        "data": _digest(
            *(f"{k}:{tuple(t.shape)}:{t.dtype}" for k, t in tensors),
            *(_tensor_bytes(t) for _, t in tensors),
        ),
        "loss": _callable_name(workload.loss) + ":" + _digest(_source(workload.loss)),
        "transform": _callable_name(workload.batch_transform)
        + ":"
        + _digest(_source(workload.batch_transform) if workload.batch_transform else ""),
        "protocol": {
            "targets": [float(t) for t in workload.targets],
            "further_steps": int(workload.further_steps),
            "eval_every": int(workload.eval_every),
            "max_steps": int(workload.max_steps),
        },
    }
