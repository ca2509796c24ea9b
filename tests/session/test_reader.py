"""load_session: round trips with the recorder, one-line validation errors, damaged files, kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.errors import SessionError
from meterbench.session import DeviceEvent, load_session
from tests.session.session_helpers import (
    FPS,
    FRAME_COUNT,
    FRAME_SIZE_WH,
    make_frame,
    record_session,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bar_position(frame: np.ndarray) -> int:
    """Index encoded by make_frame: the bright bar's x / 2 (robust to lossy coding)."""
    column_brightness = frame[frame.shape[0] // 2 :, :, 0].astype(float).mean(axis=0)
    return int(np.argmax(column_brightness[::2] + column_brightness[1::2]))


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "session.json").read_text())
    edit(manifest)
    (folder / "session.json").write_text(json.dumps(manifest, indent=2))


def _as_crashed(folder: Path) -> Path:
    """The folder as a crash leaves it: a recording that never closed has no hashes.json (damage to a
    closed session is a change since it was closed, tested in test_tamper.py)."""
    (folder / "hashes.json").unlink()
    return folder


def _problems(folder: Path) -> list[str]:
    with pytest.raises(SessionError) as info:
        load_session(folder)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(("kind", "image_format"), [("video", "jpg"), ("images", "jpg"), ("images", "png")])
def test_round_trip(tmp_path: Path, kind: str, image_format: str) -> None:
    folder = record_session(tmp_path / "s", kind=kind, image_format=image_format)
    with load_session(folder) as session:
        assert session.session_id == "test-session-1" and session.bench_kind == "water-meter"
        assert [p["name"] for p in session.test_plan_points] == ["Q3", "Q2"]
        assert session.instruments[0]["camera"] == "cam-M1"
        assert session.manifest["stopped_reason"] == "done"
        assert session.truth["instruments"][0]["points"][0]["true_error_pct"] == -0.42
        camera = session.camera("cam-M1")
        assert camera.frame_count == FRAME_COUNT
        np.testing.assert_array_equal(camera.frame_times, [i / FPS + 0.0123 for i in range(FRAME_COUNT)])
        for index, t_s, frame in camera.iter_frames():
            assert frame.shape == (FRAME_SIZE_WH[1], FRAME_SIZE_WH[0], 3)
            assert _bar_position(frame) == index
            assert t_s == camera.frame_times[index]
            if image_format == "png":
                np.testing.assert_array_equal(frame, make_frame(index))
        ref = session.device_events("ref-meter")
        assert [e.seq for e in ref] == list(range(FRAME_COUNT + 1))
        assert ref[3] == DeviceEvent(
            seq=3,
            t_s=3 / FPS + 0.0123,
            raw="$TOT,3,30,0.0300,2400.0,20.12*79\r\n",
            parsed={"seq": 3, "pulses": 30, "volume_l": 0.03, "flow_l_h": 2400.0, "temperature_c": 20.12},
            error=None,
        )
        assert ref[-1].raw == b"\xff\x00garbage" and ref[-1].error == "no $ start"
        controller = session.device_events("controller")
        assert controller[0].topic == "bench/b1/event"
        assert controller[0].parsed == {"event": "point_start", "point": "Q3", "reference_volume_l": 0.0}
        assert session.warnings == []


@pytest.mark.parametrize("forward_decode_frames", [48, 2])
def test_video_random_access_matches_sequential_decode(tmp_path: Path, monkeypatch, forward_decode_frames: int) -> None:
    monkeypatch.setattr("meterbench.session.reader._MAX_FORWARD_DECODE", forward_decode_frames)
    folder = record_session(tmp_path / "s", kind="video")
    with load_session(folder) as session:
        sequential = [frame for _, _, frame in session.camera("cam-M1").iter_frames()]
    with load_session(folder) as session:
        order = [17, 3, 4, 5, 23, 0, 22, 9, 12, 13, 20]
        for index, _, frame in session.camera("cam-M1").iter_frames(order):
            np.testing.assert_array_equal(frame, sequential[index])
        with pytest.raises(IndexError, match="frame index 24 outside 0..23"):
            session.camera("cam-M1").read(FRAME_COUNT)


