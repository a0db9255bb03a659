"""A small tmpfs mounted for one test: a real filesystem that fills up (ENOSPC), not a stand-in.

`mounted(tmp_path, size)` yields the mount point and unmounts it afterwards. It needs root and
`mount`; elsewhere the test is skipped with the reason (`.ci/run` runs as root, so CI exercises it).
`full(tmp_path)` yields a path on a tmpfs that is already full: creating the file works, every
write to it fails with ENOSPC (what /dev/full did, before autorec refused to write to devices).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def cannot_mount() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to mount a small tmpfs (run the suite as root to exercise a real full disk)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount not available"
    return None


def mounted(tmp_path: Path, size: str) -> Iterator[Path]:
    reason = cannot_mount()
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here (container without CAP_SYS_ADMIN?): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)  # still busy: detach it anyway


def full(tmp_path: Path) -> Iterator[Path]:
    """A file path on a full tmpfs."""
    for mnt in mounted(tmp_path, "256k"):
        with open(mnt / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield mnt / "out.bin"
