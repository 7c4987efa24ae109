"""``python -m kernels ...``: the same as ``surgelab kernels ...``.

The commands live in the app layer (:mod:`surgelab.cmd_kernels`).
"""

import sys

from surgelab.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("kernels"))
