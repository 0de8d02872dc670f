"""`python -m edgehar.cli`: the same as the `edgehar` command (guarded as `edgehar/__main__.py`)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
