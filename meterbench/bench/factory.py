"""The bench's devices, ready-made for the engine.

``open_devices`` builds and starts the real drivers of :mod:`meterbench.devices`
(reference serial totaliser or Modbus flow computer, MQTT bench controller,
cameras) from a :class:`~meterbench.bench.config.BenchConfig`, each recording into
the session. With a ``[simulator]`` table it first starts the simulated bench
(a private Mosquitto broker, socat pty pairs and :class:`meterbench.sim.SimulatedBenchPeer`)
and points the ``"sim"`` ports, the camera sources ``"sim"`` and mqtt port 0 at it;
the drivers are the same in both cases. This is the only module of the bench that
imports :mod:`meterbench.sim`: the engine never knows whether its bench is simulated.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterbench.bench.config import SIM, BenchConfig
from meterbench.devices.camera import CameraCapture
from meterbench.devices.modbus import ModbusTotaliserReader, RegisterField
from meterbench.devices.mqtt import BenchController, MqttConfig
from meterbench.devices.serial_totaliser import TotaliserReader
from meterbench.session import SessionRecorder

__all__ = ["BenchDevices", "Reader", "open_devices"]

Reader = TotaliserReader | ModbusTotaliserReader
"""A reference device: gives cumulative ``volume_l`` readings (``wait_for_reading``, ``last_t_s``)."""

Finisher = Callable[[SessionRecorder], dict[str, Any]]

# BENCH.toml keys passed as they are to each driver (the driver's defaults apply to the others)
_DRIVER_OPTIONS = {
    "serial-totaliser": ("baudrate", "silence_s", "pulse_volume_l"),
    "modbus": ("slave", "function", "baudrate", "interval_s", "timeout_s", "word_order"),
}


@dataclass
class BenchDevices:
    """The started devices of one run; they stop when the ExitStack given to ``open_devices`` closes."""

    readers: list[Reader]
    reference: Reader
    controller: BenchController
    cameras: list[CameraCapture]
    finishers: list[Finisher] = field(default_factory=list)

    def finish(self, recorder: SessionRecorder) -> dict[str, Any]:
        """Once the sequence has ended: let the device side add to the session (a simulated bench
        writes truth.json) and return what it adds to bench.json."""
        extra: dict[str, Any] = {}
        for finisher in self.finishers:
            extra.update(finisher(recorder))
        return extra


@dataclass
class _Endpoints:
    """Where each device is: serial port per device id, the MQTT table, camera source per camera id."""

    ports: dict[str, str]
    mqtt: dict[str, Any]
    sources: dict[str, Any]
    finishers: list[Finisher] = field(default_factory=list)


def open_devices(cfg: BenchConfig, recorder: SessionRecorder, stack: ExitStack) -> BenchDevices:
    """Open and start every device of ``cfg`` (simulated ones first brought up); ``stack`` stops them."""
    endpoints = _Endpoints(
        ports={d["id"]: d["port"] for d in cfg.devices},
        mqtt=dict(cfg.mqtt),
        sources={c["id"]: c["source"] for c in cfg.cameras},
    )
    if cfg.simulator is not None:
        _start_simulated_bench(cfg, endpoints, stack)
    readers = [_reader(d, endpoints.ports[d["id"]], recorder, stack) for d in cfg.devices]
    controller = BenchController(
        MqttConfig.from_dict(endpoints.mqtt, f"{cfg.path}: [mqtt]"),
        recorder.device_log("controller", "mqtt"),
        recorder.now_s,
    )
    controller.start()
    stack.callback(controller.stop)
    cameras = [_camera(c, endpoints.sources[c["id"]], recorder, stack) for c in cfg.cameras]
    return BenchDevices(
        readers=readers,
        reference=next(r for r in readers if r.name == cfg.reference_device_id),
        controller=controller,
        cameras=cameras,
        finishers=endpoints.finishers,
    )


def _reader(device: dict[str, Any], port: str, recorder: SessionRecorder, stack: ExitStack) -> Reader:
    """Open and start one reference device (serial totaliser or Modbus flow computer)."""
    kind = device["kind"]
    log = recorder.device_log(device["id"], kind)
    options = {key: device[key] for key in _DRIVER_OPTIONS[kind] if key in device}
    if kind == "serial-totaliser":
        reader: Reader = TotaliserReader(port, log, recorder.now_s, name=device["id"], **options)
    else:
        fields = [RegisterField(**f) for f in device["fields"]]
        reader = ModbusTotaliserReader(port, log, recorder.now_s, fields, name=device["id"], **options)
    stack.callback(reader.stop)
    reader.start()
    return reader


def _camera(camera: dict[str, Any], source: Any, recorder: SessionRecorder, stack: ExitStack) -> CameraCapture:
    """Open one camera and start recording its frames (JPEG/PNG files) into the session."""
    width, height, _ = CameraCapture.probe(source)
    fps = float(camera.get("fps", 10.0))
    writer = recorder.camera_writer(
        camera["id"],
        fps,
        (width, height),
        kind="images",
        image_format=camera.get("image_format", "jpg"),
        quality=int(camera.get("quality", 90)),
    )
    capture = CameraCapture(camera["id"], source, writer, recorder.now_s, fps=fps).start()
    stack.callback(capture.stop)
    return capture


def _start_simulated_bench(cfg: BenchConfig, endpoints: _Endpoints, stack: ExitStack) -> None:
    """Start broker, pty pairs and the simulated peer; point the "sim" endpoints at them."""
    from meterbench.sim import SimMeter, SimulatedBenchPeer
    from meterbench.testing import MosquittoBroker, SocatPtyPair

    assert cfg.simulator is not None
    workdir = Path(tempfile.mkdtemp(prefix="meterbench-sim-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)  # registered first: runs last
    broker = MosquittoBroker(workdir / "mosquitto").start()
    stack.callback(broker.stop)
    endpoints.mqtt["port"] = broker.port
    simulated = {d["kind"]: d["id"] for d in cfg.devices if d["port"] == SIM}  # one per kind at most
    peer_ports: dict[str, str | None] = {"modbus": None}
    # the peer always writes its totaliser lines; it serves Modbus only when a device asks for it
    for kind in ["serial-totaliser"] + (["modbus"] if "modbus" in simulated else []):
        pty = SocatPtyPair(workdir, kind).plug()
        stack.callback(pty.unplug)
        peer_ports[kind] = pty.b
        if kind in simulated:
            endpoints.ports[simulated[kind]] = pty.a
    meters = [
        SimMeter(inst["id"], error_pct, 100.0 + 37.1 * i)  # distinct start registers (L)
        for i, (inst, error_pct) in enumerate(zip(cfg.instruments, cfg.simulator.true_error_pct, strict=True))
    ]
    peer = SimulatedBenchPeer(
        str(peer_ports["serial-totaliser"]),
        "127.0.0.1",
        broker.port,
        cfg.bench_id,
        meters,
        seed=cfg.simulator.seed,
        modbus_port=peer_ports["modbus"],
        disturbances=[(d.after_start_s, d.duration_s, d.factor) for d in cfg.simulator.disturbances],
    )
    peer.start()
    stack.callback(peer.stop)
    watched = {inst["camera"]: i for i, inst in enumerate(cfg.instruments)}
    for camera in cfg.cameras:
        if camera["source"] == SIM:  # the config checked that a meter watches it
            meter = watched[camera["id"]]
            endpoints.sources[camera["id"]] = peer.camera(meter, cfg.instruments[meter]["register"])

    def finish(recorder: SessionRecorder) -> dict[str, Any]:
        recorder.write_truth(peer.truth_json())
        return {"simulator_sent": {key: value for key, value in vars(peer.counts).items() if key != "sent"}}

    endpoints.finishers.append(finish)
