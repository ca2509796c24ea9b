"""End to end: simulated water-meter sessions with known truth through `meterbench run`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meterbench.sim import simulate_water_meter
from meterbench.verify.run import run_session

CONTRACT_POINT_KEYS = {
    "name",
    "flow_rate",
    "reference_volume",
    "indicated_volume",
    "error_pct",
    "mpe_pct",
    "uncertainty_pct",
    "verdict",
    "reason",
}


SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "water-meter-short"


@pytest.fixture(scope="module")
def simulated() -> Path:
    """The shipped sample: `meterbench simulate water-meter --seed 1 --meters 2 --profile short`."""
    return SAMPLE


@pytest.fixture(scope="module")
def verified(simulated, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("out")
    run_session(simulated, out)
    return json.loads((out / "report.json").read_text())


def _truth(folder: Path) -> dict:
    truth = json.loads((folder / "truth.json").read_text())
    return {(i["id"], p["name"]): p for i in truth["instruments"] for p in i["points"]}


def test_report_has_the_contract_shape(verified, simulated):
    manifest = json.loads((simulated / "session.json").read_text())
    assert verified["session"] == manifest["session_id"]
    assert verified["verdict"] in ("pass", "fail", "inconclusive")
    assert [i["id"] for i in verified["instruments"]] == [i["id"] for i in manifest["instruments"]]
    plan_names = [p["name"] for p in manifest["test_plan"]["points"]]
    for instrument in verified["instruments"]:
        assert instrument["kind"] == "water-meter"
        assert [p["name"] for p in instrument["points"]] == plan_names
        for point in instrument["points"]:
            assert set(point) >= CONTRACT_POINT_KEYS


def test_every_point_error_is_within_its_uncertainty_of_the_truth(verified, simulated):
    truth = _truth(simulated)
    for instrument in verified["instruments"]:
        for point in instrument["points"]:
            assert point["verdict"] != "inconclusive", point["reason"]
            true_error = truth[(instrument["id"], point["name"])]["true_error_pct"]
            assert abs(point["error_pct"] - true_error) <= point["uncertainty_pct"], (instrument["id"], point)
            expected = "pass" if abs(true_error) <= point["mpe_pct"] else "fail"
            assert point["verdict"] == expected


def test_report_json_is_byte_identical_on_a_second_run(verified, simulated, tmp_path):
    run_session(simulated, tmp_path)
    again = json.loads((tmp_path / "report.json").read_text())
    assert again == verified
    assert (tmp_path / "report.html").stat().st_size > 1000


def _copy(simulated: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(simulated, target)
    return target


def _run_cli(session: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meterbench", "run", str(session), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_truncated_reference_log_makes_points_inconclusive_not_wrong(simulated, tmp_path):
    session = _copy(simulated, tmp_path)
    log = session / "devices" / "ref-meter.jsonl"
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2] + b'{"seq": 99999, "t_s": 1e9, "raw": "$TOT,trunc')
    result = _run_cli(session, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    verdicts = [p["verdict"] for i in report["instruments"] for p in i["points"]]
    assert "inconclusive" in verdicts
    truth = _truth(simulated)
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            if point["verdict"] == "inconclusive":
                assert point["reason"]
            else:
                true_error = truth[(instrument["id"], point["name"])]["true_error_pct"]
                assert abs(point["error_pct"] - true_error) <= point["uncertainty_pct"]


def test_missing_camera_file_is_a_clear_one_line_error(simulated, tmp_path):
    session = _copy(simulated, tmp_path)
    manifest = json.loads((session / "session.json").read_text())
    video = session / manifest["cameras"][0]["video"]
    video.unlink()
    result = _run_cli(session, tmp_path / "out")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines and video.name in result.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_manifest_error_names_the_field(simulated, tmp_path):
    session = _copy(simulated, tmp_path)
    manifest = json.loads((session / "session.json").read_text())
    manifest["instruments"][0]["q3_m3h"] = "fast"
    (session / "session.json").write_text(json.dumps(manifest))
    result = _run_cli(session, tmp_path / "out")
    assert result.returncode != 0
    assert "q3_m3h" in result.stderr


def test_corrupted_frames_are_skipped_not_misread(simulated, tmp_path):
    """Overwrite a run of bytes inside the first camera's video: frames fail to decode or decode damaged."""
    session = _copy(simulated, tmp_path)
    manifest = json.loads((session / "session.json").read_text())
    video = session / manifest["cameras"][0]["video"]
    data = bytearray(video.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 4000] = bytes(4000)
    video.write_bytes(bytes(data))
    result = _run_cli(session, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "mpeg4" not in result.stderr  # FFmpeg's per-macroblock complaints are silenced
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    truth = _truth(simulated)
    unreadable = 0
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            if point["verdict"] != "inconclusive":
                unreadable += point["details"]["frames_unreadable"]
                true_error = truth[(instrument["id"], point["name"])]["true_error_pct"]
                assert abs(point["error_pct"] - true_error) <= point["uncertainty_pct"]
    assert unreadable > 0  # the damage was seen and those frames were not used


@pytest.mark.slow
def test_a_fresh_simulated_session_verifies_within_uncertainty(tmp_path):
    folder = tmp_path / "wm"
    simulate_water_meter(folder, seed=11, meters=2, profile="short")
    run_session(folder, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    truth = _truth(folder)
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            assert point["verdict"] != "inconclusive", point["reason"]
            true_error = truth[(instrument["id"], point["name"])]["true_error_pct"]
            assert abs(point["error_pct"] - true_error) <= point["uncertainty_pct"]
            assert point["verdict"] == ("pass" if abs(true_error) <= point["mpe_pct"] else "fail")


def test_points_run_outside_their_flow_window_are_inconclusive(simulated, tmp_path):
    """Declared as a Q3 = 4 meter, the bench's flows miss every window: no verdict is given."""
    session = _copy(simulated, tmp_path)
    manifest = json.loads((session / "session.json").read_text())
    for instrument in manifest["instruments"]:
        instrument["q3_m3h"] = 4.0
    (session / "session.json").write_text(json.dumps(manifest))
    run_session(session, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {p["name"]: p["reason"] for p in report["instruments"][0]["points"]}
    assert all(p["verdict"] == "inconclusive" for i in report["instruments"] for p in i["points"])
    assert "outside the Q3 verification window" in reasons["Q3"]
    assert "outside the Q2 verification window" in reasons["Q2"]
    assert "no MPE for this flow" in reasons["Q1"]  # below Q1 = 0.04 m3/h
    assert report["verdict"] == "inconclusive"
