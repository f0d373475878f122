import sys

from sharpkd.cli import main

sys.exit(main())
