"""The simulated rig: a pdserver stand-in with scripted scenarios and ground truth.

`core` is the sans-I/O simulation (board, drops, timeline, sensors) producing
timed events; `stream` turns them into websocket payloads (rendering camera
frames with `camera`); `server` paces them in real time and broadcasts them.
"""
