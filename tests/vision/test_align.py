"""Marker alignment on frames from the register renderer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from meterbench.sim.register_render import CameraModel, RegisterRenderer
from meterbench.vision.align import MarkerAligner, align_to_plate, element_crop_box
from meterbench.vision.layout import RegisterLayout, default_register_layout, positions_from_volume

LAYOUT = RegisterLayout.from_dict(default_register_layout("dials"))
CLEAN = dict(
    shake_px=0.0,
    shake_deg=0.0,
    light_gradient=0.0,
    vignette=0.0,
    glare=None,
    noise_sigma=0.0,
    blur_sigma=0.0,
    exposure_s=0.0,
)


def _camera(seed: int, **overrides: object) -> CameraModel:
    camera = CameraModel.random(np.random.default_rng(seed), LAYOUT.plate_size_px)
    return CameraModel(**{**camera.__dict__, **overrides})


def _true_camera_from_plate(camera: CameraModel, plate_pts: np.ndarray) -> np.ndarray:
    """Where plate points (edge convention) land in the camera (edge convention)."""
    w, h = LAYOUT.plate_size_px
    plate_corners = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float32)
    homography = cv2.getPerspectiveTransform(plate_corners, np.array(camera.plate_corners_px, np.float32))
    pts = (plate_pts - 0.5).reshape(-1, 1, 2).astype(np.float64)
    return cv2.perspectiveTransform(pts, homography).reshape(-1, 2) + 0.5


def _element_centres() -> np.ndarray:
    return np.array([(x + w / 2, y + h / 2) for x, y, w, h in (e.box_px for e in LAYOUT.elements)])


@pytest.mark.parametrize("seed", range(6))
def test_homography_matches_the_camera_within_a_third_of_a_pixel(seed: int) -> None:
    camera = _camera(seed, shake_px=0.0, shake_deg=0.0)  # light, glare and noise kept
    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(seed), camera=camera)
    frame = renderer.render(positions_from_volume(LAYOUT, 1234.5))
    alignment = align_to_plate(frame, LAYOUT)
    assert alignment, alignment.message
    assert alignment.rms_px < 0.8
    plate_pts = _element_centres()
    estimated = cv2.perspectiveTransform(plate_pts.reshape(-1, 1, 2), alignment.camera_from_plate).reshape(-1, 2)
    error_px = np.linalg.norm(estimated - _true_camera_from_plate(camera, plate_pts), axis=1)
    assert error_px.max() < 0.33


def _best_shift_px(crop: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Sub-pixel shift (0.25 px grid, ±1 px) that best maps `crop` onto `truth`."""
    h, w = truth.shape

    def cost(dx: float, dy: float) -> float:
        moved = cv2.warpAffine(crop, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
        return float(np.abs(moved - truth)[4:-4, 4:-4].mean())

    grid = np.arange(-1.0, 1.01, 0.25)
    return min(((dx, dy) for dx in grid for dy in grid), key=lambda s: cost(*s))


def test_warped_box_reproduces_the_rendered_plate() -> None:
    """Each element crop lines up with the plate as drawn, to a quarter pixel."""
    camera = _camera(3, **CLEAN)
    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(3), camera=camera)
    positions = positions_from_volume(LAYOUT, 98_765.4)
    frame = renderer.render(positions)
    plate = cv2.cvtColor(renderer.render_plate(positions), cv2.COLOR_BGR2GRAY)
    alignment = align_to_plate(frame, LAYOUT)
    assert alignment, alignment.message
    for element in LAYOUT.elements:
        x, y, w, h = (int(v) for v in element.box_px)
        crop = cv2.cvtColor(alignment.warp_box(frame, (x, y, w, h)), cv2.COLOR_BGR2GRAY)
        truth = plate[y : y + h, x : x + w]
        assert crop.shape == truth.shape
        dx, dy = _best_shift_px(crop.astype(np.float32), truth.astype(np.float32))
        assert abs(dx) <= 0.25 and abs(dy) <= 0.25, (element.name, dx, dy)


