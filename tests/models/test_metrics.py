import numpy as np
import pytest

from meterbench.models._metrics import least_confident_share, wheel_metrics
from meterbench.models._runtime import circular_distance, decode_probs


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (9.9, 0.1, 0.2),
        (0.1, 9.9, 0.2),
        (3.0, 8.0, 5.0),
        (2.5, 2.5, 0.0),
        (0.0, 9.5, 0.5),
        (12.3, 2.3, 0.0),
        (-0.2, 9.8, 0.0),
    ],
)
def test_circular_distance_wraps_at_ten(a, b, expected):
    assert circular_distance(a, b) == pytest.approx(expected, abs=1e-9)


def test_circular_distance_other_period():
    assert circular_distance(99, 1, period=100) == pytest.approx(2.0)


def test_metrics_count_wrapped_reading_as_hit():
    value = np.array([9.95, 0.05, 3.0, 5.0])
    labels = np.array([0, 0, 30, 0])
    figures = wheel_metrics(value, np.ones(4), labels)
    assert figures["within_0_1"] == pytest.approx(0.75)
    assert figures["integer_acc"] == pytest.approx(0.75)  # 9.95 rounds to 10 -> digit 0
    assert figures["off_ge_0_5"] == pytest.approx(0.25)
    assert figures["n_whole"] == 4


def test_exact_tenths_rounds_circularly():
    figures = wheel_metrics(np.array([9.96, 3.74, 3.76]), np.ones(3), np.array([0, 37, 37]))
    assert figures["exact_tenths"] == pytest.approx(2 / 3)


def test_least_confident_share_finds_misses_among_lowest():
    confidence = np.linspace(0, 1, 100)
    miss = np.zeros(100, bool)
    miss[[0, 3, 50]] = True
    assert least_confident_share(miss, confidence, 0.05) == pytest.approx(2 / 3)
    assert least_confident_share(miss, confidence, 0.01) == pytest.approx(1 / 3)
    assert np.isnan(least_confident_share(np.zeros(100, bool), confidence, 0.05))


def test_decode_one_hot_and_wrap():
    probs = np.zeros((3, 100))
    probs[0, 37] = 1.0
    probs[1, [99, 0]] = 0.5
    probs[2, [36, 37, 38]] = [0.25, 0.5, 0.25]
    value, confidence = decode_probs(probs)
    assert value[0] == pytest.approx(3.7)
    assert circular_distance(value[1], 9.95) < 1e-9
    assert value[2] == pytest.approx(3.7)
    assert confidence[0] == pytest.approx(1.0)
    assert confidence[2] == pytest.approx(1.0)
    assert np.all((value >= 0) & (value < 10))


def test_decode_split_between_two_digits_has_low_confidence():
    probs = np.zeros((1, 100))
    probs[0, [20, 70]] = [0.55, 0.45]
    value, confidence = decode_probs(probs)
    assert value[0] == pytest.approx(2.0)
    assert confidence[0] == pytest.approx(0.55)
