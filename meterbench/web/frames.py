"""Camera frames for the live view: one ``frame`` event per shown frame (docs/live-view.md).

A ``frame`` event carries the frame as a downscaled JPEG (base64) and what the register reader made
of it: each element's box (a quadrilateral in the JPEG's pixels), raw value and confidence, the
plate alignment's quality, the register as read (L) or why not, and the camera's counters of
refused frames by reason. Both the live bench (:class:`FrameFeed`, fed by the capture threads) and
`meterbench replay` (the frames the verification read) build it with :func:`frame_event`.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from meterbench.web.publisher import Publisher

__all__ = ["FRAME_WIDTH_PX", "FrameFeed", "encode_preview", "frame_event", "reading_summary", "refusal_key"]

FRAME_WIDTH_PX = 480
"""Width (px) frames are downscaled to for the page (never upscaled)."""
JPEG_QUALITY = 70
"""JPEG quality of the page's frames (0-100)."""
FRAME_FPS = 10.0
"""Most frames per second a camera sends to the page (the others are skipped, never queued)."""
READ_FPS = 2.0
"""Most frames per second of a camera the live bench reads with the register reader for the page."""


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def refusal_key(reason: str) -> str:
    """A refused frame's reason without its figures ("markers not found", "moved", ...): the counter's key."""
    return reason.split(":")[0].split(" (")[0].strip()[:60] or "unreadable"


def reading_summary(reading: Any, reader: Any) -> dict[str, Any]:
    """What the page shows of one RegisterReading: elements (boxes in full-frame px), alignment, volume (L)."""
    alignment = getattr(reading, "alignment", None)
    corners = reader.frame_corners(reading)
    elements = []
    readable = reading.element_readable
    for e, element in enumerate(reader.layout.elements):
        read = e <= reading.finest_element
        elements.append(
            {
                "name": element.name,
                "kind": element.kind,
                "value": _number(reading.element_values[e]) if read else None,
                "confidence": _number(reading.element_confidence[e]) if read else None,
                "readable": bool(readable[e]) if read and readable is not None else False,
                "box": corners[e],
            }
        )
    quality = getattr(alignment, "quality", None)
    return {
        "ok": bool(reading.ok),
        "volume_l": _number(reading.volume_l) if reading.ok else None,
        "reason": "" if reading.ok else reading.reason,
        "elements": elements,
        "alignment": {
            "ok": bool(reading.homography_ok),
            "markers_found": list(reading.markers_found),
            "rms_px": _number(alignment.rms_px) if alignment else None,
            "message": reading.alignment_message,
            "refusal": reading.alignment_refusal,
            **({"method": quality.method, "ncc": _number(quality.ncc)} if quality is not None else {}),
        },
    }


def encode_preview(frame: np.ndarray, width_px: int = FRAME_WIDTH_PX) -> tuple[str, float, tuple[int, int]]:
    """(base64 JPEG, scale applied, (width, height) px) of ``frame`` downscaled to at most ``width_px``."""
    import cv2

    scale = min(1.0, width_px / frame.shape[1])
    small = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("frame: JPEG encoding failed")
    return base64.b64encode(data.tobytes()).decode("ascii"), scale, (small.shape[1], small.shape[0])


def frame_event(
    camera_id: str,
    instrument_id: str | None,
    t_s: float,
    frame: np.ndarray,
    summary: Mapping[str, Any] | None,
    refused: Mapping[str, int],
    *,
    read_t_s: float | None = None,
    captured_unix: float | None = None,
) -> dict[str, Any]:
    """The ``frame`` event of one frame: JPEG, the reading ``summary`` (boxes scaled to the JPEG) and counters."""
    jpeg, scale, (width, height) = encode_preview(frame)
    event: dict[str, Any] = {
        "type": "frame",
        "camera": camera_id,
        "instrument": instrument_id,
        "t_s": t_s,
        "captured_unix": captured_unix,
        "jpeg": jpeg,
        "width": width,
        "height": height,
        "refused": dict(refused),
        "read_t_s": read_t_s if summary is not None else None,
        "reading": None,
    }
    if summary is not None:
        elements = [
            {**e, "box": None if e["box"] is None else [[x * scale, y * scale] for x, y in e["box"]]}
            for e in summary["elements"]
        ]
        event["reading"] = {**summary, "elements": elements}
    return event


