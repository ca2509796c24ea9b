"""`meterbench replay`: verify a recorded session and play it back to the live view at S × real time.

What is played back (docs/live-view.md): the verdicts are those of :func:`meterbench.verify.run_session`
(the report.json this writes into ``out_dir``, the same call as `meterbench run`); the reference track,
telemetry and point start/stop come from the session's own device logs, paced by their timestamps.
The camera frames the verification read are played back too, each at its own time, with what the
register reader made of it (``frame`` events, :mod:`meterbench.web.frames`): the verifier tells
:data:`meterbench.verify.water_meter.frame_observer` of each frame it reads, and the replay only
keeps a reference to the reading; boxes, JPEG and counters are made during the playback.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from meterbench.errors import ConfigError
from meterbench.web.frames import FRAME_FPS, frame_event, reading_summary, refusal_key
from meterbench.web.publisher import Publisher

__all__ = ["instruments_of", "publish_report", "replay_session", "session_timeline"]

READING_INTERVAL_S = 0.1
"""Least wall-clock time (s) between two published ``reading`` (or ``telemetry``) events of one device."""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def instruments_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """session.json's tanks and instruments as ``state``'s ``instruments`` (id, kind, serial, type, camera)."""
    entries = list(manifest.get("tanks", [])) + list(manifest.get("instruments", []))
    return [
        {
            "id": e["id"],
            "kind": e.get("kind", "tank" if e in manifest.get("tanks", []) else "water-meter"),
            "serial": e.get("serial"),
            "type": e.get("type"),
            "camera": e.get("camera"),
        }
        for e in entries
    ]


def session_timeline(session) -> list[tuple[float, dict[str, Any]]]:
    """The session's device events as live-view events, (t_s on the session clock, event), in time order.

    ``reading``: the reference device's totaliser (L) and, inside a point, the volume since the
    point's start (L); ``telemetry``: the controller's flow (m³/h) and temperature (°C);
    ``point``: a point's start and stop (with the logged reference volume, L)."""
    reference_devices = {r.get("device") for r in session.reference_instruments}
    timeline: list[tuple[float, dict[str, Any]]] = []
    for device_id in session.device_ids:
        events = [e for e in session.device_events(device_id) if e.parsed is not None]
        for event in events:
            parsed = event.parsed
            if device_id in reference_devices and _number(parsed.get("volume_l")) is not None:
                timeline.append(
                    (
                        event.t_s,
                        {
                            "type": "reading",
                            "device": device_id,
                            "t_s": event.t_s,
                            "totaliser_l": parsed["volume_l"],
                            "flow_l_h": _number(parsed.get("flow_l_h")),
                            "temperature_c": _number(parsed.get("temperature_c")),
                        },
                    )
                )
            elif parsed.get("event") in ("point_start", "point_stop") and "point" in parsed:
                timeline.append(
                    (
                        event.t_s,
                        {
                            "type": "point",
                            "point": parsed["point"],
                            "t_s": event.t_s,
                            "phase": "running" if parsed["event"] == "point_start" else "stopped",
                            "logged_reference_volume_l": _number(parsed.get("reference_volume_l")),
                        },
                    )
                )
            elif "flow_m3h" in parsed or "temperature_c" in parsed:
                timeline.append(
                    (
                        event.t_s,
                        {
                            "type": "telemetry",
                            "device": device_id,
                            "t_s": event.t_s,
                            "flow_m3h": _number(parsed.get("flow_m3h")),
                            "temperature_c": _number(parsed.get("temperature_c")),
                        },
                    )
                )
    timeline.sort(key=lambda item: item[0])  # stable: a device's own order is kept at equal times
    return timeline


