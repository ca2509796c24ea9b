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


SAMPLE = ROOT / "samples" / "sim-bench.toml"


def _doctor(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meterbench", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _real_bench(tmp_path: Path, ports: tuple[str, str], mqtt_port: int, sources: tuple[str, str]) -> Path:
    """The sample as a real bench: no [simulator], its devices, broker and cameras named."""
    text = SAMPLE.read_text()
    text = text[text.index("\n[bench]\n") : text.index("\n[simulator]\n")] + text[text.index("\n[mqtt]\n") :]
    text = text.replace("port = 0 ", f"port = {mqtt_port}\ninsecure = true ")  # a test broker: no TLS
    for port in ports:
        text = text.replace('port = "sim"', f'port = "{port}"', 1)
    for source in sources:
        text = text.replace('source = "sim"', f'source = "{source}"', 1)
    config = tmp_path / "bench.toml"
    config.write_text(text)
    return config


def _free_port() -> int:
    with socket.socket() as probe:  # a loopback port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sample_bench_has_no_problems_its_simulated_parts_are_named():
    result = _doctor(SAMPLE)
    assert result.returncode == 0, result.stdout
    assert "PROBLEM" not in result.stdout and "everything looks fine" in result.stderr
    findings = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    for name in ("serial ref-meter", "serial flow-computer", "MQTT broker", "camera cam-M1", "camera cam-M2"):
        assert findings[f"ok       {name}"].startswith("simulated ([simulator]"), name
    assert findings["ok       bench configuration"].endswith("simulated bench)")


@pytest.mark.network
@pytest.mark.serial
def test_real_ports_are_opened_a_plain_file_is_not_a_port(tmp_path, pty_pair, mosquitto_broker):
    import cv2
    import numpy as np

    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    config = _real_bench(
        tmp_path, (pty_pair.a, "/etc/passwd"), mosquitto_broker.port, (str(video), str(tmp_path / "gone.mp4"))
    )
    findings = {c.name: c for c in health.check_bench(config)}
    assert findings["bench configuration"].ok and "simulated" not in findings["bench configuration"].detail
    assert findings["serial ref-meter"].ok
    assert findings["serial ref-meter"].detail == f"{pty_pair.a} opens as a serial port at 115200 bit/s"
    flow_computer = findings["serial flow-computer"]
    assert not flow_computer.ok
    assert flow_computer.detail.startswith("/etc/passwd cannot be opened as a serial port: Could not configure port")
    assert (
        findings["MQTT broker"].ok and f"127.0.0.1:{mosquitto_broker.port} reachable" == findings["MQTT broker"].detail
    )
    assert findings["camera cam-M1"].ok and findings["camera cam-M1"].detail == f"{video}: gives 64x48 px frames"
    assert not findings["camera cam-M2"].ok and "gone.mp4" in findings["camera cam-M2"].detail
    assert sum(not c.ok for c in findings.values()) == 2


def test_bench_checks_name_missing_port_and_unreachable_broker(tmp_path):
    port = _free_port()
    config = _real_bench(tmp_path, ("/dev/ttyNOPE0", "/dev/ttyNOPE1"), port, ("0", "1"))
    findings = {c.name: c for c in health.check_bench(config)}
    assert not findings["serial ref-meter"].ok
    assert findings["serial ref-meter"].detail == "/dev/ttyNOPE0 does not exist: is the device plugged in?"
    assert not findings["MQTT broker"].ok and f"cannot reach 127.0.0.1:{port}" in findings["MQTT broker"].detail
    result = _doctor(config)
    assert result.returncode == 1
    assert "PROBLEM  serial flow-computer: /dev/ttyNOPE1 does not exist" in result.stdout


def test_doctor_and_bench_agree_on_what_is_valid(tmp_path):
    from meterbench.bench import BenchConfigError, load_bench_config

    config = tmp_path / "bench.toml"
    config.write_text(SAMPLE.read_text().replace("baudrate = 115200", 'baudrate = "fast"\nparity = "N"'))
    with pytest.raises(BenchConfigError) as refused:
        load_bench_config(config)
    findings = list(health.check_bench(config))
    assert [c.detail for c in findings] == refused.value.problems and len(findings) == 2
    assert not any(c.ok for c in findings) and {c.name for c in findings} == {"bench configuration"}
    old_style = tmp_path / "old.toml"  # a partial config with a [[serial]] table: bench refuses it, so does doctor
    old_style.write_text('[mqtt]\nhost = "127.0.0.1"\n\n[[serial]]\nid = "ref"\nport = "/dev/ttyUSB0"\n')
    problems = [c.detail for c in health.check_bench(old_style) if not c.ok]
    assert any(p.startswith(f"{old_style}: serial: unknown key (expected one of bench, cameras,") for p in problems)
    assert f"{old_style}: test_plan: missing (expected an object)" in problems


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
        "meterbench/bench/schemas/bench-config-v1.json",
        "meterbench/certificates/schemas/lab-v1.json",
    ):
        assert needed in names, needed
    assert any(n.startswith("meterbench/calibration/data/") and n.endswith(".json") for n in names)
