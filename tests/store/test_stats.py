"""Wilson intervals, I-MR limits and quantiles against values computed by hand."""

import math

import pytest

from tests.conftest import require_module

require_module("sqlalchemy", "store")  # the store package (its statistics included) needs the [store] extra

from meterbench.store import imr_chart, quantile, wilson_interval  # noqa: E402


def test_wilson_interval_matches_hand_computed_values() -> None:
    # p = 0.5, n = 10: centre 0.5, half-width 1.959964 * sqrt(0.025 + 3.841459 / 400) / 1.3841459 = 0.2634069
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.236593, abs=1e-6) and high == pytest.approx(0.763407, abs=1e-6)
    # p = 0.1, n = 10: centre 0.211013, half-width 0.193135
    low, high = wilson_interval(1, 10)
    assert low == pytest.approx(0.017876, abs=5e-6) and high == pytest.approx(0.404150, abs=5e-6)
    # 0 of 1: (0, 2 * 1.92073 / 4.84146)
    assert wilson_interval(0, 1) == pytest.approx((0.0, 0.793451), abs=2e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_imr_chart_limits_and_signals() -> None:
    chart = imr_chart([1.0, 2.0, 3.0, 2.0, 1.0])
    assert chart.centre == pytest.approx(1.8) and chart.mr_bar == pytest.approx(1.0)
    assert (chart.ucl, chart.lcl, chart.mr_ucl) == pytest.approx((4.46, -0.86, 3.267))
    assert chart.out_of_control == ()
    jump = imr_chart([0.0, 0.0, 0.0, 0.0, 10.0])  # mean 2, MR-bar 2.5: UCL 8.65, MR UCL 8.1675
    assert jump.ucl == pytest.approx(8.65) and jump.mr_ucl == pytest.approx(8.1675)
    assert jump.out_of_control == (4,)
    with pytest.raises(ValueError, match="at least 2"):
        imr_chart([1.0])


def test_quantile_interpolates_like_percentile_cont() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.25) == 1.75
    assert quantile([7.0], 0.9) == 7.0
    assert math.isclose(quantile([0.0, 10.0], 0.3), 3.0)
