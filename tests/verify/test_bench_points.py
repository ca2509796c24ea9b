"""What the live bench says of its own points (session.json bench_points, warnings) is obeyed by run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meterbench.verify import run_session
from meterbench.verify.results import bench_point_problem

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "water-meter-short"


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (None, None),
        ({"Q3": {"status": "ok", "reasons": []}}, None),
        ({"Q2": {"status": "invalid", "reasons": ["x"]}}, None),
        (
            {"Q3": {"status": "suspect", "reasons": ["temperature 60 °C against 20.1 °C"]}},
            "the bench marked point Q3 suspect: temperature 60 °C against 20.1 °C",
        ),
        ({"Q3": {"status": "invalid"}}, "the bench marked point Q3 invalid: no reason given"),
        ({"Q3": "ok"}, "the bench marked point Q3 unreadable: no reason given"),
        (["Q3"], "session.json bench_points is not an object"),
    ],
)
def test_bench_point_problem(points, expected):
    manifest = {} if points is None else {"bench_points": points}
    assert bench_point_problem(manifest, "Q3") == expected


def test_a_point_the_bench_does_not_vouch_for_gets_no_verdict(tmp_path):
    baseline = run_session(SAMPLE, tmp_path / "base")
    session = tmp_path / "s"
    shutil.copytree(SAMPLE, session)
    (session / "hashes.json").unlink(missing_ok=True)  # edited after close, as a bench restart would
    manifest = json.loads((session / "session.json").read_text())
    manifest["bench_points"] = {"Q3": {"status": "invalid", "reasons": ["conflicting latch answers to cmd_id 7"]}}
    manifest["warnings"] = ["mqtt: the bench controller's broker is not authenticated (insecure = true)"]
    (session / "session.json").write_text(json.dumps(manifest))
    report = run_session(session, tmp_path / "out")
    for before, after in zip(baseline["instruments"], report["instruments"], strict=True):
        points = {p["name"]: p for p in after["points"]}
        assert points["Q3"]["verdict"] == "inconclusive"
        assert points["Q3"]["reason"] == "the bench marked point Q3 invalid: conflicting latch answers to cmd_id 7"
        for old in before["points"]:
            if old["name"] != "Q3":
                assert points[old["name"]]["verdict"] == old["verdict"]
                assert points[old["name"]]["error_pct"] == old["error_pct"]
    assert "bench: mqtt: the bench controller's broker is not authenticated (insecure = true)" in report["warnings"]
