"""RegisterReader on varied renders (TrueType digits, curved drums, a reflection over one element, Bayer noise)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from meterbench.sim.register_render import CameraModel, RegisterRenderer, RenderStyle
from meterbench.vision import RegisterLayout, RegisterReader, default_register_layout
from meterbench.vision.layout import positions_from_volume
from tests.conftest import require_varied_renders

VOLUMES_L = [12.34, 4_567.8, 31_415.9, 99_999.98]


@pytest.fixture(scope="module")
def models():
    from meterbench.models import DialReader, DigitReader

    return DigitReader(), DialReader()


def _varied(variant: str, seed: int, glare: bool = True) -> tuple[RegisterLayout, RegisterRenderer]:
    require_varied_renders()
    layout = RegisterLayout.from_dict(default_register_layout(variant))
    rng = np.random.default_rng(seed)
    style = RenderStyle.varied(rng, layout, "red")
    if not glare:
        style = replace(style, glare_element=None)
    return layout, RegisterRenderer(layout, rng=rng, style=style, camera=CameraModel.random(rng, layout.plate_size_px))


@pytest.mark.parametrize(("variant", "seed"), [("wheels", 2), ("dials", 3), ("wheels", 4)])
def test_varied_render_without_the_reflection_is_read_with_the_exact_volume(variant, seed, models) -> None:
    layout, renderer = _varied(variant, seed, glare=False)
    frames = [renderer.render(positions_from_volume(layout, v)) for v in VOLUMES_L]
    readings = RegisterReader(layout, *models).read_frames(frames)
    step_l = layout.finest.litres_per_turn / 10.0
    assert [r.reason for r in readings] == [""] * len(VOLUMES_L), renderer.style.font_path
    for volume_l, reading in zip(VOLUMES_L, readings, strict=True):
        assert abs(reading.volume_l - volume_l) < 0.2 * step_l, (volume_l, reading.volume_l)


@pytest.mark.parametrize(("variant", "seed"), [("wheels", 2), ("dials", 3)])
def test_reflection_over_one_element_is_named_and_the_elements_below_still_read(variant, seed, models) -> None:
    layout, renderer = _varied(variant, seed)
    glared = layout.elements[renderer.style.glare_element]
    frames = [renderer.render(positions_from_volume(layout, v)) for v in VOLUMES_L]
    readings = RegisterReader(layout, *models).read_frames(frames)
    step_l = layout.finest.litres_per_turn / 10.0
    for volume_l, reading in zip(VOLUMES_L, readings, strict=True):
        if reading.ok:
            assert abs(reading.volume_l - volume_l) < 0.2 * step_l, (volume_l, reading.volume_l)
            continue
        # never a guess: the glared element is named, and the elements below it still say their part
        assert glared.name in reading.reason, reading.reason
        assert math.isfinite(reading.partial_l) and reading.partial_modulus_l < math.inf
        true_part = volume_l % reading.partial_modulus_l
        assert abs((reading.partial_l - true_part + 0.5) % reading.partial_modulus_l - 0.5) < 0.2 * step_l
