"""`python -m vectorload_querynode ...` is `vectorload querynode ...`."""

import sys

from .cli import main

raise SystemExit(main(sys.argv[1:]))
