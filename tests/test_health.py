"""`meterbench doctor`: plain-word findings, non-zero exit when something is wrong."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from meterbench import health

ROOT = Path(__file__).resolve().parents[1]


def test_installation_checks_pass_here():
    checks = health.run_checks()
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_damaged_model_is_named(tmp_path, monkeypatch):
    fake = tmp_path / "models"
    fake.mkdir()
    for name in ("digit_wheel", "pointer_dial"):
        (fake / f"{name}.onnx").write_bytes((health.MODELS_DIR / f"{name}.onnx").read_bytes()[:-10])
        (fake / f"{name}.json").write_text((health.MODELS_DIR / f"{name}.json").read_text())
    monkeypatch.setattr(health, "MODELS_DIR", fake)
    problems = [c for c in health.check_models() if not c.ok]
    assert len(problems) == 2
    assert "differs from its sidecar" in problems[0].detail


def test_bench_checks_name_missing_port_and_unreachable_broker(tmp_path):
    with socket.socket() as probe:  # a loopback port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "bench.toml"
    config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n\n[[serial]]\nid = "ref"\nport = "/dev/ttyNOPE0"\n')
    findings = {c.name: c for c in health.check_bench(config)}
    assert not findings["serial ref"].ok and "/dev/ttyNOPE0 does not exist" in findings["serial ref"].detail
    assert not findings["MQTT broker"].ok and f"127.0.0.1:{port}" in findings["MQTT broker"].detail
    result = subprocess.run(
        [sys.executable, "-m", "meterbench", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "PROBLEM" in result.stdout


def test_json_logs_are_one_object_per_line():
    import io
    import logging

    from meterbench.logs import configure_logging

    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    logging.getLogger("meterbench.test").info("point stopped", extra={"point": "Q3", "reference_volume_l": 50.0})
    entry = json.loads(stream.getvalue().strip())
    assert entry["message"] == "point stopped" and entry["point"] == "Q3" and entry["level"] == "info"
    assert entry["time"].endswith("Z")


@pytest.mark.slow
def test_wheel_carries_models_tables_and_licences(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("meterbench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "meterbench/models/digit_wheel.onnx",
        "meterbench/models/pointer_dial.onnx",
        "meterbench/models/digit_wheel.json",
        "meterbench/models/NOTICE-data.md",
        "meterbench/models/LICENSE-data-mit",
        "meterbench/models/LICENSE-data-apache-2.0",
        "meterbench/session/schemas/session-v1.json",
    ):
        assert needed in names, needed
    assert any(n.startswith("meterbench/calibration/data/") and n.endswith(".json") for n in names)
