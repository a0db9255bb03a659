"""Camera frames as the triggers see them: JPEG headers and a cheap, DCT-scaled grayscale decode.

Pure computation on bytes (no files, sockets or clocks), below the triggers that use it; the
edges that export frames (thumbnails, video) live in `autorec.media`.
"""
