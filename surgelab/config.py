"""Typed command configs: the only source of defaults, and the flags generated from them.

A command's config is a frozen dataclass deriving from :class:`Config`. Each field is declared
with :func:`opt`, which carries the default, a one-line *why*, and the checks of the value (a
lower / upper bound, a set of choices). The command line is generated from the dataclass, so
the help page shows every default, lists are comma-separated everywhere, and a bad value is one
line naming the flag::

    @dataclass(frozen=True)
    class SurgeConfig(Config):
        d: int = opt(64, "dimension of the quadratic", lo=2)
        batch_sizes: tuple[int, ...] = opt((8, 32), "batch sizes, ascending", lo=1)

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``Literal[...]``, ``X | None``
and ``tuple[X, ...]`` of int / float / str. Cross-field checks go in :meth:`Config.check`,
raising :class:`ConfigError` with the flag they are about.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

__all__ = [
    "Config",
    "ConfigError",
    "add_arguments",
    "config_from_args",
    "config_from_dict",
    "config_to_dict",
    "flag",
    "opt",
]

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A bad config value. ``str()`` is one line that names the flag and the fix."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{flag(name)} {message}")


def flag(name: str) -> str:
    """The command-line flag of a config field: ``n_samples`` → ``--n-samples``.

    A trailing underscore (a field named after a Python keyword, ``from_``) is dropped.
    """
    return "--" + name.rstrip("_").replace("_", "-")


def opt(
    default: Any,
    why: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    ascending: bool = False,
    nonempty: bool = False,
    metavar: str | None = None,
    presentation: bool = False,
) -> Any:
    """A config field: its default, the one-line reason it exists, and the checks of its value.

    Args:
      default: the default (the only place it is defined).
      why: one line for the help page.
      lo, hi: inclusive bounds (``lo_open``: ``lo`` itself is excluded) for numbers and for
        each element of a tuple; ``hi`` also bounds what the machine can hold.
      choices: allowed values (``Literal`` types get them automatically).
      ascending: a tuple must be strictly ascending.
      nonempty: a tuple must have at least one element.
      presentation: the field changes only how results are shown (figures, comparisons) or
        how the work is spread (processes), not the results: a run may be resumed with another
        value of it.
    """
    meta = {
        "why": why,
        "lo": lo,
        "hi": hi,
        "lo_open": lo_open,
        "choices": choices,
        "ascending": ascending,
        "nonempty": nonempty,
        "metavar": metavar,
        "presentation": presentation,
    }
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every command config: field checks run on construction, then :meth:`check`."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_field(f, hints[f.name], getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """Cross-field checks; raise :class:`ConfigError` naming the flag."""


# ---------------------------------------------------------------------------------------------
# type handling


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _elem(tp: Any) -> tuple[Any, bool]:
    """(scalar type, is_tuple)."""
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0], True
        raise TypeError(f"only tuple[X, ...] is supported, got {tp}")
    return tp, False


def _choices_of(tp: Any) -> tuple[Any, ...] | None:
    return tuple(get_args(tp)) if get_origin(tp) is Literal else None


def _scalar_kind(tp: Any) -> type:
    if get_origin(tp) is Literal:
        return type(get_args(tp)[0])
    if tp in (int, float, str, bool):
        return tp
    raise TypeError(f"unsupported config field type {tp!r}")


def _parse_scalar(kind: type, text: str) -> Any:
    text = text.strip()
    if kind is str:
        return text
    if kind is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    try:
        value = float(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"expected {what}, got {text!r}") from None
    if kind is int:
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    return value


def _describe(f: dataclasses.Field, tp: Any) -> str:
    scalar, _ = _elem(_unwrap_optional(tp)[0])
    kind = _scalar_kind(scalar)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}[kind]


def _check_field(f: dataclasses.Field, tp: Any, value: Any) -> None:
    meta = f.metadata
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return
        raise ConfigError(f.name, "is required")
    scalar, is_tuple = _elem(inner)
    choices = meta.get("choices") or _choices_of(scalar)
    values = tuple(value) if is_tuple else (value,)
    if is_tuple and not isinstance(value, tuple):
        raise ConfigError(f.name, f"must be a tuple, got {type(value).__name__}")
    if is_tuple and meta.get("nonempty") and not values:
        raise ConfigError(f.name, "must list at least one value")
    kind = _scalar_kind(scalar)
    for v in values:
        if kind in (int, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f.name, f"must be {_describe(f, tp)}, got {v!r}")
            if kind is int and not isinstance(v, int):
                raise ConfigError(f.name, f"must be an integer, got {v!r}")
            if not math.isfinite(v):
                raise ConfigError(f.name, f"must be finite, got {v!r}")
            lo, hi = meta.get("lo"), meta.get("hi")
            if lo is not None and (v <= lo if meta.get("lo_open") else v < lo):
                rel = ">" if meta.get("lo_open") else ">="
                raise ConfigError(f.name, f"must be {rel} {lo:g}; got {v:g}")
            if hi is not None and v > hi:
                raise ConfigError(f.name, f"must be <= {hi:g}; got {v:g}")
        if choices is not None and v not in choices:
            raise ConfigError(f.name, f"must be one of {', '.join(map(str, choices))}; got {v!r}")
    if is_tuple and meta.get("ascending"):
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise ConfigError(
                f.name, f"must be strictly ascending; got {','.join(map(str, values))}"
            )


# ---------------------------------------------------------------------------------------------
# argparse generation


def _fmt_default(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return ",".join(_fmt_default(x) for x in v) or "(empty)"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _arg_type(name: str, tp: Any):
    inner, optional = _unwrap_optional(tp)
    scalar, is_tuple = _elem(inner)
    kind = _scalar_kind(scalar)

    def convert(text: str) -> Any:
        if optional and text.strip().lower() in ("none", ""):
            return None
        try:
            if is_tuple:
                parts = [p for p in text.split(",") if p.strip()]
                return tuple(_parse_scalar(kind, p) for p in parts)
            return _parse_scalar(kind, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = f"{kind.__name__} list" if is_tuple else kind.__name__
    return convert


def add_arguments(parser: argparse.ArgumentParser, cls: type[Config]) -> None:
    """Add one flag per field of ``cls`` to ``parser``; help shows the why and the default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        meta = f.metadata
        why = meta.get("why", "")
        inner, _ = _unwrap_optional(tp)
        scalar, is_tuple = _elem(inner)
        choices = meta.get("choices") or _choices_of(scalar)
        extra = f" (one of {', '.join(map(str, choices))})" if choices else ""
        if is_tuple:
            extra += " (comma-separated)"
        help_ = f"{why}{extra} [default: {_fmt_default(f.default)}]"
        if scalar is bool and not is_tuple:
            parser.add_argument(
                flag(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_,
            )
            continue
        metavar = meta.get("metavar") or ("LIST" if is_tuple else f.name.upper())
        parser.add_argument(
            flag(f.name),
            dest=f.name,
            type=_arg_type(f.name, tp),
            default=argparse.SUPPRESS,
            metavar=metavar,
            help=help_,
        )


def config_from_args(cls: type[C], args: argparse.Namespace | Mapping[str, Any]) -> C:
    """The config from parsed flags; flags not given keep the dataclass default."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in given.items() if k in names})


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """JSON-able dict of a config (tuples become lists)."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Inverse of :func:`config_to_dict` (lists become tuples; unknown keys are an error)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) for {cls.__name__}: {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
