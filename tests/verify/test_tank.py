"""evaluate_tank_session on small simulated sessions, against truth.json."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from meterbench.errors import SessionError
from meterbench.session import load_session
from meterbench.sim import simulate_tank
from meterbench.verify.results import InstrumentResult
from meterbench.verify.tank import evaluate_tank_session, tank_figures
from tests.session.session_helpers import rewrite_device_log

# |error - true error| measured on simulated tank sessions (seeds 2 and 3, 2 runs each):
# at most 0.0012 %-points, while U (k=2) is 0.021 %: the tolerance is near the engine's accuracy.
TANK_ERROR_TOLERANCE_PCT = 0.0025
TANK_U_PCT = 0.0212  # the budget's U (k=2) for these runs, measured


@pytest.fixture(scope="module")
def failing_tank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed 3: tank error about -0.17 %, beyond the 0.1 % (one division) MPE."""
    return simulate_tank(tmp_path_factory.mktemp("tank") / "s3", seed=3, runs=2)


def _truth(folder: Path) -> dict[str, float]:
    truth = json.loads((folder / "truth.json").read_text())
    return {p["name"]: p["true_error_pct"] for p in truth["instruments"][0]["points"]}


def _edited_copy(folder: Path, tmp_path: Path, top: dict | None = None, **tank_fields: object) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "hashes.json").unlink(missing_ok=True)  # edits are the input here; tamper evidence: test_evidence.py
    manifest = json.loads((copy / "session.json").read_text())
    manifest["tanks"][0].update(tank_fields)
    manifest.update(top or {})
    (copy / "session.json").write_text(json.dumps(manifest))
    return copy


def _strip_from_logs(folder: Path, keys: tuple[str, ...]) -> None:
    """Remove ``keys`` from what every device logged (as if no such sensor had been there), raw and parsed
    alike; the reference becomes a counter this reader has no parser for (its protocol always carries a
    temperature), and telemetry that would lack one of its mandatory keys is left out."""
    manifest = json.loads((folder / "session.json").read_text())
    for device in manifest["devices"]:
        if device["kind"] == "serial-totaliser":
            device["kind"] = "pulse-counter"
    (folder / "session.json").write_text(json.dumps(manifest))

    def strip(event: dict) -> dict | None:
        parsed = event.get("parsed")
        if not isinstance(parsed, dict) or not any(k in parsed for k in keys):
            return event
        if (event.get("topic") or "").endswith("telemetry") and "temperature_c" in keys:
            return None
        event["parsed"] = {k: v for k, v in parsed.items() if k not in keys}
        if event.get("topic"):
            event["raw"] = json.dumps(event["parsed"])
        return event

    for device in manifest["devices"]:
        rewrite_device_log(folder, device["id"], strip)


def test_errors_match_truth_and_verdicts_are_right(failing_tank: Path) -> None:
    session = load_session(failing_tank)
    [tank] = evaluate_tank_session(session)
    truth = _truth(failing_tank)
    assert isinstance(tank, InstrumentResult)
    assert tank.id == "T1" and tank.kind == "tank"
    assert [p.name for p in tank.points] == ["R1", "R2"]
    for point in tank.points:
        assert abs(point.error_pct - truth[point.name]) <= TANK_ERROR_TOLERANCE_PCT, point
        assert point.verdict == ("fail" if abs(truth[point.name]) > point.mpe_pct else "pass")
        assert point.mpe_pct == pytest.approx(0.1)
        assert point.uncertainty_pct == pytest.approx(TANK_U_PCT, rel=0.05)
        assert point.reference_volume == pytest.approx(20.0, abs=0.1)
        assert point.flow_rate == pytest.approx(2.4)
        assert point.details["frames_read"] >= 3
        assert "meter_temperature_assumed" not in point.details
    assert tank.verdict == "fail"
    assert any("configurable default" in w for w in tank.warnings)
    as_dict = tank.to_dict()
    assert list(as_dict) == [
        "id",
        "kind",
        "verdict",
        "points",
        "serial",
        "type",
        "accuracy_class",
        "nominal_volume_l",
        "material",
        "warnings",
    ]
    manifest_tank = session.manifest["tanks"][0]
    assert (as_dict["serial"], as_dict["accuracy_class"]) == (manifest_tank["serial"], manifest_tank["class"])
    assert (as_dict["nominal_volume_l"], as_dict["material"]) == (20.0, "stainless-steel")


