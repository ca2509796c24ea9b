"""`meterbench doctor`: check an installation (and a bench's devices) and say plainly what is wrong."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "check_bench", "check_serial_port", "doctor", "run_checks"]

MODELS_DIR = Path(__file__).resolve().parent / "models"


@dataclass
class Check:
    """One finding: what was checked, whether it is fine, and what to do if not."""

    name: str
    ok: bool
    detail: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_models() -> Iterator[Check]:
    """Each shipped ONNX model exists, matches the hash in its sidecar and runs in ONNX Runtime."""
    for stem in ("digit_wheel", "pointer_dial"):
        model = MODELS_DIR / f"{stem}.onnx"
        if not model.is_file():
            yield Check(f"model {stem}", False, f"{model} is missing: reinstall meterbench")
            continue
        sidecar = model.with_suffix(".json")
        expected = json.loads(sidecar.read_text()).get("sha256") if sidecar.is_file() else None
        actual = _sha256(model)
        if expected and expected != actual:
            yield Check(
                f"model {stem}",
                False,
                f"{model.name} hash {actual[:12]} differs from its sidecar "
                f"{expected[:12]}: the file was changed or damaged",
            )
            continue
        yield Check(f"model {stem}", True, f"{model.name} sha256 {actual[:12]}")


def check_runtime() -> Iterator[Check]:
    """ONNX Runtime and OpenCV import, and the readers run one crop."""
    try:
        import cv2
        import numpy as np
        import onnxruntime

        yield Check("libraries", True, f"onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}")
    except ImportError as exc:
        yield Check("libraries", False, f"cannot import {exc.name}: pip install meterbench again")
        return
    try:
        from meterbench.models import DialReader, DigitReader

        crop = np.full((32, 20, 3), 255, np.uint8)
        for reader in (DigitReader(), DialReader()):
            reader.read([crop])
        yield Check("model inference", True, "digit and dial models answer on a test crop")
    except Exception as exc:  # report any failure in plain words
        yield Check("model inference", False, f"the models do not run: {exc}")


def _reachable(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return str(exc)


def check_serial_port(name: str, port: str, baudrate: int = 9600) -> Check:
    """Open ``port`` with pyserial (device path or pyserial URL) and close it again.

    Opening configures the line, so a plain file (``/etc/passwd``) or a missing device is a
    problem, and a real serial port or pseudo-terminal is fine.
    """
    import serial

    try:
        serial.serial_for_url(port, baudrate=baudrate, timeout=0).close()
    except (serial.SerialException, OSError, ValueError) as exc:
        if "://" not in port and not os.path.exists(port):
            return Check(name, False, f"{port} does not exist: is the device plugged in?")
        return Check(name, False, f"{port} cannot be opened as a serial port: {exc}")
    return Check(name, True, f"{port} opens as a serial port at {baudrate} bit/s")


def check_bench(config_path: Path) -> Iterator[Check]:
    """The bench configuration (the same loader as `meterbench bench`), then each device it names.

    Serial ports are opened, the MQTT broker is connected to, each camera gives one frame.
    Whatever a ``[simulator]`` table provides is reported as simulated, not checked.
    """
    from meterbench.bench import SIM, BenchConfigError, load_bench_config

    try:
        cfg = load_bench_config(config_path)
    except BenchConfigError as exc:
        yield from (Check("bench configuration", False, problem) for problem in exc.problems)
        return
    simulated = cfg.simulator is not None
    yield Check(
        "bench configuration",
        True,
        f"{config_path}: valid ({len(cfg.devices)} devices, {len(cfg.cameras)} cameras, "
        f"{len(cfg.instruments)} instruments, {len(cfg.points)} points{', simulated bench' if simulated else ''})",
    )
    if simulated:
        yield from _check_simulator_binaries()
    for device in cfg.devices:
        name = f"serial {device['id']}"
        if device["port"] == SIM:
            yield Check(name, True, "simulated ([simulator]: a socat pseudo-terminal pair)")
        else:
            yield check_serial_port(name, device["port"], device.get("baudrate", 9600))
    if simulated:  # the config checked that mqtt.port is 0: the simulator's private broker
        yield Check("MQTT broker", True, "simulated ([simulator]: a private mosquitto on a free port)")
    else:
        host, port = cfg.mqtt.get("host", "127.0.0.1"), cfg.mqtt.get("port", 1883)
        error = _reachable(host, port)
        yield Check(
            "MQTT broker",
            error is None,
            f"{host}:{port} reachable" if error is None else f"cannot reach {host}:{port}: {error}",
        )
        yield Check(  # the config loader refused a broker that is neither secure nor explicitly insecure
            "MQTT security",
            True,
            "TLS with a CA and a login or client certificate"
            if cfg.mqtt_security == "tls"
            else "INSECURE (insecure = true): any client on the broker could send telemetry and events; "
            "recorded in session.json and said in the report",
        )
    yield _check_free_space(cfg)
    for camera in cfg.cameras:
        yield _check_camera(camera["id"], camera["source"], simulated=camera["source"] == SIM)


def _check_free_space(cfg) -> Check:
    """Free space where runs go (the working folder: ``bench --out`` is not known here) against min_free_disk_mb."""
    import shutil

    free_mb = shutil.disk_usage(Path.cwd()).free / 1e6
    return Check(
        "free disk space",
        free_mb >= cfg.min_free_disk_mb,
        f"{free_mb:.0f} MB free under {Path.cwd()} (bench.min_free_disk_mb = {cfg.min_free_disk_mb:g} MB"
        f"{'' if free_mb >= cfg.min_free_disk_mb else ': a run would be refused'})",
    )


def _check_simulator_binaries() -> Iterator[Check]:
    """A simulated bench runs mosquitto and socat (Debian packages of the same names)."""
    from meterbench.errors import DeviceError
    from meterbench.testing import require_binary

    for binary in ("mosquitto", "socat"):
        try:
            yield Check(f"simulator {binary}", True, require_binary(binary))
        except DeviceError as exc:
            yield Check(f"simulator {binary}", False, str(exc))


def _check_camera(camera_id: str, source: str | int, *, simulated: bool) -> Check:
    """A camera gives one frame (device index, video file or stream URL); a simulated one is not opened."""
    name = f"camera {camera_id}"
    if simulated:
        return Check(name, True, "simulated ([simulator]: frames rendered from the simulated register)")
    from meterbench.devices.camera import CameraCapture
    from meterbench.errors import DeviceError

    try:
        width, height, _ = CameraCapture.probe(source)
    except DeviceError as exc:
        return Check(name, False, str(exc))
    return Check(name, True, f"{source}: gives {width}x{height} px frames")


def run_checks(config: Path | None = None) -> list[Check]:
    """All checks, in order."""
    groups: list[Callable[[], Iterator[Check]]] = [check_models, check_runtime]
    if config is not None:
        groups.append(lambda: check_bench(config))
    return [check for group in groups for check in group()]


def doctor(config: Path | None = None) -> int:
    """Print each check as 'ok' or 'PROBLEM'; exit status 1 when anything is wrong."""
    checks = run_checks(config)
    for check in checks:
        print(f"{'ok     ' if check.ok else 'PROBLEM'}  {check.name}: {check.detail}")
    problems = sum(not c.ok for c in checks)
    print("everything looks fine" if not problems else f"{problems} problem(s) found", file=sys.stderr)
    return 1 if problems else 0
