"""`python -m vectorload_dev <command>`: the same as the `vectorload-dev` console script."""

from vectorload_dev.cli import main

raise SystemExit(main())
