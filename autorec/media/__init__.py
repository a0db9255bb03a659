"""Camera frames: JPEG headers, cheap grayscale decoding for analysis, thumbnails, video export."""
