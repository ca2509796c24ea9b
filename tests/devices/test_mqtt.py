"""BenchController against a real Mosquitto broker (and the simulated bench for commands)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from meterbench.devices._common import DeviceError
from meterbench.devices.mqtt import BenchController, MqttConfig, parse_event, parse_telemetry
from meterbench.session import SessionRecorder
from meterbench.sim import SimMeter, SimulatedBenchPeer
from meterbench.testing import MosquittoBroker
from tests.session.session_helpers import water_meter_manifest

TELEMETRY = {
    "flow_m3h": 2.4,
    "temperature_c": 20.1,
    "pressure_kpa": 300.0,
    "valves": {"inlet": "open", "outlet": "open", "bypass": "closed"},
}


def test_payload_checks_name_what_is_wrong():
    assert parse_telemetry(TELEMETRY) == (TELEMETRY, None)
    assert "flow_m3h" in parse_telemetry({**TELEMETRY, "flow_m3h": "fast"})[1]
    assert "reference_volume_l" in parse_event({"event": "point_start", "point": "Q3"})[1]
    assert parse_event({"event": "teleport"})[0] is None


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _publisher(broker) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-controller", clean_session=False)
    client.reconnect_delay_set(1, 2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


@pytest.mark.network
def test_unreachable_broker_is_a_clear_error(tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    controller = BenchController(MqttConfig("b1", port=1), recorder.device_log("c", "mqtt"), recorder.now_s)
    with pytest.raises(DeviceError, match="cannot connect to MQTT broker 127.0.0.1:1"):
        controller.start()


@pytest.mark.network
@pytest.mark.slow
def test_broker_restart_mid_session_loses_no_qos1_message(mosquitto_broker, tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    log = recorder.device_log("controller", "mqtt")
    controller = BenchController(MqttConfig("b1", port=mosquitto_broker.port), log, recorder.now_s).start()
    publisher = _publisher(mosquitto_broker)
    sent = 0

    def publish_for(seconds: float) -> None:
        nonlocal sent
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent += 1
            publisher.publish("bench/b1/telemetry", json.dumps({**TELEMETRY, "seq": sent}), qos=1)
            time.sleep(0.02)

    publish_for(1.0)
    restart = threading.Thread(target=mosquitto_broker.restart, kwargs={"down_s": 0.5})
    restart.start()
    publish_for(2.0)  # partly while the broker is down: paho queues QoS 1 messages
    restart.join()
    publish_for(0.5)
    deadline = time.monotonic() + 10.0
    while controller.counts.parsed < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    publisher.loop_stop()
    controller.stop()
    recorder.close()
    events = _events(log.path)
    good = [e["parsed"]["seq"] for e in events if e["parsed"] and "seq" in e["parsed"]]
    assert len(good) == len(set(good)), "a QoS 1 redelivery was used twice"
    assert controller.counts.disconnects >= 1 and controller.counts.connects >= 2
    assert sorted(good) == list(range(1, sent + 1))  # 0 lost (late ones accepted)
    assert controller.missing == {}


@pytest.mark.network
@pytest.mark.serial
def test_commands_reach_the_bench_and_are_confirmed(mosquitto_broker, pty_pair, tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    log = recorder.device_log("controller", "mqtt")
    peer = SimulatedBenchPeer(pty_pair.b, "127.0.0.1", mosquitto_broker.port, "b2", [SimMeter("M1", 0.5, 10.0)]).start()
    try:
        controller = BenchController(MqttConfig("b2", port=mosquitto_broker.port), log, recorder.now_s).start()
        controller.set_valve("inlet", "open").wait(10.0)  # bounded; returns when confirmed
        controller.set_flow(1.8).wait(10.0)
        t_start, start = controller.latch("start", "Q3")
        time.sleep(0.5)
        t_stop, stop = controller.latch("stop", "Q3")
        controller.stop()
    finally:
        peer.stop()
    recorder.close()
    assert peer.valves["inlet"] == "open" and peer.setpoint_m3h == 1.8
    assert t_stop > t_start and stop["reference_volume_l"] > start["reference_volume_l"]
    topics = [e.get("topic") for e in _events(log.path)]
    assert "bench/b2/cmd/flow_setpoint" in topics and "bench/b2/event" in topics


@pytest.mark.network
def test_username_and_password_from_config(tmp_path):
    broker = MosquittoBroker(tmp_path / "mq", users={"bench": "s3cret"}).start()
    try:
        recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
        log = recorder.device_log("controller", "mqtt")
        wrong = BenchController(
            MqttConfig("b3", port=broker.port, username="bench", password="nope", client_id="c-wrong"),
            log,
            recorder.now_s,
        )
        with pytest.raises(DeviceError, match="refused the connection"):
            wrong.start()
        right = BenchController(
            MqttConfig.from_dict({"bench_id": "b3", "port": broker.port, "username": "bench", "password": "s3cret"}),
            log,
            recorder.now_s,
        ).start()
        assert right.connected.is_set()
        right.stop()
        recorder.close()
    finally:
        broker.stop()
    assert any("refused" in (json.loads(x)["error"] or "") for x in log.path.read_text().splitlines())


def _make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl, no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt, ext = folder / "server.key", folder / "server.csr", folder / "server.crt", folder / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    for args in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
            "-days",
            "2",
            "-subj",
            "/CN=meterbench test CA",
        ],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)
    return ca_crt, crt, key


@pytest.mark.network
def test_tls_broker_with_the_right_ca_and_refusal_without(tmp_path):
    ca, crt, key = _make_certificates(tmp_path / "pki")
    other_ca, _, _ = _make_certificates(tmp_path / "other")
    broker = MosquittoBroker(tmp_path / "mq", tls=(ca, crt, key)).start()
    try:
        recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
        log = recorder.device_log("controller", "mqtt")
        right = BenchController(
            MqttConfig.from_dict({"bench_id": "b4", "port": broker.port, "tls_ca": str(ca), "client_id": "c-tls"}),
            log,
            recorder.now_s,
        ).start()
        assert right.connected.is_set()
        right.stop()
        wrong = BenchController(
            MqttConfig.from_dict(
                {"bench_id": "b4", "port": broker.port, "tls_ca": str(other_ca), "client_id": "c-bad"}
            ),
            log,
            recorder.now_s,
        )
        with pytest.raises(DeviceError):
            wrong.start()
        recorder.close()
    finally:
        broker.stop()
