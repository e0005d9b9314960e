"""``python -m loom_resources.testing.ch_http``: serve the endpoint (see the package docstring)."""

import sys

from loom_resources.testing.ch_http import main

main(sys.argv[1:])
