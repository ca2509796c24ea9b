"""Hostile and damaged device input: refused, recorded raw with the reason, never used, never fatal.

Against a real Mosquitto broker and real socat ptys (issue 16: one message must not kill the
bench's MQTT thread; forged or implausible messages must not become readings).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbench.devices.modbus import ModbusTotaliserReader, RegisterField
from meterbench.devices.mqtt import (
    MAX_SEQ_JUMP,
    BenchController,
    MqttConfig,
    decode_payload,
    parse_event,
    parse_telemetry,
    wait_until,
)
from meterbench.devices.serial_totaliser import TotaliserReader, format_totaliser_line, nmea_checksum
from meterbench.errors import ConfigError
from meterbench.session import SessionRecorder
from meterbench.sim import ModbusSlave
from tests.session.session_helpers import water_meter_manifest

GOOD_TELEMETRY = {
    "flow_m3h": 2.4,
    "temperature_c": 20.1,
    "pressure_kpa": 300.0,
    "valves": {"inlet": "open", "outlet": "open", "bypass": "closed"},
}


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b'{"event": "fault", "x": ' + b"9" * 5000 + b"}", "digits"),
        (b"[" * 16000, "nested too deeply"),
        (b'{"flow_m3h": NaN}', "not a number JSON allows"),
        (b'{"flow_m3h": -Infinity}', "not a number JSON allows"),
        (b'{"a": "' + b"x" * 20000 + b'"}', "bytes > 16384"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'{"a": 1', "not JSON"),
    ],
)
def test_decode_payload_refuses_hostile_json_without_raising(payload, why):
    value, error = decode_payload(payload)
    assert value is None and why in error


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_decode_and_parse_never_raise(data):
    value, error = decode_payload(data)
    assert (value is None) != (error is None) or value is None
    for parser in (parse_telemetry, parse_event):
        parsed, problem = parser(value)
        assert (parsed is None) != (problem is None)


@settings(max_examples=2000, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["event", "point", "reference_volume_l", "cmd_id", "seq", "reference_seq", "flow_m3h"]),
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=8)
        | st.lists(st.integers(), max_size=2),
    )
)
def test_event_parser_accepts_only_well_typed_latches(payload):
    parsed, _ = parse_event(payload)
    if parsed is not None and parsed["event"] in ("point_start", "point_stop"):
        assert isinstance(parsed["point"], str)
        volume = parsed["reference_volume_l"]
        assert not isinstance(volume, bool) and math.isfinite(volume) and volume >= 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"temperature_c": 160.0}, "temperature_c = 160 outside"),
        ({"temperature_c": float("nan")}, "temperature_c is not a finite number"),
        ({"flow_m3h": -3.0}, "flow_m3h = -3 outside"),
        ({"pressure_kpa": "high"}, "pressure_kpa is not a finite number"),
        ({"valves": {"inlet": "ajar"}}, "valves must map"),
    ],
)
def test_implausible_telemetry_is_refused(change, why):
    parsed, error = parse_telemetry({**GOOD_TELEMETRY, **change})
    assert parsed is None and why in error


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"event": "point_start", "point": ["Q3"], "reference_volume_l": 1.0}, "point name"),
        ({"event": "point_start", "point": "Q3", "reference_volume_l": "12.5"}, "finite reference_volume_l"),
        ({"event": "point_stop", "point": "Q3", "reference_volume_l": -1.0}, "finite reference_volume_l"),
        ({"event": "point_stop", "point": "Q3", "reference_volume_l": 1.0, "cmd_id": 2.5}, "cmd_id"),
    ],
)
def test_malformed_latches_are_refused(payload, why):
    parsed, error = parse_event(payload)
    assert parsed is None and why in error


def _logged(session_dir, device_id: str) -> list[dict]:
    """The JSON lines of one device log, as written (every line must be strict JSON)."""
    text = (session_dir / "devices" / f"{device_id}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} written")) for line in text.splitlines()]


def _controller(broker, tmp_path, **config):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("hostile"))
    log = recorder.device_log("controller", "mqtt")
    controller = BenchController(MqttConfig("b1", port=broker.port, **config), log, recorder.now_s).start()
    return recorder, controller


def _publisher(broker) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


@pytest.mark.network
def test_hostile_messages_never_stop_the_controller_thread(mosquitto_broker, tmp_path):
    recorder, controller = _controller(mosquitto_broker, tmp_path)
    forger = _publisher(mosquitto_broker)
    try:
        first = {"event": "sequence_start", "seq": 1}
        forger.publish("bench/b1/event", json.dumps(first), qos=1).wait_for_publish(5)
        hostile = [
            ("event", b'{"event": "fault", "seq": ' + b"7" * 5000 + b"}"),
            ("event", b"[" * 16000),
            ("event", json.dumps({"event": "fault", "seq": 20_000_000}).encode()),  # a jump: nothing remembered
            ("telemetry", json.dumps({**GOOD_TELEMETRY, "temperature_c": 60.0}).encode()),  # no seq: refused
            ("event", b"\x00\xff" * 30000),
        ]
        for kind, payload in hostile:
            forger.publish(f"bench/b1/{kind}", payload, qos=1).wait_for_publish(5)
        good = {**GOOD_TELEMETRY, "seq": 1}
        forger.publish("bench/b1/telemetry", json.dumps(good), qos=1).wait_for_publish(5)
        assert wait_until(lambda: controller.telemetry is not None, 10.0), "the network thread died"
        assert controller.telemetry["temperature_c"] == 20.1
        assert controller.counts.bad == len(hostile) and controller.counts.internal_errors == 0
        assert controller.missing == {}  # the 20,000,000 jump left no gap to wait for
    finally:
        forger.loop_stop()
        controller.stop()
        recorder.close()
    lines = [e for e in _logged(tmp_path / "s", "controller") if e.get("topic")]
    errors = [e["error"] for e in lines if e["error"]]
    assert len(errors) == len(hostile), errors
    assert [e["parsed"]["seq"] for e in lines if e["parsed"]] == [1, 1]  # the first event and the good telemetry
    assert any("digits" in e for e in errors) and any("nested too deeply" in e for e in errors)
    assert any(f"(> {MAX_SEQ_JUMP})" in e for e in errors) and any("seq: expected an integer" in e for e in errors)
    assert all(e["parsed"] is None for e in lines if e["error"])


@pytest.mark.network
def test_a_second_answer_to_one_command_is_a_conflict(mosquitto_broker, tmp_path):
    recorder, controller = _controller(mosquitto_broker, tmp_path)
    forger = _publisher(mosquitto_broker)
    # the controller asks for the latch (cmd_id 1): a latch answering no command is refused as unsolicited
    asking = threading.Thread(target=lambda: controller.latch("start", "Q3", 5.0), daemon=True)
    asking.start()
    try:
        assert wait_until(lambda: controller.counts.sent == 1, 5.0)
        for seq, volume in ((1, 0.0), (2, 12.3456)):  # a forged answer first, the controller's after
            latch = {"event": "point_start", "point": "Q3", "reference_volume_l": volume, "cmd_id": 1, "seq": seq}
            forger.publish("bench/b1/event", json.dumps(latch), qos=1).wait_for_publish(5)
        assert wait_until(lambda: controller.counts.conflicts == 1, 10.0)
        assert controller.conflicting("point_start", 1)
        assert not controller.conflicting("point_start", 2)
    finally:
        forger.loop_stop()
        controller.stop()
        recorder.close()


_HOLD_A_CONNECTION = """
import sys, time
from meterbench.devices.mqtt import BenchController, MqttConfig
class Sink:
    def append(self, *args, **kwargs):
        return 0
