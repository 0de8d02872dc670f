"""`python -m edgehar`: the same as the `edgehar` command.

Guarded, because `train --nproc` spawns its workers, and a spawned worker imports the
parent's main module again (as `__mp_main__`): unguarded, each would rerun the command.
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
