import pytest

from meterbench.calibration import (
    CUBIC_EXPANSION,
    tank_error,
    tank_volume_at_20c,
    transfer_volume,
    water_density,
    water_expansion_coefficient,
)


@pytest.mark.parametrize(("t", "rho"), [(15, 999.1026), (20, 998.2067), (25, 997.0470), (30, 995.6488)])
def test_tanaka_density_matches_metrology_der_values(t, rho):
    assert water_density(t) == pytest.approx(rho, abs=5e-5)


def test_density_maximum_near_4_c():
    assert water_density(3.98) > water_density(3.0)
    assert water_density(3.98) > water_density(5.0)
    assert water_density(3.983035) == pytest.approx(999.97495, abs=1e-6)


def test_air_saturation_and_pressure_corrections():
    assert water_density(20, air_saturated=True) - water_density(20) == pytest.approx((-4.612 + 0.106 * 20) * 1e-3)
    # +100 kPa at 20 °C: k = (50.74 - 0.326*20 + 0.00416*400) e-11 /Pa = 45.884e-11 -> +45.884e-6 relative
    ratio = water_density(20, pressure_kpa=201.325) / water_density(20)
    assert ratio - 1 == pytest.approx(45.884e-6, rel=1e-6)


@pytest.mark.parametrize(("t", "gamma"), [(15, 1.51e-4), (20, 2.07e-4), (25, 2.57e-4), (30, 3.03e-4)])
def test_expansion_coefficient_matches_der_values(t, gamma):
    assert water_expansion_coefficient(t) == pytest.approx(gamma, abs=0.006e-4)


def test_expansion_coefficient_is_the_density_derivative():
    h = 1e-4
    numeric = -(water_density(22 + h) - water_density(22 - h)) / (2 * h) / water_density(22)
    assert water_expansion_coefficient(22) == pytest.approx(numeric, rel=1e-6)


def test_density_outside_range_raises():
    with pytest.raises(ValueError, match="temperature_c"):
        water_density(45)


def test_cubic_expansion_table_has_sources():
    assert CUBIC_EXPANSION["mild-steel"].value == 33e-6
    assert CUBIC_EXPANSION["stainless-steel"].value == 51e-6
    assert all(v.provenance == "SRC" and "D 36" in v.source for v in CUBIC_EXPANSION.values())


def test_tank_volume_thermal_correction():
    assert tank_volume_at_20c(20.0, 20.0, "mild-steel") == 20.0
    assert tank_volume_at_20c(20.0, 30.0, "stainless") == pytest.approx(20.0 * (1 + 51e-5))
    assert tank_volume_at_20c(10.0, 10.0, "mild steel") == pytest.approx(10.0 * (1 - 33e-5))
    with pytest.raises(ValueError, match="material"):
        tank_volume_at_20c(10.0, 10.0, "brass")


def test_transfer_volume_conserves_mass():
    v25 = transfer_volume(100.0, 20.0, 25.0)
    assert v25 * water_density(25) == pytest.approx(100.0 * water_density(20), rel=1e-12)
    assert transfer_volume(v25, 25.0, 20.0) == pytest.approx(100.0, rel=1e-12)
    assert v25 == pytest.approx(100.0 * 998.2067 / 997.0470, rel=1e-7)  # METROLOGY DER values


def test_tank_error_is_zero_for_a_perfect_tank_at_any_temperature():
    # a perfect stainless tank at 27 °C filled by water metered at 18 °C
    delivered = 20.0
    held = transfer_volume(delivered, 18.0, 27.0)  # water volume in the tank
    reading = held / (1 + 51e-6 * (27.0 - 20.0))  # what its 20 °C scale shows
    result = tank_error(reading, delivered, 18.0, 27.0, "stainless-steel")
    assert result.error_pct == pytest.approx(0.0, abs=1e-10)
    assert result.reference_volume_l == pytest.approx(transfer_volume(20.0, 18.0, 20.0))


def test_tank_error_sign_and_size():
    result = tank_error(20.02, 20.0, 20.0, 20.0, "mild-steel")
    assert result.error_pct == pytest.approx(0.1)
