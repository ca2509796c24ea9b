"""The shipped bench broker configuration (deploy/mosquitto/), run in a real Mosquitto.

Only authenticated clients over TLS; the ACL lets the controller publish only telemetry and
events and meterbench only commands and its status, so a forged message from any other
client (even one with a login) never reaches the bench.
"""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from meterbench.devices.mqtt import BenchController, MqttConfig, wait_until
from meterbench.errors import DeviceError
from meterbench.testing import MosquittoBroker
from tests.devices.test_mqtt import _make_certificates

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
USERS = {"meterbench": "bench-secret", "controller": "plc-secret", "visitor": "visitor-secret"}
GOOD_TELEMETRY = {
    "flow_m3h": 2.4,
    "temperature_c": 20.1,
    "pressure_kpa": 300.0,
    "valves": {"inlet": "open", "outlet": "open", "bypass": "closed"},
}


class _Sink:
    def __init__(self) -> None:
        self.lines: list[tuple] = []

    def append(self, *args, **kwargs) -> int:
        self.lines.append((args, kwargs))
        return len(self.lines) - 1


def _shipped_broker(workdir: Path) -> tuple[MosquittoBroker, Path]:
    """A broker running the shipped .conf and ACL, with test certificates and passwords."""
    ca, crt, key = _make_certificates(workdir / "pki")
    substitutions = {
        "/etc/mosquitto/meterbench.acl": str(DEPLOY / "meterbench.acl"),
        "/etc/mosquitto/certs/bench-ca.crt": str(ca),
        "/etc/mosquitto/certs/broker.crt": str(crt),
        "/etc/mosquitto/certs/broker.key": str(key),
    }
    lines = []
    for line in (DEPLOY / "meterbench-bench.conf").read_text().splitlines():
        if line.startswith(("listener", "per_listener_settings", "password_file")):
            continue  # the test broker has its own port and password file
        for old, new in substitutions.items():
            line = line.replace(old, new)
        lines.append(line)
    broker = MosquittoBroker(workdir / "mq", users=USERS, extra_lines=lines).start()
    return broker, ca


def _client(broker: MosquittoBroker, ca: Path, user: str, received: list) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{user}")
    client.username_pw_set(user, USERS[user])
    client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    client.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    connected = []
    client.on_connect = lambda c, u, f, reason, p: connected.append(not reason.is_failure)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert wait_until(lambda: connected == [True], 10.0), f"{user} could not connect"
    return client


def test_shipped_config_refuses_anonymous_and_plain_clients(tmp_path):
    text = (DEPLOY / "meterbench-bench.conf").read_text()
    for directive in ("allow_anonymous false", "acl_file ", "password_file ", "cafile ", "max_packet_size 16384"):
        assert directive in text, directive
    broker, ca = _shipped_broker(tmp_path)
    try:
        anonymous = BenchController(
            MqttConfig("b1", port=broker.port, tls_ca=str(ca), client_id="anon"), _Sink(), time.monotonic
        )
        with pytest.raises(DeviceError, match="refused the connection"):
            anonymous.start()
        plain = BenchController(
            MqttConfig("b1", port=broker.port, username="meterbench", password="bench-secret"), _Sink(), time.monotonic
        )
        with pytest.raises(DeviceError):  # no TLS: the TLS listener does not answer MQTT
            plain.start(connect_timeout_s=2.0)
    finally:
        broker.stop()


def test_acl_lets_only_the_controller_speak_for_the_bench(tmp_path):
    broker, ca = _shipped_broker(tmp_path)
    config = MqttConfig("b1", port=broker.port, username="meterbench", password="bench-secret", tls_ca=str(ca))
    assert config.secure
    sink = _Sink()
    bench = BenchController(config, sink, time.monotonic).start()
    seen_by_controller: list = []
    controller = _client(broker, ca, "controller", seen_by_controller)
    visitor = _client(broker, ca, "visitor", [])
    controller.subscribe("bench/b1/cmd/#", qos=1)
    try:
        forged = {**GOOD_TELEMETRY, "temperature_c": 60.0, "seq": 1}
        visitor.publish("bench/b1/telemetry", json.dumps(forged), qos=1).wait_for_publish(5)
        visitor.publish("bench/b1/cmd/flow_setpoint", json.dumps({"flow_m3h": 9.9, "cmd_id": 1}), qos=1)
        time.sleep(1.0)
        genuine = {**GOOD_TELEMETRY, "seq": 1}
        controller.publish("bench/b1/telemetry", json.dumps(genuine), qos=1).wait_for_publish(5)
        assert wait_until(lambda: bench.telemetry is not None, 10.0)
        assert bench.telemetry["temperature_c"] == 20.1  # the visitor's 60 °C never arrived
        assert bench.counts.received == 1
        bench.set_flow(2.4)
        assert wait_until(lambda: any(t == "bench/b1/cmd/flow_setpoint" for t, _ in seen_by_controller), 10.0)
        commands = [json.loads(p) for t, p in seen_by_controller if t.startswith("bench/b1/cmd/")]
        assert [c["flow_m3h"] for c in commands] == [2.4]  # the visitor's command was dropped by the broker
    finally:
        bench.stop()
        for client in (controller, visitor):
            client.loop_stop()
        broker.stop()
