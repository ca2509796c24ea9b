import math

import pytest

from meterbench.calibration import UncertaintyBudget


def test_resolution_two_readings_is_d_over_sqrt6():
    budget = UncertaintyBudget()
    component = budget.add_resolution(0.1, 50.0)
    # d/sqrt(12) per reading, two readings: 0.1/sqrt(6) L = 0.040825 L over 50 L
    assert component.u_pct == pytest.approx(0.1 / math.sqrt(6) / 50 * 100)
    assert component.u_pct == pytest.approx(0.0816497, rel=1e-6)
    one = UncertaintyBudget().add_resolution(0.1, 50.0, readings=1)
    assert one.u_pct == pytest.approx(0.1 / math.sqrt(12) / 50 * 100)


def test_reference_divides_by_k():
    component = UncertaintyBudget().add_reference(0.1, k=2)
    assert component.u_pct == pytest.approx(0.05)
    assert component.divisor == 2.0


def test_repeatability_type_a():
    budget = UncertaintyBudget()
    mean = budget.add_repeatability([0.10, 0.20, 0.30])  # s = 0.1, mean of 3
    assert mean.u_pct == pytest.approx(0.1 / math.sqrt(3))
    single = UncertaintyBudget().add_repeatability([0.10, 0.20, 0.30], mean_reported=False)
    assert single.u_pct == pytest.approx(0.1)
    with pytest.raises(ValueError, match="values_pct"):
        budget.add_repeatability([0.1])


def test_temperature_uses_water_expansion_by_default():
    component = UncertaintyBudget().add_temperature(0.1, water_temperature_c=20.0)
    assert component.u_pct == pytest.approx(0.1 * 2.0687e-4 * 100, rel=1e-3)
    can = UncertaintyBudget().add_temperature(0.5, coefficient_per_c=51e-6, distribution="rectangular")
    assert can.u_pct == pytest.approx(0.5 / math.sqrt(3) * 51e-6 * 100)


def test_budget_arithmetic_hand_computed():
    # reference U 0.2 % (k=2) -> 0.1; rectangular half-width 0.3*sqrt(3) -> 0.3;
    # triangular half-width 0.4*sqrt(6) with sensitivity 0.5 -> 0.2
    budget = UncertaintyBudget()
    budget.add_reference(0.2, k=2)
    budget.add("rect", 0.3 * math.sqrt(3), distribution="rectangular", source="test")
    budget.add("tri", 0.4 * math.sqrt(6), distribution="triangular", sensitivity=-0.5)
    assert budget.combined_pct() == pytest.approx(math.sqrt(0.01 + 0.09 + 0.04))
    assert budget.expanded_pct() == pytest.approx(2 * math.sqrt(0.14))
    assert budget.expanded_pct(k=3) == pytest.approx(3 * math.sqrt(0.14))


def test_as_dict_lists_every_component_with_its_source():
    budget = UncertaintyBudget()
    budget.add_reference(0.1, source="cert 2026-001")
    budget.add_resolution(0.001, 10.0)
    report = budget.as_dict()
    assert [c["name"] for c in report["components"]] == ["reference", "reading resolution"]
    assert report["components"][0]["source"] == "cert 2026-001"
    assert "d/sqrt(12)" in report["components"][1]["source"]
    assert report["expanded_pct"] == pytest.approx(2 * report["combined_pct"])


def test_empty_budget_is_zero_and_bad_input_raises():
    assert UncertaintyBudget().expanded_pct() == 0.0
    budget = UncertaintyBudget()
    budget.add("a", 0.1)
    with pytest.raises(ValueError, match="already"):
        budget.add("a", 0.1)
    with pytest.raises(ValueError, match="distribution"):
        budget.add("b", 0.1, distribution="uniform")
    with pytest.raises(ValueError, match="value"):
        budget.add("c", -0.1)
    with pytest.raises(ValueError, match="volume_l"):
        budget.add_resolution(0.1, 0.0)


def test_add_component_and_interface_aliases():
    budget = UncertaintyBudget()
    budget.add_component("register reading", 0.03, source="fit")
    budget.add("positional", 0.04, "normal", "given positionally")
    assert budget.combined() == pytest.approx(0.05)
    assert budget.expanded() == pytest.approx(0.10)
    assert budget.as_dict()["components"][1]["source"] == "given positionally"
