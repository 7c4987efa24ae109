"""``python -m surgelab ...``: the same as ``surgelab ...``."""

import sys

from surgelab import main

if __name__ == "__main__":
    sys.exit(main())
