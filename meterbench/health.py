"""`meterbench doctor`: check an installation (and a bench's devices) and say plainly what is wrong."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "run_checks", "doctor"]

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


def check_bench(config_path: Path) -> Iterator[Check]:
    """Cameras, serial ports and the MQTT broker named in a bench configuration."""
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        yield Check("bench configuration", False, f"{config_path}: {exc}")
        return
    yield Check("bench configuration", True, str(config_path))
    for device in _iter_tables(config, ("serial", "devices")):
        port = device.get("port")
        if port and not port.startswith(("socket://", "loop://")):
            ok = os.path.exists(port)
            yield Check(
                f"serial {device.get('id', port)}",
                ok,
                port if ok else f"{port} does not exist: is the reference meter plugged in?",
            )
    mqtt = config.get("mqtt", {})
    if mqtt:
        host, port = mqtt.get("host", "127.0.0.1"), int(mqtt.get("port", 1883))
        error = _reachable(host, port)
        yield Check(
            "MQTT broker",
            error is None,
            f"{host}:{port} reachable" if error is None else f"cannot reach {host}:{port}: {error}",
        )
    for camera in _iter_tables(config, ("cameras",)):
        source = camera.get("source")
        if isinstance(source, str) and not source.startswith(("rtsp://", "http://", "https://")):
            ok = Path(source).exists()
            yield Check(f"camera {camera.get('id', source)}", ok, source if ok else f"{source} does not exist")


def _iter_tables(config: dict, keys: tuple[str, ...]) -> Iterator[dict]:
    for key in keys:
        value = config.get(key)
        if isinstance(value, list):
            yield from (v for v in value if isinstance(v, dict))
        elif isinstance(value, dict):
            for name, table in value.items():
                if isinstance(table, dict):
                    yield {"id": name, **table}


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
