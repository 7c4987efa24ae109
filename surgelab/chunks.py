"""The resumable chunk store of ``surgelab simulate train``: finished grid chunks on disk.

Each finished grid chunk (one batch size) is saved as ``chunks/chunk_<j>.npz`` in the run
folder, written to a temporary name and renamed, so an interrupted run leaves only whole
chunks. ``chunks/grid.json`` fingerprints the grid (problem, batch sizes, lrs, seeds, training
config); resuming into a folder whose fingerprint differs is refused rather than mixing two
grids (the run folder's config already guards this; the fingerprint also catches a change of
code that alters the grid, e.g. a preset's definition).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from simulate.train import GridResult
from surgelab.rundir import jsonable, read_json, write_json

_FIELDS = (
    "B",
    "lr",
    "seed",
    "targets",
    "steps",
    "loss_at",
    "loss_after",
    "diverged",
    "steps_run",
    "final_loss",
)


def fingerprint(spec: dict[str, Any]) -> str:
    """A stable hash of a grid specification (numpy values and tuples allowed)."""
    blob = json.dumps(jsonable(spec), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class ChunkStore:
    """Finished chunks of one grid in ``<run>/chunks``.

    Args:
      run_dir: the run folder.  spec: the grid specification (its fingerprint guards resumes).

    Raises:
      ValueError: the folder holds chunks of a different grid.
    """

    def __init__(self, run_dir: str | os.PathLike, spec: dict[str, Any]) -> None:
        self.dir = Path(run_dir) / "chunks"
        self.key = fingerprint(spec)
        meta = self.dir / "grid.json"
        if meta.exists():
            old = read_json(meta).get("fingerprint")
            if old != self.key:
                raise ValueError(
                    f"--out {run_dir} holds chunks of a different grid (fingerprint {old} != "
                    f"{self.key}; the code that defines it changed); choose a new --out"
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json(meta, {"fingerprint": self.key, "spec": spec})

    def path(self, j: int) -> Path:
        return self.dir / f"chunk_{j:04d}.npz"

    def save(self, j: int, res: GridResult) -> Path:
        """Save chunk j atomically (temporary file, then rename)."""
        arrays = {f: getattr(res, f) for f in _FIELDS}
        arrays["loss0"] = np.array(res.loss0)
        if res.x_reach is not None:
            arrays["x_reach"] = res.x_reach
        final = self.path(j)
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(final)
        return final

    def load(self, j: int, config: dict | None = None) -> GridResult:
        with np.load(self.path(j)) as z:
            kw = {f: z[f] for f in _FIELDS}
            xr = z["x_reach"] if "x_reach" in z.files else None
            return GridResult(loss0=float(z["loss0"]), x_reach=xr, config=config or {}, **kw)

    def finished(self, config: dict | None = None) -> dict[int, GridResult]:
        """All chunks already on disk, by index."""
        out = {}
        for p in sorted(self.dir.glob("chunk_*.npz")):
            j = int(p.stem.split("_")[1])
            out[j] = self.load(j, config)
        return out
