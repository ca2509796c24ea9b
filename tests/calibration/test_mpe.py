import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterbench.calibration import (
    dispenser_mpe,
    tank_mpe,
    water_meter_flows,
    water_meter_mpe,
)

FLOWS = water_meter_flows(2.5, 100)  # Q1 0.025, Q2 0.04, Q3 2.5, Q4 3.125 m³/h


@pytest.mark.parametrize(
    ("accuracy_class", "flow", "temperature", "mpe", "zone"),
    [
        (2, 0.025, 20.0, 5.0, "lower"),  # exactly Q1
        (2, 0.0399, 20.0, 5.0, "lower"),
        (2, 0.04, 20.0, 2.0, "upper"),  # exactly Q2 -> upper
        (2, 1.6 * 0.025, 20.0, 2.0, "upper"),  # Q2 up to float rounding
        (2, 3.125, 20.0, 2.0, "upper"),  # exactly Q4
        (2, 2.5, 30.0, 2.0, "upper"),  # 30.0 °C is still cold
        (2, 2.5, 30.1, 3.0, "upper"),
        (2, 0.03, 50.0, 5.0, "lower"),  # lower zone ignores temperature
        (1, 0.03, 20.0, 3.0, "lower"),
        (1, 2.5, 20.0, 1.0, "upper"),
        (1, 2.5, 30.1, 2.0, "upper"),
        ("2", 2.5, 20.0, 2.0, "upper"),
    ],
)
def test_water_meter_mpe_zones_and_temperatures(accuracy_class, flow, temperature, mpe, zone):
    result = water_meter_mpe(accuracy_class, flow, FLOWS, temperature)
    assert result.mpe_pct == mpe
    assert result.zone == zone
    assert result.provenance == "SRC" and result.confirmed
    assert "R 49" in result.source


@pytest.mark.parametrize(("flow", "match"), [(0.0249, "below Q1"), (3.2, "above Q4"), (float("nan"), "flow_m3h")])
def test_flow_outside_q1_q4_raises_naming_it(flow, match):
    with pytest.raises(ValueError, match=match):
        water_meter_mpe(2, flow, FLOWS, 20.0)


def test_bad_class_and_temperature_raise():
    with pytest.raises(ValueError, match="accuracy_class"):
        water_meter_mpe(3, 1.0, FLOWS, 20.0)
    with pytest.raises(ValueError, match="water_temperature_c"):
        water_meter_mpe(2, 1.0, FLOWS, 0.0)


def test_in_service_doubles_the_mpe_and_is_marked_unconfirmed():
    result = water_meter_mpe(2, 0.03, FLOWS, 20.0, True)
    assert result.mpe_pct == 10.0
    assert result.provenance == "MEM" and not result.confirmed


def test_table_override_is_used_and_tagged_cfg():
    table = {"in_service_factor": {"value": 1.5, "source": "lab rule 7"}, "mpe_pct": {"2": {"upper_cold": 2.5}}}
    assert water_meter_mpe(2, 0.03, FLOWS, 20.0, in_service=True, table=table).mpe_pct == 7.5
    result = water_meter_mpe(2, 1.0, FLOWS, 20.0, table=table)
    assert result.mpe_pct == 2.5 and result.provenance == "CFG"
    assert "default was 2.0" in result.source


@given(st.floats(min_value=0.025, max_value=3.125), st.floats(min_value=0.1, max_value=90))
def test_class_2_mpe_is_always_one_of_the_table_values(flow, temperature):
    result = water_meter_mpe(2, flow, FLOWS, temperature)
    expected = 5.0 if flow < 0.04 else (2.0 if temperature <= 30 else 3.0)
    assert result.mpe_pct == expected


def test_tank_default_is_one_scale_division_and_unconfirmed():
    result = tank_mpe(20.0, scale_division_l=0.01)
    assert result.mpe_l == pytest.approx(0.01)
    assert result.mpe_pct == pytest.approx(0.05)
    assert result.provenance == "MEM" and "R 120" in result.source
    with pytest.raises(ValueError, match="scale_division_l"):
        tank_mpe(20.0)


def test_tank_percent_class_and_lab_class():
    assert tank_mpe(10.0, accuracy_class="third-of-dispenser").mpe_pct == pytest.approx(0.5 / 3)
    lab = {"classes": {"lab-a": {"rule": "percent", "percent": {"value": 0.2, "source": "lab"}}}}
    result = tank_mpe(10.0, accuracy_class="lab-a", table=lab)
    assert result.mpe_pct == 0.2 and result.mpe_l == pytest.approx(0.02)
    assert result.provenance == "CFG"
    with pytest.raises(ValueError, match="accuracy_class"):
        tank_mpe(10.0, accuracy_class="nope")


@pytest.mark.parametrize(
    ("volume", "mpe_l"),
    [
        (20.0, 0.1),  # 0.5 % of 20 L
        (2.0, 0.01),
        (1.5, 0.01),  # table value applied to 2 L
        (0.5, 0.005),  # 2 x 0.5 % of 0.5 L
        (0.3, 0.004),  # 2 x 0.5 % applied to 0.4 L
        (0.15, 0.003),  # 4 x 0.5 % of 0.15 L
        (0.05, 0.002),  # 4 x 0.5 % applied to 0.1 L
    ],
)
def test_dispenser_small_volume_rules(volume, mpe_l):
    assert dispenser_mpe(volume, 0.5).mpe_l == pytest.approx(mpe_l)


def test_dispenser_line_b_and_emin():
    assert dispenser_mpe(20.0, 1.0, line="B").mpe_pct == pytest.approx(0.6)
    result = dispenser_mpe(5.0, 0.5, mmq_l=5.0)  # Emin = 2 x 5 L x 0.5 % = 0.05 L
    assert result.mpe_l == pytest.approx(0.05) and result.provenance == "MEM"
