"""meterbench: camera-based reading and verification of water meters and measuring tanks."""

import os
from functools import cache

# FFmpeg (inside OpenCV) prints one line per damaged macroblock to stderr; a damaged video is
# reported by meterbench itself (unreadable frames, warnings), so keep FFmpeg quiet unless asked.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"


@cache
def source_revision() -> str | None:
    """The git commit of the meterbench source in use, "+ local changes to meterbench/" when it differs
    from it; None outside a git checkout or without git. Computed once per process: the software identity
    (OIML D 31) that `meterbench run` records in report.json and certificates print."""
    import subprocess
    from pathlib import Path

    source = Path(__file__).resolve().parents[1]
    if not (source / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "diff", "--quiet", "HEAD", "--", "meterbench"], capture_output=True, timeout=10
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" + local changes to meterbench/" if dirty else "") if head else None
