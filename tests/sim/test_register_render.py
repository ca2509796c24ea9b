"""Register renderer: determinism, speed-friendly shapes, markers visible, pointers placed."""

import cv2
import numpy as np
import pytest

from meterbench.sim.register_render import CameraModel, RegisterRenderer
from meterbench.vision import RegisterLayout, default_register_layout, positions_from_volume
from tests.conftest import require_varied_renders


def _renderer(variant: str, seed: int) -> tuple[RegisterLayout, RegisterRenderer]:
    layout = RegisterLayout.from_dict(default_register_layout(variant))
    return layout, RegisterRenderer(layout, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("variant", ["dials", "wheels"])
def test_deterministic_for_a_seed(variant):
    frames = []
    for _ in range(2):
        layout, renderer = _renderer(variant, 5)
        pos = positions_from_volume(layout, 4321.987)
        frames.append([renderer.render(pos), renderer.render(pos, np.full(len(pos), 0.3))])
    for a, b in zip(frames[0], frames[1], strict=True):
        assert a.shape == (360, 640, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(frames[0][0], frames[0][1])  # shake/noise/motion differ


@pytest.mark.parametrize("seed", range(6))
def test_markers_found_by_aruco(seed):
    layout, renderer = _renderer("dials" if seed % 2 else "wheels", seed)
    frame = renderer.render(positions_from_volume(layout, 100.0 * seed + 7.3))
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50))
    corners, ids, _ = detector.detectMarkers(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    assert ids is not None and sorted(ids.ravel().tolist()) == [0, 1, 2, 3]
    # detected corners agree with the plate homography within the shake (<= 2 px, 0.5°)
    plate_pts = np.array([m.corners_px[0] for m in layout.markers], np.float32)
    expected = cv2.perspectiveTransform(plate_pts[None], renderer._homography)[0]
    found = {int(i): c[0][0] for i, c in zip(ids.ravel(), corners, strict=True)}
    for marker, point in zip(layout.markers, expected, strict=True):
        assert np.linalg.norm(found[marker.id] - point) < 5.0


def test_needle_points_at_position():
    layout = RegisterLayout.from_dict(default_register_layout("dials"))
    camera = CameraModel(glare=None, noise_sigma=0.0, shake_px=0.0, shake_deg=0.0)
    renderer = RegisterRenderer(layout, rng=np.random.default_rng(0), camera=camera)
    finest = layout.finest
    cx, cy = finest.center_px
    r = finest.radius_px
    for value in (0.0, 2.5, 7.5):
        pos = positions_from_volume(layout, 1000.0 + value / 10)
        plate = renderer.render_plate(pos)
        hsv = cv2.cvtColor(plate, cv2.COLOR_BGR2HSV)
        a = np.radians(value * 36)
        tip = (int(cx + 0.7 * r * np.sin(a)), int(cy - 0.7 * r * np.cos(a)))
        opposite = (int(cx - 0.7 * r * np.sin(a)), int(cy + 0.7 * r * np.cos(a)))
        assert hsv[tip[1], tip[0], 1] > 150, value  # red (saturated) under the tip
        assert hsv[opposite[1], opposite[0], 1] < 80, value


def test_wheel_shows_digit_and_rolls():
    layout = RegisterLayout.from_dict(default_register_layout("dials"))
    renderer = RegisterRenderer(layout, rng=np.random.default_rng(0))
    x, y, w, h = (int(v) for v in layout.elements[4].box_px)
    crops = {}
    for volume in (3000.0, 3500.0, 3999.999):
        crops[volume] = renderer.render_plate(positions_from_volume(layout, volume))[y : y + h, x : x + w]
    np.testing.assert_array_equal(crops[3000.0], crops[3500.0])  # carry wheel holds its digit
    assert np.abs(crops[3000.0].astype(int) - crops[3999.999]).mean() > 10  # rolled to 4


def test_bad_positions_rejected():
    layout, renderer = _renderer("dials", 0)
    with pytest.raises(ValueError, match="positions"):
        renderer.render(np.zeros(3))


CLASSIC_FRAME_SHA256 = {"5.0.0": "21efb0244d684532"}  # wheels, seed 5, 4321.987 L: the frame before issue 17


def test_classic_style_draws_what_it_drew_before() -> None:
    """The default style is unchanged (same seed -> same session as before the varied style came)."""
    import hashlib

    if cv2.__version__ not in CLASSIC_FRAME_SHA256:
        pytest.skip(f"frame fingerprint pinned for OpenCV {sorted(CLASSIC_FRAME_SHA256)}, not {cv2.__version__}")
    layout, renderer = _renderer("wheels", 5)
    frame = renderer.render(positions_from_volume(layout, 4321.987))
    assert hashlib.sha256(frame.tobytes()).hexdigest()[:16] == CLASSIC_FRAME_SHA256[cv2.__version__]


def _varied(variant: str, seed: int) -> tuple[RegisterLayout, RegisterRenderer]:
    require_varied_renders()
    layout = RegisterLayout.from_dict(default_register_layout(variant))
    return layout, RegisterRenderer(layout, rng=np.random.default_rng(seed), style="varied")


def test_varied_style_is_deterministic_and_differs_from_classic() -> None:
    frames = []
    for _ in range(2):
        layout, renderer = _varied("wheels", 3)
        frames.append(renderer.render(positions_from_volume(layout, 4321.987)))
    np.testing.assert_array_equal(frames[0], frames[1])
    assert renderer.style.font_path is not None and renderer.style.bayer_noise
    classic = _renderer("wheels", 3)[1].render(positions_from_volume(layout, 4321.987))
    assert np.abs(classic.astype(int) - frames[0]).mean() > 5


def test_varied_glare_stays_on_its_element() -> None:
    """The reflection is fixed to the camera over one element: that element's window is washed out in
    every frame, the others keep their contrast."""
    layout, renderer = _varied("wheels", 5)
    glared = renderer.style.glare_element
    homography = renderer._homography
    for volume in (1234.5, 56789.1):
        grey = cv2.cvtColor(renderer.render(positions_from_volume(layout, volume)), cv2.COLOR_BGR2GRAY)
        means = []
        for element in layout.elements:
            x, y, w, h = element.box_px
            centre = cv2.perspectiveTransform(np.array([[[x + w / 2, y + h / 2]]], np.float32), homography)[0, 0]
            cx, cy = (int(round(v)) for v in centre)
            means.append(float(grey[cy - 4 : cy + 5, cx - 4 : cx + 5].mean()))
        assert means[glared] > 235  # saturated
        assert sorted(means)[-2] < means[glared] - 20


def test_bad_style_rejected() -> None:
    from meterbench.errors import ConfigError

    layout = RegisterLayout.from_dict(default_register_layout("dials"))
    with pytest.raises(ConfigError, match="style: expected one of classic, varied, got 'fancy'"):
        RegisterRenderer(layout, rng=np.random.default_rng(0), style="fancy")
