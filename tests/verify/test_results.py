"""The shared result types: report.json objects, inconclusive points, combined verdicts, reasons, temperatures."""

from __future__ import annotations

import math

import pytest

from meterbench.calibration import Decision
from meterbench.errors import SessionError
from meterbench.verify.results import (
    Inconclusive,
    InstrumentResult,
    PointResult,
    ReasonCounts,
    instrument_identity,
    session_decision,
    water_temperature,
)

POINT_KEYS = [
    "name",
    "flow_rate",
    "reference_volume",
    "indicated_volume",
    "error_pct",
    "mpe_pct",
    "uncertainty_pct",
    "verdict",
    "reason",
]


def _decided(name: str, error_pct: float, **extra) -> PointResult:
    return PointResult.decided(
        name,
        flow_rate=2.5,
        reference_volume=50.0,
        indicated_volume=50.0 * (1 + error_pct / 100),
        error_pct=error_pct,
        mpe_pct=2.0,
        uncertainty_pct=0.1,
        rule="simple",
        **extra,
    )


def test_a_decided_point_is_the_report_json_object():
    point = _decided("Q3", 0.5, details={"zone": "upper"})
    assert point.verdict == "pass"
    assert point.reason == "within MPE (simple acceptance); |E| = 0.5 %, MPE = 2 %, U = 0.1 %"
    as_dict = point.to_dict()
    assert list(as_dict) == [*POINT_KEYS, "details"]
    assert as_dict["indicated_volume"] == pytest.approx(50.25)
    assert as_dict["details"] == {"zone": "upper"}
    assert "details" not in _decided("Q3", 0.5).to_dict()  # only when there are any


def test_an_inconclusive_point_keeps_what_is_known():
    point = PointResult.inconclusive("Q1", "no point_stop event", flow_rate=0.03, reference_volume=2.0)
    as_dict = point.to_dict()
    assert list(as_dict) == POINT_KEYS
    assert (as_dict["verdict"], as_dict["reason"]) == ("inconclusive", "no point_stop event")
    assert (as_dict["flow_rate"], as_dict["reference_volume"]) == (0.03, 2.0)
    assert all(math.isnan(as_dict[k]) for k in ("indicated_volume", "error_pct", "mpe_pct", "uncertainty_pct"))


def test_from_evaluation_turns_inconclusive_data_into_a_point_and_lets_bugs_through():
    def no_frames() -> PointResult:
        raise Inconclusive("camera cam-M2: 0 usable frame(s)", reference_volume=5.0)

    point = PointResult.from_evaluation("Q3", no_frames, flow_rate=2.4, reference_volume=math.nan)
    assert (point.verdict, point.reason) == ("inconclusive", "camera cam-M2: 0 usable frame(s)")
    assert (point.flow_rate, point.reference_volume) == (2.4, 5.0)  # the exception's facts win over defaults

    def bug() -> PointResult:
        return [][0]

    with pytest.raises(IndexError):
        PointResult.from_evaluation("Q3", bug)
    with pytest.raises(IndexError):
        InstrumentResult.from_evaluation("M1", "water-meter", ["Q3"], bug)


def test_an_instrument_combines_its_points_by_the_one_rule():
    points = [_decided("Q3", 0.5), _decided("Q2", 2.5), PointResult.inconclusive("Q1", "no frames")]
    meter = InstrumentResult.from_points("M1", "water-meter", points, identity={"serial": "S-1"})
    assert meter.verdict == "fail"
    assert meter.decision.reason.startswith("1 of 3 fail: Q2: outside MPE")
    assert list(meter.to_dict()) == ["id", "kind", "verdict", "points", "serial", "warnings"]
    assert [p["name"] for p in meter.to_dict()["points"]] == ["Q3", "Q2", "Q1"]
    unsure = InstrumentResult.from_points("M2", "water-meter", [points[0], points[2]])
    passed = InstrumentResult.from_points("M3", "water-meter", [points[0]])
    assert (unsure.verdict, passed.verdict) == ("inconclusive", "pass")
    assert session_decision([passed, unsure, meter]).verdict == "fail"
    assert session_decision([passed, unsure]).verdict == "inconclusive"
    assert session_decision([passed]).verdict == "pass"
    nothing = session_decision([])
    assert isinstance(nothing, Decision) and nothing.verdict == "inconclusive"


