"""Marker-free alignment to a reference photo: accurate under shift, rotation and light; refused,
with the reason, when the meter left, something covers it, the glass fogged, or it is another
meter; refused stretches become warnings saying when they began."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from meterbench.models import DialReader, DigitReader
from meterbench.sim.markerless import (
    LightChange,
    PlateMotion,
    cover_with_hand,
    fog,
    frontal_camera,
    reference_layout,
    reference_photo,
)
from meterbench.sim.register_render import RegisterRenderer
from meterbench.vision import (
    AlignmentWatch,
    ReferenceAligner,
    ReferenceAlignment,
    RegisterLayout,
    RegisterReader,
    default_register_layout,
    element_crop_box,
    plate_aligner,
)
from meterbench.vision.align import MarkerAligner
from meterbench.vision.layout import ReferenceImage, positions_from_volume


class Scene:
    """A register under a fixed camera with no shake (the true pose is known), its reference photo
    and marker-free layout, and a renderer of frames with the meter moved by a given transform."""

    def __init__(self, variant: str, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.plate = RegisterLayout.from_dict(default_register_layout(variant))
        self.camera = replace(frontal_camera(self.rng, self.plate.plate_size_px), shake_px=0.0, shake_deg=0.0)
        photo = reference_photo(
            self.plate,
            self.camera,
            positions_from_volume(self.plate, 4321.5),
            self.rng,
            label="T",
            red_wheel_style="red",
        )
        layout = RegisterLayout.from_dict(reference_layout(self.plate, self.camera, "ref.png"))
        self.layout = replace(layout, reference=ReferenceImage("ref.png", photo, "test"))
        self.renderer = RegisterRenderer(
            self.plate, rng=self.rng, camera=self.camera, label="T", red_wheel_style="red", markers=False
        )
        corners = np.array(self.camera.plate_corners_px)
        self.centre = tuple(float(v) for v in corners.mean(axis=0))
        self.light = LightChange(0.25, 0.15, 40.0, 0.0)

    def motion(self, dx: float, dy: float, degrees: float) -> np.ndarray:
        return PlateMotion(self.centre, (dx, dy), degrees, (0.0, 0.0), 0.0, 1.0).matrix(0.0)

    def frame(self, motion: np.ndarray, volume_l: float = 1234.56, t_s: float = 0.0) -> np.ndarray:
        frame = self.renderer.render(positions_from_volume(self.plate, volume_l), plate_motion=motion)
        return self.light.apply(frame, t_s)

    def box_error_px(self, alignment, motion: np.ndarray) -> float:
        """Largest distance (camera px) of any element crop corner from where it truly is."""
        corners = []
        for element in self.layout.elements:
            x, y, w, h = element_crop_box(element)
            corners += [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        pts = np.array(corners, np.float64)
        estimated = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), alignment.camera_from_plate).reshape(-1, 2)
        truth = cv2.perspectiveTransform((pts - 0.5).reshape(-1, 1, 2), motion).reshape(-1, 2) + 0.5
        return float(np.abs(estimated - truth).max())


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene("fine", seed=3)


@pytest.fixture(scope="module")
def aligner(scene) -> ReferenceAligner:
    return ReferenceAligner(scene.layout)


@pytest.mark.parametrize(
    ("dx", "dy", "degrees", "t_s"),
    [(0, 0, 0, 0), (15, -15, 3, 10), (-15, 12, -3, 20), (9, 15, 2.2, 30), (-14, -6, -1.5, 35)],
)
def test_frames_moved_up_to_15_px_and_3_degrees_under_changing_light_align_within_a_pixel(
    scene, aligner, dx, dy, degrees, t_s
):
    motion = scene.motion(dx, dy, degrees)
    alignment = aligner.align(scene.frame(motion, t_s=t_s))
    assert isinstance(alignment, ReferenceAlignment) and alignment, alignment.message
    assert alignment.refusal == "" and alignment.message == ""
    assert scene.box_error_px(alignment, motion) < 1.0
    quality = alignment.quality
    assert quality.method == "ecc" and quality.ncc > 0.8 and quality.tile_ncc > 0.7
    assert quality.shift_px == pytest.approx(np.hypot(dx, dy), abs=1.0)
    assert quality.rotation_deg == pytest.approx(degrees, abs=0.2)
    assert quality.scale == pytest.approx(1.0, abs=0.01)


def test_the_previous_alignment_is_tracked_from(scene, aligner):
    first = scene.motion(10, -4, 1.0)
    previous = aligner.align(scene.frame(first))
    drifted = scene.motion(11, -3.5, 1.1)
    tracked = aligner.align(scene.frame(drifted, volume_l=1240.0), near=previous)
    assert tracked and tracked.quality.method == "track"
    assert scene.box_error_px(tracked, drifted) < 1.0


def test_a_meter_moved_so_far_an_element_leaves_the_frame_is_refused(scene, aligner):
    alignment = aligner.align(scene.frame(scene.motion(140, 0, 0)))
    assert not alignment and alignment.refusal in ("moved", "unregistered")
    assert alignment.message.startswith(("moved", "not registered"))


def test_a_hand_over_the_wheels_is_refused_as_a_scene_change(scene, aligner):
    rng = np.random.default_rng(7)
    refused = [aligner.align(cover_with_hand(scene.frame(scene.motion(5, 5, 1)), rng)) for _ in range(6)]
    kinds = [a.refusal for a in refused]
    assert kinds.count("scene") >= 4, [a.message for a in refused]
    assert any(a.message.startswith("element ") and "covered or changed" in a.message for a in refused) or any(
        "photometric agreement" in a.message for a in refused
    )


def test_fog_on_the_glass_is_refused(scene, aligner):
    alignment = aligner.align(fog(scene.frame(scene.motion(-3, 2, 0.5)), 0.7))
    assert not alignment and alignment.refusal in ("scene", "unregistered"), alignment.message


def test_another_register_type_is_not_read_with_this_layout(scene, aligner):
    other = Scene("wheels", seed=4)
    alignment = aligner.align(other.frame(other.motion(0, 0, 0)))
    assert not alignment and alignment.refusal in ("scene", "unregistered", "moved"), alignment.message


def test_the_aligner_follows_the_layout(scene):
    assert isinstance(plate_aligner(scene.layout), ReferenceAligner)
    assert isinstance(plate_aligner(scene.plate), MarkerAligner)
    unloaded = RegisterLayout.from_dict(reference_layout(scene.plate, scene.camera, "ref.png"))
    with pytest.raises(ValueError, match="expected a layout with a loaded reference image"):
        ReferenceAligner(unloaded)


@pytest.fixture(scope="module")
def models():
    return DigitReader(), DialReader()


def test_a_markerless_register_reads_the_true_volume(scene, models):
    reader = RegisterReader(scene.layout, *models)
    finest = scene.plate.finest.litres_per_turn / 10.0
    volumes = [1234.56, 56789.012, 301.5]
    motions = [scene.motion(12, -7, 2.5), scene.motion(-15, 15, -3), scene.motion(4, 10, 0.8)]
    readings = reader.read_frames([scene.frame(m, v) for m, v in zip(motions, volumes, strict=True)])
    for volume, reading in zip(volumes, readings, strict=True):
        assert reading.ok, reading.reason
        assert reading.homography_ok and reading.alignment_refusal == ""
        assert abs(reading.volume_l - volume) <= finest


def test_a_refused_frame_is_not_read_and_says_why(scene, models):
    reader = RegisterReader(scene.layout, *models)
    reading = reader.read_frame(fog(scene.frame(scene.motion(0, 0, 0)), 0.7))
    assert not reading.ok and np.isnan(reading.volume_l) and not reading.homography_ok
    assert reading.alignment_refusal in ("scene", "unregistered")
    assert reading.reason == reading.alignment_message and reading.reason


def test_the_watch_says_when_each_refused_stretch_began():
    watch = AlignmentWatch()
    times = np.random.default_rng(0).permutation(np.arange(0.0, 10.0, 0.5))  # read out of order
    for t_s in times:
        refusal = "scene" if 3.0 <= t_s < 5.0 else ("moved" if t_s >= 8.0 else "")
        watch.note(float(t_s), refusal, f"{refusal or 'ok'} at {t_s}")
    assert watch.warnings("cam-M1") == [
        "cam-M1: frames refused by the reference alignment from t = 3.00 s to 4.50 s (4 frames read; scene at 3.0)",
        "cam-M1: frames refused by the reference alignment from t = 8.00 s to 9.50 s (4 frames read; moved at 8.0)",
    ]
    assert AlignmentWatch().warnings("cam-M1") == []


def test_features_then_ecc_is_available_for_comparison(scene):
    """The measured alternative: ORB + RANSAC seed the last ECC level.  On this plate's thin,
    repetitive print it registers an unmoved frame and refuses moved ones (never a wrong fit)."""
    aligner = ReferenceAligner(scene.layout, method="features+ecc")
    still = scene.motion(0, 0, 0)
    alignment = aligner.align(scene.frame(still))
    assert alignment and alignment.quality.method == "features+ecc" and alignment.quality.inliers >= 20
    assert scene.box_error_px(alignment, still) < 0.5
    moved = aligner.align(scene.frame(scene.motion(10, 5, 2)))
    assert not moved and moved.refusal == "unregistered" and moved.message.startswith("not registered")
    with pytest.raises(ValueError, match="method: expected 'ecc' or 'features\\+ecc', got 'sift'"):
        ReferenceAligner(scene.layout, method="sift")
