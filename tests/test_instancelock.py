"""One recorder per output directory: live holders refuse, dead holders are taken over."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autorec.io.instancelock import InstanceLock, InstanceLockError, read_holder
from autorec.outdir import LOCK_NAME
from tests.support.polling import wait_until

HOLDER_SCRIPT = """
import sys
import time
from pathlib import Path
from autorec.io.instancelock import InstanceLock
lock = InstanceLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()  # hold until the test closes stdin or kills us
"""


def _start_holder(directory) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    # readline blocks until the child has the lock (or dies: then it returns "").
    line = proc.stdout.readline()
    assert line.strip() == "locked", f"holder did not lock (exit {proc.poll()})"
    return proc


def test_lock_file_names_pid_and_host(tmp_path):
    with InstanceLock(tmp_path) as lock:
        data = json.loads((tmp_path / LOCK_NAME).read_text())
        assert data["pid"] == os.getpid()
        assert data["host"] == socket.gethostname()
        assert lock.held
        holder = read_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_second_holder_in_same_process_is_refused(tmp_path):
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(InstanceLockError) as err:
            InstanceLock(tmp_path).acquire()
        assert f"pid {os.getpid()}" in str(err.value)
        assert str(tmp_path) in str(err.value)
    finally:
        first.release()
    # Released: a new holder gets it.
    with InstanceLock(tmp_path):
        pass


def test_live_process_holds_and_dead_process_is_taken_over(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        with pytest.raises(InstanceLockError) as err:
            InstanceLock(tmp_path).acquire()
        assert f"pid {proc.pid}" in str(err.value)
        assert socket.gethostname() in str(err.value)

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # SIGKILL left the file behind, naming the dead process...
    assert read_holder(tmp_path).pid == proc.pid
    # ...but its lock died with it.
    lock = InstanceLock(tmp_path)
    lock.acquire()
    try:
        assert lock.previous is not None and lock.previous.pid == proc.pid
        assert read_holder(tmp_path).pid == os.getpid()
    finally:
        lock.release()


def test_released_file_is_not_shared_by_two_later_holders(tmp_path):
    """A holder that opened the old file just before release must not lock the unlinked inode."""
    first = InstanceLock(tmp_path)
    first.acquire()
    stale_fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR)  # what a racing acquirer would hold
    try:
        first.release()
        second = InstanceLock(tmp_path)
        second.acquire()
        try:
            # The racing opener can lock its stale inode, but that inode no longer is the lock file.
            fcntl.flock(stale_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert os.fstat(stale_fd).st_ino != os.stat(tmp_path / LOCK_NAME).st_ino
            with pytest.raises(InstanceLockError):
                InstanceLock(tmp_path).acquire()
        finally:
            second.release()
    finally:
        os.close(stale_fd)


def test_garbage_lock_file_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_bytes(b"\x00\xffnot json")
    with InstanceLock(tmp_path) as lock:
        assert lock.previous is not None and lock.previous.pid is None
        assert read_holder(tmp_path).pid == os.getpid()


def test_second_autorec_run_on_one_directory_exits_2(tmp_path):
    """Two real recorders on one output directory: the second refuses with exit 2 and names the first."""
    rules = Path(__file__).resolve().parent.parent / "rules" / "electrodes.yaml"
    out = tmp_path / "out"
    base = [sys.executable, "-m", "autorec", "run", "--rules", str(rules), "--out", str(out), "--sim", "--no-camera"]
    first = subprocess.Popen([*base, "--duration", "1h"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def locked() -> bool:
            assert first.poll() is None, "the first recorder exited"
            holder = read_holder(out)
            return holder is not None and holder.pid == first.pid

        wait_until(locked, 60, "the first recorder to lock its directory")
        second = subprocess.run([*base, "--duration", "5s"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "already being recorded" in second.stderr
        assert first.poll() is None  # the first one is unaffected
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(timeout=30)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
    assert first.returncode == 0
    assert not (out / LOCK_NAME).exists()  # released on a clean exit
