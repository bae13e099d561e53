"""`python -m anyws`: the command-line client (see `anyws._cli`)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
