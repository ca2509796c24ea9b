"""Forged MQTT messages against a live simulated run: no verdict may change.

The simulated bench's private broker allows anonymous clients, so an extra client (the forger)
can publish on the controller's topics: what protects the verdicts here is meterbench's own
checks, not the broker's ACL (deploy/mosquitto/ adds that on a real bench). The run: M1 true
error -0.4 %, M2 +2.5 %, MPE 2 % at Q3 (3 % above 30 °C): M2 must fail, or its point be
inconclusive with the reason; never pass.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from meterbench.bench import run_bench
from tests.bench.sample_config import sample_config

CONTROLLER = re.compile(r"controller 127\.0\.0\.1:(\d+)")


def _config(tmp_path: Path) -> Path:
    return sample_config(tmp_path, {"true_error_pct = [-0.4, 2.6]": "true_error_pct = [-0.4, 2.5]"})


class Forger:
    """An anonymous client on the bench's broker that watches the controller's topics and forges."""

    def __init__(self, port: int, attack: str) -> None:
        self.attack = attack
        self.last_seq = {"telemetry": 0, "event": 0}
        self.last_telemetry: dict = {}
        self.sent = 0
        self.done = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"forger-{attack}")
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.subscribe([("bench/sim1/telemetry", 1), ("bench/sim1/event", 1), ("bench/sim1/cmd/point", 1)])
        self._client.loop_start()

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def _publish(self, kind: str, payload: dict) -> None:
        self.last_seq[kind] += 1  # the next seq the true controller will use: a forger's best guess
        self._client.publish(f"bench/sim1/{kind}", json.dumps({**payload, "seq": self.last_seq[kind]}), qos=1)
        self.sent += 1

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        kind = message.topic.rsplit("/", 1)[-1]
        payload = json.loads(message.payload)
        if kind in self.last_seq:
            self.last_seq[kind] = max(self.last_seq[kind], payload.get("seq", 0))
            if kind == "telemetry":
                self.last_telemetry = payload
            return
        # a cmd/point command of meterbench
        if self.attack == "reused-cmd-id":  # answer first, with the command's own cmd_id
            answer = {"event": f"point_{payload['action']}", "point": payload["point"], "reference_volume_l": 0.0}
            self._publish("event", {**answer, "cmd_id": payload["cmd_id"]})
        elif payload["action"] == "start" and not self.done.is_set():
            self.done.set()
            threading.Thread(target=self._during_point, daemon=True).start()

    def _during_point(self) -> None:
        time.sleep(1.0)  # well inside the point (5 L at Q3: 7.5 s)
        if self.attack == "hot-telemetry":  # 300 copies of plausible-looking telemetry at 60 °C
            telemetry = {k: v for k, v in self.last_telemetry.items() if k != "seq"}
            for _ in range(300):
                self._publish("telemetry", {**telemetry, "temperature_c": 60.0})
        elif self.attack == "latch-events":  # a premature stop and a restart, with and without a cmd_id
            for event, volume, extra in (
                ("point_stop", 1.0, {}),
                ("point_start", 3.0, {}),
                ("point_stop", 4.0, {"cmd_id": 999}),
                ("point_start", 4.5, {"cmd_id": 998, "reference_seq": 1}),
            ):
                self._publish("event", {"event": event, "point": "Q3", "reference_volume_l": volume, **extra})


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
@pytest.mark.parametrize("attack", ["hot-telemetry", "latch-events", "reused-cmd-id"])
def test_no_forged_message_changes_a_verdict(tmp_path, attack):
    forgers: list[Forger] = []

    def on_step(line: str) -> None:
        match = CONTROLLER.search(line)
        if match and not forgers:
            forgers.append(Forger(int(match.group(1)), attack))

    try:
        report = run_bench(_config(tmp_path), tmp_path / "out", on_step=on_step)
    finally:
        for forger in forgers:
            forger.stop()
    (forger,) = forgers
    session = Path(report["bench"]["run_dir"]) / "session"
    manifest = json.loads((session / "session.json").read_text())
    points = {(i["id"], p["name"]): p for i in report["instruments"] for p in i["points"]}
    log = _lines(session / "devices" / "controller.jsonl")
    errors = [e["error"] or "" for e in log]
    q3 = manifest["bench_points"]["Q3"]
    assert points[("M2", "Q3")]["verdict"] in ("fail", "inconclusive")  # never a pass: truth is +2.5 % > MPE
    assert points[("M1", "Q3")]["verdict"] in ("pass", "inconclusive")  # truth -0.4 %
    for point in points.values():
        assert point["verdict"] != "inconclusive" or point["reason"]

    if attack == "hot-telemetry":
        assert forger.sent == 300
        refused = [e for e in errors if e.startswith("implausible: temperature_c 60 °C differs from the reference")]
        assert len(refused) == 300
        used = [e["parsed"]["temperature_c"] for e in log if e["parsed"] and "temperature_c" in e["parsed"]]
        assert used and max(used) < 21.0  # none of the forged temperatures was used
        # the bench does not vouch for a point with sustained implausible telemetry: no verdict from it at all
        for key in (("M1", "Q3"), ("M2", "Q3")):
            assert points[key]["verdict"] == "inconclusive"
            assert points[key]["reason"].startswith("the bench marked point Q3 suspect: 300 telemetry messages refused")
        assert q3["status"] == "suspect"
        assert q3["reasons"][0].startswith("300 telemetry messages refused during the point, temperature implausible")
        assert any(w.startswith("point Q3: suspect: 300 telemetry") for w in manifest["warnings"])
        assert report["bench"]["controller"]["duplicates"] == 0  # no true message lost to a forged seq
    elif attack == "latch-events":
        assert forger.sent == 4
        assert sum(e.startswith("unsolicited: point_") for e in errors) == 4
        assert q3["status"] == "ok" and q3["attempts"] == 1
        assert points[("M2", "Q3")]["verdict"] == "fail", points[("M2", "Q3")]["reason"]
        assert points[("M1", "Q3")]["verdict"] == "pass", points[("M1", "Q3")]["reason"]
    else:  # reused-cmd-id: the forged answer (0 L) always comes first
        assert q3["status"] == "invalid" and q3["attempts"] == 2
        assert "latched reference_volume_l 0.0000 L outside what the totaliser read before" in q3["reasons"][0]
        assert report["bench"]["controller"]["conflicts"] >= 4  # the true answers, refused as second answers
        assert not any("Q3: flying stop" in line for line in report["bench"]["log"])  # no volume was passed
        for point in points.values():
            assert point["verdict"] == "inconclusive" and "latched reference" in point["reason"]
        assert any(w.startswith("point Q3: invalid: 2 attempts void") for w in manifest["warnings"])
