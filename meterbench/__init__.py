"""meterbench: camera-based reading and verification of water meters and measuring tanks."""

import os

# FFmpeg (inside OpenCV) prints one line per damaged macroblock to stderr; a damaged video is
# reported by meterbench itself (unreadable frames, warnings), so keep FFmpeg quiet unless asked.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
