"""``python -m simulate ...``: the same as ``surgelab simulate ...``.

The commands live in the app layer (:mod:`surgelab.cmd_simulate`).
"""

import sys

from surgelab.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("simulate"))
