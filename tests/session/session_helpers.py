"""Small valid session manifests and recorded sessions for the session writer/reader tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from meterbench.protocols import format_totaliser_line, parse_totaliser_line
from meterbench.session.writer import SessionRecorder

FRAME_SIZE_WH = (64, 48)
FRAME_COUNT = 24
FPS = 10.0


def water_meter_manifest(session_id: str = "test-session-1") -> dict[str, Any]:
    """A minimal valid water-meter manifest without cameras/devices (the recorder adds them)."""
    register = {
        "plate_size_px": [480, 200],
        "markers": {
            "dictionary": "DICT_4X4_50",
            "items": [{"id": 0, "corners_px": [[0, 0], [40, 0], [40, 40], [0, 40]]}],
        },
        "elements": [
            {
                "name": "m3x1",
                "kind": "wheel",
                "colour": "black",
                "box_px": [60, 80, 40, 60],
                "litres_per_turn": 10000.0,
                "coupling": "carry",
            },
            {
                "name": "Lx0.1",
                "kind": "dial",
                "colour": "red",
                "center_px": [400, 100],
                "radius_px": 30,
                "box_px": [370, 70, 60, 60],
                "litres_per_turn": 1.0,
                "coupling": "gear",
            },
        ],
    }
    return copy.deepcopy(
        {
            "session_id": session_id,
            "bench_kind": "water-meter",
            "start_time_utc": "2026-11-27T09:00:00Z",
            "instruments": [
                {
                    "id": "M1",
                    "kind": "water-meter",
                    "type": "DN15 single-jet",
                    "serial": "SIM-0001",
                    "accuracy_class": 2,
                    "q3_m3h": 2.5,
                    "r": 100,
                    "temperature_class": "T30",
                    "camera": "cam-M1",
                    "register": register,
                }
            ],
            "tanks": [],
            "reference_instruments": [
                {
                    "id": "ref",
                    "kind": "pulse-totaliser",
                    "device": "ref-meter",
                    "expanded_uncertainty_pct": 0.1,
                    "coverage_factor": 2,
                    "resolution_l": 0.0001,
                }
            ],
            "test_plan": {
                "points": [
                    {"name": "Q3", "flow_rate_m3h": 2.4, "volume_l": 50.0},
                    {"name": "Q2", "flow_rate_m3h": 0.042, "volume_l": 5.0},
                ]
            },
            "decision_rule": "simple",
        }
    )


def make_frame(index: int) -> np.ndarray:
    """A BGR frame whose content encodes ``index`` (a bright bar at x = 2·index px)."""
    width, height = FRAME_SIZE_WH
    frame = np.full((height, width, 3), 40, np.uint8)
    frame[:, 2 * index : 2 * index + 2] = (255, 255, 255)
    frame[: height // 2, :, 2] = 120
    return frame


def totaliser_line(index: int) -> bytes:
    """The reference totaliser's line number ``index`` (10 pulses of 1 mL each, 2400 L/h, 20.12 °C)."""
    return format_totaliser_line(index, index * 10, index * 0.01, 2400.0, 20.12)


def record_session(
    out_dir: Path, *, kind: str = "video", image_format: str = "jpg", truth: bool = True, manifest: dict | None = None
) -> Path:
    """Record a small complete session (one camera, two devices) and return its folder.

    ``manifest``: instead of ``water_meter_manifest()`` (the same instruments, camera and devices)."""
    with SessionRecorder.create(out_dir, manifest or water_meter_manifest()) as rec:
        ref = rec.device_log("ref-meter", kind="serial-totaliser")
        controller = rec.device_log("controller", kind="mqtt")
        camera = rec.camera_writer("cam-M1", FPS, FRAME_SIZE_WH, kind=kind, image_format=image_format)
        for index in range(FRAME_COUNT):
            t_s = index / FPS + 0.0123
            camera.write(make_frame(index), t_s)
            line = totaliser_line(index)
            ref.append(t_s, line, parse_totaliser_line(line)[0])
        controller.append(
            0.5,
            '{"event": "point_start", "point": "Q3", "reference_volume_l": 0.0}',
            {"event": "point_start", "point": "Q3", "reference_volume_l": 0.0},
            topic="bench/b1/event",
        )
        ref.append(2.5, b"\xff\x00garbage", None, "no $ start")
        if truth:
            rec.write_truth(
                {
                    "instruments": [
                        {
                            "id": "M1",
                            "points": [{"name": "Q3", "true_error_pct": -0.42}, {"name": "Q2", "true_error_pct": 0.3}],
                        }
                    ]
                }
            )
        rec.update_manifest({"end_time_utc": "2026-11-27T09:00:03Z", "stopped_reason": "done"})
    return Path(out_dir)


def rewrite_device_log(folder: Path, device_id: str, edit) -> None:
    """Rewrite ``devices/<device_id>.jsonl`` as if it had been recorded so: ``edit(event)`` returns the
    event to keep (changed or not) or None to leave the line out; the hash chain is written anew and
    hashes.json removed (an edited copy claims no integrity; tamper evidence is tested on its own)."""
    from meterbench.session.integrity import CHAIN_FIELD, HASHES_FILE, chain_seed, line_digest

    log = Path(folder) / "devices" / f"{device_id}.jsonl"
    previous = chain_seed(device_id)
    lines = []
    for text in log.read_text().splitlines():
        event = edit(json.loads(text))
        if event is None:
            continue
        event[CHAIN_FIELD] = previous
        line = json.dumps(event, separators=(",", ":"))
        previous = line_digest(line.encode())
        lines.append(line)
    log.write_text("\n".join(lines) + "\n")
    (Path(folder) / HASHES_FILE).unlink(missing_ok=True)