def test_file_hashes_are_sha256_of_the_bytes_read(tmp_path: Path) -> None:
    folder = record_session(tmp_path / "s", kind="images")
    session = load_session(folder)
    assert list(session.file_hashes()) == ["session.json"]  # nothing else read yet
    list(session.camera("cam-M1").iter_frames())
    for device in session.device_ids:
        session.device_events(device)
    hashes = session.file_hashes()
    assert "session.json" in hashes and "cameras/cam-M1/000023.jpg" in hashes
    assert "hashes.json" not in hashes  # the recorder's own file hashes are no input
    assert (folder / "truth.json").is_file() and "truth.json" not in hashes  # not an input: only for comparison
    not_inputs = {"hashes.json", "truth.json"}  # the recorder's file hashes; the simulation's truth
    assert len(hashes) == sum(1 for p in folder.rglob("*") if p.is_file() and p.name not in not_inputs)
    expected = hashlib.sha256((folder / "devices" / "ref-meter.jsonl").read_bytes()).hexdigest()
    assert hashes["devices/ref-meter.jsonl"] == expected
    (folder / "devices" / "ref-meter.jsonl").write_bytes(b"changed after it was read\n")
    assert session.file_hashes()["devices/ref-meter.jsonl"] == expected  # the bytes used, not the folder now


def test_unknown_camera_or_device_id_is_a_clear_error(tmp_path: Path) -> None:
    session = load_session(record_session(tmp_path / "s"))
    with pytest.raises(
        SessionError,
        match='cameras: no entry with id "cam-9" '
        r'\(known: "cam-M1"\)',
    ):
        session.camera("cam-9")
    with pytest.raises(SessionError, match='devices: no entry with id "plc"'):
        session.device_events("plc")


# ---------------------------------------------------------------- validation


def test_missing_folder_and_session_json(tmp_path: Path) -> None:
    assert _problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: not a session folder (no such directory)"]
    assert _problems(tmp_path) == ["session.json: not found"]


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "session.json").write_text('{\n  "format": "meterbench-session",\n  "x" 1\n}')
    assert _problems(tmp_path) == ["session.json: not valid JSON: Expecting ':' delimiter at line 3, column 7"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda m: m["instruments"][0].update(q3_m3h="abc"),
            'session.json: instruments[0].q3_m3h: expected a number > 0 <= 100000, got "abc"',
        ),
        (
            lambda m: m["instruments"][0].pop("accuracy_class"),
            "session.json: instruments[0].accuracy_class: missing (expected one of 1, 2)",
        ),
        (
            lambda m: m.update(bench_kind="gas-meter"),
            'session.json: bench_kind: expected one of "water-meter", "tank", "helmet-impact", got "gas-meter"',
        ),
        (
            lambda m: m.update(format_version=2),
            "session.json: format_version: expected 1 (this reader reads format version 1), got 2",
        ),
        (
            lambda m: m["cameras"][0].update(video="cameras/missing.mp4"),
            'session.json: cameras[0].video: file "cameras/missing.mp4" not found in the session folder',
        ),
        (
            lambda m: m["test_plan"]["points"][1].update(name="Q3"),
            'session.json: test_plan.points[1].name: duplicate point name "Q3" (also test_plan.points[0].name)',
        ),
        (
            lambda m: m["instruments"][0].update(camera="cam-X"),
            'session.json: instruments[0].camera: expected the id of an entry of cameras[], got "cam-X"',
        ),
        (
            lambda m: m["cameras"][0].update(images="cameras"),
            'session.json: cameras[0]: expected exactly one of the fields "video" or "images"',
        ),
        (
            lambda m: m["devices"][0].update(log="../outside.jsonl"),
            "session.json: devices[0].log: expected a relative path inside the session folder "
            "('/' separators, no '..'), got \"../outside.jsonl\"",
        ),
        (
            lambda m: m["reference_instruments"][0].update(device="plc"),
            'session.json: reference_instruments[0].device: expected the id of an entry of devices[], got "plc"',
        ),
        (
            lambda m: m.update(start_time_utc="27/11/2026"),
            'session.json: start_time_utc: expected a UTC time in ISO 8601 like "2026-11-27T09:00:00Z", '
            'got "27/11/2026"',
        ),
        (
            lambda m: m["instruments"][0]["register"]["elements"][1].pop("radius_px"),
            "session.json: instruments[0].register.elements[1].radius_px: missing "
            "(expected a number > 0 <= 1000000000)",
        ),
        (
            lambda m: m.update(
                tanks=[{"id": "T1", "nominal_volume_l": 20.0, "material": "stainless-steel", "camera": "cam-M1"}]
            ),
            'session.json: tanks[0].kind: expected "water-meter" on a "water-meter" bench (bench_kind), got "tank"',
        ),
        (
            lambda m: m["test_plan"]["points"][0].pop("volume_l"),
            "session.json: test_plan.points[0].volume_l: missing (expected a number > 0 on a water-meter bench)",
        ),
    ],
    ids=[
        "wrong-type",
        "missing-field",
        "unknown-bench-kind",
        "format-version",
        "missing-camera-file",
        "duplicate-point",
        "unknown-camera-ref",
        "video-and-images",
        "path-escape",
        "unknown-device-ref",
        "bad-time",
        "dial-without-radius",
        "tank-on-meter-bench",
        "point-without-volume",
    ],
)
def test_one_mistake_gives_one_clear_line(tmp_path: Path, edit, expected: str) -> None:
    folder = record_session(tmp_path / "s")
    _edit_manifest(folder, edit)
    assert _problems(folder) == [expected]


