"""``python -m cxrlib``: see :mod:`cxrlib.cli`."""
import sys

from cxrlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
