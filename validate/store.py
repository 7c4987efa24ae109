"""SQLite store of a sweep's finished points, written unit by unit (DESIGN.md, "Results").

One file per sweep. Three tables:

* ``meta``: the sweep's configuration and its hash. Opening an existing store with a different
  configuration raises :class:`ConfigMismatchError` naming the keys that differ, so a resumed
  sweep never mixes two grids.
* ``units``: one row per finished unit of work (one batch size × a chunk of lrs/seeds).
* ``points``: one row per (batch_size, lr, seed, target) with the engine's fields.

Each unit's points and its ``units`` row are written in ONE transaction, so a unit is either
entirely in the store or not at all: a killed sweep loses at most the units in flight, and a
restarted sweep skips exactly the units already present. The journal is WAL (readers never
block the single writer; a crash mid-commit leaves the last committed state). Only the driver
process writes; workers return rows to it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Point columns and their SQLite types; other keys a trainer returns go into ``extra`` (JSON).
POINT_COLUMNS: dict[str, str] = {
    "batch_size": "INTEGER NOT NULL",
    "lr": "REAL NOT NULL",
    "seed": "INTEGER NOT NULL",
    "target": "REAL NOT NULL",
    "reached": "INTEGER",
    "steps": "INTEGER",
    "examples": "INTEGER",
    "loss_at_target": "REAL",
    "loss_after_further": "REAL",
    "loss_reduction": "REAL",
    "diverged": "INTEGER",
    "further_diverged": "INTEGER",
    "final_step": "INTEGER",
    "wall_s": "REAL",
    "group_size": "INTEGER",
    "engine": "TEXT",
}
_BOOL = ("reached", "diverged", "further_diverged")
_KEY = ("batch_size", "lr", "seed", "target")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    unit_id TEXT PRIMARY KEY, batch_size INTEGER NOT NULL, lrs TEXT NOT NULL,
    seeds TEXT NOT NULL, n_points INTEGER NOT NULL, wall_s REAL, finished_utc REAL
);
CREATE TABLE IF NOT EXISTS points (
    {", ".join(f"{k} {t}" for k, t in POINT_COLUMNS.items())},
    extra TEXT, unit_id TEXT NOT NULL REFERENCES units(unit_id),
    PRIMARY KEY (batch_size, lr, seed, target)
);
"""


class ConfigMismatchError(ValueError):
    """The store holds a sweep with a different configuration than the one being resumed."""


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: stored {old.get(k)!r} != requested {new.get(k)!r}"
        for k in keys
        if old.get(k) != new.get(k)
    ]


def _cell(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class Store:
    """A sweep's SQLite file. Use as a context manager, or call :meth:`close`.

    Args:
      path: the ``.sqlite`` file (created with its folder if absent).
      config: the sweep's JSON-able configuration; a new store records it, an existing one
        must hold the same (else :class:`ConfigMismatchError`).
      config_hash: a digest of ``config`` (e.g. :meth:`validate.presets.Preset.config_hash`).
    """

    def __init__(
        self, path: str | os.PathLike, config: Mapping[str, Any], config_hash: str
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: explicit BEGIN/COMMIT, so one unit = one transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("config_hash", config_hash),
                    ("config", json.dumps(config, sort_keys=True)),
                    ("created_utc", str(time.time())),
                ],
            )
            self._db.execute("COMMIT")
        elif stored.get("config_hash") != config_hash:
            diff = _diff(json.loads(stored.get("config", "{}")), dict(config))
            self._db.close()
            raise ConfigMismatchError(
                f"{self.path} holds a sweep with a different configuration "
                f"({'; '.join(diff) or 'hash differs'}); use a new --out folder, or the "
                "same preset and options to resume"
            )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @property
    def config(self) -> dict[str, Any]:
        (value,) = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        return json.loads(value)

    def done_units(self) -> set[str]:
        """Ids of the units whose points are all stored."""
        return {u for (u,) in self._db.execute("SELECT unit_id FROM units")}

    def write_unit(
        self,
        unit_id: str,
        batch_size: int,
        lrs: Sequence[float],
        seeds: Sequence[int],
        rows: Iterable[Mapping[str, Any]],
        wall_s: float | None = None,
    ) -> int:
        """Store one finished unit's rows and mark it done, atomically; returns rows written.

        Re-writing a unit that is already stored replaces its rows (a duplicate result from a
        retried task is harmless).
        """
        cols = list(POINT_COLUMNS)
        recs = []
        for r in rows:
            missing = [k for k in _KEY if r.get(k) is None]
            if missing:
                raise ValueError(f"row lacks key field(s) {missing}: {dict(r)}")
            extra = {k: v for k, v in r.items() if k not in POINT_COLUMNS}
            recs.append(
                [_cell(r.get(k)) for k in cols] + [json.dumps(extra) if extra else None, unit_id]
            )
        sql = (
            f"INSERT OR REPLACE INTO points ({', '.join(cols)}, extra, unit_id) "
            f"VALUES ({', '.join('?' * (len(cols) + 2))})"
        )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM points WHERE unit_id = ?", (unit_id,))
            self._db.executemany(sql, recs)
            self._db.execute(
                "INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    unit_id,
                    int(batch_size),
                    json.dumps([float(x) for x in lrs]),
                    json.dumps([int(s) for s in seeds]),
                    len(recs),
                    wall_s,
                    time.time(),
                ),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return len(recs)

    def rows(self) -> list[dict[str, Any]]:
        """Every stored point as a dict, sorted by (target desc, batch_size, lr, seed)."""
        cur = self._db.execute(
            f"SELECT {', '.join(POINT_COLUMNS)}, extra, unit_id FROM points "
            "ORDER BY target DESC, batch_size, lr, seed"
        )
        names = [d[0] for d in cur.description]
        out = []
        for rec in cur:
            r = dict(zip(names, rec))
            for k in _BOOL:
                if r[k] is not None:
                    r[k] = bool(r[k])
            extra = r.pop("extra")
            if extra:
                r.update(json.loads(extra))
            out.append(r)
        return out

    def unit_rows(self) -> list[dict[str, Any]]:
        """The ``units`` table (which unit finished when, how long it took)."""
        cur = self._db.execute("SELECT * FROM units ORDER BY batch_size, unit_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, rec)) for rec in cur]


def read_units(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``units`` table of an existing store, without a configuration check."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no sweep store at {path}")
    db = sqlite3.connect(Path(path))
    try:
        cur = db.execute("SELECT * FROM units ORDER BY batch_size, unit_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, rec)) for rec in cur]
    finally:
        db.close()
