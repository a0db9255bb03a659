"""Regenerate `purpledrop_pb2.py` from `purpledrop.proto` (developer tool)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    from grpc_tools import protoc  # dev-only dependency

    return protoc.main(["protoc", f"-I{HERE}", f"--python_out={HERE}", str(HERE / "purpledrop.proto")])


if __name__ == "__main__":
    sys.exit(main())
