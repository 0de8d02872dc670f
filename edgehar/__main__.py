"""`python -m edgehar`: the same as the `edgehar` command."""

import sys

from .cli import main

sys.exit(main())
