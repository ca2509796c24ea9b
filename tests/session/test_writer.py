"""SessionRecorder: the session folder as written, before any reader is involved."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.session import SessionRecorder
from meterbench.session.integrity import chain_seed, line_digest
from tests.session.session_helpers import FRAME_SIZE_WH, make_frame, water_meter_manifest


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_create_writes_manifest_with_format_and_folders(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with SessionRecorder.create(out, water_meter_manifest()):
        written = json.loads((out / "session.json").read_text())
    assert written["format"] == "meterbench-session"
    assert written["format_version"] == 1
    assert written["session_id"] == "test-session-1"
    assert written["cameras"] == [] and written["devices"] == []
    assert (out / "cameras").is_dir() and (out / "devices").is_dir()


def test_create_refuses_non_empty_folder_but_accepts_empty_one(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        SessionRecorder.create(tmp_path / "full", water_meter_manifest())
    (tmp_path / "empty").mkdir()
    SessionRecorder.create(tmp_path / "empty", water_meter_manifest()).close()
    assert (tmp_path / "empty" / "session.json").is_file()


def test_create_refuses_other_format_version(tmp_path: Path) -> None:
    manifest = water_meter_manifest() | {"format_version": 2}
    with pytest.raises(ValueError, match="format_version: expected 1, got 2"):
        SessionRecorder.create(tmp_path / "s", manifest)


def test_update_manifest_rewrites_atomically(tmp_path: Path) -> None:
    with SessionRecorder.create(tmp_path, water_meter_manifest()) as rec:
        rec.update_manifest({"end_time_utc": "2026-11-27T09:30:00Z", "stopped_reason": "sequence complete"})
    written = json.loads((tmp_path / "session.json").read_text())
    assert written["end_time_utc"] == "2026-11-27T09:30:00Z"
    assert written["stopped_reason"] == "sequence complete"
    assert written["instruments"][0]["id"] == "M1"
    assert not list(tmp_path.glob("*.tmp"))


def test_update_manifest_refuses_recorder_managed_keys(tmp_path: Path) -> None:
    with (
        SessionRecorder.create(tmp_path, water_meter_manifest()) as rec,
        pytest.raises(ValueError, match="cameras, format_version: kept by the recorder"),
    ):
        rec.update_manifest({"cameras": [], "format_version": 2})
    assert json.loads((tmp_path / "session.json").read_text())["format_version"] == 1


def test_exception_in_context_records_stopped_reason(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), SessionRecorder.create(tmp_path, water_meter_manifest()):
        raise RuntimeError("valve stuck")
    written = json.loads((tmp_path / "session.json").read_text())
    assert written["stopped_reason"] == "RuntimeError: valve stuck"


def test_device_log_lines_text_bytes_and_topic(tmp_path: Path) -> None:
    with SessionRecorder.create(tmp_path, water_meter_manifest()) as rec:
        log = rec.device_log("controller", kind="mqtt")
        assert log.append(1.5, "$TOT,1*00\r\n", {"volume_l": np.float64(1.25)}) == 0
        assert log.append(1.75, b"\xff\xfe\x00", None, "not text") == 1
        assert log.append(2.0, b'{"flow_m3h": 2.4}', {"flow_m3h": 2.4}, topic="bench/b1/telemetry") == 2
        assert rec.device_log("controller") is log
    lines = _lines(tmp_path / "devices" / "controller.jsonl")
    assert lines[0] == {
        "seq": 0,
        "t_s": 1.5,
        "raw": "$TOT,1*00\r\n",
        "parsed": {"volume_l": 1.25},
        "error": None,
        "prev": chain_seed("controller"),
    }
    raw_lines = (tmp_path / "devices" / "controller.jsonl").read_bytes().splitlines()
    assert [line["prev"] for line in lines[1:]] == [line_digest(raw) for raw in raw_lines[:-1]]  # the chain
    assert base64.b64decode(lines[1]["raw_b64"]) == b"\xff\xfe\x00" and "raw" not in lines[1]
    assert lines[1]["error"] == "not text"
    assert lines[2]["raw"] == '{"flow_m3h": 2.4}' and lines[2]["topic"] == "bench/b1/telemetry"
    devices = json.loads((tmp_path / "session.json").read_text())["devices"]
    assert devices == [{"id": "controller", "kind": "mqtt", "log": "devices/controller.jsonl"}]


def test_device_log_rejects_bad_calls(tmp_path: Path) -> None:
    with SessionRecorder.create(tmp_path, water_meter_manifest()) as rec:
        with pytest.raises(ValueError, match="kind: expected a device kind"):
            rec.device_log("ref-meter")
        with pytest.raises(ValueError, match="device_id: expected an id"):
            rec.device_log("../evil", kind="mqtt")
        log = rec.device_log("ref-meter", kind="serial-totaliser")
        with pytest.raises(ValueError, match="t_s: expected a finite number"):
            log.append(float("nan"), "x")
        with pytest.raises(ValueError, match="raw: expected str or bytes"):
            log.append(1.0, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="closed"):
        log.append(2.0, "late")


def test_device_log_is_thread_safe(tmp_path: Path) -> None:
    threads_n, per_thread = 4, 400
    with SessionRecorder.create(tmp_path, water_meter_manifest()) as rec:
        log = rec.device_log("controller", kind="mqtt")

        def producer(k: int) -> None:
            for i in range(per_thread):
                log.append(k * 1000 + i, f"payload {k} {i}", {"k": k, "i": i})

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = _lines(tmp_path / "devices" / "controller.jsonl")
    assert [line["seq"] for line in lines] == list(range(threads_n * per_thread))
    for k in range(threads_n):  # each producer's events stay in its own order
        mine = [line["parsed"]["i"] for line in lines if line["parsed"]["k"] == k]
        assert mine == list(range(per_thread))


def _decoded_frames(folder: Path, entry: dict) -> list[np.ndarray]:
    """The camera's frames as decoded from its files by OpenCV alone (no session reader)."""
    if "video" in entry:
        capture, frames = cv2.VideoCapture(str(folder / entry["video"])), []
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)
    return [cv2.imread(str(path)) for path in sorted((folder / entry["images"]).iterdir())]


