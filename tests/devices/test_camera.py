"""Camera capture from a real video file into a session, frame by frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from meterbench.devices._common import DeviceError
from meterbench.devices.camera import CameraCapture
from meterbench.session import SessionRecorder
from tests.session.session_helpers import water_meter_manifest


def _video(path, frames: int) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(frames):
        frame = np.full((120, 160, 3), 10 * i % 256, np.uint8)
        writer.write(frame)
    writer.release()
    return str(path)


def test_video_file_frames_are_all_written_with_increasing_times(tmp_path):
    source = _video(tmp_path / "in.mp4", 12)
    assert CameraCapture.probe(source)[:2] == (160, 120)
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    writer = recorder.camera_writer("cam-1", 50.0, (160, 120), kind="images")
    capture = CameraCapture("cam-1", source, writer, recorder.now_s, fps=50.0).start()
    assert capture.finished.wait(5.0)
    capture.stop()
    recorder.close()
    rows = (tmp_path / "s/cameras/cam-1.csv").read_text().splitlines()
    times = [float(r.split(",")[1]) for r in rows[1:]]
    assert capture.counts.written == 12 and len(times) == 12
    stored = sorted((tmp_path / "s/cameras/cam-1").glob("*.jpg"))
    assert len(stored) == 12
    # each source frame once, in order: frame i is a flat grey of 10 i, so a dropped frame is a step
    # of ~20, a repeated one 0, a swapped pair negative (measured steps 7.3 at the black end, else 9-11)
    levels = np.array([cv2.imread(str(path)).mean() for path in stored])
    steps = np.diff(levels)
    assert levels[0] < 2.0 and np.all((steps > 6.0) & (steps < 13.0)), levels
    assert np.all(np.diff(times) > 0)
    assert times[-1] - times[0] >= 0.8 * 11 / 50.0  # paced at 50 fps, not as fast as possible
    assert capture.error is None


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(DeviceError, match="could not open"):
        CameraCapture.probe(str(tmp_path / "nope.mp4"))


class _StampingSource:
    """A frame source that says when its frames were exposed (1 s before read returns)."""

    def __init__(self) -> None:
        self.capture_monotonic: float | None = None

    def read(self):
        import time

        self.capture_monotonic = time.monotonic() - 1.0
        return True, np.zeros((8, 8, 3), np.uint8)

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def release(self) -> None:
        pass


def test_a_source_capture_instant_is_used_as_the_frame_time(tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    writer = recorder.camera_writer("cam-1", 20.0, (8, 8), kind="images")
    capture = CameraCapture("cam-1", _StampingSource(), writer, recorder.now_s, fps=20.0, max_frames=3).start()
    assert capture.finished.wait(5.0)
    read_done_s = recorder.now_s()
    capture.stop()
    recorder.close()
    times = [float(r.split(",")[1]) for r in (tmp_path / "s/cameras/cam-1.csv").read_text().splitlines()[1:]]
    assert len(times) == 3
    assert 1.0 <= read_done_s - times[-1] < 2.0  # the exposure instant, not the read time
