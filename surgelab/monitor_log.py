"""Monitor logs: a noise-scale callback's ``.history`` saved to, and read back from, a file.

A monitor log is a table with one row per optimizer step and the columns
``step,b_simple,grad_sq,trace_sigma`` (:data:`validate.callbacks.HISTORY_COLUMNS`), as CSV
(``.csv``, header line first) or JSON Lines (``.jsonl``, one object per line). ``b_simple`` is
``inf`` while the monitor's |G|² average is not yet positive; CSV writes it as ``inf`` and JSON
Lines as ``Infinity`` (Python's ``json``), and both read back exactly. ``surgelab advise
--monitor-log FILE`` reads these files.

Examples:
  >>> import tempfile, pathlib
  >>> rows = [{"step": 1, "b_simple": float("inf"), "grad_sq": -0.5, "trace_sigma": 3.0},
  ...         {"step": 2, "b_simple": 12.5, "grad_sq": 0.25, "trace_sigma": 3.125}]
  >>> with tempfile.TemporaryDirectory() as d:
  ...     path = save_history(rows, pathlib.Path(d) / "noise.csv")
  ...     print(path.read_text(), end="")
  ...     assert load_history(path) == rows
  step,b_simple,grad_sq,trace_sigma
  1,inf,-0.5,3.0
  2,12.5,0.25,3.125
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "load_history", "save_history"]

#: The columns of a monitor log, in file order: ``validate.callbacks.HISTORY_COLUMNS`` (spelt
#: out, not imported, so reading a log does not import torch; a test ties the two together).
COLUMNS: tuple[str, ...] = ("step", "b_simple", "grad_sq", "trace_sigma")
_FORMATS = (".csv", ".jsonl")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{path}: a monitor log is .csv or .jsonl (got {suffix or 'no suffix'!r})")
    return suffix


def _row(r: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One row with exactly COLUMNS: ``step`` a non-negative int, the rest floats."""
    missing = [c for c in COLUMNS if c not in r]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {','.join(missing)}; a monitor log needs "
            f"{','.join(COLUMNS)}"
        )
    out: dict[str, Any] = {}
    for c in COLUMNS:
        v = r[c]
        if isinstance(v, bool) or v is None or (isinstance(v, str) and not v.strip()):
            raise ValueError(f"{where}: {c} is {v!r}, not a number")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {c} is {v!r}, not a number") from None
        if c == "step":
            if not (math.isfinite(x) and x == int(x) and x >= 0):
                raise ValueError(f"{where}: step is {v!r}, not a whole number >= 0")
            out[c] = int(x)
        else:
            out[c] = x
    return out


def save_history(history: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write a callback's ``.history`` as a monitor log (CSV or JSON Lines, by suffix).

    The file is written whole or not at all (a temporary file renamed into place); columns
    other than ``step,b_simple,grad_sq,trace_sigma`` are dropped.

    Args:
      history: rows with at least the keys ``step, b_simple, grad_sq, trace_sigma``
        (``LightningNoiseScale.history`` / ``HFNoiseScale.history``).
      path: ``*.csv`` or ``*.jsonl``; its folder must exist.

    Returns:
      The path written.

    Raises:
      ValueError: an unknown suffix, or a row without a needed column or with a non-number.
    """
    path = Path(path)
    fmt = _format(path)
    rows = [_row(r, f"history row {i}") for i, r in enumerate(history)]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        if fmt == ".csv":
            w = csv.writer(f)
            w.writerow(COLUMNS)
            w.writerows([[r[c] for c in COLUMNS] for r in rows])
        else:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    tmp.replace(path)
    return path


def load_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a monitor log written by :func:`save_history` (or by hand, or a logger export).

    Extra columns are ignored; blank lines in JSON Lines are skipped.

    Args:
      path: ``*.csv`` (header ``step,b_simple,grad_sq,trace_sigma`` in any order, more columns
        allowed) or ``*.jsonl``.

    Returns:
      Rows ``{"step": int, "b_simple": float, "grad_sq": float, "trace_sigma": float}`` in file
      order (``inf``/``nan`` kept: which rows to use is the reader's choice).

    Raises:
      FileNotFoundError: no such file.
      ValueError: unknown suffix, missing columns, or a cell that is not a number, naming
        the file and line.
    """
    path = Path(path)
    fmt = _format(path)
    with path.open(newline="") as f:
        if fmt == ".csv":
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {','.join(missing)}; a monitor log needs "
                    f"{','.join(COLUMNS)} (header: {','.join(header) or 'none'})"
                )
            return [_row(r, f"{path}:{reader.line_num}") for r in reader]
        rows = []
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{n}: a JSON object per line is needed")
            rows.append(_row(obj, f"{path}:{n}"))
        return rows