BenchController(MqttConfig("b1", port=int(sys.argv[1])), Sink(), time.monotonic).start()
print("connected", flush=True)
time.sleep(60)
"""


@pytest.mark.network
def test_last_will_says_offline_when_the_bench_process_dies(mosquitto_broker):
    states: list[str] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="controller-watch")
    watcher.on_message = lambda c, u, m: states.append(json.loads(m.payload)["state"])
    watcher.connect("127.0.0.1", mosquitto_broker.port)
    watcher.subscribe("bench/b1/status", qos=1)
    watcher.loop_start()
    bench = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_CONNECTION, str(mosquitto_broker.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert bench.stdout.readline().strip() == "connected"
        assert wait_until(lambda: "online" in states, 10.0)
        bench.kill()  # no goodbye: only the broker's Last Will can tell
        bench.wait(10)
        assert wait_until(lambda: states[-1:] == ["offline"], 30.0), states
    finally:
        bench.kill()
        watcher.loop_stop()


def _serial_reader(pty_pair, tmp_path, **options):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("serial"))
    log = recorder.device_log("ref-meter", "serial-totaliser")
    return recorder, TotaliserReader(pty_pair.a, log, recorder.now_s, pulse_volume_l=0.0001, **options).start()


def test_totaliser_needs_its_pulse_volume():
    for bad in (None, 0.0, float("nan"), -1.0):
        with pytest.raises(ConfigError, match="ref-meter.pulse_volume_l: expected a finite number > 0"):
            TotaliserReader("loop://", None, time.monotonic, pulse_volume_l=bad)


def _swapped_line(seq: int, pulses: int) -> bytes:
    """A line whose volume digits are swapped: the XOR checksum still matches."""
    volume = f"{pulses * 0.0001:.4f}"
    swapped = volume[:-2] + volume[-1] + volume[-2]
    body = f"TOT,{seq},{pulses},{swapped},2400.0,20.00".encode()
    return b"$" + body + b"*%02X\r\n" % nmea_checksum(body)


@pytest.mark.serial
def test_digit_swaps_and_impossible_jumps_are_never_readings(pty_pair, tmp_path):
    recorder, reader = _serial_reader(pty_pair, tmp_path, max_flow_l_h=10000.0)
    lines = [
        format_totaliser_line(1, 1000, 0.1000, 2400.0, 20.0),
        _swapped_line(2, 1012),  # 0.1012 -> 0.1021: checksum-valid, volume != pulses x pulse volume
        format_totaliser_line(3, 30_001_000, 3000.1, 2400.0, 20.0),  # +3,000 L in 0.1 s: faster than 10 m3/h
        format_totaliser_line(4, 1030, 0.1030, 2400.0, 20.0),
    ]
    with serial.Serial(pty_pair.b) as peer:
        for line in lines:
            peer.write(line)
            peer.flush()
            time.sleep(0.1)
    assert wait_until(lambda: reader.counts.lines >= 4, 5.0)
    reader.stop()
    recorder.close()
    events = _logged(tmp_path / "s", "ref-meter")
    assert [e["parsed"]["volume_l"] for e in events if e["parsed"]] == [0.1, 0.103]
    errors = [e["error"] for e in events if e["error"]]
    assert errors[0].startswith("inconsistent: volume_l 0.1021 != pulses")
    assert errors[1].startswith("inconsistent: volume rose 3000.0000 L")


@pytest.mark.serial
def test_modbus_nan_with_a_valid_crc_is_no_reading(pty_pair, tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("modbus"))
    fields = [RegisterField("volume_l", 0, "float32"), RegisterField("flow_l_h", 2, "float32")]
    with ModbusSlave(pty_pair.b) as slave:
        slave.set_value(0, float("nan"), "float32")
        slave.set_value(2, 2400.0, "float32")
        reader = ModbusTotaliserReader(pty_pair.a, recorder.device_log("fc", "modbus"), recorder.now_s, fields).open()
        assert reader.poll() is None
        slave.set_value(0, 12.5, "float32")
        assert reader.poll() == {"volume_l": 12.5, "flow_l_h": 2400.0}
        reader._close()
    recorder.close()
    events = _logged(tmp_path / "s", "fc")
    assert events[0]["parsed"] is None and events[0]["error"] == "malformed: volume_l not a finite number"
    assert reader.counts.malformed == 1 and reader.counts.ok == 1
