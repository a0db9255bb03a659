"""The edges that touch files and sockets: logs, sources, the segment writer, daily tracks,
crash recovery, retention, the instance lock, the websocket servers and the live driver.
"""
