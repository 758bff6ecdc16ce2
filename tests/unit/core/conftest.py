"""The core tests share `coresim` (catalogs, nodes, a simulated pool); pytest runs with
--import-mode=importlib, which does not put test folders on sys.path, so add this one."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