def test_a_whole_instrument_inconclusive_names_every_point():
    def camera_gone() -> InstrumentResult:
        raise Inconclusive("camera cam-M2: 0 usable frame(s), need 2: cameras/cam-M2.mp4: cannot be opened")

    meter = InstrumentResult.from_evaluation(
        "M2", "water-meter", ["Q3", "Q1"], camera_gone, identity={"r": 100}, warnings=["reference: 2 lines unusable"]
    )
    assert meter.verdict == "inconclusive"
    assert [(p.name, p.verdict) for p in meter.points] == [("Q3", "inconclusive"), ("Q1", "inconclusive")]
    assert {p.reason for p in meter.points} == {
        "camera cam-M2: 0 usable frame(s), need 2: cameras/cam-M2.mp4: cannot be opened"
    }
    assert meter.to_dict()["warnings"] == ["reference: 2 lines unusable"]
    assert meter.to_dict()["r"] == 100


def test_point_notes_become_instrument_warnings_once():
    note = "no water temperature logged: assumed 20 °C"
    points = [_decided("Q3", 0.5, notes=[note]), _decided("Q2", 0.4), _decided("Q1", 0.3, notes=[note])]
    meter = InstrumentResult.from_points("M1", "water-meter", points, warnings=["first"])
    assert meter.warnings == ("first", f"{note} (points Q3, Q1)")


def test_identity_is_copied_when_present():
    meter = {"id": "M1", "serial": "S-1", "type": "DN15", "q3_m3h": 2.5, "r": 100, "accuracy_class": 2, "camera": "c"}
    assert instrument_identity(meter) == {"serial": "S-1", "type": "DN15", "q3_m3h": 2.5, "r": 100, "accuracy_class": 2}
    tank = {"id": "T1", "nominal_volume_l": 20.0, "material": "stainless-steel", "class": "0.2"}
    expected = {"accuracy_class": "0.2", "nominal_volume_l": 20.0, "material": "stainless-steel"}
    assert instrument_identity(tank) == expected
    assert instrument_identity({"id": "X"}) == {}


def test_reasons_are_grouped_by_kind_with_a_real_example():
    reasons = ReasonCounts(
        [f"wheel w3 confidence 0.{37 + i} < 0.50" for i in range(5)]
        + ["markers not found: 2 of 4"] * 2
        + ["dial Lx0.1 not read (value nan)"]
    )
    assert len(reasons) == 8
    text = str(reasons)
    assert text == (
        "5x like wheel w3 confidence 0.37 < 0.50; 2x markers not found: 2 of 4; dial Lx0.1 not read (value nan)"
    )
    assert "#" not in text
    assert not ReasonCounts() and str(ReasonCounts()) == ""


def test_water_temperature_is_logged_assumed_explicitly_or_inconclusive():
    logged = water_temperature([19.5, "n/a", None, True, float("nan"), 20.5], {})
    assert (logged.value_c, logged.assumed, logged.note) == (20.0, False, "")
    with pytest.raises(Inconclusive, match=r"^no water temperature logged during the point \(1\.0 s to 9\.0 s\); set"):
        water_temperature([], {}, "1.0 s to 9.0 s")
    assumed = water_temperature([None], {"assumed_water_temperature_c": 15})
    assert (assumed.value_c, assumed.assumed) == (15.0, True)
    assert assumed.note == (
        "no water temperature logged: assumed 15 °C (session.json assumed_water_temperature_c) "
        "for the MPE and the temperature corrections"
    )
    with pytest.raises(SessionError, match=r"^session.json: assumed_water_temperature_c: expected a finite number"):
        water_temperature([], {"assumed_water_temperature_c": float("nan")})
    with pytest.raises(Inconclusive, match=r"^water temperature 55 °C cannot be corrected for: .*0\.\.40 °C"):
        water_temperature([55.0, 55.0], {})