def test_several_mistakes_are_all_listed(tmp_path: Path) -> None:
    folder = record_session(tmp_path / "s")

    def edit(m: dict) -> None:
        m["instruments"][0]["q3_m3h"] = -1
        del m["session_id"]
        m["cameras"][0]["fps"] = "ten"

    _edit_manifest(folder, edit)
    assert _problems(folder) == [
        'session.json: cameras[0].fps: expected a number > 0 <= 10000, got "ten"',
        "session.json: instruments[0].q3_m3h: expected a number > 0 <= 100000, got -1",
        "session.json: session_id: missing (expected an id of letters, digits, '.', '_', '-' "
        "(starting with a letter or digit))",
    ]


@pytest.mark.parametrize(("value", "shown"), [("warm", '"warm"'), (150, "150"), (-1, "-1")])
def test_assumed_water_temperature_is_checked(tmp_path: Path, value: object, shown: str) -> None:
    folder = record_session(tmp_path / "s")
    _edit_manifest(folder, lambda m: m.update(assumed_water_temperature_c=20.0))
    assert load_session(folder).manifest["assumed_water_temperature_c"] == 20.0
    _edit_manifest(folder, lambda m: m.update(assumed_water_temperature_c=value))
    assert _problems(folder) == [
        f"session.json: assumed_water_temperature_c: expected a water temperature in °C from 0 to 100, got {shown}"
    ]


def test_tank_bench_needs_tanks(tmp_path: Path) -> None:
    folder = record_session(tmp_path / "s", truth=False)

    def to_tank(m: dict) -> None:
        m["bench_kind"] = "tank"
        m["instruments"] = []
        m["tanks"] = [
            {
                "id": "T20",
                "nominal_volume_l": 20.0,
                "material": "stainless-steel",
                "class": "0.2",
                "camera": "cam-M1",
                "scale": {"division_ml": 10},
            }
        ]
        m["test_plan"]["points"] = [{"name": "run1"}, {"name": "run2"}]

    _edit_manifest(folder, to_tank)
    assert load_session(folder).tanks[0]["id"] == "T20"
    _edit_manifest(folder, lambda m: m.update(tanks=[]))
    assert _problems(folder) == ['session.json: tanks: expected at least one "tank" (bench_kind is "tank"), got none']


