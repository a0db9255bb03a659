"""Calling the CLI in-process (`autorec.cli.main(argv)`) from tests: fast, and tracebacks surface as failures.

`main` configures logging for a command line (a stderr handler on the root logger, `force=True`);
`restore_logging` puts the root logger back as it was after each test, so a later test's log output
does not go to an earlier test's closed stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