@pytest.mark.parametrize(("kind", "image_format"), [("video", "jpg"), ("images", "jpg"), ("images", "png")])
def test_camera_writer_files_and_frame_times(tmp_path: Path, kind: str, image_format: str) -> None:
    with SessionRecorder.create(tmp_path, water_meter_manifest()) as rec:
        camera = rec.camera_writer("cam-M1", 10.0, FRAME_SIZE_WH, kind=kind, image_format=image_format)
        for index in range(5):
            assert camera.write(make_frame(index), 0.1 * index) == index
        camera.write(make_frame(5)[:, :, 0], 0.55)  # grey frames are accepted too
    rows = (tmp_path / "cameras" / "cam-M1.csv").read_text().splitlines()
    assert rows[0] == "frame_index,t_s"
    assert [float(r.split(",")[1]) for r in rows[1:]] == [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.55]
    entry = json.loads((tmp_path / "session.json").read_text())["cameras"][0]
    if kind == "video":
        assert entry["video"] == "cameras/cam-M1.mp4"
        assert (tmp_path / "cameras" / "cam-M1.mp4").stat().st_size > 0
    else:
        assert entry["images"] == "cameras/cam-M1" and entry["image_format"] == image_format
        names = sorted(p.name for p in (tmp_path / "cameras" / "cam-M1").iterdir())
        assert names == [f"{i:06d}.{image_format}" for i in range(6)]
    assert (entry["fps"], entry["width"], entry["height"]) == (10.0, 64, 48)
    # the frames written are the frames stored, in order: PNG pixel for pixel, JPEG and MPEG-4
    # within their compression (measured mean |diff| 1.7 and 2.8 grey levels; the next frame is 12 off)
    written = [make_frame(i) for i in range(5)] + [cv2.cvtColor(make_frame(5)[:, :, 0], cv2.COLOR_GRAY2BGR)]
    decoded = _decoded_frames(tmp_path, entry)
    assert len(decoded) == len(written)
    for index, (frame, original) in enumerate(zip(decoded, written, strict=True)):
        difference = np.abs(frame.astype(int) - original.astype(int))
        if image_format == "png":
            assert difference.max() == 0, index
        else:
            assert difference.mean() < 4.0, index
        assert int(np.argmax(frame.mean(axis=(0, 2)))) in (2 * index, 2 * index + 1)  # the bar of this frame


