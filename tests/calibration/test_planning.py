import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbench.calibration import (
    format_test_plan,
    plan_test_volumes,
    round_up_to_series,
    water_meter_flows,
)

FLOWS = water_meter_flows(2.5, 100)


def test_round_up_to_series():
    assert round_up_to_series(40.82) == 50.0
    assert round_up_to_series(50.0) == 50.0
    assert round_up_to_series(0.2041) == 0.25
    assert round_up_to_series(7.0, (1.0, 2.0, 5.0)) == 10.0
    with pytest.raises(ValueError, match="volume_l"):
        round_up_to_series(0.0)


def test_minimal_volume_meets_the_criterion_hand_computed():
    plan = plan_test_volumes(FLOWS, 2, reading_resolution_l=0.1)
    q3, q2, q1 = plan.points
    # U_read = 2 * d/sqrt(6) / V * 100 <= 0.1 * MPE  ->  V >= 200 d / (sqrt(6) * 0.1 * MPE)
    assert q3.min_volume_l == pytest.approx(200 * 0.1 / (math.sqrt(6) * 0.2))
    assert q1.min_volume_l == pytest.approx(200 * 0.1 / (math.sqrt(6) * 0.5))
    assert (q3.volume_l, q2.volume_l, q1.volume_l) == (50.0, 50.0, 20.0)
    for point in plan.points:
        assert point.reading_u_pct <= 0.1 * point.mpe_pct + 1e-12
        assert point.volume_l >= point.min_volume_l


def test_flows_stay_inside_the_verification_windows():
    plan = plan_test_volumes(FLOWS, 2, reading_resolution_l=0.01)
    for point in plan.points:
        low, high = point.window_m3h
        assert low <= point.flow_m3h <= high
        assert point.duration_s == pytest.approx(point.volume_l / (point.flow_m3h / 3.6))
    assert [p.zone for p in plan.points] == ["upper", "upper", "lower"]
    assert plan.total_duration_s == pytest.approx(sum(p.duration_s for p in plan.points) + 3 * 30.0)


def test_volumes_and_duration_are_monotone_in_resolution():
    plans = [plan_test_volumes(FLOWS, 2, reading_resolution_l=d) for d in (0.0005, 0.001, 0.01, 0.1)]
    for finer, coarser in zip(plans, plans[1:], strict=False):
        for a, b in zip(finer.points, coarser.points, strict=True):
            assert a.volume_l <= b.volume_l
        assert finer.total_duration_s < coarser.total_duration_s


def test_per_point_resolution_timing_and_min_duration():
    plan = plan_test_volumes(
        FLOWS, 2, reading_resolution_l={"Q3": 0.01, "Q2": 0.001, "Q1": 0.001}, timing_u_s=0.01, min_duration_s=20.0
    )
    q3 = plan.points[0]
    assert q3.reading_resolution_l == 0.01
    assert q3.duration_s >= 20.0
    with pytest.raises(ValueError, match="point Q2"):
        plan_test_volumes(FLOWS, 2, reading_resolution_l={"Q3": 0.01})


def test_equipment_limit_flagged_when_reference_too_coarse():
    plan = plan_test_volumes(FLOWS, 2, reading_resolution_l=0.001, reference_u_pct=0.7)
    q3 = plan.points[0]
    assert not q3.equipment_ok and "exceeds" in q3.note
    assert plan.points[2].equipment_ok  # 5 % lower zone: 1/3 MPE = 1.67 %


def test_mpe_per_zone_instead_of_class_and_table():
    plan = plan_test_volumes(FLOWS, None, reading_resolution_l=0.1, mpe_pct={"lower": 3.0, "upper": 1.0})
    assert plan.points[0].mpe_pct == 1.0
    text = format_test_plan(plan)
    assert text.count("\n") == 5 and "sequence:" in text
    with pytest.raises(ValueError, match="accuracy_class"):
        plan_test_volumes(FLOWS, None, reading_resolution_l=0.1)
    with pytest.raises(ValueError, match="ratio"):
        plan_test_volumes(FLOWS, 2, reading_resolution_l=0.1, ratio=0)


@settings(max_examples=40, deadline=None)
@given(
    st.floats(min_value=1e-4, max_value=1.0),
    st.floats(min_value=0.02, max_value=0.5),
    st.floats(min_value=0.0, max_value=0.05),
)
def test_planned_volume_always_meets_the_criterion(d_l, ratio, timing_u_s):
    plan = plan_test_volumes(FLOWS, 2, reading_resolution_l=d_l, ratio=ratio, timing_u_s=timing_u_s)
    for point in plan.points:
        assert point.reading_u_pct <= ratio * point.mpe_pct * (1 + 1e-9)
        widest_step = 4 / 3  # 1.5 -> 2, 3 -> 4, 6 -> 8 in the bench volume series
        assert point.min_volume_l <= point.volume_l <= point.min_volume_l * widest_step * (1 + 1e-9)
