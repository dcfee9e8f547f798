"""Per-clip decoding: video files to frames (PyAV), frame indexes, sampling, transforms, optical flow and its cache."""
