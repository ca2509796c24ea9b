"""The live bench on the simulated peer: a full run, a stop by signal, a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterbench.bench.engine import load_bench_config

SAMPLE = Path(__file__).parents[2] / "samples" / "sim-bench.toml"


def _config(tmp_path: Path, points: str) -> Path:
    text = SAMPLE.read_text().split("[[test_plan.points]]")[0] + points
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


SHORT = """[[test_plan.points]]
name = "Q3"
flow_rate_m3h = 2.4
volume_l = 2.0
window_pct = 5.0
"""


def test_config_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "b.toml"
    bad.write_text('[bench]\nid = "x"\n[[devices]]\nid = "r"\nkind = "serial-totaliser"\n')
    with pytest.raises(ValueError, match=r"b.toml: \[\[devices\]\] r: 'port' is required"):
        load_bench_config(bad)
    bad.write_text('[bench]\nid = "x"\n[[devices]]\nid = "fc"\nkind = "modbus"\nport = "p"\n')
    with pytest.raises(ValueError, match=r"\[\[devices\]\] fc: 'fields' is required"):
        load_bench_config(bad)
    no_sim = SAMPLE.read_text().replace("[simulator]", "[not_simulator]")
    bad.write_text(no_sim)
    with pytest.raises(ValueError, match=r"\[\[devices\]\] ref-meter, .* use \"sim\" but there is no"):
        load_bench_config(bad)
    sample = load_bench_config(SAMPLE)
    assert [p.name for p in sample.points] == ["Q3", "Q2"]
    assert [d["kind"] for d in sample.devices] == ["serial-totaliser", "modbus"]


def _start(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "meterbench", "bench", "--config", str(config), "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} after {timeout_s} s")


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_sigterm_makes_the_bench_safe_and_closes_the_session(tmp_path):
    out = tmp_path / "out"
    process = _start(_config(tmp_path, SHORT), out)
    controller_log = out / "live-sim-bench" / "devices" / "controller.jsonl"
    _wait_for(controller_log, "point_start", 60.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "stopped: interrupted (signal SIGTERM)" in stderr and "valves set to safe" in stderr
    manifest = json.loads((out / "live-sim-bench" / "session.json").read_text())
    assert manifest["stopped_reason"].startswith("interrupted")
    events = [json.loads(x) for x in controller_log.read_text().splitlines()]
    after_stop = events[max(i for i, e in enumerate(events) if "point_start" in e["raw"]) :]
    commands = [e["parsed"] for e in after_stop if e.get("topic", "").endswith("/cmd/valve")]
    assert {"valve": "inlet", "state": "closed"}.items() <= commands[0].items()


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_kill_9_leaves_a_session_that_loads(tmp_path):
    from meterbench.session import load_session

    out = tmp_path / "out"
    process = _start(_config(tmp_path, SHORT), out)
    session_dir = out / "live-sim-bench"
    _wait_for(session_dir / "devices" / "controller.jsonl", "point_start", 60.0)
    time.sleep(0.5)
    process.kill()
    process.wait()
    os.killpg(process.pid, signal.SIGTERM)  # its broker and socat, left orphaned by the kill
    session = load_session(session_dir)
    assert len(session.device_events("ref-meter")) > 10
    assert session.camera("cam-M1").frame_times.size > 10


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_flow_leaving_its_window_voids_the_attempt_and_repeats_the_point(tmp_path):
    from meterbench.bench.engine import run_bench

    config = _config(tmp_path, SHORT.replace("2.0", "3.0"))
    text = config.read_text().replace(
        "true_error_pct = [-0.4, 0.8]",
        "true_error_pct = [-0.4, 0.8]\ndisturbances = [{after_start_s = 1.0, duration_s = 2.5, factor = 0.7}]",
    )
    config.write_text(text)
    out = tmp_path / "out"
    try:
        run_bench(config, out)
    except (OSError, ValueError) as exc:  # the report needs the shipped ONNX models
        assert "onnx" in str(exc)
    bench = json.loads((out / "bench.json").read_text())
    assert any("Q3: attempt 1 void" in line for line in bench["log"])
    events = [json.loads(x) for x in (out / "live-sim-bench" / "devices" / "controller.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["parsed"] and e["parsed"].get("event") == "point_start"]
    assert len(starts) == 2
    truth = json.loads((out / "live-sim-bench" / "truth.json").read_text())
    q3 = [p for p in truth["instruments"][0]["points"] if p["name"] == "Q3"]
    assert len(q3) == 1 and q3[0]["true_error_pct"] == pytest.approx(-0.4, abs=0.01)
    manifest = json.loads((out / "live-sim-bench" / "session.json").read_text())
    assert manifest["exit_status"] == "success"
