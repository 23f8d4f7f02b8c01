"""``python -m loadtool``: see loadtool.cli."""

from __future__ import annotations

import sys

from loadtool.cli import main

if __name__ == "__main__":
    sys.exit(main())
