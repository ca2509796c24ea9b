"""Nothing lost end to end: the simulated bench over real transports, with a broker restart
and a serial unplug/replug in the middle, counted against what the peer sent."""

from __future__ import annotations

import json
import time

import pytest

from meterbench.devices.camera import CameraCapture
from meterbench.devices.mqtt import BenchController, MqttConfig
from meterbench.devices.serial_totaliser import TotaliserReader
from meterbench.session import SessionRecorder
from meterbench.sim.live import SimMeter, SimulatedBenchPeer
from meterbench.vision.layout import default_register_layout
from tests.session.session_helpers import water_meter_manifest


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_no_event_or_frame_lost_across_broker_restart_and_unplug(mosquitto_broker, pty_pair, tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    totaliser = TotaliserReader(
        pty_pair.a,
        recorder.device_log("ref", "serial-totaliser"),
        recorder.now_s,
        pulse_volume_l=0.0001,
        reopen_interval_s=0.2,
    ).start()
    controller = BenchController(
        MqttConfig("b", port=mosquitto_broker.port), recorder.device_log("controller", "mqtt"), recorder.now_s
    ).start()
    # the peer publishes telemetry from its start: it starts after the controller subscribed, else
    # seq 1 can reach the broker before any subscriber exists (lost by the test's order, not the bench)
    peer = SimulatedBenchPeer(pty_pair.b, "127.0.0.1", mosquitto_broker.port, "b", [SimMeter("M1", 0.5, 100.0)]).start()
    writer = recorder.camera_writer("cam", 5.0, (640, 360), kind="images")
    camera = CameraCapture(
        "cam", peer.camera(0, default_register_layout("dials")), writer, recorder.now_s, fps=5.0
    ).start()
    controller.set_valve("inlet", "open").wait(5.0)
    controller.set_flow(1.0).wait(5.0)
    time.sleep(3.0)
    mosquitto_broker.restart(down_s=0.5)
    time.sleep(3.0)
    pty_pair.unplug()
    time.sleep(0.5)
    pty_pair.plug()
    time.sleep(3.0)
    camera.stop()
    peer.stop()  # flushes its QoS 1 queue before disconnecting
    time.sleep(0.5)
    totaliser.stop()
    controller.stop()
    recorder.close()

    assert camera.counts.written == peer.counts.frames["M1"] > 40
    messages = [e for e in _lines(tmp_path / "s/devices/controller.jsonl") if e["parsed"] and "seq" in e["parsed"]]
    telemetry = {e["parsed"]["seq"] for e in messages if e["topic"].endswith("/telemetry")}
    events = {e["parsed"]["seq"] for e in messages if e["topic"].endswith("/event")}
    assert telemetry == set(range(1, peer.counts.telemetry + 1))
    assert events == set(range(1, peer.counts.events + 1))
    serial_events = _lines(tmp_path / "s/devices/ref.jsonl")
    seqs = [e["parsed"]["seq"] for e in serial_events if e["parsed"]]
    missing = set(range(1, max(seqs) + 1)) - set(seqs)
    noted = sum(
        int(e["error"].split("(")[1].split()[0])
        for e in serial_events
        if e["error"] and e["error"].startswith("sequence gap")
    )
    assert len(missing) == noted  # every lost line is recorded as lost
    assert len(missing) <= peer.counts.serial_unsent + 3  # only lines in flight at the unplug
    assert totaliser.counts.reconnects == 1
