"""The live bench without fiducials: ``[simulator] markerless = true`` records each camera's
reference photo and marker-free layout before any device opens, the simulated cameras show that
very scene (shifted, rotated, drifting, light changing), and the run verifies against truth as
the ArUco run does; a register that is a real marker-free layout file is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.bench import load_bench_config, prepare_devices, run_bench
from meterbench.errors import ConfigError
from tests.bench.sample_config import ROOT, SAMPLE, sample_config


def _markerless_config(tmp_path: Path, seed: int = 1) -> Path:
    return sample_config(tmp_path, {"[simulator]\nseed = 1\n": f"[simulator]\nseed = {seed}\nmarkerless = true\n"})


def _markers(image: np.ndarray) -> int:
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50))
    ids = detector.detectMarkers(image)[1]
    return 0 if ids is None else len(ids)


def test_prepare_draws_one_view_per_camera_and_the_config_records_it(tmp_path):
    prepared = prepare_devices(load_bench_config(_markerless_config(tmp_path)))
    cfg = prepared.config
    assert sorted(cfg.reference_images) == sorted(prepared.camera_views) == ["cam-M1", "cam-M2"]
    for inst in cfg.instruments:
        register = inst["register"]
        assert "markers" not in register
        assert register["reference"]["image"] == f"cameras/{inst['camera']}-reference.png"
        assert prepared.camera_views[inst["camera"]].view.photo is cfg.reference_images[inst["camera"]]
        assert _markers(cfg.reference_images[inst["camera"]]) == 0
    again = prepare_devices(load_bench_config(_markerless_config(tmp_path)))  # the seed decides the scene
    assert np.array_equal(again.config.reference_images["cam-M1"], cfg.reference_images["cam-M1"])
    plain = load_bench_config(SAMPLE)
    assert prepare_devices(plain).config is plain  # without markerless nothing changes


def test_a_real_marker_free_layout_file_is_refused_with_markerless(tmp_path):
    prepared = prepare_devices(load_bench_config(_markerless_config(tmp_path)))
    register = prepared.config.instruments[0]["register"]
    photo = tmp_path / "cameras" / "cam-M1-reference.png"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), prepared.config.reference_images["cam-M1"])
    (tmp_path / "LAYOUT.json").write_text(json.dumps(register))  # a marker-free layout file and its photo
    config = tmp_path / "bench.toml"
    config.write_text(config.read_text().replace('register = "default-fine"', 'register = "LAYOUT.json"', 1))
    with pytest.raises(ConfigError, match=r"instruments\[0\] \(M1\)\.register: .* can only render scenes it generated"):
        load_bench_config(config)
    config.write_text(config.read_text().replace("markerless = true\n", ""))  # a real camera may use it
    assert "cam-M1" in load_bench_config(config).reference_images


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_markerless_live_bench_is_conclusive_and_right(tmp_path):
    out = tmp_path / "out"
    report = run_bench(_markerless_config(tmp_path), out, on_step=None)
    run_dir = Path(report["bench"]["run_dir"])
    session_dir = run_dir / "session"
    manifest = json.loads((session_dir / "session.json").read_text())
    for inst in manifest["instruments"]:
        register = inst["register"]
        assert "markers" not in register and register["reference"]["image"] == f"cameras/{inst['camera']}-reference.png"
        photo = cv2.imread(str(session_dir / register["reference"]["image"]))
        assert photo is not None and _markers(photo) == 0
    frames = sorted((session_dir / "cameras").rglob("*.jpg"))
    assert len(frames) > 50 and _markers(cv2.imread(str(frames[len(frames) // 2]))) == 0

    truth = json.loads((session_dir / "truth.json").read_text())
    true_error = {(i["id"], p["name"]): p["true_error_pct"] for i in truth["instruments"] for p in i["points"]}
    assert true_error.keys() == {("M1", "Q3"), ("M2", "Q3")}
    verdicts = {}
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            key = (instrument["id"], point["name"])
            assert point["verdict"] in ("pass", "fail"), (key, point["reason"])
            expected = "pass" if abs(true_error[key]) <= point["mpe_pct"] else "fail"
            assert point["verdict"] == expected, (key, point["reason"])
            # the ArUco live-bench test's tolerance (tests/bench/test_engine.py)
            assert abs(point["error_pct"] - true_error[key]) <= min(point["uncertainty_pct"], 0.25), (key, point)
            verdicts[key] = point["verdict"]
            print(
                f"{key}: E {point['error_pct']:.4f} % true {true_error[key]:.4f} % U {point['uncertainty_pct']:.3f} %"
            )
    assert verdicts == {("M1", "Q3"): "pass", ("M2", "Q3"): "fail"}

    rerun = tmp_path / "rerun"
    done = subprocess.run(
        [sys.executable, "-m", "meterbench", "run", str(session_dir), "--out", str(rerun)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    again = json.loads((rerun / "report.json").read_text())
    assert {(i["id"], p["name"]): p["verdict"] for i in again["instruments"] for p in i["points"]} == verdicts
