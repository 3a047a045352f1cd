"""``python -m deepcolor``: the ``deepcolor`` command, also under ``accelerate launch -m deepcolor``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
