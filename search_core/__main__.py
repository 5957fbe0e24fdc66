"""`python -m search_core search COLLECTION [PROMPT] ...`: the search command line on its own."""

import sys

from search_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
