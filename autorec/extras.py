"""The optional extras (`report`, `web`, `s3`, ...) and how to install one.

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


def missing_s3(prog: str, what: str) -> bool:
    """True after printing `autorec PROG: WHAT need(s) boto3 and pyarrow (X is missing): HINT` when the
    `s3` extra is not installed; False when it is (the modules are imported now, once)."""
    try:
        import boto3  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        print(
            f"autorec {prog}: {what} boto3 and pyarrow ({exc.name} is missing): {install_hint('s3')}", file=sys.stderr
        )
        return True
    return False
