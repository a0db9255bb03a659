#!/usr/bin/env python3
"""An example `on_segment_close` hook: keep a gzip-compressed copy of each closed segment.

    hooks:
      on_segment_close: [python3, examples/plugins/hooks/archive_segment.py, "{path}", "{sidecar}", /mnt/archive]

Writes DEST/NAME.bin.gz (and a copy of the sidecar) through a temporary file
renamed into place, so the archive never holds a half-written copy, even if
the hook is killed by its timeout. The original stays where autorec put it
(its index and retention still manage it). Exit status 0 on success, 1 with
a one-line message on stderr otherwise; autorec logs both.

Only the standard library: it runs with any python3, not just autorec's.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
from pathlib import Path


def _atomic_copy(src: Path, dest: Path, compress: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as raw:
            if compress:
                # mtime=0: the same segment always compresses to the same bytes
                with gzip.GzipFile(filename=src.name, mode="wb", fileobj=raw, mtime=0) as out:
                    shutil.copyfileobj(fin, out, 1 << 20)
            else:
                shutil.copyfileobj(fin, raw, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: archive_segment.py SEGMENT.bin SIDECAR.json DEST_DIR", file=sys.stderr)
        return 2
    segment, sidecar, dest_dir = Path(argv[0]), Path(argv[1]), Path(argv[2])
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        _atomic_copy(segment, dest_dir / (segment.name + ".gz"), compress=True)
        if sidecar.is_file():
            _atomic_copy(sidecar, dest_dir / sidecar.name, compress=False)
    except OSError as exc:
        print(f"archive_segment: {exc}", file=sys.stderr)
        return 1
    print(f"archived {segment.name} -> {dest_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