def _verdict_events(report: dict[str, Any], point: str | None) -> Iterator[dict[str, Any]]:
    """The report's point results as ``verdict`` events (every point when ``point`` is None)."""
    for instrument in report["instruments"]:
        for result in instrument["points"]:
            if point is None or result["name"] == point:
                yield {
                    "type": "verdict",
                    "instrument": instrument["id"],
                    "point": result["name"],
                    **{
                        k: result.get(k)
                        for k in (
                            "error_pct",
                            "mpe_pct",
                            "uncertainty_pct",
                            "verdict",
                            "reason",
                            "reference_volume",
                            "indicated_volume",
                        )
                    },
                }


class _FrameReadings:
    """The frames a verification read, per (camera id, frame index): (t_s, RegisterReading, reader)."""

    def __init__(self) -> None:
        self.read: dict[tuple[str, int], tuple[float, Any, Any]] = {}

    def observe(self, camera_id: str, index: int, t_s: float, reading: Any, reader: Any) -> None:
        """The verifier's call (keeps the reading read to the finest element, nothing else: no cost)."""
        known = self.read.get((camera_id, index))
        if known is None or reading.finest_element >= known[1].finest_element:
            self.read[(camera_id, index)] = (t_s, reading, reader)

    def timeline(self) -> list[tuple[float, dict[str, Any]]]:
        """One private ``_frame`` entry per frame read, (t_s, entry), in time order."""
        entries = [(t_s, {"type": "_frame", "camera": c, "index": i}) for (c, i), (t_s, _, _) in self.read.items()]
        return sorted(entries, key=lambda item: item[0])


def replay_session(
    session_dir: Path,
    out_dir: Path,
    speed: float,
    publisher: Publisher,
    sleep: Callable[[float], None] = time.sleep,
    frame_fps: float = FRAME_FPS,
    certificates: Path | None = None,
) -> dict[str, Any]:
    """Verify ``session_dir`` (report.json/html into ``out_dir``), then publish its timeline at ``speed`` × real time.

    Returns the report as written to report.json. A point's ``verdict`` events are published when its
    stop is replayed (points never stopped in the logs: at the end), then a ``state`` with the session's verdict.
    Each frame the verification read is published at its time, at most ``frame_fps`` per camera (wall clock).
    With ``certificates`` (a folder `meterbench certify` wrote), the session's certificates are read before
    the verification and one ``certificate`` event per certified instrument follows the verdicts."""
    from meterbench.session import load_session
    from meterbench.verify import check_report_folder, run_session
    from meterbench.verify.water_meter import frame_observer
    from meterbench.web.certificates import certificate_events

    if not (speed > 0 and math.isfinite(speed)):
        raise ConfigError(f"--speed: expected a positive factor of real time, got {speed}")
    check_report_folder(out_dir, session_dir)
    with load_session(session_dir) as session:
        manifest = session.manifest
        issued = [] if certificates is None else certificate_events(certificates, session_dir, manifest)
        publisher.publish(
            {
                "type": "state",
                "session": manifest["session_id"],
                "bench_kind": manifest["bench_kind"],
                "instruments": instruments_of(manifest),
                "points": [p["name"] for p in session.test_plan_points],
                "phase": "verifying",
                "speed": speed,
                "verdict": None,
                "simulated": session.simulated,
            }
        )
        timeline = session_timeline(session)
    frames = _FrameReadings()
    token = frame_observer.set(frames.observe)
    try:
        run_session(session_dir, out_dir)
    finally:
        frame_observer.reset(token)
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))  # as written (rounded)
    publisher.publish({"type": "state", "phase": "replaying"})
    t0 = timeline[0][0] if timeline else 0.0
    timeline = sorted(timeline + frames.timeline(), key=lambda item: item[0])  # stable: equal times keep order
    with load_session(session_dir) as session:
        announced = _play(session, timeline, (t0, speed, frame_fps), report, frames, publisher, sleep)
    publish_report(publisher, report, announced, issued)
    return report


