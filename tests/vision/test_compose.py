"""Carry logic against the exact forward mechanism `positions_from_volume`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbench.vision.compose import (
    carry_residuals,
    compose_register,
    estimate_offsets,
    expected_fraction,
)
from meterbench.vision.layout import (
    RegisterLayout,
    default_register_layout,
    positions_from_volume,
)

LAYOUTS = {v: RegisterLayout.from_dict(default_register_layout(v)) for v in ("dials", "wheels")}
CAPACITY_L = LAYOUTS["dials"].capacity_l
FINEST_STEP_L = LAYOUTS["dials"].finest.litres_per_turn / 10.0


def _ones(layout: RegisterLayout) -> np.ndarray:
    return np.ones(len(layout.elements))


def _circular_error(a: float, b: float, period: float) -> float:
    d = (a - b) % period
    return min(d, period - d)


def _peaked_probs(values: np.ndarray, sigma_steps: float = 0.05) -> np.ndarray:
    """Tenth-class probabilities peaked (circular Gaussian) around each value."""
    classes = np.arange(100) / 10.0
    d = (classes[None, :] - values[:, None] + 5.0) % 10.0 - 5.0
    p = np.exp(-0.5 * (d / sigma_steps) ** 2)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("variant", ["dials", "wheels"])
@pytest.mark.parametrize(
    "volume_l",
    [0.0, 0.04, 9.95, 99.97, 999.99, 9999.95, 9999.999, 10000.0, 10009.98, 99999.96, 123456.78, 999999.9, 99999999.95],
)
def test_exact_positions_round_trip(variant: str, volume_l: float) -> None:
    layout = LAYOUTS[variant]
    positions = positions_from_volume(layout, volume_l)
    result = compose_register(layout, positions, _ones(layout))
    assert result.ok, result.reason
    assert result.reason == ""
    assert _circular_error(result.volume_l, volume_l, CAPACITY_L) < 1e-6


def test_rollover_at_every_level_with_late_and_early_wheels() -> None:
    """99 999.999 97 m³: every wheel is mid-carry, every dial past 9.9; readings off
    by ±0.25 step (wheels a bit early or late) still give the right digits."""
    layout = LAYOUTS["dials"]
    volume_l = CAPACITY_L - 0.03
    positions = positions_from_volume(layout, volume_l)
    assert np.all(positions[:-1] % 1.0 > 0.9)
    for shift in (-0.25, 0.25):
        noisy = (positions + shift) % 10.0
        result = compose_register(layout, noisy, _ones(layout))
        assert result.ok, result.reason
        assert _circular_error(result.volume_l, volume_l, CAPACITY_L) <= 0.25 * FINEST_STEP_L + 1e-6


def test_lowest_black_wheel_above_dials_hanging_is_flagged() -> None:
    """m3x1 wheel shows half a carry although the Lx100 dial is at 5: inconsistent."""
    layout = LAYOUTS["dials"]
    positions = positions_from_volume(layout, 3500.0)
    i_wheel = [e.name for e in layout.elements].index("m3x1")
    positions[i_wheel] = 0.5
    result = compose_register(layout, positions, _ones(layout))
    assert not result.ok
    assert "m3x1" in result.reason and "Lx100" in result.reason
    assert math.isnan(result.volume_l)


def test_low_confidence_is_flagged_with_element_name() -> None:
    layout = LAYOUTS["wheels"]
    positions = positions_from_volume(layout, 1234.5)
    confidences = _ones(layout)
    confidences[2] = 0.2
    result = compose_register(layout, positions, confidences, min_confidence=0.5)
    assert not result.ok
    assert result.reason == f"wheel {layout.elements[2].name} confidence 0.20 < 0.50"


def test_finest_element_ignores_lower_elements() -> None:
    layout = LAYOUTS["dials"]
    volume_l = 52_345.678
    positions = positions_from_volume(layout, volume_l)
    finest = len(layout.elements) - 3  # Lx10 dial: 1 L per step
    positions[finest + 1 :] = np.nan  # spinning too fast to be read
    result = compose_register(layout, positions, _ones(layout), finest_element=finest)
    assert result.ok, result.reason
    assert result.volume_l == pytest.approx(volume_l, abs=1e-6)
    step_l = layout.elements[finest].litres_per_turn / 10.0
    assert result.resolution_l == pytest.approx(0.05 * step_l)


def test_resolution_from_probs_spread() -> None:
    layout = LAYOUTS["dials"]
    positions = positions_from_volume(layout, 321.0)
    sharp = compose_register(layout, positions, _ones(layout), _peaked_probs(positions, 0.01))
    broad = compose_register(layout, positions, _ones(layout), _peaked_probs(positions, 0.2))
    assert sharp.ok and broad.ok
    assert sharp.resolution_l == pytest.approx(0.1 / math.sqrt(12) * FINEST_STEP_L)
    assert broad.resolution_l == pytest.approx(0.2 * FINEST_STEP_L, rel=0.05)


def test_stray_probability_mass_does_not_inflate_the_resolution() -> None:
    layout = LAYOUTS["dials"]
    positions = positions_from_volume(layout, 321.0)
    probs = _peaked_probs(positions, 0.01)
    probs[-1] = 0.97 * probs[-1] + 0.03 * _peaked_probs(np.array([5.0]), 0.01)[0]
    result = compose_register(layout, positions, _ones(layout), probs)
    assert result.ok
    assert result.resolution_l == pytest.approx(0.1 / math.sqrt(12) * FINEST_STEP_L)


def test_bimodal_probs_are_flagged_as_ambiguous() -> None:
    """A wheel whose model is torn between 3 and 8 is not decided by its mean value."""
    layout = LAYOUTS["wheels"]
    positions = positions_from_volume(layout, 30_000.0)
    probs = _peaked_probs(positions)
    probs[1] = 0.5 * _peaked_probs(np.array([3.0]))[0] + 0.5 * _peaked_probs(np.array([8.0]))[0]
    result = compose_register(layout, positions, _ones(layout), probs)
    assert not result.ok
    assert "ambiguous" in result.reason and layout.elements[1].name in result.reason


def test_bad_shapes_raise_naming_the_argument() -> None:
    layout = LAYOUTS["dials"]
    with pytest.raises(ValueError, match="values: expected shape"):
        compose_register(layout, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="finest_element"):
        compose_register(layout, np.zeros(9), np.ones(9), finest_element=9)


def test_expected_fraction() -> None:
    assert expected_fraction("gear", 7.5) == pytest.approx(0.75)
    assert expected_fraction("carry", 7.5) == 0.0
    assert expected_fraction("carry", 9.4) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="coupling"):
        expected_fraction("belt", 1.0)


volumes = st.floats(min_value=0.0, max_value=CAPACITY_L - 1e-3, allow_nan=False)
near_rollover = st.builds(
    lambda k, d, f: (k * 10**d - f) % CAPACITY_L, st.integers(1, 99), st.integers(1, 8), st.floats(0.0, 0.3)
)


def _shown_volume(layout: RegisterLayout, positions: np.ndarray, finest: int) -> float:
    """What the register shows down to element `finest` (L): whole digits above it
    plus its continuous position (a carry wheel there truncates the volume)."""
    steps_l = np.array([e.litres_per_turn / 10.0 for e in layout.elements[: finest + 1]])
    shown = np.floor(positions[:finest]) @ steps_l[:-1] + positions[finest] * steps_l[-1]
    return float(shown)


def _noisy_round_trip(
    variant: str, volume_l: float, noise_seed: int, noise_max: float, finest: int | None = None
) -> tuple[float, object]:
    """(|read - shown volume| in L, Composition) for positions with uniform noise."""
    layout = LAYOUTS[variant]
    finest = len(layout.elements) - 1 if finest is None else finest
    rng = np.random.default_rng(noise_seed)
    positions = positions_from_volume(layout, volume_l)
    noisy = (positions + rng.uniform(-noise_max, noise_max, positions.shape)) % 10.0
    result = compose_register(layout, noisy, _ones(layout), finest_element=finest)
    shown_l = _shown_volume(layout, positions, finest)
    return _circular_error(result.volume_l, shown_l, CAPACITY_L), result


@settings(max_examples=300, deadline=None)
@given(
    variant=st.sampled_from(["dials", "wheels"]),
    volume_l=st.one_of(volumes, near_rollover),
    noise_seed=st.integers(0, 2**32 - 1),
    finest=st.integers(4, 8),
)
def test_noise_0_3_never_gives_a_wrong_digit(variant: str, volume_l: float, noise_seed: int, finest: int) -> None:
    """Noise ≤ 0.3 step on every element: right within the finest precision, or flagged."""
    error_l, result = _noisy_round_trip(variant, volume_l, noise_seed, 0.3, finest)
    step_l = LAYOUTS[variant].elements[finest].litres_per_turn / 10.0
    if result.ok:
        assert error_l <= 0.3 * step_l + 1e-6 * max(1.0, volume_l * 1e-6)
    else:
        assert "inconsistent" in result.reason and math.isnan(result.volume_l)


@settings(max_examples=300, deadline=None)
@given(
    variant=st.sampled_from(["dials", "wheels"]),
    volume_l=st.one_of(volumes, near_rollover),
    noise_seed=st.integers(0, 2**32 - 1),
)
def test_noise_0_15_is_never_flagged(variant: str, volume_l: float, noise_seed: int) -> None:
    """Noise ≤ 0.15 step (own + propagated ≤ 0.3 < 0.35) always reads, within 0.15 step."""
    error_l, result = _noisy_round_trip(variant, volume_l, noise_seed, 0.15)
    assert result.ok, result.reason
    assert error_l <= 0.15 * FINEST_STEP_L + 1e-6


def test_noise_0_3_flags_only_a_minority() -> None:
    """The flag is not trigger-happy: with uniform ±0.3 noise most frames still read."""
    rng = np.random.default_rng(7)
    results = [
        _noisy_round_trip("dials", v, s, 0.3)[1] for v, s in zip(rng.uniform(0, 1e5, 500), range(500), strict=True)
    ]
    ok_share = np.mean([r.ok for r in results])
    assert ok_share > 0.7


def test_carry_wheel_as_finest_adds_truncation_uncertainty() -> None:
    """Reading down to the m³ wheel only: the hidden litres make it a truncation."""
    layout = LAYOUTS["dials"]
    finest = [e.name for e in layout.elements].index("m3x1")
    positions = positions_from_volume(layout, 7_488.0)
    result = compose_register(layout, positions, _ones(layout), finest_element=finest)
    assert result.ok and result.volume_l == pytest.approx(7_000.0)
    step_l = layout.elements[finest].litres_per_turn / 10.0
    assert result.resolution_l == pytest.approx(math.hypot(0.05, 1 / math.sqrt(12)) * step_l)


def test_offsets_are_estimated_from_carry_residuals_and_fix_the_cascade() -> None:
    """A dial mounted 0.3 step off and a wheel window 0.25 step high are found from
    frames alone; removing them turns inconsistent readings into right ones."""
    layout = LAYOUTS["dials"]
    rng = np.random.default_rng(11)
    true_offsets = np.zeros(len(layout.elements))
    true_offsets[[2, 6]] = (0.25, -0.3)
    volumes_l = rng.uniform(0, 1e6, 300)
    readings = (
        positions_from_volume(layout, volumes_l) + true_offsets + rng.normal(0, 0.03, (300, len(layout.elements)))
    ) % 10.0
    offsets = estimate_offsets(layout, readings)
    np.testing.assert_allclose(offsets, true_offsets, atol=0.02)
    residuals = carry_residuals(layout, readings)
    assert np.isnan(residuals[:, -1]).all()
    raw_ok = corrected_ok = 0
    for volume_l, values in zip(volumes_l, readings, strict=True):
        raw_ok += compose_register(layout, values, _ones(layout)).ok
        fixed = compose_register(layout, (values - offsets) % 10.0, _ones(layout))
        corrected_ok += fixed.ok
        if fixed.ok:
            assert abs(fixed.volume_l - volume_l) < 0.2 * FINEST_STEP_L
    assert corrected_ok == 300 and raw_ok < 300


@pytest.mark.parametrize("variant", ["dials", "wheels"])
@pytest.mark.parametrize("unreadable", [0, 3, 5])
def test_an_element_the_reader_abstains_on_is_not_used_and_the_elements_below_keep_their_part(
    variant: str, unreadable: int
) -> None:
    """The reader's own verdict, whatever the confidence: its element is named, and what the elements
    below it resolved is kept (the volume modulo one turn of the element just below)."""
    layout = LAYOUTS[variant]
    volume_l = 45_678.93
    readable = np.ones(len(layout.elements), bool)
    readable[unreadable] = False
    reasons = tuple("unsure (confidence 0.97 < 0.98)" if not r else "" for r in readable)
    result = compose_register(
        layout, positions_from_volume(layout, volume_l), _ones(layout), readable=readable, reasons=reasons
    )
    element = layout.elements[unreadable]
    assert not result.ok and math.isnan(result.volume_l)
    assert result.reason == f"{element.kind} {element.name} unreadable (unsure (confidence 0.97 < 0.98))"
    modulus = layout.elements[unreadable + 1].litres_per_turn
    assert result.partial_modulus_l == modulus
    assert _circular_error(result.partial_l, volume_l % modulus, modulus) < 1e-6


def test_per_element_confidence_cut_and_whole_readings_keep_partial_as_the_volume() -> None:
    layout = LAYOUTS["dials"]
    positions = positions_from_volume(layout, 1234.56)
    confidences = np.full(len(layout.elements), 0.6)
    cut = np.zeros(len(layout.elements))
    cut[2] = 0.7  # only element 2 has a confidence cut, and fails it
    result = compose_register(layout, positions, confidences, min_confidence=cut)
    assert result.reason == f"wheel {layout.elements[2].name} confidence 0.60 < 0.70"
    whole = compose_register(layout, positions, confidences, min_confidence=0.0)
    assert whole.ok and whole.partial_l == whole.volume_l and whole.partial_modulus_l == math.inf