def test_invalid_truth_json_is_a_warning_not_an_error(tmp_path: Path) -> None:
    """truth.json is only for comparison: a bad one must not block verifying the session."""
    folder = _as_crashed(record_session(tmp_path / "s"))
    (folder / "truth.json").write_text(
        json.dumps(
            {
                "instruments": [
                    {"id": "M9", "points": []},
                    {"id": "M1", "points": [{"name": "Q3", "true_error_pct": None}]},
                ]
            }
        )
    )
    session = load_session(folder)
    assert session.truth is None and session.simulated
    assert session.warnings == [
        "truth.json: instruments[1].points[0].true_error_pct: expected a number, got null (truth.json not used)"
    ]
    (folder / "truth.json").write_text(json.dumps({"instruments": [{"id": "M9", "points": []}]}))
    assert load_session(folder).warnings == [
        'truth.json: instruments[0].id: expected the id of an instrument of session.json, got "M9" '
        "(truth.json not used)"
    ]
    (folder / "truth.json").write_text('{"instruments": [')
    [warning] = load_session(folder).warnings
    assert warning == "truth.json: not valid JSON: Expecting value at line 1, column 18 (truth.json not used)"


def test_simulated_is_known_from_truth_or_manifest(tmp_path: Path) -> None:
    assert load_session(record_session(tmp_path / "with-truth")).simulated is True
    folder = record_session(tmp_path / "real", truth=False)
    assert load_session(folder).simulated is False
    _edit_manifest(folder, lambda m: m.update(simulated={"seed": 1}))
    assert load_session(folder).simulated is True


# ---------------------------------------------------------------- damaged files


def test_truncated_last_jsonl_line_is_skipped_with_warning(tmp_path: Path) -> None:
    folder = _as_crashed(record_session(tmp_path / "s"))
    log = folder / "devices" / "ref-meter.jsonl"
    with open(log, "ab") as f:
        f.write(b'{"seq": 25, "t_s": 2.6, "raw": "$TOT,25,2')
    session = load_session(folder)
    events = session.device_events("ref-meter")
    assert [e.seq for e in events] == list(range(FRAME_COUNT + 1))
    assert session.warnings == ["devices/ref-meter.jsonl:26: skipped: truncated last line (cut by a crash?)"]


def test_bad_middle_lines_are_skipped_and_order_kept(tmp_path: Path) -> None:
    folder = _as_crashed(record_session(tmp_path / "s"))
    log = folder / "devices" / "ref-meter.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[2] = b"\x00\x00garbage"
    lines[4] = b'{"seq": 4, "t_s": null, "raw": "x", "parsed": null, "error": null}'
    log.write_bytes(b"\n".join(lines))
    session = load_session(folder)
    seqs = [e.seq for e in session.device_events("ref-meter")]
    assert seqs == [0, 1, 3] + list(range(5, FRAME_COUNT + 1))
    assert session.warnings == [
        "devices/ref-meter.jsonl:3: skipped: not valid JSON (Expecting value: line 1 column 1 (char 0))",
        "devices/ref-meter.jsonl:5: skipped: t_s: expected a finite number of seconds within ±1e+09, got null",
        # the hash chain names the lines changed (the next line's prev is the original line's hash)
        "devices/ref-meter.jsonl:4: hash chain broken (line 3 was changed, or lines removed); line 3 not used",
        "devices/ref-meter.jsonl:6: hash chain broken (line 5 was changed, or lines removed); line 5 not used",
    ]


