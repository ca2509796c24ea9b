"""`replay_session`: pacing by the session's timestamps, verdicts after their point's stop, from report.json."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from meterbench.errors import ConfigError
from meterbench.session import load_session
from meterbench.web import replay_session, session_timeline
from meterbench.web.frames import refusal_key

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


def test_replay_plays_the_frames_the_verification_read_with_their_readings(tmp_path):
    """The water-meter sample: each frame the verifier read comes back at its time, as a JPEG with the
    register as read, which follows the simulated register (truth.json) within 0.02 L."""
    sample = SAMPLE.parent / "water-meter-short"
    recorder = Recorder()
    replay_session(sample, tmp_path / "out", 50.0, recorder, sleep=lambda s: None, frame_fps=math.inf)
    truth = json.loads((sample / "truth.json").read_text())
    frames = [e for e in recorder.events if e["type"] == "frame"]
    assert [e["t_s"] for e in frames] == sorted(e["t_s"] for e in frames)  # at their times
    for instrument in truth["instruments"]:
        camera = f"cam-{instrument['id']}"
        mine = [e for e in frames if e["camera"] == camera]
        assert len(mine) >= 300 and all(e["instrument"] == instrument["id"] for e in mine)
        assert all(e["jpeg"].startswith("/9j/") and (e["width"], e["height"]) == (480, 270) for e in mine)
        ok = [e for e in mine if e["reading"]["ok"]]
        assert len(ok) >= 0.9 * len(mine)
        checked = 0
        for point in instrument["points"]:
            t0, t1 = point["t_start_s"], point["t_stop_s"]
            rate = (point["register_stop_l"] - point["register_start_l"]) / (t1 - t0)
            for e in (e for e in ok if t0 <= e["t_s"] <= t1):
                true_l = point["register_start_l"] + rate * (e["t_s"] - t0)
                assert e["reading"]["volume_l"] == pytest.approx(true_l, abs=0.02), (point["name"], e["t_s"])
                checked += 1
        assert checked >= 100
        for e in ok:
            boxes = np.array([x["box"] for x in e["reading"]["elements"] if x["box"] is not None])
            assert len(boxes) == len(e["reading"]["elements"]) and boxes.min() >= 0 and boxes[..., 0].max() <= 480
            assert e["reading"]["alignment"]["ok"]
        # the counters of refused frames count every frame not read, by reason without figures
        refused = Counter(refusal_key(e["reading"]["reason"]) for e in mine if not e["reading"]["ok"])
        assert mine[-1]["refused"] == dict(refused) and sum(refused.values()) == len(mine) - len(ok)
