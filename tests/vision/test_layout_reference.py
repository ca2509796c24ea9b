"""Marker-free register layouts: a reference photo instead of ArUco markers, and every bad input
as a one-line error naming the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.errors import ConfigError, SessionError
from meterbench.session import SessionRecorder, load_session, reference_image_path
from meterbench.vision import RegisterLayout, default_register_layout


def _reference_register(image: str = "ref.png", size=(320, 180)) -> dict:
    register = default_register_layout("dials")
    register.pop("markers")
    register["plate_size_px"] = list(size)
    for element in register["elements"]:  # the plate at half scale
        element["box_px"] = [v / 2 for v in element["box_px"]]
        if "center_px" in element:
            element["center_px"] = [v / 2 for v in element["center_px"]]
            element["radius_px"] /= 2
    register["reference"] = {"image": image}
    return register


def _photo(size=(320, 180)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


@pytest.fixture
def layout_file(tmp_path) -> Path:
    cv2.imwrite(str(tmp_path / "ref.png"), _photo())
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(_reference_register()))
    return path


def test_a_reference_layout_loads_its_photo_relative_to_the_layout_file(layout_file):
    layout = RegisterLayout.load(layout_file)
    assert layout.markers == () and layout.marker_dictionary == ""
    assert layout.reference.image == "ref.png"
    assert layout.reference.pixels.shape == (180, 320, 3)
    assert np.array_equal(layout.reference.pixels, _photo())
    assert layout.reference.source == str(layout_file.parent / "ref.png")
    assert layout.to_dict()["reference"] == {"image": "ref.png"} and "markers" not in layout.to_dict()
    again = RegisterLayout.from_dict(layout.to_dict(), base_dir=layout_file.parent)
    assert again == layout  # the pixels are not compared, the rest is


def test_a_reference_layout_without_a_folder_checks_only_its_structure():
    layout = RegisterLayout.from_dict(_reference_register("nowhere.png"))
    assert layout.reference.image == "nowhere.png" and layout.reference.pixels is None


def test_aruco_layouts_are_unchanged():
    register = default_register_layout("fine")
    layout = RegisterLayout.from_dict(register)
    assert layout.reference is None and len(layout.markers) == 4
    assert layout.to_dict() == register


def _error(tmp_path: Path, register: dict) -> str:
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(register))
    with pytest.raises(ConfigError) as caught:
        RegisterLayout.load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: register layout: ")
    return message


def test_a_missing_reference_photo_names_the_file_and_field(tmp_path):
    message = _error(tmp_path, _reference_register("gone.png"))
    assert "register.reference.image: expected a readable image file" in message
    assert f"{tmp_path / 'gone.png'}: No such file or directory" in message


def test_an_unreadable_reference_photo_names_the_file_and_field(tmp_path):
    (tmp_path / "ref.png").write_bytes(b"not a png at all")
    message = _error(tmp_path, _reference_register())
    assert "register.reference.image: expected a readable image file (PNG or JPEG)" in message
    assert f"{tmp_path / 'ref.png'}: cannot be decoded" in message


def test_a_reference_photo_of_the_wrong_size_names_both_sizes(tmp_path):
    cv2.imwrite(str(tmp_path / "ref.png"), _photo((300, 180)))
    message = _error(tmp_path, _reference_register())
    assert message.endswith(
        "register.reference.image: expected an image of plate_size_px 320×180 px, "
        f"got '{tmp_path / 'ref.png'}: 300×180 px'"
    )


def test_an_element_beyond_the_reference_photo_names_the_element_and_the_photo_size(tmp_path):
    cv2.imwrite(str(tmp_path / "ref.png"), _photo())
    register = _reference_register()
    x, y, w, h = register["elements"][0]["box_px"]
    register["elements"][0]["box_px"] = [x, -4.0, w, h]  # as a proposal once wrote, above the photo
    message = _error(tmp_path, register)
    assert message.endswith(
        "register.elements[0].box_px: expected a box inside the reference photo (320×180 px) for "
        f"'{register['elements'][0]['name']}', got {[x, -4.0, w, h]!r}"
    )
    register["elements"][0]["box_px"] = [x, y, w, h]
    register["elements"][-1]["box_px"][0] = 320 - register["elements"][-1]["box_px"][2] + 0.5
    assert f"register.elements[{len(register['elements']) - 1}].box_px" in _error(tmp_path, register)


def test_both_or_neither_of_markers_and_reference_is_an_error(tmp_path):
    both = _reference_register()
    both["markers"] = default_register_layout("dials")["markers"]
    assert _error(tmp_path, both).endswith("register: expected either 'markers' or 'reference', got both")
    neither = _reference_register()
    neither.pop("reference")
    assert _error(tmp_path, neither).endswith(
        "register: expected either 'markers' or 'reference', got neither (keys: elements, plate_size_px)"
    )


@pytest.mark.parametrize("image", ["", 7, None])
def test_a_reference_without_an_image_path_is_an_error(tmp_path, image):
    register = _reference_register()
    register["reference"] = {"image": image}
    assert "register.reference.image: expected a path to an image file" in _error(tmp_path, register)


def test_a_layout_file_that_is_not_json_names_the_file(tmp_path):
    path = tmp_path / "layout.json"
    path.write_text("{plate")
    with pytest.raises(ConfigError, match=rf"^{path}: not a JSON layout file: "):
        RegisterLayout.load(path)


# ---------------------------------------------------------------- sessions


def _manifest(register: dict) -> dict:
    return {
        "session_id": "ref-layout",
        "bench_kind": "water-meter",
        "instruments": [
            {"id": "M1", "kind": "water-meter", "accuracy_class": 2, "q3_m3h": 2.5, "r": 100, "camera": "cam-M1"}
            | {"register": register}
        ],
        "test_plan": {"points": [{"name": "Q3", "flow_rate_m3h": 2.5, "volume_l": 50.0}]},
        "cameras": [{"id": "cam-M1"}],
    }


def _session(tmp_path: Path) -> Path:
    folder = tmp_path / "session"
    register = _reference_register(reference_image_path("cam-M1"))
    with SessionRecorder.create(folder, _manifest(register), reference_images={"cam-M1": _photo()}) as recorder:
        writer = recorder.camera_writer("cam-M1", 10.0, (320, 180), kind="images", image_format="png")
        writer.write(_photo(), 0.0)
    return folder


def test_a_session_keeps_the_reference_photo_and_reads_it_safely(tmp_path):
    folder = _session(tmp_path)
    assert (folder / "cameras" / "cam-M1-reference.png").is_file()
    assert "cameras/cam-M1-reference.png" in json.loads((folder / "hashes.json").read_text())["files"]
    moved = shutil.copytree(folder, tmp_path / "elsewhere")  # self-contained
    session = load_session(moved)
    register = session.instruments[0]["register"]
    layout = RegisterLayout.from_dict(register, read_image=session.reference_image)
    assert np.array_equal(layout.reference.pixels, _photo())
    assert "cameras/cam-M1-reference.png" in session.file_hashes()


def test_a_session_without_its_reference_photo_is_refused_naming_the_field(tmp_path):
    folder = _session(tmp_path)
    (folder / "cameras" / "cam-M1-reference.png").unlink()
    with pytest.raises(SessionError) as caught:
        load_session(folder)
    assert caught.value.problems == [
        'session.json: instruments[0].register.reference.image: file "cameras/cam-M1-reference.png" '
        "not found in the session folder"
    ]


def test_a_changed_reference_photo_is_not_used(tmp_path):
    folder = _session(tmp_path)
    cv2.imwrite(str(folder / "cameras" / "cam-M1-reference.png"), _photo()[::-1].copy())
    session = load_session(folder)
    with pytest.raises(
        SessionError,
        match=r"^register.reference.image: cameras/cam-M1-reference.png: changed since the session was closed",
    ):
        session.reference_image("cameras/cam-M1-reference.png")


def test_a_reference_photo_path_leaving_the_session_is_a_schema_error(tmp_path):
    folder = _session(tmp_path)
    manifest = json.loads((folder / "session.json").read_text())
    manifest["instruments"][0]["register"]["reference"]["image"] = "../ref.png"
    (folder / "session.json").write_text(json.dumps(manifest))
    with pytest.raises(SessionError, match=r"instruments\[0\]\.register"):
        load_session(folder)


def test_a_register_with_both_markers_and_reference_is_a_schema_error(tmp_path):
    folder = _session(tmp_path)
    manifest = json.loads((folder / "session.json").read_text())
    manifest["instruments"][0]["register"]["markers"] = default_register_layout("dials")["markers"]
    (folder / "session.json").write_text(json.dumps(manifest))
    with pytest.raises(SessionError, match=r"instruments\[0\]\.register"):
        load_session(folder)


def test_the_recorder_refuses_a_reference_photo_that_is_not_an_image_before_writing(tmp_path):
    register = _reference_register(reference_image_path("cam-M1"))
    with pytest.raises(ValueError, match=r"reference_images\['cam-M1'\]: expected an H×W\[×3\] uint8 image, got str"):
        SessionRecorder.create(tmp_path / "s", _manifest(register), reference_images={"cam-M1": "photo.png"})
    assert not (tmp_path / "s").exists()
