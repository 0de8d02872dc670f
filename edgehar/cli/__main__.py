"""`python -m edgehar.cli`: the same as the `edgehar` command."""

import sys

from . import main

sys.exit(main())
