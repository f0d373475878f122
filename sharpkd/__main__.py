"""``python -m sharpkd``: the same as the ``sharpkd`` console script."""

import sys

from sharpkd.cli import main

if __name__ == "__main__":
    sys.exit(main())
