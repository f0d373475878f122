"""``python -m sharpkd.cli``: the same as ``python -m sharpkd`` and the ``sharpkd`` console script."""

import sys

from sharpkd.cli import main

if __name__ == "__main__":
    sys.exit(main())