def test_figures_show_each_run(failing_tank: Path) -> None:
    session = load_session(failing_tank)
    instruments = evaluate_tank_session(session)
    figures = tank_figures(session, instruments)
    assert len(figures["T1"]) == 2
    assert all(src.startswith("data:image/png;base64,") for src in figures["T1"].values())
    crop = instruments[0].points[0].figure
    assert crop.ndim == 3 and crop.dtype == np.uint8
    assert "figure" not in instruments[0].points[0].to_dict()


def test_short_drain_makes_the_run_inconclusive(failing_tank: Path, tmp_path: Path) -> None:
    session = load_session(_edited_copy(failing_tank, tmp_path, drain_time_s=90.0))
    [tank] = evaluate_tank_session(session)
    assert {p.verdict for p in tank.points} == {"inconclusive"}
    assert "needs 90 s" in tank.points[0].reason
    assert math.isnan(tank.points[0].error_pct)
    assert tank.points[0].mpe_pct == pytest.approx(0.1)  # what was known is kept
    assert tank.verdict == "inconclusive"


def test_unsettled_surface_is_not_read(failing_tank: Path, tmp_path: Path) -> None:
    session = load_session(_edited_copy(failing_tank, tmp_path, settle_time_s=0.4))
    [tank] = evaluate_tank_session(session)
    assert tank.points[0].verdict == "inconclusive"
    assert "inconsistent" in tank.points[0].reason


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"material": "glass"}, r"^session.json: tanks\[0\]\.material: .*'glass'"),
        ({"class": "platinum"}, r"^session.json: tanks\[0\]: accuracy_class: tank class 'platinum' unknown"),
        ({"settle_time_s": "long"}, r"^session.json: tanks\[0\]\.settle_time_s: expected a number > 0, got 'long'"),
    ],
)
def test_bad_tank_field_is_a_one_line_session_error(failing_tank: Path, tmp_path: Path, fields, match) -> None:
    session = load_session(_edited_copy(failing_tank, tmp_path, **fields))
    with pytest.raises(SessionError, match=match) as caught:
        evaluate_tank_session(session)
    assert "\n" not in str(caught.value)


def test_no_temperature_logged_makes_the_run_inconclusive(failing_tank: Path, tmp_path: Path) -> None:
    """The expansion corrections need both temperatures: never assumed without a word (as the water meter did)."""
    folder = _edited_copy(failing_tank, tmp_path)
    _strip_from_logs(folder, ("temperature_c", "tank_temperature_c"))
    [tank] = evaluate_tank_session(load_session(folder))
    assert [p.verdict for p in tank.points] == ["inconclusive", "inconclusive"]
    for point in tank.points:
        assert point.reason.startswith("no water temperature logged during the point (reference-meter temperature")
        assert "assumed_water_temperature_c" in point.reason
    assert not any("assumed" in w for w in tank.warnings)


def test_an_assumed_temperature_is_used_and_said(failing_tank: Path, tmp_path: Path) -> None:
    truth = json.loads((failing_tank / "truth.json").read_text())
    tank_c = round(truth["instruments"][0]["points"][0]["tank_temperature_c"], 2)  # what the simulated water was
    folder = _edited_copy(failing_tank, tmp_path, top={"assumed_water_temperature_c": tank_c})
    _strip_from_logs(folder, ("tank_temperature_c",))
    [measured] = evaluate_tank_session(load_session(failing_tank))
    [tank] = evaluate_tank_session(load_session(folder))
    for point, reference in zip(tank.points, measured.points, strict=True):
        assert point.verdict == reference.verdict == "fail"
        assert point.details["tank_temperature_c"] == tank_c
        assert point.details["tank_temperature_assumed"] is True
        assert "meter_temperature_assumed" not in point.details  # the meter's temperature was logged
        assert point.details["meter_temperature_c"] == reference.details["meter_temperature_c"]
        # assuming the water's real temperature gives the error of the logged run
        assert point.error_pct == pytest.approx(reference.error_pct, abs=0.001)
    [warning] = [w for w in tank.warnings if "assumed" in w]
    assert warning == (
        f"no water temperature logged: assumed {tank_c:g} °C (session.json assumed_water_temperature_c) "
        "for the MPE and the temperature corrections (points R1, R2)"
    )


def test_tank_camera_without_frames_makes_its_runs_inconclusive(failing_tank: Path, tmp_path: Path) -> None:
    folder = _edited_copy(failing_tank, tmp_path)
    (folder / "cameras" / "cam-T1.csv").write_text("frame_index,t_s\n")
    [tank] = evaluate_tank_session(load_session(folder))
    assert tank.verdict == "inconclusive"
    for point in tank.points:
        assert point.verdict == "inconclusive"
        assert point.reason.startswith("camera cam-T1: 0 usable frame(s), need 3")