def _play(
    session,
    timeline: list[tuple[float, dict[str, Any]]],
    pace: tuple[float, float, float],
    report: dict[str, Any],
    frames: _FrameReadings,
    publisher: Publisher,
    sleep: Callable[[float], None],
) -> set[str]:
    """Publish ``timeline`` at ``speed`` × real time from ``t0`` (its first device event), frames at most
    ``frame_fps`` per camera (``pace``: t0, speed, frame_fps); returns the points whose verdicts were published."""
    t0, speed, frame_fps = pace
    watched = {i.get("camera"): i["id"] for i in session.manifest.get("instruments", [])}
    start_wall = time.monotonic()
    last_sent: dict[tuple[str, str], float] = {}
    announced: set[str] = set()
    point_start_total: dict[str, float] = {}
    refused: dict[str, Counter[str]] = {}
    for t_s, event in timeline:
        due = start_wall + (t_s - t0) / speed
        delay = due - time.monotonic()
        if delay > 0:
            sleep(delay)
        if event["type"] == "_frame":
            camera = event["camera"]
            _, reading, reader = frames.read[(camera, event["index"])]
            counts = refused.setdefault(camera, Counter())
            if not reading.ok:
                counts[refusal_key(reading.reason)] += 1
            now = time.monotonic()
            if now - last_sent.get(("frame", camera), -math.inf) < 1.0 / frame_fps:
                continue  # rate-limited: the counters still count it
            image = session.camera(camera).read(event["index"])
            if image is None:
                continue
            last_sent[("frame", camera)] = now
            captured_unix = time.time() - (time.monotonic() - due)  # when the frame was due on screen
            publisher.publish(
                frame_event(
                    camera,
                    watched.get(camera),
                    t_s,
                    image,
                    reading_summary(reading, reader),
                    counts,
                    read_t_s=t_s,
                    captured_unix=captured_unix,
                )
            )
            continue
        if event["type"] in ("reading", "telemetry"):
            if event["type"] == "reading":
                start = point_start_total.get(event["device"])
                event = {**event, "reference_volume_l": None if start is None else event["totaliser_l"] - start}
            key = (event["type"], event["device"])
            now = time.monotonic()
            if now - last_sent.get(key, -math.inf) < READING_INTERVAL_S:
                continue
            last_sent[key] = now
            publisher.publish(event)
            continue
        publisher.publish(event)
        if event["phase"] == "running":
            publisher.publish({"type": "state", "current_point": event["point"]})
            point_start_total = _totals_at(timeline, t_s)
        else:
            point_start_total = {}
            if event["point"] not in announced:
                announced.add(event["point"])
                for verdict in _verdict_events(report, event["point"]):
                    publisher.publish(verdict)
    return announced


def publish_report(
    publisher: Publisher,
    report: dict[str, Any],
    announced: set[str],
    certificates: list[dict[str, Any]] | tuple[()] = (),
) -> None:
    """The end of a run or replay: the ``verdict`` events of the points not in ``announced``, the
    ``certificates`` events (after every verdict), the report's warnings, and the final ``state``
    (phase "done", the session's verdict)."""
    for verdict in _verdict_events(report, None):
        if verdict["point"] not in announced:
            publisher.publish(verdict)
    for certificate in certificates:
        publisher.publish(certificate)
    for instrument in report["instruments"]:
        for warning in instrument.get("warnings", []):
            publisher.publish({"type": "warning", "instrument": instrument["id"], "message": warning})
    for warning in report.get("warnings", []):
        publisher.publish({"type": "warning", "instrument": None, "message": warning})
    publisher.publish({"type": "state", "phase": "done", "verdict": report["verdict"], "current_point": None})


def _totals_at(timeline: list[tuple[float, dict[str, Any]]], t_s: float) -> dict[str, float]:
    """Each reference device's last totaliser value (L) at or before ``t_s``."""
    totals: dict[str, float] = {}
    for when, event in timeline:
        if when > t_s:
            break
        if event["type"] == "reading":
            totals[event["device"]] = event["totaliser_l"]
    return totals
