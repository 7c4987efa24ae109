"""``python -m theory ...``: the same as ``surgelab theory ...`` (commands live in surgelab/)."""

import sys

from surgelab.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("theory"))
