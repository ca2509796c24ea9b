"""Register layout validation and the forward gear/carry mechanism."""

import copy

import numpy as np
import pytest

from meterbench.vision import (
    RegisterLayout,
    default_register_layout,
    positions_from_volume,
    volume_from_positions,
)


@pytest.fixture(params=["dials", "wheels"])
def layout(request) -> RegisterLayout:
    return RegisterLayout.from_dict(default_register_layout(request.param))


def test_round_trip_dict(layout):
    assert RegisterLayout.from_dict(layout.to_dict()) == layout
    assert layout.capacity_l == 1e8
    assert layout.finest.litres_per_turn == 1.0
    assert len(layout.markers) == 4
    assert len(layout.elements) == 9


def test_elements_inside_plate(layout):
    w, h = layout.plate_size_px
    for e in layout.elements:
        x, y, bw, bh = e.box_px
        assert x >= 0 and x + bw <= w and y >= 0 and y + bh <= h, e.name


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("plate_size_px", [640], "register.plate_size_px"),
        ("markers", {"dictionary": "DICT_9X9", "items": []}, "register.markers.dictionary"),
    ],
)
def test_bad_top_level_field_named(field, value, message):
    data = default_register_layout()
    data[field] = value
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        RegisterLayout.from_dict(data)


def test_bad_element_fields_named():
    data = default_register_layout()
    bad = copy.deepcopy(data)
    bad["elements"][3]["coupling"] = "belt"
    with pytest.raises(ValueError, match=r"register\.elements\[3\]\.coupling"):
        RegisterLayout.from_dict(bad)
    bad = copy.deepcopy(data)
    del bad["elements"][6]["radius_px"]
    with pytest.raises(ValueError, match=r"register\.elements\[6\].*radius_px"):
        RegisterLayout.from_dict(bad)
    bad = copy.deepcopy(data)
    bad["elements"][2]["litres_per_turn"] = 5e5
    with pytest.raises(ValueError, match=r"register\.elements\[1\]\.litres_per_turn"):
        RegisterLayout.from_dict(bad)
    with pytest.raises(ValueError, match="variant"):
        default_register_layout("odometer")


def test_known_volume_dials():
    layout = RegisterLayout.from_dict(default_register_layout("dials"))
    # 12345.6789 L = 12 m³ + 345.6789 L
    pos = positions_from_volume(layout, 12345.6789)
    np.testing.assert_allclose(pos[:5], [0, 0, 0, 1, 2], atol=1e-9)
    # gear dials turn continuously
    np.testing.assert_allclose(pos[5:], [3.456789, 4.56789, 5.6789, 6.789], atol=1e-6)


def test_carry_rolls_only_while_lower_passes_nine():
    layout = RegisterLayout.from_dict(default_register_layout("wheels"))
    # wheels: ..., m3x1, Lx100, Lx10, Lx1 (carry), Lx0.1 dial (gear)
    at = {e.name: i for i, e in enumerate(layout.elements)}
    steady = positions_from_volume(layout, 3.5)  # dial at 5: nothing rolls
    assert steady[at["Lx1"]] == 3.0
    rolling = positions_from_volume(layout, 9.95)  # dial at 9.5: Lx1 half-way 9 -> 0
    np.testing.assert_allclose(rolling[at["Lx1"]], 9.5, atol=1e-9)
    np.testing.assert_allclose(rolling[at["Lx10"]], 0.5, atol=1e-9)  # driven by Lx1 at 9.5
    assert rolling[at["Lx100"]] == 0.0  # Lx10 at 0.5: not in [9, 10)
    chain = positions_from_volume(layout, 9999.95)  # wheels 0009|999 rolling, dial 9.5
    for name in ("Lx1", "Lx10", "Lx100", "m3x1"):
        np.testing.assert_allclose(chain[at[name]], 9.5, atol=1e-9)
    np.testing.assert_allclose(chain[at["m3x10"]], 0.5, atol=1e-9)
    assert chain[at["m3x100"]] == 0.0


def test_wraps_at_top():
    layout = RegisterLayout.from_dict(default_register_layout("dials"))
    np.testing.assert_allclose(positions_from_volume(layout, 1e8 + 2.5), positions_from_volume(layout, 2.5), atol=1e-6)
    top = positions_from_volume(layout, 1e8 - 0.05)
    assert np.all(top[:5] >= 9.0) and top[0] > 9.4


def test_vectorised_and_inverse(layout):
    rng = np.random.default_rng(3)
    volumes = rng.uniform(0, 99_000_000, 500).round(4)
    pos = positions_from_volume(layout, volumes)
    assert pos.shape == (500, 9)
    assert np.all((pos >= 0) & (pos < 10))
    np.testing.assert_allclose(pos[17], positions_from_volume(layout, volumes[17]))
    np.testing.assert_allclose(volume_from_positions(layout, pos), volumes, atol=1e-5)


def test_monotonic_motion(layout):
    volumes = np.linspace(990.0, 1010.0, 20001)
    pos = positions_from_volume(layout, volumes)
    step = np.diff(pos, axis=0) % 10.0  # circular forward step per element
    assert np.all(step < 0.5)  # no element ever jumps
    np.testing.assert_allclose(volume_from_positions(layout, pos), volumes, atol=1e-6)


def test_negative_volume_rejected(layout):
    with pytest.raises(ValueError, match="volume_l"):
        positions_from_volume(layout, -1.0)
