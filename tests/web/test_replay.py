"""`replay_session`: pacing by the session's timestamps, verdicts after their point's stop, from report.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterbench.errors import ConfigError
from meterbench.session import load_session
from meterbench.web import replay_session, session_timeline

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "tank-sim-seed2"


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def publish(self, event: dict) -> None:
        self.events.append(event)


def test_replay_paces_by_the_logs_and_gives_each_verdict_after_its_points_stop(tmp_path):
    recorder, waits = Recorder(), []
    report = replay_session(SAMPLE, tmp_path / "out", 50.0, recorder, sleep=waits.append)  # no real waiting
    with load_session(SAMPLE) as session:
        timeline = session_timeline(session)
    span_s = timeline[-1][0] - timeline[0][0]
    assert span_s > 300  # the sample's logs cover ~316 s
    assert max(waits) == pytest.approx(span_s / 50.0, abs=0.5)  # the last event is due span/speed after the first
    written = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report == written
    order = [(e["type"], e.get("point"), e.get("phase")) for e in recorder.events if e["type"] in ("point", "verdict")]
    assert order == [
        ("point", "R1", "running"), ("point", "R1", "stopped"), ("verdict", "R1", None),
        ("point", "R2", "running"), ("point", "R2", "stopped"), ("verdict", "R2", None),
    ]  # fmt: skip
    points = {p["name"]: p for p in written["instruments"][0]["points"]}
    for verdict in (e for e in recorder.events if e["type"] == "verdict"):
        assert verdict["instrument"] == "T1"
        for key in ("error_pct", "mpe_pct", "uncertainty_pct", "verdict", "reason"):
            assert verdict[key] == points[verdict["point"]][key]
    first, last = recorder.events[0], recorder.events[-1]
    assert first["type"] == "state" and first["phase"] == "verifying" and first["points"] == ["R1", "R2"]
    assert last == {"type": "state", "phase": "done", "verdict": written["verdict"], "current_point": None}
    warnings = [e["message"] for e in recorder.events if e["type"] == "warning"]
    assert warnings == written["instruments"][0]["warnings"] + written["warnings"]


def test_a_bad_speed_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="--speed: expected a positive factor"):
        replay_session(SAMPLE, tmp_path / "out", 0.0, Recorder())
    assert not (tmp_path / "out").exists()
