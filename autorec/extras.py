"""The optional extras (`report`, `web`) and how to install one.

autorec is installed from its clone (`pip install .`); a package called `autorec` on PyPI is an
unrelated project, so `pip install 'autorec[report]'` would install the wrong software. And a bare
`pip` may be the system's, not the one of the Python running autorec. So the hint names this
Python's own pip and the clone: `/path/to/.venv/bin/python -m pip install '.[report]'`.
"""

from __future__ import annotations

import shlex
import sys


def install_hint(extra: str) -> str:
    """How to install `extra` for the Python running autorec (its own pip, from the clone)."""
    return f"{shlex.quote(sys.executable)} -m pip install '.[{extra}]' in the autorec folder"
