"""Camera capture: a device index, a video file, an RTSP/HTTP URL or a frame source object.

One thread per camera reads frames, stamps each with the session clock right
after the read returns (or at the source's own capture instant, if it gives
one), and hands it at once to the recorder's camera writer (kind "images": each
frame is a file renamed into place, crash-safe); no frame is kept only in memory.
A video file is paced at ``fps`` so that it plays as a live camera. A live
source that fails is reopened; each failure is counted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from meterbench.devices._common import Clock, DeviceError


class FrameSource(Protocol):
    """What ``cv2.VideoCapture`` offers and a simulated camera imitates."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)

    def release(self) -> None: ...


class FrameSink(Protocol):
    """The recorder's ``CameraWriter``: ``write(frame, t_s) -> frame index``."""

    def write(self, frame: np.ndarray, t_s: float) -> int: ...


def open_source(source: str | int | FrameSource) -> tuple[FrameSource, str]:
    """Open ``source``: an int or digit string (device index), a URL, a file path, or an
    object with ``read()``; return it with its kind ("device", "stream", "file", "object")."""
    if not isinstance(source, str | int):
        return source, "object"
    if isinstance(source, int) or source.isdigit():
        capture, kind = cv2.VideoCapture(int(source)), "device"
    elif "://" in source:
        capture, kind = cv2.VideoCapture(source, cv2.CAP_FFMPEG), "stream"
    else:
        capture, kind = cv2.VideoCapture(source), "file"
    if not capture.isOpened():
        raise DeviceError(f"camera source {source!r}: OpenCV could not open it ({kind})")
    return capture, kind


@dataclass
class CameraCounts:
    """Frames captured and written, read failures, reopenings."""

    captured: int = 0
    written: int = 0
    read_failures: int = 0
    reopens: int = 0
    write_errors: int = 0


class CameraCapture:
    """Capture one camera in a thread into ``writer`` with times from ``clock`` (s).

    ``fps``: frames per second to pace file/object sources at (a live device or
    stream paces itself; None = as fast as it comes). A file ends the capture at
    its end (``finished`` is set); a device or stream that fails to give a frame
    is reopened after ``reopen_interval_s`` (s). ``max_frames`` bounds a capture
    (None = until ``stop()``).
    """

    def __init__(
        self,
        camera_id: str,
        source: str | int | FrameSource,
        writer: FrameSink,
        clock: Clock,
        *,
        fps: float | None = None,
        max_frames: int | None = None,
        reopen_interval_s: float = 1.0,
    ) -> None:
        if fps is not None and not fps > 0:
            raise ValueError(f"camera {camera_id}: fps must be > 0, got {fps}")
        self.camera_id = camera_id
        self.source = source
        self.fps = fps
        self.max_frames = max_frames
        self.reopen_interval_s = reopen_interval_s
        self.counts = CameraCounts()
        self.error: str | None = None
        self.finished = threading.Event()
        self._writer = writer
        self._clock = clock
        self._capture, self.kind = open_source(source)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    @staticmethod
    def probe(source: str | int | FrameSource) -> tuple[int, int, float]:
        """Open ``source`` once and return its (width, height) in px and fps (0 if unknown)."""
        capture, _ = open_source(source)
        ok, frame = capture.read()
        fps = float(capture.get(cv2.CAP_PROP_FPS)) if hasattr(capture, "get") else 0.0
        if isinstance(source, str | int):
            capture.release()
        if not ok or frame is None:
            raise DeviceError(f"camera source {source!r}: no first frame")
        return frame.shape[1], frame.shape[0], fps

    def start(self) -> CameraCapture:
        """Start the capture thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop capturing and release the source (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._capture.release()

    def __enter__(self) -> CameraCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, dict[str, Any]]:
        """Describe the frames: source, dtype, units of the capture time."""
        return {self.camera_id: {"source": f"camera:{self.source}", "dtype": "array", "shape": [], "units": "s"}}

    def _run(self) -> None:
        period = 1.0 / self.fps if self.fps and self.kind in ("file", "object") else 0.0
        next_due = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.counts.captured >= self.max_frames:
                    break
                if period:
                    delay = next_due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_due = max(next_due + period, time.monotonic() - period)
                ok, frame = self._capture.read()
                t_s = self._capture_time_s()
                if not ok or frame is None:
                    if not self._handle_read_failure():
                        break
                    continue
                self.counts.captured += 1
                self._writer.write(frame, t_s)
                self.counts.written += 1
        except (OSError, ValueError) as exc:
            self.counts.write_errors += 1
            self.error = f"camera {self.camera_id}: {exc}"
        finally:
            self.finished.set()

    def _capture_time_s(self) -> float:
        """Session time of the frame just read: now, or the source's own capture instant
        (``capture_monotonic``, a ``time.monotonic()`` value) when it gives one."""
        now_s = self._clock()
        instant = getattr(self._capture, "capture_monotonic", None)
        if instant is None:
            return now_s
        return now_s - (time.monotonic() - float(instant))

    def _handle_read_failure(self) -> bool:
        """Count a failed read; reopen a live source; return False when capture must end."""
        self.counts.read_failures += 1
        if self.kind in ("file", "object"):
            return False
        self._capture.release()
        if self._stop.wait(self.reopen_interval_s):
            return False
        try:
            self._capture, _ = open_source(self.source)
            self.counts.reopens += 1
        except DeviceError:
            pass
        return True
