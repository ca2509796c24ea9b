"""The live bench's simulated camera without fiducials: its reference photo carries no markers and
its frames, shifted, rotated and drifting as sim/markerless.py's model says, align to that photo."""

from __future__ import annotations

import time

import cv2
import numpy as np

from meterbench.sim.live import SimMeter, SimulatedBenchPeer
from meterbench.vision.layout import RegisterLayout, default_register_layout
from meterbench.vision.reference_align import ReferenceAligner


def _project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.c_[points, np.ones(len(points))] @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def test_live_markerless_frames_follow_the_plate_motion_and_align_to_the_reference():
    peer = SimulatedBenchPeer("/dev/null", "127.0.0.1", 1, "b", [SimMeter("M1", 0.5, 100.0)], seed=2)  # not started
    # seed 2: shift (10.0, 13.5) px, rotation 2.95° (near the model's ±3° limit), drift over 1 s
    camera = peer.camera(0, default_register_layout("dials"), markerless_duration_s=1.0, camera_id="cam-1")
    view = camera.view
    assert view is not None and view.register["reference"]["image"] == "cameras/cam-1-reference.png"
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50))

    def markers(image: np.ndarray) -> int:
        ids = detector.detectMarkers(image)[1]
        return 0 if ids is None else len(ids)

    assert markers(peer.camera(0, default_register_layout("dials")).read()[1]) >= 3  # the check sees markers
    assert markers(view.photo) == 0  # no fiducials in the reference photo
    layout = RegisterLayout.from_dict(view.register, read_image=lambda _: view.photo)
    aligner = ReferenceAligner(layout)
    centres = np.array([[x + w / 2, y + h / 2] for x, y, w, h in (e.box_px for e in layout.elements)])
    errors, moved = [], []
    for pause_s in (0.0, 1.2):  # before the drift and after it ends (1 s)
        time.sleep(pause_s)
        ok, frame = camera.read()
        assert ok and markers(frame) == 0
        t_s = camera.capture_monotonic - camera._opened_monotonic
        truth = _project(view.motion.matrix(t_s), centres)  # reference px -> frame px
        alignment = aligner.align(frame)
        assert alignment, alignment.message
        found = _project(alignment.camera_from_plate, centres)
        errors.append(float(np.abs(found - truth).max()))
        moved.append(float(np.abs(truth - centres).max()))
    # within the camera shake the renderer adds on top of the motion (clipped at 2 px an axis)
    assert max(errors) < 2.5, errors
    assert min(moved) > 10.0, moved  # and there was motion to follow, well beyond the shake


def test_live_markerless_view_upsets_are_refused_while_they_last():
    """MarkerlessView.upsets on the live camera: a hand, then the camera knocked; each frame inside a
    stretch is refused by the aligner with its kind, frames outside align."""
    from dataclasses import replace

    from meterbench.sim.markerless import SceneUpset

    peer = SimulatedBenchPeer("/dev/null", "127.0.0.1", 1, "b", [SimMeter("M1", 0.5, 100.0)], seed=2)  # not started
    first = peer.camera(0, default_register_layout("dials"), markerless_duration_s=1.0, camera_id="cam-1")
    upsets = (SceneUpset("hand", 0.0, 0.5, fraction=0.5, seed=3), SceneUpset("jump", 0.5, 1.0, (60.0, -25.0), 20.0))
    view = replace(first.view, upsets=upsets)
    camera = peer.camera(0, default_register_layout("dials"), camera_id="cam-1", view=view)
    layout = RegisterLayout.from_dict(camera.view.register, read_image=lambda _: camera.view.photo)
    aligner = ReferenceAligner(layout)
    refusals, expected = [], []
    for until_s in (0.2, 0.75, 1.3):  # inside the hand, inside the jump, after both (a late read: as it shows)
        time.sleep(max(0.0, until_s - (time.monotonic() - camera._opened_monotonic)))
        ok, frame = camera.read()
        assert ok
        t_s = camera.capture_monotonic - camera._opened_monotonic
        kinds = zip(upsets, ("scene", "unregistered"), strict=True)
        expected.append(next((kind for upset, kind in kinds if upset.active(t_s)), ""))
        refusals.append(aligner.align(frame).refusal)
    assert refusals == expected and set(expected) == {"scene", "unregistered", ""}, (refusals, expected)
