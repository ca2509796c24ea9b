"""The bench's devices, ready-made for the engine.

``open_devices`` builds and starts the real drivers of :mod:`meterbench.devices`
(reference serial totaliser or Modbus flow computer, MQTT bench controller,
cameras) from a :class:`~meterbench.bench.config.BenchConfig`, each recording into
the session. With a ``[simulator]`` table it first starts the simulated bench
(a private Mosquitto broker, socat pty pairs and :class:`meterbench.sim.SimulatedBenchPeer`)
and points the ``"sim"`` ports, the camera sources ``"sim"`` and mqtt port 0 at it;
the drivers are the same in both cases. ``prepare_devices``, called before the session
is created, gives the config as the session must record it: with ``markerless = true`` it
draws each simulated camera's view without fiducials (reference photo, marker-free layout),
which ``open_devices`` then renders. This is the only module of the bench that imports
:mod:`meterbench.sim`: the engine never knows whether its bench is simulated.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from meterbench.bench.config import SIM, BenchConfig
from meterbench.devices.camera import CameraCapture
from meterbench.devices.modbus import ModbusTotaliserReader, RegisterField
from meterbench.devices.mqtt import BenchController, MqttConfig
from meterbench.devices.serial_totaliser import TotaliserReader
from meterbench.session import SessionRecorder, reference_image_path
from meterbench.vision.layout import RegisterLayout

__all__ = ["BenchDevices", "PreparedDevices", "Reader", "open_devices", "prepare_devices"]

Reader = TotaliserReader | ModbusTotaliserReader
"""A reference device: gives cumulative ``volume_l`` readings (``wait_for_reading``, ``last_t_s``)."""

Finisher = Callable[[SessionRecorder], dict[str, Any]]
FrameTap = Callable[[str, np.ndarray, float], None]
"""Told of each frame once it is recorded: (camera id, frame, t_s); must return at once (the live view's)."""

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


@dataclass(frozen=True)
class PreparedDevices:
    """What ``prepare_devices`` gives: the config as the session records it and, per camera id,
    what a simulated camera must show (opaque to the engine; handed on to ``open_devices``)."""

    config: BenchConfig
    camera_views: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _CameraView:
    """A simulated camera's view without fiducials, drawn before the session exists."""

    plate_register: dict  # the register the simulator renders (the layout the config named)
    view: Any  # meterbench.sim.MarkerlessView


@dataclass
class _Endpoints:
    """Where each device is: serial port per device id, the MQTT table, camera source per camera id."""

    ports: dict[str, str]
    mqtt: dict[str, Any]
    sources: dict[str, Any]
    finishers: list[Finisher] = field(default_factory=list)


def prepare_devices(cfg: BenchConfig) -> PreparedDevices:
    """Before the session is created: with ``[simulator] markerless = true``, draw each simulated
    camera's view without fiducials; its marker-free layout replaces the instrument's register and
    its reference photo goes into ``reference_images`` (the session's ``cameras/<id>-reference.png``);
    load_bench_config has refused a marker-free layout file there (the simulator renders only
    scenes it generated). Without it, ``cfg`` is returned as it is."""
    if cfg.simulator is None or not cfg.simulator.markerless:
        return PreparedDevices(cfg)
    from meterbench.sim import markerless_view

    drift_s = cfg.simulator.markerless_drift_s or _planned_flow_s(cfg)
    instruments = [dict(inst) for inst in cfg.instruments]
    reference_images = dict(cfg.reference_images)
    views: dict[str, _CameraView] = {}
    watched = {inst["camera"]: i for i, inst in enumerate(instruments)}
    for number, camera in enumerate(cfg.cameras):
        if camera["source"] != SIM:
            continue
        index = watched[camera["id"]]
        inst = instruments[index]
        view = markerless_view(
            RegisterLayout.from_dict(inst["register"]),
            np.random.default_rng([cfg.simulator.seed, number]),
            label=inst["id"],
            start_volume_l=_start_register_l(index),
            duration_s=drift_s,
            image=reference_image_path(camera["id"]),
        )
        views[camera["id"]] = _CameraView(plate_register=inst["register"], view=view)
        inst["register"] = view.register
        reference_images[camera["id"]] = view.photo
    config = replace(cfg, instruments=instruments, reference_images=reference_images)
    return PreparedDevices(config, views)


def _planned_flow_s(cfg: BenchConfig) -> float:
    """The test plan's time at flow (s): each point's volume at its flow rate."""
    return sum(p.volume_l / (p.flow_rate_m3h / 3.6) for p in cfg.points)


def _start_register_l(meter_index: int) -> float:
    """A simulated meter's register at the start (L): distinct per meter."""
    return 100.0 + 37.1 * meter_index


def open_devices(
    cfg: BenchConfig,
    recorder: SessionRecorder,
    stack: ExitStack,
    camera_views: Mapping[str, Any] | None = None,
    frame_tap: FrameTap | None = None,
) -> BenchDevices:
    """Open and start every device of ``cfg`` (simulated ones first brought up); ``stack`` stops them.
    ``camera_views``: ``prepare_devices``'s, for the simulated cameras; ``frame_tap``: told of each
    recorded frame (see :data:`FrameTap`)."""
    endpoints = _Endpoints(
        ports={d["id"]: d["port"] for d in cfg.devices},
        mqtt=dict(cfg.mqtt),
        sources={c["id"]: c["source"] for c in cfg.cameras},
    )
    if cfg.simulator is not None:
        _start_simulated_bench(cfg, endpoints, stack, camera_views or {})
    readers = [_reader(d, endpoints.ports[d["id"]], recorder, stack) for d in cfg.devices]
    controller = BenchController(
        MqttConfig.from_dict(endpoints.mqtt, f"{cfg.path}: [mqtt]"),
        recorder.device_log("controller", "mqtt"),
        recorder.now_s,
    )
    controller.start()
    stack.callback(controller.stop)
    cameras = [_camera(c, endpoints.sources[c["id"]], recorder, stack, frame_tap) for c in cfg.cameras]
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


class _TappedWriter:
    """A camera writer that, once a frame is written, hands it to ``tap`` (which returns at once)."""

    def __init__(self, writer: Any, camera_id: str, tap: FrameTap) -> None:
        self._writer = writer
        self._camera_id = camera_id
        self._tap = tap

    def write(self, frame: np.ndarray, t_s: float) -> int:
        index = self._writer.write(frame, t_s)
        self._tap(self._camera_id, frame, t_s)
        return index


def _camera(
    camera: dict[str, Any], source: Any, recorder: SessionRecorder, stack: ExitStack, tap: FrameTap | None = None
) -> CameraCapture:
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
    sink = writer if tap is None else _TappedWriter(writer, camera["id"], tap)
    capture = CameraCapture(camera["id"], source, sink, recorder.now_s, fps=fps).start()
    stack.callback(capture.stop)
    return capture


def _start_simulated_bench(
    cfg: BenchConfig, endpoints: _Endpoints, stack: ExitStack, camera_views: Mapping[str, _CameraView]
) -> None:
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
        SimMeter(inst["id"], error_pct, _start_register_l(i))
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
            drawn = camera_views.get(camera["id"])
            if drawn is None:
                endpoints.sources[camera["id"]] = peer.camera(meter, cfg.instruments[meter]["register"])
            else:  # the view whose photo and layout the session holds
                endpoints.sources[camera["id"]] = peer.camera(
                    meter, drawn.plate_register, camera_id=camera["id"], view=drawn.view
                )

    def finish(recorder: SessionRecorder) -> dict[str, Any]:
        recorder.write_truth(peer.truth_json())
        return {"simulator_sent": {key: value for key, value in vars(peer.counts).items() if key != "sent"}}

    endpoints.finishers.append(finish)
