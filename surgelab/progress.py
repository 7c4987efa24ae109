"""Progress bars for long work (tqdm on stderr; silent when ``SURGELAB_PROGRESS=0``)."""

from __future__ import annotations

import os
import sys
from typing import Any


def bar(total: int | None, desc: str, **kw: Any) -> Any:
    """A tqdm bar on stderr. Libraries take a callback; the app layer passes ``bar.update``."""
    from tqdm import tqdm

    disable = os.environ.get("SURGELAB_PROGRESS", "1") == "0"
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=disable, **kw)


def say(msg: str) -> None:
    """One status line on stderr (what the command is doing now)."""
    print(msg, file=sys.stderr, flush=True)
