"""``accelerate launch -m train ...`` (or ``python -m train ...`` for one process)."""

import sys

from .loop import main

if __name__ == "__main__":
    sys.exit(main())
