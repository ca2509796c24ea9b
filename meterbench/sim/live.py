"""The simulated bench as a live peer over the real transports.

``SimulatedBenchPeer`` plays a water-meter bench: a reference pulse totaliser
writing protocol lines into one end of a serial pseudo-terminal pair (socat),
optionally a Modbus RTU flow computer (``ModbusSlave``) on another pty, a
controller publishing telemetry and events to a Mosquitto broker and obeying
``cmd/valve``, ``cmd/flow_setpoint`` and ``cmd/point``, and one simulated camera
per meter (``SimulatedCamera``: frames rendered by ``sim_render.RegisterRenderer``
from the register state at the instant of capture). Registers advance with
``vision.layout.positions_from_volume`` and meters err as ``sim_bench.ErrorCurve``,
as in the offline simulator.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
import serial

from meterbench.devices.serial_totaliser import format_totaliser_line
from meterbench.session import reference_image_path
from meterbench.sim.markerless import (
    LightChange,
    PlateMotion,
    SceneUpset,
    frontal_camera,
    reference_layout,
    reference_photo,
    render_markerless,
)
from meterbench.sim.modbus_slave import ModbusSlave
from meterbench.sim.physics import ErrorCurve
from meterbench.sim.register_render import CameraModel, RegisterRenderer
from meterbench.vision.layout import RegisterLayout, positions_from_volume

L_PER_M3 = 1000.0
S_PER_H = 3600.0


@dataclass
class SimMeter:
    """One simulated meter: its true error curve vs flow and its register at the start (L).

    ``error`` is a ``sim_bench.ErrorCurve`` (the offline simulator's model) or a
    constant error in %.
    """

    id: str
    error: ErrorCurve | float
    initial_volume_l: float

    @property
    def curve(self) -> ErrorCurve:
        """Get the error curve (a constant error becomes a flat curve)."""
        if isinstance(self.error, ErrorCurve):
            return self.error
        return ErrorCurve(q_ref_m3h=1.0, coefficients=(float(self.error), 0.0, 0.0))


@dataclass
class PeerCounts:
    """What the peer sent (the reference for counting losses)."""

    serial_lines: int = 0
    serial_unsent: int = 0
    telemetry: int = 0
    events: int = 0
    frames: dict[str, int] = field(default_factory=dict)
    sent: dict[str, list[tuple[float, int]]] = field(
        default_factory=lambda: {"serial": [], "telemetry": [], "event": []}
    )
    """(``time.monotonic()``, seq) of every serial line written and every message published, per kind."""


class SimulatedBenchPeer:
    """A water-meter bench on the far side of the real transports.

    Flow follows the set point with a first-order lag ``flow_tau_s`` (s) while the
    inlet is open; the reference volume integrates it; meter i's register advances
    by the reference volume × its ``registration_factor(flow)`` (sim_bench's model). Every ``tick_s`` (s) the
    totaliser writes a line; telemetry goes out every ``telemetry_s`` (s). A latch
    command is served at the next tick: the line of that tick and the event carry
    the same volume. Payloads carry a ``seq`` so losses and duplicates show.
    ``disturbances``: ``(after_first_start_s, duration_s, flow_factor)`` upsets of the
    flow, to exercise the sequence's flow-window supervision.
    """

    def __init__(
        self,
        serial_port: str,
        mqtt_host: str,
        mqtt_port: int,
        bench_id: str,
        meters: list[SimMeter],
        *,
        seed: int = 0,
        pulse_volume_l: float = 0.0001,
        tick_s: float = 0.1,
        telemetry_s: float = 0.5,
        flow_tau_s: float = 0.8,
        baudrate: int = 115200,
        modbus_port: str | None = None,
        disturbances: list[tuple[float, float, float]] | None = None,
    ) -> None:
        self.serial_port = serial_port
        self.bench_id = bench_id
        self.meters = meters
        self.pulse_volume_l = pulse_volume_l
        self.tick_s = tick_s
        self.telemetry_s = telemetry_s
        self.flow_tau_s = flow_tau_s
        self.baudrate = baudrate
        self.disturbances = list(disturbances or [])
        self.modbus_port = modbus_port
        self.modbus: ModbusSlave | None = None
        self.counts = PeerCounts()
        self.truth: dict[str, list[dict]] = {m.id: [] for m in meters}
        self.valves = {"inlet": "closed", "outlet": "open", "bypass": "open"}
        self.setpoint_m3h = 0.0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._flow_l_s = 0.0
        self._volume_l = 0.0
        self._registers_l = [m.initial_volume_l for m in meters]
        self._factors = [1.0] * len(meters)
        self._curves = [m.curve for m in meters]
        self._t_last = time.monotonic()
        self._pending_latches: list[dict] = []
        self._first_start_t: float | None = None
        self._open_points: dict[str, tuple[float, list[float]]] = {}
        self._seq = {"serial": 0, "telemetry": 0, "event": 0}
        self._stable_since: float | None = None
        self._stable_sent = False
        self._serial: serial.SerialBase | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-bench", daemon=True)
        prefix = f"bench/{bench_id}"
        self._topics = {k: f"{prefix}/{k}" for k in ("telemetry", "event")}
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-controller-{bench_id}", clean_session=False
        )
        self._client.reconnect_delay_set(1, 2)
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = lambda c, *a: c.subscribe([(f"{prefix}/cmd/#", 1), (f"{prefix}/status", 1)])
        self.safe_stops = 0  # times meterbench's Last Will (status offline) made the peer stop the flow
        self._client.on_message = self._on_command
        self._mqtt_address = (mqtt_host, mqtt_port)

    # -- physics ------------------------------------------------------------------------
    def volume_at(self, t: float) -> float:
        """Reference volume in L at monotonic time ``t`` (s): exact, flow constant per tick."""
        with self._lock:
            return self._volume_l + self._flow_l_s * (t - self._t_last)

    def register_at(self, meter_index: int, t: float) -> float:
        """What meter ``meter_index``'s register shows (L) at monotonic time ``t`` (s)."""
        with self._lock:
            return self._registers_l[meter_index] + (self._flow_l_s * (t - self._t_last) * self._factors[meter_index])

    def _disturbance_factor(self, now: float) -> float:
        """Flow factor of a scripted disturbance (after the first flying start) at ``now``."""
        if self._first_start_t is None:
            return 1.0
        elapsed = now - self._first_start_t
        for after_s, duration_s, factor in self.disturbances:
            if after_s <= elapsed < after_s + duration_s:
                return factor
        return 1.0

    def _advance(self, now: float) -> None:
        with self._lock:
            passed_l = self._flow_l_s * (now - self._t_last)
            self._volume_l += passed_l
            for i, factor in enumerate(self._factors):
                self._registers_l[i] += passed_l * factor
            self._t_last = now
            target = self.setpoint_m3h * L_PER_M3 / S_PER_H if self.valves["inlet"] == "open" else 0.0
            target *= self._disturbance_factor(now)
            self._flow_l_s += (target - self._flow_l_s) * (1 - np.exp(-self.tick_s / self.flow_tau_s))
            if abs(target - self._flow_l_s) <= 0.002 * max(target, 1e-9):
                self._flow_l_s = target
            flow_m3h = self._flow_l_s * S_PER_H / L_PER_M3
            self._factors = [float(c.registration_factor(flow_m3h)) for c in self._curves]

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> SimulatedBenchPeer:
        """Connect to the broker, open the serial end, start ticking."""
        self._client.connect(*self._mqtt_address, keepalive=10)
        self._client.loop_start()
        self._open_serial()
        if self.modbus_port is not None:
            self.modbus = ModbusSlave(self.modbus_port)
            self.modbus.before_answer = self._refresh_modbus
            self._refresh_modbus()
            self.modbus.start()
        self._t_last = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking; disconnect; close the port."""
        self._stop.set()
        self._thread.join(timeout=3)
        deadline = time.monotonic() + 3.0  # let queued QoS 1 messages go out
        while self._client.want_write() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._client.disconnect()
        self._client.loop_stop()
        if self._serial is not None:
            self._serial.close()
        if self.modbus is not None:
            self.modbus.stop()

    def _refresh_modbus(self) -> None:
        """Flow computer registers as of now: 0-1 volume (L), 2-3 flow (L/h), float32."""
        assert self.modbus is not None
        self.modbus.set_value(0, self.volume_at(time.monotonic()), "float32")
        self.modbus.set_value(2, self._flow_l_s * S_PER_H, "float32")

    def _open_serial(self) -> None:
        try:
            self._serial = serial.serial_for_url(self.serial_port, baudrate=self.baudrate, write_timeout=1.0)
        except (serial.SerialException, OSError):
            self._serial = None

    # -- transports ----------------------------------------------------------------------
    def _publish(self, kind: str, payload: dict) -> None:
        self._seq[kind] += 1
        self._client.publish(self._topics[kind], json.dumps({**payload, "seq": self._seq[kind]}), qos=1)
        self.counts.sent[kind].append((time.monotonic(), self._seq[kind]))
        if kind == "event":
            self.counts.events += 1
        else:
            self.counts.telemetry += 1

    def _write_line(self, volume_l: float) -> float:
        """Write the totaliser line for ``volume_l``; return the volume it states (L)."""
        self._seq["serial"] += 1
        pulses = int(np.floor(volume_l / self.pulse_volume_l + 1e-9))
        stated = round(pulses * self.pulse_volume_l, 4)
        temperature = 20.0 + 0.05 * float(self._rng.standard_normal())
        line = format_totaliser_line(self._seq["serial"], pulses, stated, self._flow_l_s * S_PER_H, temperature)
        if self._serial is None:
            self._open_serial()
        try:
            if self._serial is None:
                raise OSError("port absent")
            self._serial.write(line)
            self.counts.serial_lines += 1
            self.counts.sent["serial"].append((time.monotonic(), self._seq["serial"]))
        except (serial.SerialException, OSError):
            self.counts.serial_unsent += 1
            if self._serial is not None:
                self._serial.close()
            self._serial = None
        return stated

    def _on_command(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            command = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if not isinstance(command, dict):
            return
        kind = message.topic.rsplit("/", 1)[-1]
        cmd_id = command.get("cmd_id")
        with self._lock:
            if kind == "status":  # meterbench online/offline (its Last Will): offline stops the flow
                if command.get("state") == "offline" and (self.setpoint_m3h > 0 or self.valves["inlet"] == "open"):
                    self.safe_stops += 1
                    self.setpoint_m3h = 0.0
                    self.valves.update(inlet="closed", bypass="open")
                    self._publish("event", {"event": "fault", "reason": "meterbench offline: flow stopped"})
                return
            if kind == "valve" and command.get("valve") in self.valves:
                self.valves[command["valve"]] = command.get("state", "closed")
                self._publish(
                    "event",
                    {
                        "event": "valve_set",
                        "valve": command["valve"],
                        "state": self.valves[command["valve"]],
                        "cmd_id": cmd_id,
                    },
                )
            elif kind == "flow_setpoint":
                self.setpoint_m3h = float(command.get("flow_m3h", 0.0))
                self._stable_since, self._stable_sent = None, False
                self._publish("event", {"event": "flow_set", "flow_m3h": self.setpoint_m3h, "cmd_id": cmd_id})
            elif kind == "point":
                self._pending_latches.append(command)

    # -- the tick ------------------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = time.monotonic()
        next_telemetry = next_tick
        while not self._stop.is_set():
            next_tick += self.tick_s
            if self._stop.wait(max(0.0, next_tick - time.monotonic())):
                break
            now = time.monotonic()
            with self._lock:
                self._advance(now)
                stated = self._write_line(self._volume_l)
                self._serve_latches(now, stated)
                self._check_stable(now)
                if now >= next_telemetry:
                    next_telemetry += self.telemetry_s
                    self._publish("telemetry", self._telemetry())

    def _telemetry(self) -> dict:
        return {
            "flow_m3h": round(self._flow_l_s * S_PER_H / L_PER_M3, 5),
            "temperature_c": round(20.0 + 0.05 * float(self._rng.standard_normal()), 3),
            "pressure_kpa": round(300.0 + float(self._rng.standard_normal()), 1),
            "valves": dict(self.valves),
        }

    def _check_stable(self, now: float) -> None:
        target = self.setpoint_m3h * L_PER_M3 / S_PER_H
        if target <= 0 or self._stable_sent:
            return
        if abs(self._flow_l_s - target) <= 0.005 * target:
            self._stable_since = self._stable_since or now
            if now - self._stable_since >= 1.0:
                self._stable_sent = True
                self._publish("event", {"event": "flow_stable", "flow_m3h": self.setpoint_m3h})
        else:
            self._stable_since = None

    def _serve_latches(self, now: float, stated_l: float) -> None:
        for command in self._pending_latches:
            point, action = str(command.get("point")), command.get("action")
            registers = list(self._registers_l)
            if action == "start":
                self._open_points[point] = (stated_l, registers)
                self._first_start_t = self._first_start_t or now
            elif action == "stop" and point in self._open_points:
                self._record_truth(point, stated_l, registers)
            self._publish(
                "event",
                {
                    "event": f"point_{action}",
                    "point": point,
                    "reference_volume_l": stated_l,
                    "reference_seq": self._seq["serial"],
                    "cmd_id": command.get("cmd_id"),
                },
            )
        self._pending_latches.clear()

    def _record_truth(self, point: str, stated_l: float, registers: list[float]) -> None:
        start_l, start_registers = self._open_points.pop(point)
        reference = stated_l - start_l
        if not reference > 0:  # stopped at the tick it started (a void attempt): no volume, no true error
            return
        for meter, r0, r1 in zip(self.meters, start_registers, registers, strict=True):
            indicated = r1 - r0
            points = self.truth[meter.id]  # a repeated point replaces its void attempt
            points[:] = [p for p in points if p["name"] != point]
            points.append(
                {
                    "name": point,
                    "true_error_pct": (indicated - reference) / reference * 100.0,
                    "true_reference_volume_l": reference,
                    "true_indicated_volume_l": indicated,
                }
            )

    def truth_json(self) -> dict:
        """The truth.json content for the points run so far."""
        return {"instruments": [{"id": mid, "points": pts} for mid, pts in self.truth.items()]}

    def camera(
        self,
        meter_index: int,
        layout_dict: dict,
        *,
        markerless_duration_s: float | None = None,
        camera_id: str = "",
        view: MarkerlessView | None = None,
    ) -> SimulatedCamera:
        """A frame source showing meter ``meter_index``'s register (layout from the manifest);
        ``markerless_duration_s``: a plate without fiducials moving over that long, or ``view``:
        the one already drawn (see `SimulatedCamera`)."""
        seed = int(self._rng.integers(2**31))
        return SimulatedCamera(
            self,
            meter_index,
            layout_dict,
            seed=seed,
            markerless_duration_s=markerless_duration_s,
            camera_id=camera_id,
            view=view,
        )


@dataclass(frozen=True)
class MarkerlessView:
    """How a fixed camera sees a live register without fiducials: square to the plate
    (`camera`), the meter shifted, slightly rotated and drifting since the reference photo
    (`motion`, times in s since the camera opened), the light changing (`light`); `photo` is
    the reference photo and `register` its marker-free layout (image: `image`); `upsets`: stretches
    (times since the camera opened) where the camera is knocked or a hand is over the register."""

    camera: CameraModel
    motion: PlateMotion
    light: LightChange
    red_wheel_style: str
    photo: np.ndarray
    register: dict
    upsets: tuple[SceneUpset, ...] = ()


def markerless_view(
    plate_layout: RegisterLayout,
    rng: np.random.Generator,
    *,
    label: str,
    start_volume_l: float,
    duration_s: float,
    image: str,
) -> MarkerlessView:
    """Draw a `MarkerlessView` of `plate_layout` (register at `start_volume_l` L in the photo)
    with sim/markerless.py's camera, motion and light models."""
    camera = frontal_camera(rng, plate_layout.plate_size_px)
    style = "red" if rng.random() < 0.6 else "red-on-white"
    positions = positions_from_volume(plate_layout, start_volume_l % plate_layout.capacity_l)
    photo = reference_photo(plate_layout, camera, positions, rng, label=label, red_wheel_style=style)
    centre = tuple(float(v) for v in np.array(camera.plate_corners_px).mean(axis=0))
    motion = PlateMotion.random(rng, centre, duration_s)
    register = reference_layout(plate_layout, camera, image)
    return MarkerlessView(camera, motion, LightChange.random(rng), style, photo, register)


class SimulatedCamera:
    """A camera looking at one simulated register: ``read()`` renders it as of now.

    ``capture_monotonic`` is the instant (``time.monotonic()``) the last frame shows,
    which ``CameraCapture`` uses as its capture time (as a camera's exposure stamp).
    """

    def __init__(
        self,
        peer: SimulatedBenchPeer,
        meter_index: int,
        layout_dict: dict,
        *,
        seed: int,
        markerless_duration_s: float | None = None,
        camera_id: str = "",
        view: MarkerlessView | None = None,
    ) -> None:
        """``markerless_duration_s``: render the plate without fiducials as `MarkerlessView`
        says, drifting over that long (s); ``camera_id`` names its reference photo. ``view``:
        render it as this view says instead (drawn before the camera, e.g. so that its photo
        could be recorded first; its motion times count from this camera's opening)."""
        self.peer = peer
        self.meter_index = meter_index
        self.meter = peer.meters[meter_index]
        self.layout = RegisterLayout.from_dict(layout_dict)
        rng = np.random.default_rng(seed)
        self.view: MarkerlessView | None = view
        if view is None and markerless_duration_s is None:
            self.renderer = RegisterRenderer(self.layout, rng=rng, label=self.meter.id)
        else:
            if self.view is None:
                start_l = peer.register_at(meter_index, time.monotonic())
                self.view = markerless_view(
                    self.layout,
                    rng,
                    label=self.meter.id,
                    start_volume_l=start_l,
                    duration_s=float(markerless_duration_s),
                    image=reference_image_path(camera_id or f"cam-{self.meter.id}"),
                )
            self.renderer = RegisterRenderer(
                self.layout,
                rng=rng,
                camera=self.view.camera,
                label=self.meter.id,
                red_wheel_style=self.view.red_wheel_style,
                markers=False,
            )
        self._opened_monotonic = time.monotonic()
        self.frames = 0
        self.capture_monotonic: float | None = None
        self._open = True

    def read(self) -> tuple[bool, np.ndarray | None]:
        """Render the register as it is now (``capture_monotonic`` says when)."""
        if not self._open:
            return False, None
        instant = time.monotonic()
        register = self.peer.register_at(self.meter_index, instant)
        positions = positions_from_volume(self.layout, register)
        if self.view is None:
            frame = self.renderer.render(positions)
        else:
            view, t_s = self.view, instant - self._opened_monotonic
            frame = render_markerless(self.renderer, positions, t_s, view.motion, view.light, view.upsets)
        self.capture_monotonic = instant
        self.frames += 1
        counts = self.peer.counts.frames
        counts[self.meter.id] = counts.get(self.meter.id, 0) + 1
        return True, frame

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        """Tell whether the camera still gives frames."""
        return self._open

    def release(self) -> None:
        """Stop giving frames."""
        self._open = False

    def get(self, prop: int) -> float:
        """OpenCV-style property query (only what CameraCapture asks: 0 = unknown)."""
        return 0.0
