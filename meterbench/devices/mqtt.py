"""Bench controller over MQTT (paho-mqtt 2.x): telemetry and events in, commands out.

Topics (JSON payloads; full description in docs/devices.md):

- ``bench/<id>/telemetry`` in, ~2 Hz: flow_m3h, temperature_c, pressure_kpa, valves
- ``bench/<id>/event`` in: point_start/point_stop (flying start/stop latches with
  reference_volume_l), flow_set, flow_stable, sequence_start, sequence_end
- ``bench/<id>/cmd/valve`` out: ``{"valve": "inlet", "state": "open", "cmd_id": n}``
- ``bench/<id>/cmd/flow_setpoint`` out: ``{"flow_m3h": 2.4, "cmd_id": n}``
- ``bench/<id>/cmd/point`` out: ``{"action": "start"|"stop", "point": "Q3", "cmd_id": n}``

Every received message is recorded with its reception time on the session
clock, before anything else is done with it. Commands go out with QoS 1 and
are recorded too, under their ``cmd/...`` topic. The client keeps a persistent
session (clean_session False, fixed client id) and resubscribes in
``on_connect``, so a broker restart loses nothing that QoS 1 can keep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from meterbench.devices._common import Clock, DeviceError, DeviceTimeoutError, EventSink, Status
from meterbench.errors import ConfigError

# The pure payload checks live in meterbench.protocols (the session reader re-parses with them); re-exported here.
from meterbench.protocols import (  # noqa: F401
    EVENTS,
    MAX_INTEGER_DIGITS,
    MAX_MISSING_SEQ,
    MAX_PAYLOAD_BYTES,
    MAX_SEQ,
    MAX_SEQ_JUMP,
    PLAUSIBLE_RANGES,
    TELEMETRY_KEYS,
    VALVE_STATES,
    VALVES,
    decode_payload,
    parse_event,
    parse_telemetry,
)

_LOG = logging.getLogger("meterbench.devices.mqtt")


@dataclass(frozen=True)
class MqttConfig:
    """Where and how to connect: broker host/port, bench id, optional TLS and login."""

    bench_id: str
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_insecure: bool = False
    keepalive_s: int = 10
    client_id: str | None = None
    require_seq: bool = True  # refuse controller messages without a sequence number
    max_payload_bytes: int = MAX_PAYLOAD_BYTES

    @classmethod
    def from_dict(cls, section: dict[str, Any], where: str = "mqtt") -> MqttConfig:
        """Build from a config table; unknown keys raise ConfigError naming ``where``."""
        known = set(cls.__dataclass_fields__)
        unknown = set(section) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}, expected some of {sorted(known)}")
        if "bench_id" not in section:
            raise ConfigError(f"{where}: 'bench_id' is required")
        return cls(**section)

    @property
    def secure(self) -> bool:
        """Whether the connection is authenticated both ways: TLS with a CA, and a login or a client certificate."""
        return bool(self.tls_ca) and not self.tls_insecure and (self.username is not None or bool(self.tls_cert))


STATUS_ONLINE = json.dumps({"state": "online"})
STATUS_OFFLINE = json.dumps({"state": "offline"})
"""Retained on ``bench/<id>/status``; the offline one is also meterbench's Last Will."""


@dataclass
class MqttCounts:
    """Messages and connection events seen (each also in the device log)."""

    received: int = 0
    parsed: int = 0
    bad: int = 0
    duplicates: int = 0
    conflicts: int = 0
    internal_errors: int = 0
    implausible: int = 0
    unsolicited: int = 0
    unrecorded: int = 0
    late: int = 0
    gaps: int = 0
    sent: int = 0
    connects: int = 0
    disconnects: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


