"""``python -m rql_lite``: the command line (``rql_lite.cli``)."""
import sys

from rql_lite.cli import main

if __name__ == "__main__":
    sys.exit(main())
