"""The one asyncio main (`autorec.io.mainloop`): its signal policy, duration and thread-safe stop.

The commands that use it (run, record, replay, sim, serve, EventRecorder) have their own
end-to-end signal tests; these check the policy itself, in a real child process for signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from autorec.io.mainloop import StopRequest, run_main

CHILD = r"""
import signal, sys
from autorec.io.mainloop import run_main

reloads = []

async def body(stop):
    print("ready", flush=True)
    await stop.wait()
    return f"{stop.reason}|{stop.signal}|reloads={len(reloads)}"

if sys.argv[1] == "ignore-int":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job
print(run_main(body, on_reload=lambda: (reloads.append(1), print("reloaded", flush=True))), flush=True)
print("handler after:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_the_body_cleanly_even_with_sigint_ignored(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "ignore-int"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGHUP)
        assert proc.stdout.readline().strip() == "reloaded"  # SIGHUP reloads and the body goes on
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"{sig.name} received|{sig.name}|reloads=1" in out
    assert "handler after: True" in out  # the handlers are removed when the body returns


def test_duration_requests_a_stop_with_its_reason() -> None:
    async def body(stop: StopRequest) -> str:
        await stop.wait()
        return f"{stop.reason}|{stop.signal}"

    assert run_main(body, duration=0.05) == "duration reached|None"


def test_off_the_main_thread_no_handler_is_installed_and_another_thread_stops_it() -> None:
    before = signal.getsignal(signal.SIGINT)
    held: list[StopRequest] = []
    result: list[object] = []
    seen_handler: list[object] = []
    called: list[str] = []

    async def body(stop: StopRequest) -> str:
        seen_handler.append(signal.getsignal(signal.SIGINT))
        stop.on_stop(lambda: called.append("callback"))
        await stop.wait()
        return stop.reason or ""

    thread = threading.Thread(target=lambda: result.append(run_main(body, on_start=held.append)))
    thread.start()
    from tests.support.polling import wait_until

    wait_until(lambda: held and seen_handler, 10, "the loop to start")
    held[0].request_threadsafe("stop() called")
    thread.join(10)
    assert not thread.is_alive()
    assert result == ["stop() called"] and called == ["callback"]
    assert seen_handler == [before] and signal.getsignal(signal.SIGINT) is before
    held[0].request_threadsafe("late")  # the loop is closed: a late request is harmless
