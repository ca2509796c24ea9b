"""`meterbench bench`: run a live test sequence from BENCH.toml and verify what it recorded.

For each point of the plan: set the flow, wait until it holds within its window,
flying start (the controller latches the reference totaliser), pass the test
volume, flying stop, next. Everything (totaliser lines, controller messages,
camera frames) goes into a session folder as it arrives; at the end
``run_session`` computes the report from that folder, so a live run and
``meterbench run`` on its session give the same report. Ctrl-C, SIGTERM or a
device failure puts the valves in the safe state (inlet closed, bypass open,
set point 0), closes the session with the reason in session.json and raises
``BenchStopped`` saying what happened.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import time
import tomllib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterbench.devices.camera import CameraCapture
from meterbench.devices.modbus import ModbusTotaliserReader, RegisterField
from meterbench.devices.mqtt import BenchController, MqttConfig
from meterbench.devices.serial_totaliser import TotaliserReader
from meterbench.errors import DeviceError
from meterbench.session.writer import SessionRecorder

DEVICE_KINDS = ("serial-totaliser", "modbus")

__all__ = ["run_bench", "load_bench_config", "BenchStopped"]

L_PER_M3 = 1000.0
S_PER_H = 3600.0


_LOG = logging.getLogger("meterbench.bench")


class BenchStopped(DeviceError):
    """The sequence stopped before its end (signal or device failure); the flow is safe."""


@dataclass
class PointPlan:
    """One test point: name, flow (m³/h), test volume (L), flow window (± %)."""

    name: str
    flow_rate_m3h: float
    volume_l: float
    window_pct: float = 2.5


@dataclass
class SequenceOptions:
    """Timing of the sequence (s) and the stability rule."""

    stable_hold_s: float = 2.0
    stable_timeout_s: float = 60.0
    command_timeout_s: float = 5.0
    device_timeout_s: float = 5.0
    point_timeout_factor: float = 3.0
    out_of_window_s: float = 1.0
    max_point_attempts: int = 2


@dataclass
class BenchConfig:
    """BENCH.toml, checked."""

    path: Path
    session_id: str
    bench_id: str
    mqtt: dict[str, Any]
    devices: list[dict[str, Any]]
    instruments: list[dict]
    reference_instruments: list[dict]
    cameras: list[dict]
    points: list[PointPlan]
    decision_rule: str = "simple"
    options: SequenceOptions = field(default_factory=SequenceOptions)
    simulator: dict[str, Any] | None = None


def _need(table: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in table:
        raise ValueError(f"{where}: '{key}' is required")
    if not isinstance(table[key], kind):
        raise ValueError(f"{where}.{key}: expected {kind}, got {table[key]!r}")
    return table[key]


def load_bench_config(path: Path) -> BenchConfig:
    """Read and check BENCH.toml; errors name the file and the field."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not valid TOML: {exc}") from exc
    bench = _need(data, "bench", where, dict)
    bench_id = _need(bench, "id", f"{where}: [bench]", str)
    session_id = bench.get("session_id") or f"bench-{bench_id}-{time.strftime('%Y%m%dT%H%M%S')}"
    devices = _need(data, "devices", where, list)
    for i, device in enumerate(devices):
        device_id = _need(device, "id", f"{where}: devices[{i}]", str)
        _need(device, "port", f"{where}: [[devices]] {device_id}", str)
        if device.get("kind") not in DEVICE_KINDS:
            raise ValueError(
                f"{where}: [[devices]] {device_id}.kind: expected one of "
                f"{list(DEVICE_KINDS)}, got {device.get('kind')!r}"
            )
        if device["kind"] == "modbus":
            _check_fields(
                _need(device, "fields", f"{where}: [[devices]] {device_id}", list),
                f"{where}: [[devices]] {device_id}.fields",
            )
    references = _need(data, "reference_instruments", where, list)
    reference_device = references[0].get("device") if references else None
    if reference_device not in [d["id"] for d in devices]:
        raise ValueError(
            f"{where}: reference_instruments[0].device: expected the id of one of "
            f"the [[devices]], got {reference_device!r}"
        )
    points = []
    for i, p in enumerate(_need(_need(data, "test_plan", where, dict), "points", where, list)):
        at = f"{where}: test_plan.points[{i}]"
        points.append(
            PointPlan(
                _need(p, "name", at, str),
                float(_need(p, "flow_rate_m3h", at, (int, float))),
                float(_need(p, "volume_l", at, (int, float))),
                float(p.get("window_pct", 2.5)),
            )
        )
    sequence = bench.get("sequence", {})
    unknown = sorted(set(sequence) - set(SequenceOptions.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"{where}: [bench.sequence]: unknown keys {unknown}, expected some of "
            f"{sorted(SequenceOptions.__dataclass_fields__)}"
        )
    options = SequenceOptions(**sequence)
    instruments = _need(data, "instruments", where, list)
    _check_sim_use(data, where)
    for i, inst in enumerate(instruments):
        if isinstance(inst.get("register"), str):
            inst["register"] = _named_register(inst["register"], f"{where}: instruments[{i}]")
    return BenchConfig(
        Path(path),
        session_id,
        bench_id,
        _need(data, "mqtt", where, dict),
        devices,
        instruments,
        references,
        data.get("cameras", []),
        points,
        bench.get("decision_rule", "simple"),
        options,
        data.get("simulator"),
    )


def _check_fields(fields: list, where: str) -> None:
    known = set(RegisterField.__dataclass_fields__)
    for i, field_table in enumerate(fields):
        if not isinstance(field_table, dict) or not {"name", "address"} <= set(field_table) or set(field_table) - known:
            raise ValueError(
                f"{where}[{i}]: expected a table with name, address and some of {sorted(known)}, got {field_table!r}"
            )


def _check_sim_use(data: dict, where: str) -> None:
    """``"sim"`` ports and camera sources need a [simulator]; sim cameras need their meter."""
    uses = [f"[[devices]] {d.get('id')}" for d in data.get("devices", []) if d.get("port") == "sim"]
    uses += [f"[[cameras]] {c.get('id')}" for c in data.get("cameras", []) if c.get("source") == "sim"]
    if uses and "simulator" not in data:
        raise ValueError(f'{where}: {", ".join(uses)} use "sim" but there is no [simulator]')
    watched = {i.get("camera") for i in data.get("instruments", [])}
    for camera in data.get("cameras", []):
        if camera.get("source") == "sim" and camera.get("id") not in watched:
            raise ValueError(
                f"{where}: [[cameras]] {camera.get('id')}: a simulated camera must "
                "be the camera of one of the [[instruments]]"
            )


def _named_register(name: str, where: str) -> dict:
    from meterbench.vision.layout import default_register_layout

    match = re.fullmatch(r"default-(dials|wheels)", name)
    if match is None:
        raise ValueError(f"{where}.register: expected a table or 'default-dials'/'default-wheels', got {name!r}")
    return default_register_layout(match.group(1))


def _manifest(cfg: BenchConfig) -> dict:
    return {
        "session_id": cfg.session_id,
        "bench_kind": "water-meter",
        "instruments": cfg.instruments,
        "tanks": [],
        "reference_instruments": cfg.reference_instruments,
        "test_plan": {
            "points": [{"name": p.name, "flow_rate_m3h": p.flow_rate_m3h, "volume_l": p.volume_l} for p in cfg.points]
        },
        "decision_rule": cfg.decision_rule,
        "bench": {"config": cfg.path.name, "bench_id": cfg.bench_id, "live": True},
    }


@contextmanager
def _signals_raise():
    """SIGTERM raises KeyboardInterrupt like Ctrl-C (main thread only), restored after."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Bench:
    """The live devices of one run and the steps of the sequence."""

    def __init__(self, cfg: BenchConfig, recorder: SessionRecorder, stack: ExitStack, sim: Any = None) -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.clock = recorder.now_s
        self.log: list[str] = []
        self.started_t_s = self.clock()
        self.readers = [self._device(d, sim, stack) for d in cfg.devices]
        reference_id = cfg.reference_instruments[0]["device"]
        self.reference = next(r for r in self.readers if r.name == reference_id)
        mqtt_table = dict(cfg.mqtt)
        if sim is not None and mqtt_table.get("port") == 0:
            mqtt_table["port"] = sim.broker.port
        mqtt_table.setdefault("bench_id", cfg.bench_id)
        self.controller = BenchController(
            MqttConfig.from_dict(mqtt_table, f"{cfg.path}: [mqtt]"),
            recorder.device_log("controller", "mqtt"),
            self.clock,
        )
        self.controller.start()
        stack.callback(self.controller.stop)
        self.cameras = [self._camera(c, i, sim, stack) for i, c in enumerate(cfg.cameras)]

    def _device(self, device: dict, sim: Any, stack: ExitStack) -> TotaliserReader | ModbusTotaliserReader:
        """Open and start one reference device (serial totaliser or Modbus flow computer)."""
        port = sim.port_for(device["kind"]) if sim is not None and device["port"] == "sim" else device["port"]
        log = self.recorder.device_log(device["id"], device["kind"])
        if device["kind"] == "serial-totaliser":
            reader: Any = TotaliserReader(
                port,
                log,
                self.clock,
                name=device["id"],
                baudrate=int(device.get("baudrate", 9600)),
                silence_s=float(device.get("silence_s", 2.0)),
                pulse_volume_l=device.get("pulse_volume_l"),
            )
        else:
            fields = [RegisterField(**f) for f in device["fields"]]
            reader = ModbusTotaliserReader(
                port,
                log,
                self.clock,
                fields,
                name=device["id"],
                slave=int(device.get("slave", 1)),
                function=int(device.get("function", 4)),
                baudrate=int(device.get("baudrate", 19200)),
                interval_s=float(device.get("interval_s", 0.2)),
            )
        stack.callback(reader.stop)
        reader.start()
        return reader

    def _camera(self, cam: dict, index: int, sim: Any, stack: ExitStack) -> CameraCapture:
        source = cam["source"]
        if source == "sim":
            meter = next(i for i, inst in enumerate(self.cfg.instruments) if inst.get("camera") == cam["id"])
            source = sim.peer.camera(meter, self.cfg.instruments[meter]["register"])
        width, height, _ = CameraCapture.probe(source)
        fps = float(cam.get("fps", 10.0))
        writer = self.recorder.camera_writer(
            cam["id"],
            fps,
            (width, height),
            kind="images",
            image_format=cam.get("image_format", "jpg"),
            quality=int(cam.get("quality", 90)),
        )
        capture = CameraCapture(cam["id"], source, writer, self.clock, fps=fps).start()
        stack.callback(capture.stop)
        return capture

    def say(self, text: str) -> None:
        t_s = self.clock()
        self.log.append(f"{t_s:9.3f} s  {text}")
        _LOG.info(text, extra={"t_s": round(t_s, 3), "bench_id": self.cfg.bench_id})

    def check_devices(self) -> None:
        """Raise DeviceError when a device has failed (silent reference, dead camera)."""
        t = self.clock()
        last = self.reference.last_t_s
        if t - (self.started_t_s if last is None else last) > self.cfg.options.device_timeout_s:
            raise DeviceError(
                f"reference device {self.reference.name}: no valid reading for {self.cfg.options.device_timeout_s:g} s"
            )
        for camera in self.cameras:
            if camera.error or camera.finished.is_set():
                raise DeviceError(camera.error or f"camera {camera.camera_id}: stopped giving frames")

    def wait_stable(self, point: PointPlan) -> None:
        """Wait until telemetry flow stays within ±window of the set point for the hold time."""
        opts = self.cfg.options
        lo, hi = (point.flow_rate_m3h * (1 + s * point.window_pct / 100) for s in (-1, 1))
        deadline = self.clock() + opts.stable_timeout_s
        since: float | None = None
        while self.clock() < deadline:
            got = self.controller.wait_telemetry(self.controller.telemetry_t_s or -1e9, 1.0)
            self.check_devices()
            if got is None:
                continue
            t, telemetry = got
            if lo <= telemetry["flow_m3h"] <= hi:
                since = t if since is None else since
                if t - since >= opts.stable_hold_s:
                    return
            else:
                since = None
        raise DeviceError(
            f"point {point.name}: flow not stable within ±{point.window_pct:g} % "
            f"of {point.flow_rate_m3h:g} m3/h after {opts.stable_timeout_s:g} s"
        )

    def run_point(self, point: PointPlan) -> None:
        """Set flow, wait stable, flying start, pass the volume, flying stop.

        A flow leaving its window during the point ends that attempt (flying stop)
        and the point is run again from stable flow; run_session uses the last
        start/stop pair. After ``max_point_attempts`` the sequence stops.
        """
        opts = self.cfg.options
        self.controller.set_flow(point.flow_rate_m3h).wait(opts.command_timeout_s)
        self.say(f"{point.name}: flow set point {point.flow_rate_m3h:g} m3/h")
        for attempt in range(1, opts.max_point_attempts + 1):
            self.wait_stable(point)
            if self._pass_volume(point):
                return
            self.say(f"{point.name}: attempt {attempt} void, flow left ±{point.window_pct:g} %")
        raise DeviceError(f"point {point.name}: flow did not hold its window in {opts.max_point_attempts} attempts")

    def _in_window(self, point: PointPlan) -> bool:
        flow = (self.controller.telemetry or {}).get("flow_m3h", point.flow_rate_m3h)
        return abs(flow - point.flow_rate_m3h) <= point.flow_rate_m3h * point.window_pct / 100

    def _pass_volume(self, point: PointPlan) -> bool:
        """Flying start, wait for the test volume, flying stop; False if the flow left its
        window for more than ``out_of_window_s`` meanwhile."""
        opts = self.cfg.options
        _, start = self.controller.latch("start", point.name, opts.command_timeout_s)
        start_l = float(start["reference_volume_l"])
        self.say(f"{point.name}: flying start at reference {start_l:.4f} L")
        flow_l_s = point.flow_rate_m3h * L_PER_M3 / S_PER_H
        deadline = self.clock() + opts.point_timeout_factor * point.volume_l / flow_l_s + 10.0
        out_since: float | None = None
        while True:
            line = self.reference.wait_for_reading(self.reference.last_t_s or -1e9, 0.5)
            self.check_devices()
            if line is not None and line["volume_l"] - start_l >= point.volume_l:
                break
            if self._in_window(point):
                out_since = None
            else:
                out_since = self.clock() if out_since is None else out_since
                if self.clock() - out_since > opts.out_of_window_s:
                    self.controller.latch("stop", point.name, opts.command_timeout_s)
                    return False
            if self.clock() > deadline:
                raise DeviceError(f"point {point.name}: {point.volume_l:g} L not passed in time")
        _, stop = self.controller.latch("stop", point.name, opts.command_timeout_s)
        self.say(f"{point.name}: flying stop, {stop['reference_volume_l'] - start_l:.4f} L")
        return True

    def open_flow_path(self) -> None:
        """Valves for a run: outlet open, inlet open, bypass closed."""
        timeout = self.cfg.options.command_timeout_s
        for valve, state in (("outlet", "open"), ("inlet", "open"), ("bypass", "closed")):
            self.controller.set_valve(valve, state).wait(timeout)

    def safe_state(self) -> list[str]:
        """Flow set point 0, inlet closed, bypass open; return what could not be done."""
        failures = []
        for action in (
            lambda: self.controller.set_flow(0.0),
            lambda: self.controller.set_valve("inlet", "closed"),
            lambda: self.controller.set_valve("bypass", "open"),
        ):
            try:
                action().wait(self.cfg.options.command_timeout_s)
            except (DeviceError, ValueError) as exc:
                failures.append(str(exc))
        return failures


class _SimInfrastructure:
    """Broker, pty pair and simulated bench peer for a [simulator] config."""

    def __init__(self, cfg: BenchConfig, workdir: Path, stack: ExitStack) -> None:
        from meterbench.sim import SimMeter, SimulatedBenchPeer
        from meterbench.testing import MosquittoBroker, SocatPtyPair

        sim = cfg.simulator or {}
        self.broker = MosquittoBroker(workdir / "mosquitto").start()
        stack.callback(self.broker.stop)
        self.pty = SocatPtyPair(workdir, "totaliser").plug()
        stack.callback(self.pty.unplug)
        self.modbus_pty = None
        if any(d["kind"] == "modbus" and d["port"] == "sim" for d in cfg.devices):
            self.modbus_pty = SocatPtyPair(workdir, "modbus").plug()
            stack.callback(self.modbus_pty.unplug)
        errors = sim.get("true_error_pct", [0.0] * len(cfg.instruments))
        meters = [
            SimMeter(inst["id"], float(err), float(100.0 + 37.1 * i))
            for i, (inst, err) in enumerate(zip(cfg.instruments, errors, strict=True))
        ]
        self.peer = SimulatedBenchPeer(
            self.pty.b,
            "127.0.0.1",
            self.broker.port,
            cfg.bench_id,
            meters,
            seed=int(sim.get("seed", 0)),
            modbus_port=self.modbus_pty.b if self.modbus_pty else None,
            disturbances=[
                (float(d["after_start_s"]), float(d["duration_s"]), float(d["factor"]))
                for d in sim.get("disturbances", [])
            ],
        )
        self.peer.start()
        stack.callback(self.peer.stop)

    def port_for(self, kind: str) -> str:
        """The meterbench end of the simulated serial link for a device ``kind``."""
        if kind == "modbus":
            assert self.modbus_pty is not None
            return self.modbus_pty.a
        return self.pty.a


def _run_sequence(bench: _Bench, cfg: BenchConfig) -> None:
    bench.say(f"session {cfg.session_id}: {len(cfg.points)} points")
    bench.open_flow_path()
    for point in cfg.points:
        bench.run_point(point)
    bench.say("sequence complete")


def run_bench(config_path: Path, out_dir: Path) -> dict:
    """Run the bench described by ``config_path``; session and report.json go under ``out_dir``.

    Returns the report (as ``run_session`` writes it) plus ``"bench"``: device counts and
    the sequence log. Raises BenchStopped (flow made safe, session closed) when stopped.
    """
    cfg = load_bench_config(Path(config_path))
    out_dir = Path(out_dir)
    session_dir = out_dir / cfg.session_id
    stopped: str | None = None
    summary: dict[str, Any] = {}
    with ExitStack() as stack:
        sim = _SimInfrastructure(cfg, out_dir / ".sim", stack) if cfg.simulator else None
        recorder = SessionRecorder.create(session_dir, _manifest(cfg))
        stack.callback(recorder.close)
        bench: _Bench | None = None
        try:
            with _signals_raise():
                bench = _Bench(cfg, recorder, stack, sim)
                _run_sequence(bench, cfg)
        except KeyboardInterrupt as exc:
            stopped = f"interrupted ({exc or 'SIGINT'})"
        except DeviceError as exc:
            stopped = f"device failure: {exc}"
        failures = bench.safe_state() if bench is not None else []
        if bench is not None:
            time.sleep(0.5)  # let the last frames and lines of the safe state arrive
            summary = _summary(bench, sim)
        if stopped is not None:
            summary["safe_state_failures"] = failures
        recorder.update_manifest(
            {
                "stopped_reason": stopped or "completed",
                "exit_status": "success" if stopped is None else "abort",
                "bench_log": summary.get("log", []),
            }
        )
        if sim is not None:
            recorder.write_truth(sim.peer.truth_json())
    out_dir.mkdir(parents=True, exist_ok=True)
    if sim is not None:
        summary["simulator_sent"] = _peer_counts(sim.peer)
    (out_dir / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    if stopped is not None:
        unsafe = "; safe state NOT confirmed: " + "; ".join(failures) if failures else "; valves set to safe state"
        raise BenchStopped(f"stopped: {stopped}{unsafe}; session saved in {session_dir}")
    from meterbench.verify.run import run_session

    report = run_session(session_dir, out_dir)
    report["bench"] = summary
    return report


def _summary(bench: _Bench, sim: Any) -> dict[str, Any]:
    ctl = bench.controller.counts
    return {
        "log": bench.log,
        "devices": {r.name: dict(vars(r.counts)) for r in bench.readers},
        "controller": {k: v for k, v in vars(ctl).items()},
        "cameras": {c.camera_id: vars(c.counts) for c in bench.cameras},
    }


def _peer_counts(peer: Any) -> dict[str, Any]:
    return dict(vars(peer.counts))
