import warnings

import pytest

from meterbench.calibration import (
    Flows,
    NonStandardRatingWarning,
    verification_flow_window,
    water_meter_flows,
)


def test_dn15_q3_2_5_r100_gives_the_textbook_flows():
    flows = water_meter_flows(2.5, 100)
    assert flows == Flows(q1=0.025, q2=0.04, q3=2.5, q4=3.125)
    assert flows.r == pytest.approx(100)


def test_ratios_can_be_changed_for_national_variants():
    flows = water_meter_flows(25, 80, q2_q1=2.5)
    assert flows.q2 == pytest.approx(2.5 * 25 / 80)


def test_standard_rating_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        water_meter_flows(1.6, 160)


def test_rating_outside_the_series_warns_or_raises_when_strict():
    with pytest.warns(NonStandardRatingWarning, match="q3_m3h = 3"):
        water_meter_flows(3.0, 100)
    with pytest.raises(ValueError, match="r = 99"):
        water_meter_flows(2.5, 99, strict=True)


@pytest.mark.parametrize(
    ("q3", "r", "match"), [(0, 100, "q3_m3h"), (2.5, -1, "r"), (float("nan"), 100, "q3_m3h"), (2.5, 1.2, "r")]
)
def test_bad_ratings_raise_naming_the_argument(q3, r, match):
    with pytest.raises(ValueError, match=match):
        water_meter_flows(q3, r)


def test_verification_windows_follow_r49_2():
    flows = water_meter_flows(2.5, 100)
    assert verification_flow_window("Q1", flows) == pytest.approx((0.025, 0.0275))
    assert verification_flow_window("Q2", flows) == pytest.approx((0.04, 0.044))
    assert verification_flow_window("Q3", flows) == pytest.approx((2.25, 2.5))


def test_verification_window_is_configurable_and_rejects_unknown_points():
    flows = water_meter_flows(2.5, 100)
    window = verification_flow_window("Q1", flows, table={"verification_flow_windows": {"Q1": [1.0, 1.05]}})
    assert window == pytest.approx((0.025, 0.02625))
    with pytest.raises(ValueError, match="point_name"):
        verification_flow_window("Q4", flows)
