"""BENCH.toml may name a layout file for a register: ArUco or marker-free (its reference photo is
copied into every session the bench records)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.bench import BenchConfigError, load_bench_config
from meterbench.session import SessionRecorder, load_session
from meterbench.vision import RegisterLayout, default_register_layout
from tests.bench.test_config import _variant

M1 = 'register = "default-fine"   # with a 0.01 L test dial, see the plan below'


def _photo() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (260, 640, 3), dtype=np.uint8)


def _reference_layout(folder: Path) -> Path:
    register = default_register_layout("dials")
    register.pop("markers")
    register["reference"] = {"image": "photos/m1.png"}
    (folder / "photos").mkdir()
    cv2.imwrite(str(folder / "photos" / "m1.png"), _photo())
    path = folder / "m1-layout.json"
    path.write_text(json.dumps(register))
    return path


def test_a_marker_free_layout_file_is_loaded_and_its_photo_goes_into_the_session(tmp_path):
    _reference_layout(tmp_path)
    cfg = load_bench_config(_variant(tmp_path, M1, 'register = "m1-layout.json"'))
    register = cfg.instruments[0]["register"]
    assert register["reference"] == {"image": "cameras/cam-M1-reference.png"}  # the session's copy
    assert set(cfg.reference_images) == {"cam-M1"} and np.array_equal(cfg.reference_images["cam-M1"], _photo())
    assert "markers" in cfg.instruments[1]["register"]  # the other meter keeps its ArUco layout
    manifest = {
        "session_id": "s",
        "bench_kind": "water-meter",
        "instruments": cfg.instruments[:1],
        "test_plan": {"points": [{"name": "Q3", "flow_rate_m3h": 2.4, "volume_l": 5.0}]},
        "cameras": [{"id": "cam-M1"}],
    }
    with SessionRecorder.create(tmp_path / "session", manifest, reference_images=cfg.reference_images) as rec:
        rec.camera_writer("cam-M1", 10.0, (640, 260), kind="images", image_format="png").write(_photo(), 0.0)
    session = load_session(tmp_path / "session")
    layout = RegisterLayout.from_dict(session.instruments[0]["register"], read_image=session.reference_image)
    assert np.array_equal(layout.reference.pixels, _photo())


def test_an_aruco_layout_file_is_loaded_as_is(tmp_path):
    (tmp_path / "aruco.json").write_text(json.dumps(default_register_layout("wheels")))
    cfg = load_bench_config(_variant(tmp_path, M1, 'register = "aruco.json"'))
    assert cfg.instruments[0]["register"] == default_register_layout("wheels") and cfg.reference_images == {}


def test_a_layout_file_whose_photo_is_missing_names_the_file_and_field(tmp_path):
    layout = _reference_layout(tmp_path)
    (tmp_path / "photos" / "m1.png").unlink()
    with pytest.raises(BenchConfigError) as caught:
        load_bench_config(_variant(tmp_path, M1, 'register = "m1-layout.json"'))
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'bench.toml'}: instruments[0] (M1).register: {layout}: register layout: ")
    assert "register.reference.image: expected a readable image file" in problem


def test_a_missing_layout_file_names_it(tmp_path):
    with pytest.raises(BenchConfigError) as caught:
        load_bench_config(_variant(tmp_path, M1, 'register = "nowhere.json"'))
    assert caught.value.problems == [
        f"{tmp_path / 'bench.toml'}: instruments[0] (M1).register: {tmp_path / 'nowhere.json'}: "
        "cannot be read: No such file or directory"
    ]


def test_a_register_name_that_is_neither_a_default_nor_a_json_file_is_refused(tmp_path):
    with pytest.raises(BenchConfigError, match=r"instruments\[0\] \(M1\)\.register"):
        load_bench_config(_variant(tmp_path, M1, 'register = "m1-layout.yaml"'))


def test_a_taught_layout_file_keeps_its_taught_block(tmp_path):
    """`layout teach` writes offsets in a `taught` block: the bench must record them for the verification
    to apply (to_dict alone dropped them)."""
    path = _reference_layout(tmp_path)
    register = json.loads(path.read_text())
    names = [e["name"] for e in register["elements"]]
    register["taught"] = {"session_id": "first-run", "offsets_steps": {n: 0.0 for n in names} | {names[-2]: 0.31}}
    path.write_text(json.dumps(register))
    cfg = load_bench_config(_variant(tmp_path, M1, 'register = "m1-layout.json"'))
    assert cfg.instruments[0]["register"]["taught"] == register["taught"]
    assert cfg.instruments[0]["register"]["reference"] == {"image": "cameras/cam-M1-reference.png"}
