"""``python -m validate ...``: the same as ``surgelab validate ...`` (see surgelab/)."""

import sys

from surgelab.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("validate"))
