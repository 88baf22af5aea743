"""`python -m inference serve`: the serving container's entry point."""

import sys

from inference.server import main

sys.exit(main())
