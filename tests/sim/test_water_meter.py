"""Whole-bench simulator: a short session is complete, consistent with its truth, reproducible."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.sim import simulate_water_meter
from meterbench.sim.physics import ErrorCurve
from meterbench.sim.water_meter import PROFILES
from meterbench.vision import RegisterLayout, positions_from_volume

SEED = 3
FPS = 2.0


def _simulate(path: Path) -> Path:
    return simulate_water_meter(path, seed=SEED, meters=2, profile="short", fps=FPS)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return _simulate(tmp_path_factory.mktemp("sim") / "session")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _truth(session: Path) -> dict:
    return json.loads((session / "truth.json").read_text())


def test_files_and_manifest(session):
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["bench_kind"] == "water-meter"
    assert [i["id"] for i in manifest["instruments"]] == ["M1", "M2"]
    assert [p["name"] for p in manifest["test_plan"]["points"]] == ["Q3", "Q2", "Q1"]
    for camera in manifest["cameras"]:
        assert (session / camera["video"]).stat().st_size > 10_000
        rows = (session / camera["frame_times"]).read_text().splitlines()
        assert rows[0] == "frame_index,t_s" and len(rows) > 100
    assert {d["id"] for d in manifest["devices"]} == {"ref-meter", "controller"}
    for instrument in manifest["instruments"]:
        RegisterLayout.from_dict(instrument["register"])  # valid layout


def test_session_loads_without_warnings(session):
    from meterbench.session import load_session

    loaded = load_session(session)
    assert loaded.session_id == f"sim-water-meter-seed{SEED}-short"
    assert list(loaded.warnings) == []


def _checksum(body: str) -> int:
    value = 0
    for char in body.encode("latin-1"):
        value ^= char
    return value


def test_serial_lines_parse_and_checksums_verify(session):
    events = _jsonl(session / "devices" / "ref-meter.jsonl")
    assert len(events) > 100
    pulses = []
    for event in events:
        raw = event["raw"]
        assert raw.startswith("$TOT,") and raw.endswith("\r\n") and event["error"] is None
        body, checksum = raw[1:-2].split("*")
        assert int(checksum, 16) == _checksum(body)
        fields = body.split(",")
        assert int(fields[2]) == event["parsed"]["pulses"]
        assert event["parsed"]["volume_l"] == pytest.approx(int(fields[2]) * 1e-4, abs=1e-9)
        pulses.append(event["parsed"]["pulses"])
    rate = len(events) / (events[-1]["t_s"] - events[0]["t_s"])
    assert 9.0 < rate < 11.0
    assert np.all(np.diff(pulses) >= 0)  # a totaliser never runs back
    assert np.all(np.diff([e["t_s"] for e in events]) > 0)


def test_controller_events_match_truth(session):
    events = _jsonl(session / "devices" / "controller.jsonl")
    truth = _truth(session)
    assert all(e["topic"] in ("bench/sim-bench/telemetry", "bench/sim-bench/event") for e in events)
    telemetry = [e for e in events if e["topic"].endswith("telemetry")]
    rate = len(telemetry) / (telemetry[-1]["t_s"] - telemetry[0]["t_s"])
    assert 1.8 < rate < 2.2
    kinds = [e["parsed"]["event"] for e in events if e["topic"].endswith("event")]
    assert kinds[0] == "sequence_start" and kinds[-1] == "sequence_end"
    for point in truth["points"]:
        for kind, t_key, ref_key in (
            ("point_start", "t_start_s", "reference_start_l"),
            ("point_stop", "t_stop_s", "reference_stop_l"),
        ):
            (event,) = [
                e
                for e in events
                if e["topic"].endswith("event")
                and e["parsed"]["event"] == kind
                and e["parsed"]["point"] == point["name"]
            ]
            assert event["t_s"] == pytest.approx(point[t_key], abs=1e-4)
            assert event["parsed"]["reference_volume_l"] == pytest.approx(point[ref_key], abs=1e-6)
        planned = PROFILES["short"].volumes_l[point["name"]]
        passed = point["reference_stop_l"] - point["reference_start_l"]
        assert planned - 1e-9 <= passed < planned * 1.01  # flying stop just past the plan


def test_truth_consistent_with_error_curves(session):
    truth = _truth(session)
    ref_error = truth["reference"]["error_pct"]
    statuses = []
    for instrument in truth["instruments"]:
        c = instrument["error_curve"]
        curve = ErrorCurve(c["q_ref_m3h"], tuple(c["coefficients"]))
        statuses.append(instrument["status"])
        for point in instrument["points"]:
            flow = truth["flows_m3h"][point["name"]]
            assert curve.error_pct(flow) == pytest.approx(point["curve_error_pct"], abs=1e-9)
            # stable flow with 0.3 % noise: the integrated error is the curve's
            assert point["true_error_vs_volume_pct"] == pytest.approx(point["curve_error_pct"], abs=0.02)
            # the reference totaliser's own error shifts the error seen by the bench, and
            # its latched totals are whole pulses of 0.1 mL (≤ 1 pulse each at start, stop)
            expected = ((1 + point["true_error_vs_volume_pct"] / 100) / (1 + ref_error / 100) - 1) * 100
            pulses_pct = 2e-4 / point["true_reference_volume_l"] * 100
            assert point["true_error_pct"] == pytest.approx(expected, abs=0.005 + pulses_pct)
            advance = point["register_stop_l"] - point["register_start_l"]
            assert advance == pytest.approx(point["true_indicated_volume_l"], abs=1e-9)
            verdict = "pass" if abs(point["true_error_pct"]) <= point["mpe_pct"] else "fail"
            assert point["true_verdict"] == verdict
    assert "outside" in statuses and "inside" in statuses
    outside = truth["instruments"][statuses.index("outside")]
    assert outside["true_verdict"] == "fail"


def test_frames_show_the_true_register(session):
    manifest = json.loads((session / "session.json").read_text())
    truth = _truth(session)
    instrument = manifest["instruments"][0]
    layout = RegisterLayout.from_dict(instrument["register"])
    camera = next(c for c in manifest["cameras"] if c["id"] == instrument["camera"])
    times = np.loadtxt(session / camera["frame_times"], delimiter=",", skiprows=1)[:, 1]
    video = cv2.VideoCapture(str(session / camera["video"]))
    count = 0
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50))
    while True:
        ok, frame = video.read()
        if not ok:
            break
        if count == 0:
            assert frame.shape == (camera["height"], camera["width"], 3)
            _, ids, _ = detector.detectMarkers(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            assert ids is not None and len(ids) == 4
        count += 1
    assert count == len(times)
    # before the first flow the register stands at its start volume
    start = truth["instruments"][0]["register_start_volume_l"]
    assert times[0] < truth["points"][0]["t_start_s"]
    assert positions_from_volume(layout, start).shape == (len(layout.elements),)


def test_bad_arguments_rejected(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        simulate_water_meter(tmp_path / "a", profile="long")
    with pytest.raises(ValueError, match="meters"):
        simulate_water_meter(tmp_path / "b", meters=0)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("occupied")
    with pytest.raises(FileExistsError):
        simulate_water_meter(tmp_path / "c", profile="short")


@pytest.mark.slow
def test_same_seed_same_session(session, tmp_path):
    again = _simulate(tmp_path / "again")
    for rel in (
        "session.json",
        "truth.json",
        "devices/ref-meter.jsonl",
        "devices/controller.jsonl",
        "cameras/cam-M1.csv",
        "cameras/cam-M2.csv",
    ):
        assert (session / rel).read_bytes() == (again / rel).read_bytes(), rel
    first = cv2.VideoCapture(str(session / "cameras" / "cam-M2.mp4"))
    second = cv2.VideoCapture(str(again / "cameras" / "cam-M2.mp4"))
    for _ in range(20):
        (ok1, a), (ok2, b) = first.read(), second.read()
        assert ok1 and ok2
        np.testing.assert_array_equal(a, b)