def _hide(frame: np.ndarray, corners: np.ndarray) -> np.ndarray:
    out = frame.copy()
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 3
    out[y0:y1, x0:x1] = 200
    return out


def test_one_hidden_marker_is_tolerated_and_reported() -> None:
    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(5))
    frame = renderer.render(positions_from_volume(LAYOUT, 55.5))
    aligner = MarkerAligner(LAYOUT)
    found = aligner.detect(frame)
    assert sorted(found) == [0, 1, 2, 3]
    full = aligner.align(frame)
    three = aligner.align(_hide(frame, found[2]))
    assert three and three.message == "marker 2 missing"
    assert three.markers_found == (0, 1, 3) and three.markers_missing == (2,)
    centres = _element_centres().reshape(-1, 1, 2)
    diff = cv2.perspectiveTransform(centres, three.camera_from_plate) - cv2.perspectiveTransform(
        centres, full.camera_from_plate
    )
    assert np.abs(diff).max() < 0.5


def test_two_hidden_markers_fail_as_a_value() -> None:
    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(6))
    frame = renderer.render(positions_from_volume(LAYOUT, 55.5))
    aligner = MarkerAligner(LAYOUT)
    found = aligner.detect(frame)
    alignment = aligner.align(_hide(_hide(frame, found[0]), found[3]))
    assert not alignment
    assert alignment.message == "only 2 of 4 markers found (ids [1, 2])"
    with pytest.raises(ValueError, match="no homography"):
        alignment.warp_box(frame, (0, 0, 10, 10))


def test_blank_frame_fails_and_bad_frame_raises() -> None:
    alignment = align_to_plate(np.full((360, 640, 3), 128, np.uint8), LAYOUT)
    assert not alignment and alignment.message == "no markers found"
    with pytest.raises(ValueError, match="frame: expected"):
        align_to_plate(np.zeros((360, 640), np.float32), LAYOUT)


def test_misplaced_marker_is_dropped() -> None:
    """A marker whose corners disagree with the others (e.g. a stray print) is left out."""
    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(8))
    frame = renderer.render(positions_from_volume(LAYOUT, 1.0))
    aligner = MarkerAligner(LAYOUT)
    found = aligner.detect(frame)
    found[1] = found[1] + np.array([8.0, -6.0])
    alignment = aligner.fit(found)
    assert alignment and alignment.message == "marker 1 dropped (inconsistent)"
    assert alignment.markers_found == (0, 2, 3)


def test_crop_boxes() -> None:
    wheel, dial = LAYOUT.elements[0], LAYOUT.elements[-1]
    x, y, w, h = wheel.box_px
    assert element_crop_box(wheel, wheel_margin=0.1) == pytest.approx((x - 0.1 * w, y - 0.1 * h, 1.2 * w, 1.2 * h))
    cx, cy = dial.center_px
    r = dial.radius_px
    assert element_crop_box(dial, dial_margin=0.0) == pytest.approx((cx - r, cy - r, 2 * r, 2 * r))


def _assert_same_mapping(a, b, atol_px: float = 0.02) -> None:
    centres = _element_centres().reshape(-1, 1, 2)
    np.testing.assert_allclose(
        cv2.perspectiveTransform(centres, a.camera_from_plate),
        cv2.perspectiveTransform(centres, b.camera_from_plate),
        atol=atol_px,
    )


def test_search_near_previous_frame_finds_the_same_corners() -> None:
    """Tracking only narrows the search: same corners as a full-frame search, and a
    wrong hint (another camera) falls back to the full frame."""
    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(9))
    other = RegisterRenderer(LAYOUT, rng=np.random.default_rng(10))
    aligner = MarkerAligner(LAYOUT)
    previous = aligner.align(renderer.render(positions_from_volume(LAYOUT, 0.0)))
    for k in range(5):
        frame = renderer.render(positions_from_volume(LAYOUT, 10.0 * k))
        full = aligner.detect(frame)
        near = aligner._detect_near(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), previous)
        assert sorted(near) == sorted(full) == [0, 1, 2, 3]
        for marker_id in full:
            np.testing.assert_allclose(near[marker_id], full[marker_id], atol=0.05)
        tracked = aligner.align(frame, near=previous)
        _assert_same_mapping(tracked, aligner.fit(full))
        previous = tracked
    wrong_hint = aligner.align(other.render(positions_from_volume(LAYOUT, 0.0)))
    frame = renderer.render(positions_from_volume(LAYOUT, 3.0))
    _assert_same_mapping(aligner.align(frame, near=wrong_hint), aligner.align(frame))


