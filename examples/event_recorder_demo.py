"""The PurpleDrop cookbook's EventRecorder demo, running on autorec.

Only the import line differs from the cookbook: three separate captures of the
event stream of the pdserver on this machine, 10 s each, 5 s apart, written
to log0.bin, log1.bin and log2.bin in the current directory (upstream log
format: `autorec info log0.bin`, or any upstream tool, reads them).

Run it on the Pi (or set PURPLEDROP_URI=ws://<pi-host>:7001):

    python examples/event_recorder_demo.py

The environment variables only exist so the test suite can run the demo
quickly against a local test server.
"""

import os
import time

from autorec import EventRecorder  # the cookbook: from ... import EventRecorder

URI = os.environ.get("PURPLEDROP_URI", "ws://localhost:7001")
CAPTURE_SECONDS = float(os.environ.get("DEMO_CAPTURE_SECONDS", "10"))
PAUSE_SECONDS = float(os.environ.get("DEMO_PAUSE_SECONDS", "5"))

recorder = EventRecorder(URI)
for i in range(3):
    recorder.start(f"log{i}.bin")  # returns once connected and recording
    time.sleep(CAPTURE_SECONDS)
    count = recorder.stop()  # flushes and closes; raises if anything went wrong
    print(f"log{i}.bin: {count} events")
    time.sleep(PAUSE_SECONDS)