class _Camera:
    """One camera's latest frame and what the feed last did with it."""

    def __init__(self, camera_id: str, instrument_id: str | None, reader: Any) -> None:
        self.camera_id = camera_id
        self.instrument_id = instrument_id
        self.reader = reader
        self.latest: tuple[np.ndarray, float, float] | None = None  # frame, t_s, unix time of capture
        self.shown_t_s = -math.inf
        self.shown_wall = -math.inf
        self.read_wall = -math.inf
        self.summary: dict[str, Any] | None = None
        self.read_t_s: float | None = None
        self.refused: Counter[str] = Counter()
        self.frames_read = 0
        self.read_s = 0.0  # wall time spent reading frames (s)


class FrameFeed:
    """The live bench's frames to the page: ``offer`` (from a capture thread) keeps only the latest
    frame per camera and returns at once; a worker thread sends at most ``frame_fps`` frames per
    camera and reads at most ``read_fps`` of them with the register reader. A frame the worker has
    no time for is replaced by the next, never queued: the capture is never delayed.

    ``readers``: camera id -> (instrument id, register reader or None)."""

    def __init__(
        self,
        publisher: Publisher,
        readers: Mapping[str, tuple[str | None, Any]],
        clock: Callable[[], float],
        *,
        frame_fps: float = FRAME_FPS,
        read_fps: float = READ_FPS,
    ) -> None:
        self._publisher = publisher
        self._clock = clock
        self._cameras = {cid: _Camera(cid, inst, reader) for cid, (inst, reader) in readers.items()}
        self._frame_period_s = 1.0 / frame_fps
        self._read_period_s = 1.0 / read_fps if read_fps > 0 else math.inf
        self._new = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterbench-live-frames", daemon=True)
        self.offered = 0
        self.published = 0
        self.errors: list[str] = []

    def start(self) -> FrameFeed:
        """Start the worker thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker (idempotent)."""
        self._stop.set()
        with self._new:
            self._new.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def offer(self, camera_id: str, frame: np.ndarray, t_s: float) -> None:
        """Keep ``frame`` (captured at session time ``t_s``) as the camera's latest; never blocks on the page."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            return
        captured_unix = time.time() - (self._clock() - t_s)
        with self._new:
            camera.latest = (frame, t_s, captured_unix)
            self.offered += 1
            self._new.notify()

    def read_stats(self) -> dict[str, dict[str, float]]:
        """Per camera: frames read for the page and mean read time (ms)."""
        return {
            c.camera_id: {"frames_read": c.frames_read, "read_ms": 1e3 * c.read_s / max(c.frames_read, 1)}
            for c in self._cameras.values()
        }

    def _due(self, now: float) -> list[_Camera]:
        return [
            c
            for c in self._cameras.values()
            if c.latest is not None and c.latest[1] > c.shown_t_s and now - c.shown_wall >= self._frame_period_s
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._new:
                due = self._due(time.monotonic())
                if not due:
                    self._new.wait(self._frame_period_s / 4)
                    continue
                taken = [(c, c.latest) for c in due]
            for camera, latest in taken:
                try:
                    self._show(camera, *latest)
                except Exception as exc:  # noqa: BLE001 (the page's worker must never end the run)
                    if len(self.errors) < 10:
                        self.errors.append(f"camera {camera.camera_id}: {exc}")

    def _show(self, camera: _Camera, frame: np.ndarray, t_s: float, captured_unix: float) -> None:
        now = time.monotonic()
        camera.shown_t_s, camera.shown_wall = t_s, now
        if camera.reader is not None and now - camera.read_wall >= self._read_period_s:
            camera.read_wall = now
            started = time.perf_counter()
            reading = camera.reader.read_frame(frame)
            camera.read_s += time.perf_counter() - started
            camera.frames_read += 1
            camera.summary, camera.read_t_s = reading_summary(reading, camera.reader), t_s
            if not reading.ok:
                camera.refused[refusal_key(reading.reason)] += 1
        event = frame_event(
            camera.camera_id,
            camera.instrument_id,
            t_s,
            frame,
            camera.summary,
            camera.refused,
            read_t_s=camera.read_t_s,
            captured_unix=captured_unix,
        )
        self._publisher.publish(event)
        self.published += 1
