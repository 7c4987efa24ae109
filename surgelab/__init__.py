"""surgelab's app layer: the ``surgelab`` command, run folders, the main job and the report.

The four libraries (``theory``, ``kernels``, ``simulate``, ``validate``) never parse argv,
print or write files; everything a command needs lives here.
"""

from __future__ import annotations

__version__ = "0.2.0"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``surgelab`` console script."""
    from surgelab.cli import main as _main

    return _main(argv)
