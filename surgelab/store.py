"""The SQLite store of a sweep's finished points, written unit by unit (the app layer's I/O).

One file per sweep, implementing :class:`validate.sweep.ResultStore`. Three tables:

* ``meta``: the sweep's key (:func:`validate.sweep.sweep_key`: the workload's fingerprint,
  the grid and the engine settings) and its hash. Binding a store to another key raises
  :class:`validate.sweep.StaleResultsError` naming what differs (``workload.model``,
  ``grid.seeds``, ...), so a resumed sweep never reuses results of another definition.
* ``units``: one row per finished unit of work (one batch size × a chunk of lrs/seeds).
* ``points``: one row per (batch_size, lr, seed, target) with the engine's fields.

Each unit's points and its ``units`` row are written in ONE transaction, so a unit is either
entirely in the store or not at all: a killed sweep loses at most the units in flight (and of
those only the time since their last checkpoint, kept beside the file by
:class:`FileCheckpoints`), and a restarted sweep skips exactly the units already present. The
journal is WAL (readers never block the single writer; a crash mid-commit leaves the last
committed state). Only the driver process writes SQLite; workers return rows to it.
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

from validate.sweep import StaleResultsError, key_diff, key_hash

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


def _cell(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class FileCheckpoints:
    """Checkpoints of units in progress, one file each (``<folder>/<unit_id>.pt``).

    Picklable (a folder and a key hash), so pool and Ray workers save their own unit's state;
    a file holding another key's state is ignored. Writes are atomic (temp file + rename).
    """

    def __init__(self, folder: str | os.PathLike, key_hash: str = "") -> None:
        self.folder = Path(folder)
        self.key_hash = key_hash

    def _path(self, unit_id: str) -> Path:
        return self.folder / f"{unit_id}.pt"

    def load(self, unit_id: str) -> dict[str, Any] | None:
        import torch

        path = self._path(unit_id)
        if not path.is_file():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file: the unit starts afresh
            return None
        return blob.get("state") if blob.get("key") == self.key_hash else None

    def save(self, unit_id: str, state: dict[str, Any]) -> None:
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(unit_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"key": self.key_hash, "state": state}, tmp)
        os.replace(tmp, path)

    def discard(self, unit_id: str) -> None:
        self._path(unit_id).unlink(missing_ok=True)


class SweepStore:
    """A sweep's SQLite file (:class:`validate.sweep.ResultStore`). Use as a context manager.

    Args:
      path: the ``.sqlite`` file (created with its folder if absent).
      checkpoints: keep checkpoints of units in progress in ``<path stem>.checkpoints/``.

    Examples:
      >>> import tempfile, pathlib
      >>> with SweepStore(pathlib.Path(tempfile.mkdtemp()) / "s.sqlite") as st:
      ...     st.bind({"grid": {"seeds": [0]}})
      ...     try:
      ...         st.bind({"grid": {"seeds": [0, 1]}})
      ...     except StaleResultsError as e:
      ...         print("refused:", "grid.seeds differ" in str(e))
      refused: True
    """

    def __init__(self, path: str | os.PathLike, *, checkpoints: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: explicit BEGIN/COMMIT, so one unit = one transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.checkpoints: FileCheckpoints | None = None
        self._checkpoint_folder = (
            self.path.with_name(self.path.stem + ".checkpoints") if checkpoints else None
        )

    def bind(self, key: Mapping[str, Any]) -> None:
        """Record ``key`` in a new store; refuse a store that holds another key."""
        key = json.loads(json.dumps(key))
        digest = key_hash(key)
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("key_hash", digest),
                    ("key", json.dumps(key, sort_keys=True)),
                    ("created_utc", str(time.time())),
                ],
            )
            self._db.execute("COMMIT")
        elif stored.get("key_hash") != digest:
            old = json.loads(stored.get("key", "{}"))
            diff = ", ".join(key_diff(old, key)) or "the key"
            raise StaleResultsError(
                f"{self.path} holds results of another sweep ({diff} differ: the workload's "
                "definition, the grid or the engine changed since they were computed); "
                "they are not reused: choose a new folder (or delete the old results)"
            )
        if self._checkpoint_folder is not None:
            self.checkpoints = FileCheckpoints(self._checkpoint_folder, digest)

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @property
    def key(self) -> dict[str, Any] | None:
        """The key this store holds (None before the first :meth:`bind`)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='key'").fetchone()
        return None if row is None else json.loads(row[0])

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
    """The ``units`` table of an existing store, without a key check."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no sweep store at {path}")
    db = sqlite3.connect(Path(path))
    try:
        cur = db.execute("SELECT * FROM units ORDER BY batch_size, unit_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, rec)) for rec in cur]
    finally:
        db.close()