@pytest.mark.parametrize("shift_px", [(12.0, 0.0), (0.0, -18.0), (22.0, 15.0)])
def test_stale_hint_cutting_the_markers_is_not_trusted(shift_px: tuple[float, float]) -> None:
    """After a camera bump the old windows cut through the markers; corners found at a
    window edge are biased, so the frame is searched in full instead."""
    from meterbench.vision.align import PlateAlignment

    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(12))
    aligner = MarkerAligner(LAYOUT)
    frame = renderer.render(positions_from_volume(LAYOUT, 7.0))
    truth = aligner.align(frame)
    bump = np.array([[1.0, 0.0, shift_px[0]], [0.0, 1.0, shift_px[1]], [0.0, 0.0, 1.0]])
    stale = PlateAlignment(truth.homography @ bump, (0, 1, 2, 3))  # camera moved by shift_px
    tracked = aligner.align(frame, near=stale)
    assert tracked and tracked.message == ""
    _assert_same_mapping(tracked, truth)


def _small_plate_frame(marker_px: float, blur_sigma: float, seed: int) -> tuple[np.ndarray, CameraModel]:
    """A still frame of the plate shrunk so that its markers are `marker_px` wide, blurred."""
    scale = marker_px / 44.0  # the layout's markers are 44 plate px wide
    w, h = (v * scale for v in LAYOUT.plate_size_px)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]) + [320.0, 180.0]
    camera = CameraModel(
        plate_corners_px=tuple((float(x), float(y)) for x, y in corners),
        **{**CLEAN, "noise_sigma": 2.0, "blur_sigma": blur_sigma},
    )
    renderer = RegisterRenderer(LAYOUT, rng=np.random.default_rng(seed), camera=camera)
    return renderer.render(positions_from_volume(LAYOUT, 1234.5)), camera


def _box_error_px(alignment, camera: CameraModel) -> float:
    """Largest error (camera px) of the element box corners the alignment gives."""
    boxes = [element_crop_box(e) for e in LAYOUT.elements]
    pts = np.array([(x + dx, y + dy) for x, y, w, h in boxes for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))])
    estimated = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), alignment.camera_from_plate).reshape(-1, 2)
    return float(np.linalg.norm(estimated - _true_camera_from_plate(camera, pts), axis=1).max())


OLD_ALIGNER = {"detectors": ("tuned",), "drop_rms_ratio": float("inf"), "scale_limits": False}


def test_small_blurred_markers_are_found_by_the_default_parameters() -> None:
    """26 px markers blurred 1.2 px: the tuned parameters alone find 1 of 4 (measured), OpenCV's defaults all."""
    frame, camera = _small_plate_frame(26.0, 1.2, seed=0)
    assert len(MarkerAligner(LAYOUT, **OLD_ALIGNER).detect(frame)) <= 2
    alignment = MarkerAligner(LAYOUT).align(frame)
    assert alignment and alignment.markers_found == (0, 1, 2, 3) and alignment.message == ""
    assert _box_error_px(alignment, camera) < 1.0  # measured 0.4 px


def test_noisy_small_markers_are_all_kept() -> None:
    """28 px blurred markers: the old rule dropped one as "inconsistent" and moved the boxes; all four kept now."""
    frame, camera = _small_plate_frame(28.0, 1.2, seed=0)
    old = MarkerAligner(LAYOUT, **OLD_ALIGNER).align(frame)
    new = MarkerAligner(LAYOUT).align(frame)
    assert old.message.endswith("dropped (inconsistent)")
    assert new and new.markers_found == (0, 1, 2, 3) and new.message == ""
    assert _box_error_px(new, camera) < 0.6 * _box_error_px(old, camera)