def test_corrupt_and_missing_jpeg_frames_give_none_and_warning(tmp_path: Path) -> None:
    folder = _as_crashed(record_session(tmp_path / "s", kind="images"))
    frame_5 = folder / "cameras" / "cam-M1" / "000005.jpg"
    frame_5.write_bytes(frame_5.read_bytes()[: frame_5.stat().st_size // 2])
    (folder / "cameras" / "cam-M1" / "000006.jpg").write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")
    (folder / "cameras" / "cam-M1" / "000007.jpg").unlink()
    session = load_session(folder)
    frames = {index: frame for index, _, frame in session.camera("cam-M1").iter_frames()}
    assert [i for i, f in frames.items() if f is None] == [5, 6, 7]
    assert all(_bar_position(f) == i for i, f in frames.items() if f is not None)
    assert session.warnings[0] == ("cameras/cam-M1/000005.jpg: truncated or not a jpg file; frame not used")
    assert session.warnings[1] == "cameras/cam-M1/000006.jpg: cannot be decoded; frame not used"
    assert session.warnings[2] == "cameras/cam-M1/000007.jpg: not found; frame not used"
    session.camera("cam-M1").read(5)
    assert len(session.warnings) == 3  # each damaged frame is warned about once


def test_frame_times_longer_than_video_use_common_prefix(tmp_path: Path) -> None:
    folder = _as_crashed(record_session(tmp_path / "s", kind="video"))
    with open(folder / "cameras" / "cam-M1.csv", "a") as f:
        f.write("24,2.5123\n25,2.6123\n26,2.61")  # two extra rows and a cut one
    session = load_session(folder)
    camera = session.camera("cam-M1")
    assert camera.frame_count == FRAME_COUNT
    assert session.warnings == [
        "cameras/cam-M1.csv:28: truncated last row (cut by a crash?); frames from index 26 on are not used",
        "cameras/cam-M1.mp4: 24 frames but cameras/cam-M1.csv has 26 good rows; using the first 24",
    ]
    assert _bar_position(camera.read(FRAME_COUNT - 1)) == FRAME_COUNT - 1


def test_unterminated_last_row_is_never_used(tmp_path: Path) -> None:
    folder = _as_crashed(record_session(tmp_path / "s", kind="images"))
    csv = folder / "cameras" / "cam-M1.csv"
    csv.write_text(csv.read_text()[:-3])  # "23,2.3123\n" cut to "23,2.31": valid-looking, wrong
    session = load_session(folder)
    assert session.camera("cam-M1").frame_count == FRAME_COUNT - 1
    assert session.warnings == [
        "cameras/cam-M1.csv:25: truncated last row (cut by a crash?); frames from index 23 on are not used"
    ]


def test_non_increasing_frame_time_stops_at_the_bad_row(tmp_path: Path) -> None:
    folder = _as_crashed(record_session(tmp_path / "s", kind="images"))
    csv = folder / "cameras" / "cam-M1.csv"
    rows = csv.read_text().splitlines()
    rows[11] = "10,0.5"  # frame 10 goes back in time
    csv.write_text("\n".join(rows) + "\n")
    session = load_session(folder)
    assert session.camera("cam-M1").frame_count == 10
    assert session.warnings == [
        "cameras/cam-M1.csv:12: t_s: expected a finite time > 0.9123 s, got 0.5; frames from index 10 on are not used"
    ]


def test_unfinished_video_gives_no_frames_and_a_warning(tmp_path: Path) -> None:
    folder = _as_crashed(record_session(tmp_path / "s", kind="video"))
    video = folder / "cameras" / "cam-M1.mp4"
    video.write_bytes(video.read_bytes()[:200])
    session = load_session(folder)
    assert session.camera("cam-M1").frame_count == 0
    assert session.warnings == [
        "cameras/cam-M1.mp4: cannot be opened as a video (unfinished recording?); no frames used"
    ]


# ---------------------------------------------------------------- kill -9

_RECORDING_CHILD = textwrap.dedent("""
    import sys
    from meterbench.session import SessionRecorder
    from meterbench.protocols import parse_totaliser_line
    from tests.session.session_helpers import FRAME_SIZE_WH, make_frame, totaliser_line, water_meter_manifest

    rec = SessionRecorder.create(sys.argv[1], water_meter_manifest())
    ref = rec.device_log("ref-meter", kind="serial-totaliser")
    controller = rec.device_log("controller", kind="mqtt")
    camera = rec.camera_writer("cam-M1", 10.0, FRAME_SIZE_WH, kind="images")
    index = 0
    while True:
        t_s = index * 0.01
        camera.write(make_frame(index % 24), t_s)
        line = totaliser_line(index)
        ref.append(t_s, line, parse_totaliser_line(line)[0])
        controller.append(t_s, b'{"event": "fault"}', {"event": "fault"}, topic="bench/b/event")
        index += 1
        print(index, flush=True)  # everything of this iteration has been written
""")


def test_kill_9_while_recording_leaves_a_readable_session(tmp_path: Path) -> None:
    folder = tmp_path / "live"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", _RECORDING_CHILD, str(folder)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while int(child.stdout.readline() or 0) < 150:
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "recording child too slow"
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    acknowledged = int(rest.split()[-1]) if rest.split() else 150
    assert child.returncode == -signal.SIGKILL

    session = load_session(folder)
    camera = session.camera("cam-M1")
    assert camera.frame_count >= acknowledged
    for index, t_s, frame in camera.iter_frames():
        assert frame is not None and _bar_position(frame) == index % 24
        assert t_s == pytest.approx(index * 0.01)
    for device in ("ref-meter", "controller"):
        seqs = [event.seq for event in session.device_events(device)]
        assert len(seqs) >= acknowledged and seqs == list(range(len(seqs)))
    assert all("truncated" in w or "cut" in w for w in session.warnings), session.warnings
    assert not any(frame is None for _, _, frame in camera.iter_frames())


def test_a_recording_stopped_before_its_camera_opened_loads_with_that_camera_empty(tmp_path: Path) -> None:
    """A kill between create() (session.json names the meter's camera) and camera_writer() (which lists
    it in cameras[]): the session loads, the camera has no frames and says why, its meter is inconclusive."""
    from meterbench.session import SessionRecorder
    from meterbench.verify.results import Inconclusive, require_frames
    from tests.session.session_helpers import water_meter_manifest

    folder = tmp_path / "killed"
    recorder = SessionRecorder.create(folder, water_meter_manifest())
    recorder.device_log("ref-meter", kind="serial-totaliser")  # never closed: as a kill -9 leaves it
    assert not (folder / "hashes.json").exists()
    session = load_session(folder)
    assert session.camera_ids == []
    camera = session.camera("cam-M1")
    assert camera.frame_count == 0 and list(camera.iter_frames()) == []
    expected = "camera cam-M1: not in session.json cameras[]: the recording stopped before this camera opened"
    assert camera.problems[0].startswith(expected) and camera.problems[0] in session.warnings
    with pytest.raises(Inconclusive, match="camera cam-M1: 0 usable frame"):
        require_frames(camera)
    with pytest.raises(SessionError, match='no entry with id "cam-9"'):
        session.camera("cam-9")  # a camera no unit names is still an error
    recorder.close()  # closed (hashes.json written): the same session.json without the camera is refused
    _edit_manifest(folder, lambda m: m.update(cameras=[]))
    assert _problems(folder) == [
        'session.json: instruments[0].camera: expected the id of an entry of cameras[], got "cam-M1"'
    ]


def test_frames_written_by_opencv_are_not_confused_with_partial_files() -> None:
    ok, encoded = cv2.imencode(".jpg", make_frame(3))
    from meterbench.session.reader import _image_is_complete

    assert ok and _image_is_complete(encoded.tobytes(), "jpg")
    assert not _image_is_complete(encoded.tobytes()[:-10], "jpg")
    ok, encoded = cv2.imencode(".png", make_frame(3))
    assert _image_is_complete(encoded.tobytes(), "png")
    assert not _image_is_complete(encoded.tobytes()[:-5], "png")
