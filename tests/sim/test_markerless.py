"""Markerless simulated sessions: registers without ArUco markers, read against the reference photo
the session keeps, with the meter shifted, rotated and drifting and the light changing, verify as
accurately as sessions with markers; a hand over the register for a while is refused and the
report's warnings say when it began."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.session import load_session
from meterbench.sim import simulate_water_meter
from meterbench.sim.markerless import MAX_ROTATION_DEG, MAX_SHIFT_PX, cover_with_hand
from meterbench.verify import verify_session
from meterbench.vision import RegisterLayout
from tests.verify.test_run import _check_errors_against_truth

SEED = 11  # the seed tests/verify/test_run.py verifies with markers: M1 passes, M2 fails


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return simulate_water_meter(
        tmp_path_factory.mktemp("sim") / "session", seed=SEED, meters=2, profile="short", markers=False
    )


@pytest.mark.slow
def test_the_session_is_markerless_and_self_contained(session):
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["session_id"].endswith("-markerless") and manifest["simulated"]["markers"] is False
    truth = json.loads((session / "truth.json").read_text())
    for instrument, facts in zip(manifest["instruments"], truth["instruments"], strict=True):
        register = instrument["register"]
        assert "markers" not in register
        assert register["reference"] == {"image": f"cameras/{instrument['camera']}-reference.png"}
        photo = cv2.imread(str(session / register["reference"]["image"]))
        assert photo.shape == (register["plate_size_px"][1], register["plate_size_px"][0], 3)
        layout = RegisterLayout.from_dict(register, base_dir=session)  # boxes inside the photo
        for element in layout.elements:
            x, y, w, h = element.box_px
            assert x >= 0 and x + w <= photo.shape[1] and y >= 0 and y + h <= photo.shape[0]
        motion = facts["camera"]["plate_motion"]
        assert max(abs(v) for v in motion["shift_px"]) <= MAX_SHIFT_PX
        assert abs(motion["rotation_deg"]) <= MAX_ROTATION_DEG and np.hypot(*motion["drift_px"]) > 0
        assert facts["camera"]["light_change"]["gain_amplitude"] >= 0.1


@pytest.mark.slow
def test_the_same_seed_gives_the_same_reference_photos(session, tmp_path):
    again = simulate_water_meter(tmp_path / "again", seed=SEED, meters=2, profile="short", fps=1.0, markers=False)
    for name in ("cam-M1-reference.png", "cam-M2-reference.png"):  # the photos do not depend on the frame rate
        assert (again / "cameras" / name).read_bytes() == (session / "cameras" / name).read_bytes()


class _HandOver:
    """A recorded camera whose frames between t_from_s and t_to_s have a hand over the register."""

    def __init__(self, camera, t_from_s: float, t_to_s: float) -> None:
        self._camera, self.t_from_s, self.t_to_s = camera, t_from_s, t_to_s
        self._rng = np.random.default_rng(0)

    def __getattr__(self, name: str):
        return getattr(self._camera, name)

    def iter_frames(self, indices=None):
        for index, t_s, frame in self._camera.iter_frames(indices):
            if frame is not None and self.t_from_s <= t_s <= self.t_to_s:
                frame = cover_with_hand(frame, self._rng, fraction=0.45)
            yield index, t_s, frame


@pytest.mark.slow
def test_a_markerless_session_verifies_as_accurately_as_with_markers(session, tmp_path):
    moved = shutil.copytree(session, tmp_path / "elsewhere")  # the session carries its reference photos
    truth = json.loads((moved / "truth.json").read_text())
    q3 = next(p for p in truth["points"] if p["name"] == "Q3")
    middle = (q3["t_start_s"] + q3["t_stop_s"]) / 2
    hand_from, hand_to = middle - 0.4, middle + 0.4  # a hand over M1's register inside the Q3 point
    with load_session(moved) as loaded:
        loaded._cameras["cam-M1"] = _HandOver(loaded.camera("cam-M1"), hand_from, hand_to)  # noqa: SLF001
        report, _ = verify_session(loaded)
    # every point within the tolerances measured with markers (tests/verify/test_run.py), 0 wrong verdicts
    assert _check_errors_against_truth(report, moved) == 6
    assert [i["verdict"] for i in report["instruments"]] == [i["true_verdict"] for i in truth["instruments"]]
    m1, m2 = report["instruments"]
    refused = [w for w in m1["warnings"] if "frames refused by the reference alignment from t = " in w]
    assert refused, m1["warnings"]
    began = float(refused[0].split("from t = ")[1].split(" s")[0])
    assert hand_from <= began <= hand_from + 0.2  # the first frame read under the hand
    assert "scene" in refused[0] or "covered" in refused[0] or "photometric" in refused[0]
    assert not any("refused by the reference alignment" in w for w in m2["warnings"])
