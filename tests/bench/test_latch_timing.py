"""The flying start/stop is matched to the reference stream by the totaliser line the controller
latched (``reference_seq``), not by when its MQTT event arrived: a loaded bench PC (24 cameras)
delays MQTT by tens of ms, which must not change a verdict.

One live simulated run is recorded; a copy of its session has every controller message arriving
50 ms later (the hash chain rewritten, as a recorder on a loaded PC would have written it). Both
give the same points to the last digit, and each latch instant is its totaliser line's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meterbench.bench import run_bench
from meterbench.session.integrity import CHAIN_FIELD, HASHES_FILE, chain_seed, line_digest
from meterbench.verify import run_session

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "samples" / "sim-bench.toml"
DELAY_S = 0.05  # 50 ms: 0.033 L at 2.4 m3/h, 16x the 2 mL latch tolerance of a clock match


def _delayed_copy(session: Path, target: Path) -> None:
    shutil.copytree(session, target)
    (target / HASHES_FILE).unlink()
    log = target / "devices" / "controller.jsonl"
    previous, lines = chain_seed("controller"), []
    for text in log.read_text().splitlines():
        event = json.loads(text)
        event["t_s"] += DELAY_S
        event[CHAIN_FIELD] = previous
        line = json.dumps(event, separators=(",", ":"))
        previous = line_digest(line.encode())
        lines.append(line)
    log.write_text("\n".join(lines) + "\n")


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_latch_matching_does_not_depend_on_mqtt_delay(tmp_path):
    text = SAMPLE.read_text().split("[[test_plan.points]]")[0]
    text += '[[test_plan.points]]\nname = "Q3"\nflow_rate_m3h = 2.4\nvolume_l = 5.0\nwindow_pct = 5.0\n'
    config = tmp_path / "bench.toml"
    config.write_text(text)
    report = run_bench(config, tmp_path / "out", on_step=None)
    session = Path(report["bench"]["run_dir"]) / "session"
    _delayed_copy(session, tmp_path / "delayed")
    delayed = run_session(tmp_path / "delayed", tmp_path / "delayed-run")

    def points(rep: dict) -> list[tuple]:
        return [
            (i["id"], p["name"], p["verdict"], p["error_pct"], p["reference_volume"], p["details"].get("start_t_s"))
            for i in rep["instruments"]
            for p in i["points"]
        ]

    assert [p[2] for p in points(report)] == ["pass", "fail"]  # M1 -0.4 %, M2 +2.6 %: conclusive
    assert points(delayed) == points(report)
    latches = [json.loads(x)["parsed"] for x in (session / "devices" / "controller.jsonl").read_text().splitlines()]
    start = next(p for p in latches if p and p.get("event") == "point_start")
    line_t_s = next(
        json.loads(x)["t_s"]
        for x in (session / "devices" / "ref-meter.jsonl").read_text().splitlines()
        if (json.loads(x)["parsed"] or {}).get("seq") == start["reference_seq"]
    )
    assert report["instruments"][0]["points"][0]["details"]["start_t_s"] == pytest.approx(line_t_s, abs=2e-6)
