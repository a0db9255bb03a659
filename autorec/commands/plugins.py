"""`autorec plugins`: list the triggers a rule file can use, with their options.

Built-in triggers first, then triggers installed by other packages in the
`autorec.triggers` entry-point group. A trigger that fails to load is listed
with the reason (exit 1), so a broken plugin is visible before a night's run.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plugins",
        help="list built-in and installed triggers with their options",
        description="List the triggers rule files can use (built-in and installed plugins) and their options.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autorec.triggers import registry

    broken = 0
    for info in registry.available():
        print(f"{info.name}  ({info.origin}, {info.target})")
        if info.cls is None:
            broken += 1
            print(f"    not available: {info.error}")
            continue
        if info.cls.description:
            print(f"    {info.cls.description}")
        kinds = info.cls.kinds
        if kinds is not None and kinds:
            print(f"    reads: {', '.join(sorted(kinds))}")
        for opt in info.cls.options:
            print(f"    - {opt.describe()}")
        print()
    print("Use one in a rule file as `trigger: NAME`, or any Trigger subclass as `trigger: package.module:Class`.")
    return 1 if broken else 0
