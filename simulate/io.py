"""I/O for simulate: the per-chunk store that makes ``simulate train`` resumable.

Each finished grid chunk (one batch size by default) is saved as ``chunks/chunk_<j>.npz`` in the
run folder, written to a temporary name and renamed, so an interrupted run leaves only whole
chunks. ``chunks/grid.json`` fingerprints the grid (problem, batch sizes, lrs, seeds, config);
resuming into a folder whose fingerprint differs is refused rather than mixing two grids.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from simulate.train import GridResult

_FIELDS = ("B", "lr", "seed", "targets", "steps", "loss_at", "loss_after", "diverged",
           "steps_run", "final_loss")


def fingerprint(spec: dict[str, Any]) -> str:
    """A stable hash of a JSON-able grid specification."""
    blob = json.dumps(spec, sort_keys=True, default=_plain).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _plain(o: Any) -> Any:
    """JSON fallback for numpy values and tuples inside a grid specification."""
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


class ChunkStore:
    """Finished chunks of one grid in ``<run>/chunks``.

    Args:
      run_dir: the run folder.  spec: the grid specification (its fingerprint guards resumes).
    """

    def __init__(self, run_dir: str | os.PathLike, spec: dict[str, Any]) -> None:
        self.dir = Path(run_dir) / "chunks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = fingerprint(spec)
        meta = self.dir / "grid.json"
        if meta.exists():
            old = json.loads(meta.read_text()).get("fingerprint")
            if old != self.key:
                raise ValueError(f"out folder {run_dir} holds a different grid (fingerprint "
                                 f"{old} != {self.key}); choose a new --out to start afresh")
        else:
            tmp = meta.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({"fingerprint": self.key, "spec": spec}, indent=2,
                                      default=_plain))
            tmp.replace(meta)

    def path(self, j: int) -> Path:
        return self.dir / f"chunk_{j:04d}.npz"

    def save(self, j: int, res: GridResult) -> Path:
        """Save chunk j atomically."""
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
