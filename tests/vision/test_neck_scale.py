"""Neck-scale reading on rendered frames: accuracy under each condition, and "cannot read" cases."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from meterbench.sim.tank_render import NeckRenderConditions, render_neck
from meterbench.vision import NeckScaleGeometry, read_neck_scale

GEOMETRY = NeckScaleGeometry()
DIVISION_ML = GEOMETRY.ml_per_division

CONDITIONS = {
    "clear water, bright backing": NeckRenderConditions(),
    "coloured water": NeckRenderConditions(water_tint_bgr=(0.80, 0.93, 0.99)),
    "dark backing": NeckRenderConditions(backing="dark", water_tint_bgr=(0.95, 0.85, 0.70)),
    "dark plate, light marks": NeckRenderConditions(plate="dark"),
    "tilt +4 deg": NeckRenderConditions(tilt_deg=4.0),
    "tilt -3.3 deg": NeckRenderConditions(tilt_deg=-3.3),
    "glare stripes": NeckRenderConditions(glare_x_px=(0.3, 0.7)),
    "bubbles": NeckRenderConditions(bubbles=4, seed=5),
    "marks hidden near the level": NeckRenderConditions(hidden_divisions=(-2, -1)),
    "noisy and blurred": NeckRenderConditions(noise_sigma=4.0, blur_sigma=1.0),
}


@pytest.mark.parametrize("name", list(CONDITIONS))
@pytest.mark.parametrize("level_ml", [-137.3, -23.0, 0.0, 58.6])
def test_reads_level_within_a_tenth_of_a_division(name: str, level_ml: float) -> None:
    frame = render_neck(level_ml, GEOMETRY, CONDITIONS[name])
    reading = read_neck_scale(frame, GEOMETRY)
    assert reading.ok, reading.reason
    assert abs(reading.level_ml - level_ml) < 0.1 * DIVISION_ML
    assert 0 < reading.u_ml < 0.2 * DIVISION_ML
    assert reading.spacing_spread_pct < 2.5
    assert abs(reading.tilt_deg - CONDITIONS[name].tilt_deg) < 0.3


def test_reads_grey_frames_and_reports_the_meniscus_point() -> None:
    frame = cv2.cvtColor(render_neck(40.0, GEOMETRY), cv2.COLOR_BGR2GRAY)
    reading = read_neck_scale(frame, GEOMETRY)
    assert reading.ok, reading.reason
    # the renderer's pixel j spans [j, j+1); the reader uses OpenCV pixel centres (j + 0.5 -> j)
    expected_row = GEOMETRY.zero_mark_y_px - 40.0 / DIVISION_ML * GEOMETRY.px_per_division - 0.5
    assert reading.meniscus_xy_px[1] == pytest.approx(expected_row, abs=0.3)
    assert reading.marks_used == GEOMETRY.max_division - GEOMETRY.min_division + 1


@pytest.mark.parametrize("sideways_px", [-5.0, 4.0])
def test_hint_off_sideways_and_vertically_is_tolerated(sideways_px: float) -> None:
    hint = NeckScaleGeometry(
        **{
            **GEOMETRY.to_dict(),
            "marks_x_px": GEOMETRY.marks_x_px + sideways_px,
            "zero_mark_y_px": GEOMETRY.zero_mark_y_px + 25,
            "glass_x_px": [x + sideways_px for x in GEOMETRY.glass_x_px],
        }
    )
    frame = render_neck(-71.0, GEOMETRY, NeckRenderConditions(tilt_deg=2.5))
    reading = read_neck_scale(frame, hint)
    assert reading.ok, reading.reason
    assert abs(reading.level_ml + 71.0) < 0.1 * DIVISION_ML


def test_no_meniscus_is_not_read() -> None:
    conditions = NeckRenderConditions(meniscus_visible=False, water_tint_bgr=(1.0, 1.0, 1.0))
    reading = read_neck_scale(render_neck(10.0, GEOMETRY, conditions), GEOMETRY)
    assert not reading
    assert "meniscus" in reading.reason
    assert np.isnan(reading.level_ml)


def test_too_few_marks_is_not_read() -> None:
    hidden = tuple(range(-10, 8))
    reading = read_neck_scale(render_neck(150.0, GEOMETRY, NeckRenderConditions(hidden_divisions=hidden)), GEOMETRY)
    assert not reading.ok
    assert reading.reason.startswith("only ") and "marks visible" in reading.reason


def test_inconsistent_mark_spacing_is_flagged() -> None:
    frame = render_neck(-30.0, GEOMETRY)
    top, bottom = frame[:200], frame[200:]
    stretched = cv2.resize(bottom, (frame.shape[1], 236), interpolation=cv2.INTER_LINEAR)
    warped = np.concatenate([top, stretched])[:400]  # lower half 18 % taller
    reading = read_neck_scale(warped, GEOMETRY)
    assert not reading.ok
    assert "spacing" in reading.reason


def test_meniscus_beyond_the_scale_is_flagged() -> None:
    reading = read_neck_scale(render_neck(-260.0, GEOMETRY), GEOMETRY)
    assert not reading.ok
    assert "meniscus" in reading.reason


@pytest.mark.parametrize("seed", range(6))
def test_foam_under_a_faint_meniscus_is_read_or_flagged(seed: int) -> None:
    conditions = NeckRenderConditions(
        bubbles=8,
        bubble_depth_px=(2.0, 15.0),
        seed=seed,
        meniscus_contrast=0.3,
        noise_sigma=5.0,
        water_tint_bgr=(0.80, 0.93, 0.99),
    )
    reading = read_neck_scale(render_neck(-40.0, GEOMETRY, conditions), GEOMETRY)
    assert not reading.ok or abs(reading.level_ml + 40.0) < 0.25 * DIVISION_ML
    assert reading.ok or "meniscus" in reading.reason


def test_bad_frame_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="frame: expected"):
        read_neck_scale(np.zeros((400, 200), np.float32), GEOMETRY)


def test_geometry_round_trip_and_field_errors() -> None:
    assert NeckScaleGeometry.from_dict(GEOMETRY.to_dict()) == GEOMETRY
    bad = {**GEOMETRY.to_dict(), "ml_per_division": -1}
    with pytest.raises(ValueError, match="ml_per_division: expected a number > 0"):
        NeckScaleGeometry.from_dict(bad)
    with pytest.raises(ValueError, match="glass_x_px"):
        NeckScaleGeometry.from_dict({**GEOMETRY.to_dict(), "glass_x_px": [50]})


def test_reading_takes_under_20_ms_of_cpu() -> None:
    frames = [
        render_neck(level, GEOMETRY, NeckRenderConditions(tilt_deg=2.0, seed=i))
        for i, level in enumerate((-80.0, 10.0, 95.0))
    ]
    costs = []
    for _ in range(3):
        for frame in frames:
            start = time.process_time()
            read_neck_scale(frame, GEOMETRY)
            costs.append(time.process_time() - start)
    assert float(np.median(costs)) < 0.020