class BenchController:
    """The bench's MQTT controller seen from meterbench (one device log for all topics).

    ``start()`` connects (raising DeviceError when the broker cannot be reached in
    ``connect_timeout_s``), subscribes and runs paho's network thread. Every payload
    must carry a ``seq`` (``MqttConfig.require_seq``); it is checked for gaps, implausible
    jumps and QoS 1 duplicates; a refused message is recorded raw with its error and never
    used; a late message filling a gap is kept (``missing`` lists what never came). A second,
    different answer to one command (same event and ``cmd_id``) is a conflict: recorded,
    counted, and :meth:`conflicting` names the command. A latch event (point_start/point_stop)
    that answers no ``cmd/point`` command of this controller (unknown ``cmd_id``, other action
    or point) is refused as unsolicited. Checks added with :meth:`add_check` (the bench's
    plausibility checks against its reference meter) refuse a message before its ``seq`` is
    taken, so a refused forgery never makes a true message look like a duplicate. A message
    the sink cannot record (disk full) is counted in ``unrecorded`` and never used. No payload
    can stop the network thread. The Last Will (``bench/<id>/status`` = offline, retained) tells the controller to
    stop the flow when meterbench dies.
    """

    def __init__(self, config: MqttConfig, sink: EventSink, clock: Clock, *, name: str = "controller") -> None:
        self.config = config
        self.name = name
        self.counts = MqttCounts()
        self.telemetry: dict | None = None
        self.telemetry_t_s: float | None = None
        self.connected = threading.Event()
        self.refused: str | None = None
        self._answered = threading.Event()
        self._sink = sink
        self._clock = clock
        self._prefix = f"bench/{config.bench_id}"
        self._lock = threading.Condition()
        self._events: list[tuple[float, dict]] = []
        self._last_seq: dict[str, int] = {}
        self._missing_seq: dict[str, set[int]] = {}
        self._cmd_id = 0
        self._conflicting: set[tuple[str, int]] = set()
        self._point_commands: dict[int, tuple[str, str]] = {}  # cmd_id -> (action, point) sent
        self._checks: list[Callable[[str, dict], str | None]] = []
        self._listeners: list[Callable[[str, float, dict], None]] = []
        self._watches: list[tuple[Status, Callable[[], bool]]] = []
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client_id = cfg.client_id or f"meterbench-{cfg.bench_id}"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.will_set(f"{self._prefix}/status", STATUS_OFFLINE, qos=1, retain=True)
        if cfg.tls_ca or cfg.tls_cert:
            client.tls_set(ca_certs=cfg.tls_ca, certfile=cfg.tls_cert, keyfile=cfg.tls_key, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(cfg.tls_insecure)
        client.reconnect_delay_set(min_delay=1, max_delay=4)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- life cycle ---------------------------------------------------------------------
    def start(self, connect_timeout_s: float = 5.0) -> BenchController:
        """Connect, subscribe and start the network thread."""
        try:
            self._client.connect(self.config.host, self.config.port, self.config.keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            raise DeviceError(
                f"{self.name}: cannot connect to MQTT broker {self.config.host}:{self.config.port}: {exc}"
            ) from exc
        self._client.loop_start()
        self._answered.wait(connect_timeout_s)
        if self.refused is not None:
            self.stop()
            raise DeviceError(
                f"{self.name}: MQTT broker {self.config.host}:{self.config.port} refused the connection: {self.refused}"
            )
        if not self.connected.is_set():
            self._client.loop_stop()
            raise DeviceTimeoutError(
                f"{self.name}: MQTT broker {self.config.host}:"
                f"{self.config.port} did not accept the connection "
                f"within {connect_timeout_s:g} s"
            )
        return self

    def stop(self) -> None:
        """Say offline, disconnect and stop the network thread (idempotent)."""
        if self.connected.is_set():
            self._client.publish(f"{self._prefix}/status", STATUS_OFFLINE, qos=1, retain=True)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> BenchController:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_check(self, check: Callable[[str, dict], str | None]) -> None:
        """Call ``check(kind, payload)`` for each well-formed telemetry/event message before it is used:
        a returned string refuses the message (recorded raw with that error, never used)."""
        self._checks.append(check)

    def add_listener(self, callback: Callable[[str, float, dict], None]) -> None:
        """Call ``callback(kind, t_s, payload)`` for each good telemetry/event message."""
        self._listeners.append(callback)

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self._answered.set()
            self._note(f"broker refused connection: {reason}")
            return
        client.subscribe([(f"{self._prefix}/telemetry", 1), (f"{self._prefix}/event", 1)])
        client.publish(f"{self._prefix}/status", STATUS_ONLINE, qos=1, retain=True)
        self.counts.connects += 1
        if self.counts.connects > 1:
            self._note(f"reconnected to broker (session present: {flags.session_present})", bad=False)
        self.connected.set()
        self._answered.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        self.counts.disconnects += 1
        self._note(f"broker connection lost: {reason}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Record and use one message; nothing a payload holds may raise out of here (network thread)."""
        t_s = self._clock()
        try:
            self._handle_message(t_s, message.topic, bytes(message.payload))
        except Exception as exc:  # a bug must not kill paho's thread (safe-state commands need it)
            self.counts.internal_errors += 1
            _LOG.exception("%s: message on %s could not be handled", self.name, message.topic)
            with contextlib.suppress(Exception):
                self._note(f"internal error handling a message on {message.topic}: {type(exc).__name__}: {exc}")

    def _handle_message(self, t_s: float, topic: str, data: bytes) -> None:
        kind = topic.rsplit("/", 1)[-1]
        payload, error = decode_payload(data, self.config.max_payload_bytes)
        raw: str | bytes = data[: self.config.max_payload_bytes]
        if isinstance(raw, bytes) and len(data) <= self.config.max_payload_bytes:
            with contextlib.suppress(UnicodeDecodeError):
                raw = data.decode("utf-8")
        parsed = None
        if error is None:
            parser = parse_telemetry if kind == "telemetry" else parse_event
            parsed, error = parser(payload)
        if parsed is not None:
            error = self._run_checks(kind, parsed) or self._check_answer(kind, parsed) or self._check_seq(kind, parsed)
            if error is not None:
                parsed = None
        self.counts.received += 1
        self.counts.by_topic[kind] = self.counts.by_topic.get(kind, 0) + 1
        try:
            self._sink.append(t_s, raw, parsed, error, topic=topic)
        except OSError:  # disk full: not recorded, so never used (the bench stops on the recorder's failure)
            self.counts.unrecorded += 1
            return
        if parsed is None:
            self.counts.bad += 1
            return
        self.counts.parsed += 1
        with self._lock:
            if kind == "telemetry":
                self.telemetry, self.telemetry_t_s = parsed, t_s
            else:
                self._events.append((t_s, parsed))
            self._check_watches()
            self._lock.notify_all()
        for listener in self._listeners:
            listener(kind, t_s, parsed)

    def _check_seq(self, kind: str, payload: dict) -> str | None:
        """Check the payload's ``seq`` (if any): duplicates are errors; gaps are noted;
        a late message that fills a gap is accepted (QoS 1 keeps no order across a
        reconnection)."""
        seq = payload.get("seq")
        if seq is None and not self.config.require_seq:
            return None
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < MAX_SEQ:
            return f"seq: expected an integer in [0, 2^53), got {str(seq)[:40]!r}: refused"
        last = self._last_seq.get(kind)
        missing = self._missing_seq.setdefault(kind, set())
        if last is not None and seq > last + MAX_SEQ_JUMP:
            return f"seq jumps from {last} to {seq} (> {MAX_SEQ_JUMP}): refused as implausible"
        if last is None or seq > last:
            if last is not None and seq > last + 1:
                self.counts.gaps += 1
                missing.update(range(last + 1, seq))
                if len(missing) > MAX_MISSING_SEQ:
                    for oldest in sorted(missing)[: len(missing) - MAX_MISSING_SEQ]:
                        missing.discard(oldest)
                self._note(
                    f"{kind} sequence gap: expected {last + 1}, got {seq} ({seq - last - 1} messages missing so far)"
                )
            self._last_seq[kind] = seq
            return None
        if seq in missing:
            missing.discard(seq)
            self.counts.late += 1
            return None
        self.counts.duplicates += 1
        return f"duplicate: seq {seq} already received (QoS 1 redelivery)"

    def _run_checks(self, kind: str, payload: dict) -> str | None:
        """The added checks' first objection, then whether a latch answers a command of ours."""
        for check in self._checks:
            error = check(kind, payload)
            if error is not None:
                self.counts.implausible += 1
                return f"implausible: {error}"
        if kind == "event" and payload["event"] in ("point_start", "point_stop"):
            with self._lock:
                sent = self._point_commands.get(payload.get("cmd_id"))  # type: ignore[arg-type]
            if sent != (payload["event"].removeprefix("point_"), payload["point"]):
                self.counts.unsolicited += 1
                return (
                    f"unsolicited: {payload['event']} of {payload['point']!r} answers no cmd/point sent "
                    f"(cmd_id {str(payload.get('cmd_id'))[:20]}): refused"
                )
        return None

    def _check_answer(self, kind: str, payload: dict) -> str | None:
        """A second answer to one command (same event and cmd_id) with other content is a conflict
        (the same content again is a QoS 1 redelivery, left to the ``seq`` check)."""
        cmd_id = payload.get("cmd_id")
        if kind != "event" or cmd_id is None:
            return None
        with self._lock:
            first = self._find_event(payload["event"], cmd_id=cmd_id)
            if first is None or first[1] == payload:
                return None
            self._conflicting.add((payload["event"], cmd_id))
        self.counts.conflicts += 1
        return f"conflict: a second {payload['event']} answer to cmd_id {cmd_id} (the first came at {first[0]:.3f} s)"

    def conflicting(self, event: str, cmd_id: int) -> bool:
        """Whether command ``cmd_id`` got two answers ``event`` (one of them forged or replayed)."""
        with self._lock:
            return (event, cmd_id) in self._conflicting

    @property
    def missing(self) -> dict[str, list[int]]:
        """Get the ``seq`` numbers per topic kind still missing (lost unless they arrive)."""
        return {kind: sorted(seqs) for kind, seqs in self._missing_seq.items() if seqs}

    def _note(self, message: str, bad: bool = True) -> None:
        """Record a connection event (raw is empty; ``error`` set unless it is good news)."""
        try:
            self._sink.append(
                self._clock(), "", {"note": message} if not bad else None, message if bad else None, topic=""
            )
        except OSError:
            self.counts.unrecorded += 1

    # -- commands -------------------------------------------------------------------------
    def _publish(self, command: str, payload: dict) -> dict:
        with self._lock:
            self._cmd_id += 1
            payload = {**payload, "cmd_id": self._cmd_id}
            if command == "point":
                self._point_commands[self._cmd_id] = (payload["action"], payload["point"])
        topic = f"{self._prefix}/cmd/{command}"
        text = json.dumps(payload)
        info = self._client.publish(topic, text, qos=1)
        self.counts.sent += 1
        error = (
            None
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)
            else (f"publish failed: {mqtt.error_string(info.rc)}")
        )
        try:
            self._sink.append(self._clock(), text, payload, error, topic=topic)
        except OSError:  # disk full: the command went out all the same (a safe state must not wait for the disk)
            self.counts.unrecorded += 1
        if error is not None:
            raise DeviceError(f"{self.name}: {topic}: {error}")
        return payload

    def set_valve(self, valve: str, state: str) -> Status:
        """Set a valve ('inlet', 'outlet', 'bypass') 'open' or 'closed'; done when telemetry
        shows it."""
        if valve not in VALVES or state not in VALVE_STATES:
            raise ValueError(f"valve must be one of {VALVES} and state one of {VALVE_STATES}, got {valve!r} {state!r}")
        status = Status(f"{self.name}: valve {valve} {state}")
        after = self._clock()
        self._publish("valve", {"valve": valve, "state": state})
        self._watch(
            status,
            lambda: (
                self.telemetry_t_s is not None
                and self.telemetry_t_s > after
                and (self.telemetry or {}).get("valves", {}).get(valve) == state
            ),
        )
        return status

    def set_flow(self, flow_m3h: float) -> Status:
        """Set the flow set point in m³/h (float >= 0); done on the controller's flow_set event."""
        if not flow_m3h >= 0:
            raise ValueError(f"flow set point must be >= 0 m3/h, got {flow_m3h}")
        status = Status(f"{self.name}: flow set point {flow_m3h:g} m3/h")
        cmd = self._publish("flow_setpoint", {"flow_m3h": flow_m3h})
        self._watch(status, lambda: self._find_event("flow_set", cmd_id=cmd["cmd_id"]) is not None)
        return status

    def latch(self, action: str, point: str, timeout_s: float = 5.0) -> tuple[float, dict]:
        """Ask for a flying start/stop ('start'/'stop') of ``point``; wait for its latch event.

        Returns ``(t_s, event)``; the event carries ``reference_volume_l`` (L).
        """
        if action not in ("start", "stop"):
            raise ValueError(f"latch action must be 'start' or 'stop', got {action!r}")
        cmd = self._publish("point", {"action": action, "point": point})
        found = self.wait_event(f"point_{action}", timeout_s, cmd_id=cmd["cmd_id"])
        if found is None:
            raise DeviceTimeoutError(f"{self.name}: no point_{action} event for {point} within {timeout_s:g} s")
        return found

    # -- waiting --------------------------------------------------------------------------
    def _find_event(self, name: str, **match: Any) -> tuple[float, dict] | None:
        for t_s, event in self._events:
            if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                return t_s, event
        return None

    def wait_event(self, name: str, timeout_s: float, **match: Any) -> tuple[float, dict] | None:
        """Wait for an event ``name`` whose payload has the ``match`` items; None on timeout."""
        with self._lock:
            self._lock.wait_for(lambda: self._find_event(name, **match) is not None, timeout_s)
            return self._find_event(name, **match)

    def wait_telemetry(self, after_t_s: float, timeout_s: float) -> tuple[float, dict] | None:
        """Wait for telemetry received after ``after_t_s`` (s); None on timeout."""
        with self._lock:
            self._lock.wait_for(lambda: (self.telemetry_t_s or -1e9) > after_t_s, timeout_s)
            if (self.telemetry_t_s or -1e9) > after_t_s:
                return self.telemetry_t_s, dict(self.telemetry or {})
            return None

    def _watch(self, status: Status, condition: Callable[[], bool]) -> None:
        """Finish ``status`` when ``condition`` holds (checked on every message)."""
        with self._lock:
            if condition():
                status.finish()
            else:
                self._watches.append((status, condition))

    def _check_watches(self) -> None:
        """Finish the statuses whose condition now holds (caller holds the lock)."""
        for status, condition in self._watches:
            if not status.done and condition():
                status.finish()
        self._watches = [(s, c) for s, c in self._watches if not s.done]

    def read(self) -> dict[str, dict[str, Any]]:
        """Measure flow in m³/h, temperature in °C, pressure in kPa (last telemetry)."""
        with self._lock:
            if self.telemetry is None:
                return {}
            t_s = self.telemetry_t_s
            return {key: {"value": self.telemetry[key], "timestamp": t_s} for key in TELEMETRY_KEYS}

    def describe(self) -> dict[str, dict[str, Any]]:
        """Describe the fields of ``read()``: source, dtype, shape, units."""
        source = f"mqtt:{self._prefix}/telemetry"
        units = {"flow_m3h": "m3/h", "temperature_c": "degC", "pressure_kpa": "kPa", "valves": ""}
        return {
            key: {
                "source": source,
                "dtype": "object" if key == "valves" else "number",
                "shape": [],
                "units": units[key],
            }
            for key in TELEMETRY_KEYS
        }


def wait_until(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``condition`` until true or ``timeout_s`` s pass; return whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return condition()
