"""The sans-I/O core: state machines and pure decisions fed (time, event), returning actions.

No sockets, files, threads or clocks in here (tests/test_sans_io.py checks it); the edges in
`autorec.io`, `autorec.runs.services` and `autorec.media` drive it.
"""