def test_camera_writer_rejects_bad_times_and_frames(tmp_path: Path) -> None:
    with SessionRecorder.create(tmp_path, water_meter_manifest()) as rec:
        camera = rec.camera_writer("cam-M1", 10.0, FRAME_SIZE_WH, kind="images")
        camera.write(make_frame(0), 1.0)
        with pytest.raises(ValueError, match=r"t_s: expected a finite time > previous"):
            camera.write(make_frame(1), 1.0)
        with pytest.raises(ValueError, match=r"expected uint8 of shape \(48, 64\[, 3\]\)"):
            camera.write(np.zeros((10, 10, 3), np.uint8), 2.0)
        with pytest.raises(ValueError, match="already has a writer"):
            rec.camera_writer("cam-M1", 10.0, FRAME_SIZE_WH)
        with pytest.raises(ValueError, match="image_format: expected 'jpg' or 'png'"):
            rec.camera_writer("cam-2", 10.0, FRAME_SIZE_WH, kind="images", image_format="bmp")
        assert camera.frame_count == 1
    assert len((tmp_path / "cameras" / "cam-M1.csv").read_text().splitlines()) == 2


def test_camera_writer_replaces_manifest_entry_media(tmp_path: Path) -> None:
    manifest = water_meter_manifest() | {
        "cameras": [
            {
                "id": "cam-M1",
                "video": "old.mp4",
                "frame_times": "old.csv",
                "fps": 5.0,
                "width": 1,
                "height": 1,
                "exposure_ms": 4.0,
            }
        ]
    }
    with SessionRecorder.create(tmp_path, manifest) as rec:
        rec.camera_writer("cam-M1", 10.0, FRAME_SIZE_WH, kind="images", image_format="png")
    entry = json.loads((tmp_path / "session.json").read_text())["cameras"]
    assert entry == [
        {
            "id": "cam-M1",
            "frame_times": "cameras/cam-M1.csv",
            "fps": 10.0,
            "width": 64,
            "height": 48,
            "exposure_ms": 4.0,
            "images": "cameras/cam-M1",
            "image_format": "png",
        }
    ]


def test_manifest_lists_only_opened_devices_and_cameras(tmp_path: Path) -> None:
    manifest = water_meter_manifest() | {
        "devices": [
            {"id": "ref-meter", "kind": "serial-totaliser", "port": "/dev/ttyUSB0"},
            {"id": "plc", "kind": "modbus"},
        ],
        "cameras": [{"id": "cam-M2", "exposure_ms": 4.0}],
    }
    with SessionRecorder.create(tmp_path, manifest) as rec:
        assert json.loads((tmp_path / "session.json").read_text())["devices"] == []
        rec.device_log("ref-meter")  # kind comes from the template
        during = json.loads((tmp_path / "session.json").read_text())
        assert during["devices"] == [
            {"id": "ref-meter", "kind": "serial-totaliser", "port": "/dev/ttyUSB0", "log": "devices/ref-meter.jsonl"}
        ]
    after = json.loads((tmp_path / "session.json").read_text())
    assert after["not_recorded"] == {"cameras": ["cam-M2"], "devices": ["plc"]}
    assert after["cameras"] == [] and len(after["devices"]) == 1


def test_sync_is_callable_any_time_and_after_close(tmp_path: Path) -> None:
    rec = SessionRecorder.create(tmp_path, water_meter_manifest(), fsync_interval_s=3600.0)
    log = rec.device_log("ref-meter", kind="serial-totaliser")
    camera = rec.camera_writer("cam-M1", 10.0, FRAME_SIZE_WH, kind="images")
    log.append(0.1, "line")
    camera.write(make_frame(0), 0.1)
    rec.sync()
    assert (tmp_path / "devices" / "ref-meter.jsonl").read_text().count("\n") == 1
    rec.close()
    rec.sync()  # closed files are skipped, not an error
    camera.sync()


def test_write_truth(tmp_path: Path) -> None:
    truth = {"instruments": [{"id": "M1", "points": [{"name": "Q3", "true_error_pct": -0.42}]}]}
    with SessionRecorder.create(tmp_path, water_meter_manifest()) as rec:
        rec.write_truth(truth)
    assert json.loads((tmp_path / "truth.json").read_text()) == truth
