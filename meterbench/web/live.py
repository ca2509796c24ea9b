"""`meterbench bench --serve`: what a live bench run publishes to the live view (docs/live-view.md).

The same event types as `meterbench replay`: ``state`` (session, instruments, points, phase,
current point, verdict), ``reading`` (the reference totaliser), ``telemetry`` (the controller),
``point`` (flying start / stop), ``verdict`` (from the report.json the run wrote, as written),
``warning`` and ``frame`` (:mod:`meterbench.web.frames`). Nothing here runs in the measurement's
path: a sampler thread looks at the reference's and the controller's latest values every
:data:`SAMPLE_S`; the engine's calls (:meth:`BenchFeed.point`, ...) only build a dict and call
:meth:`~meterbench.web.publisher.EventPublisher.publish`, which never blocks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meterbench.web.frames import FrameFeed
from meterbench.web.publisher import Publisher
from meterbench.web.replay import instruments_of, publish_report

__all__ = ["SAMPLE_S", "BenchFeed"]

SAMPLE_S = 0.1
"""How often (s) the sampler publishes the reference's and the controller's latest values (when new)."""

_LOG = logging.getLogger("meterbench.web")


class _SessionFiles:
    """What :class:`meterbench.verify.RegisterReaders` asks of a session, from a folder being recorded."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    def reference_image(self, relpath: str):
        import cv2

        image = cv2.imread(str(self.path / relpath), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{relpath}: cannot be read")
        return image


def _register_readers(session_dir: Path, manifest: dict[str, Any]) -> dict[str, tuple[str | None, Any]]:
    """Camera id -> (instrument id, its register reader, or None when it cannot be built: frames only)."""
    from meterbench.verify import RegisterReaders

    readers: dict[str, tuple[str | None, Any]] = {}
    try:
        factory = RegisterReaders()
    except Exception as exc:  # noqa: BLE001 (no models: the page shows frames without readings)
        _LOG.warning("live view: no register readers (%s); frames are shown unread", exc)
        factory = None
    files = _SessionFiles(session_dir, manifest)
    for instrument in manifest.get("instruments", []):
        camera = instrument.get("camera")
        if not camera:
            continue
        reader = None
        if factory is not None:
            try:
                reader = factory(instrument, files)
                reader = reader if hasattr(reader, "read_frame") else None
            except Exception as exc:  # noqa: BLE001
                _LOG.warning("live view: camera %s: no register reader (%s)", camera, exc)
        readers[camera] = (instrument["id"], reader)
    return readers


class BenchFeed:
    """One live bench run's publishing: call :meth:`start` once the devices are open, :meth:`stop` at the end."""

    def __init__(self, publisher: Publisher, *, frame_fps: float | None = None, read_fps: float | None = None) -> None:
        self.publisher = publisher
        self._frame_options = {k: v for k, v in (("frame_fps", frame_fps), ("read_fps", read_fps)) if v is not None}
        self.frames: FrameFeed | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._point_start_l: float | None = None
        self._lock = threading.Lock()

    def announce(self, manifest: dict[str, Any], config: Any) -> None:
        """The first ``state`` (session, instruments, points; phase "starting") of a run of ``config`` (BenchConfig)."""
        self.publisher.publish(
            {
                "type": "state",
                "session": manifest["session_id"],
                "bench_kind": manifest["bench_kind"],
                "instruments": instruments_of(manifest),
                "points": [p["name"] for p in manifest["test_plan"]["points"]],
                "phase": "starting",
                "speed": 1.0,
                "verdict": None,
                "current_point": None,
                "simulated": getattr(config, "simulator", None) is not None,
            }
        )

    def offer_frame(self, camera_id: str, frame, t_s: float) -> None:
        """A capture thread's frame (kept as the camera's latest only; returns at once)."""
        if self.frames is not None:
            self.frames.offer(camera_id, frame, t_s)

    def start(
        self, session_dir: Path, manifest: dict[str, Any], reference: Any, controller: Any, clock: Callable[[], float]
    ) -> None:
        """Start the frame worker and the sampler of ``reference`` (a totaliser reader) and ``controller``."""
        self.frames = FrameFeed(self.publisher, _register_readers(session_dir, manifest), clock, **self._frame_options)
        self.frames.start()
        self._sampler = threading.Thread(
            target=self._sample, args=(reference, controller), name="meterbench-live-sampler", daemon=True
        )
        self._sampler.start()
        self.phase("measuring")

    def stop(self) -> None:
        """Stop the sampler and the frame worker (idempotent)."""
        self._stop.set()
        if self._sampler is not None and self._sampler.is_alive():
            self._sampler.join(timeout=2.0)
        if self.frames is not None:
            self.frames.stop()

    def phase(self, phase: str, **fields: Any) -> None:
        """A ``state`` event: the run's phase ("measuring", "verifying", "done", "stopped") and any other field."""
        self.publisher.publish({"type": "state", "phase": phase, **fields})

    def point(
        self, name: str, phase: str, t_s: float, start_l: float | None, stop_l: float | None = None, **extra: Any
    ) -> None:
        """A ``point`` event: "running" at a flying start, "stopped" at its stop, "void" when an attempt is voided."""
        with self._lock:
            self._point_start_l = start_l if phase == "running" else None
        volume = None if start_l is None or stop_l is None else stop_l - start_l
        self.publisher.publish(
            {"type": "point", "point": name, "t_s": t_s, "phase": phase, "logged_reference_volume_l": volume, **extra}
        )
        if phase == "running":
            self.publisher.publish({"type": "state", "current_point": name})

    def warning(self, message: str, instrument: str | None = None) -> None:
        """A ``warning`` event, as the run says it."""
        self.publisher.publish({"type": "warning", "instrument": instrument, "message": message})

    def report(self, run_dir: Path) -> None:
        """The verdicts and warnings of the report.json the run wrote (as written, rounded), then phase "done"."""
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
        publish_report(self.publisher, report, announced=set())

    def _sample(self, reference: Any, controller: Any) -> None:
        seen_reading: float | None = None
        seen_telemetry: float | None = None
        while not self._stop.wait(SAMPLE_S):
            t_s, last = reference.last_t_s, reference.last
            if t_s is not None and last is not None and t_s != seen_reading:
                seen_reading = t_s
                with self._lock:
                    start = self._point_start_l
                volume = last.get("volume_l")
                self.publisher.publish(
                    {
                        "type": "reading",
                        "device": reference.name,
                        "t_s": t_s,
                        "totaliser_l": volume,
                        "flow_l_h": last.get("flow_l_h"),
                        "temperature_c": last.get("temperature_c"),
                        "reference_volume_l": None if start is None or volume is None else volume - start,
                    }
                )
            t_s, telemetry = controller.telemetry_t_s, controller.telemetry
            if t_s is not None and telemetry is not None and t_s != seen_telemetry:
                seen_telemetry = t_s
                self.publisher.publish(
                    {
                        "type": "telemetry",
                        "device": "controller",
                        "t_s": t_s,
                        "flow_m3h": telemetry.get("flow_m3h"),
                        "temperature_c": telemetry.get("temperature_c"),
                    }
                )
