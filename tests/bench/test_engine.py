"""The live bench on the simulated peer: the shipped sample end to end, run folders that never
overwrite, steps on stderr, a stop by signal, a kill -9, a flow upset; and the engine/factory split."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meterbench.bench import claim_run_dir, run_bench
from meterbench.errors import OutputError

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "samples" / "sim-bench.toml"
BENCH_DIR = ROOT / "meterbench" / "bench"
RUN_NAME = re.compile(r"live-sim-bench-\d{8}T\d{6}Z(-\d+)?")


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


def _start(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "meterbench", "bench", "--config", str(config), "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and RUN_NAME.fullmatch(p.name)) if out.is_dir() else []


def _wait_for(out: Path, relative: str, text: str, timeout_s: float) -> Path:
    """Wait until ``<the run folder>/relative`` contains ``text``; return the run folder."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run_dir in _run_dirs(out):
            path = run_dir / relative
            if path.exists() and text in path.read_text():
                return run_dir
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {out}/<run>/{relative} after {timeout_s} s")


# -- run folders ------------------------------------------------------------------------------


def test_run_folders_are_unique_per_start_time_and_never_reused(tmp_path):
    started = datetime(2026, 12, 1, 9, 30, 5, tzinfo=UTC)
    out = tmp_path / "out"
    first = claim_run_dir(out, "live-sim-bench", started)
    second = claim_run_dir(out, "live-sim-bench", started)
    assert (first.name, second.name) == ("live-sim-bench-20261201T093005Z", "live-sim-bench-20261201T093005Z-2")
    (out / "live-sim-bench-20261201T093005Z-3").mkdir()  # taken by someone else (a copy, a crash)
    assert claim_run_dir(out, "live-sim-bench", started).name == "live-sim-bench-20261201T093005Z-4"
    later = claim_run_dir(out, "live-sim-bench", datetime(2026, 12, 1, 9, 30, 6, tzinfo=UTC))
    assert later.name == "live-sim-bench-20261201T093006Z"
    assert all(p.is_dir() and not any(p.iterdir()) for p in out.iterdir())


def test_bad_out_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    with pytest.raises(OutputError, match=r"--out .*afile: is a file, expected a folder for the run folders"):
        claim_run_dir(afile, "x")
    with pytest.raises(OutputError, match=r"--out .*afile/sub: cannot create the folder"):
        claim_run_dir(afile / "sub", "x")
    with pytest.raises(OutputError, match=r"--out /proc: cannot create a run folder in it"):
        claim_run_dir(Path("/proc"), "x")  # refused even to root
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_bench_command_refuses_bad_out_before_opening_any_device(tmp_path, kind):
    out = tmp_path / "afile" if kind == "file" else Path("/proc/meterbench-out")
    if kind == "file":
        out.write_text("keep me")
    started = time.monotonic()
    process = _start(SAMPLE, out)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert f"--out {out}: " in stderr and "Traceback" not in stderr
    assert "devices opened" not in stderr
    assert time.monotonic() - started < 20.0  # no broker, pty or camera was started and waited for
    if kind == "file":
        assert out.read_text() == "keep me"


# -- engine / factory split -------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_factory_imports_the_simulator_and_the_engine_has_no_sim_branch():
    for path in BENCH_DIR.glob("*.py"):
        simulated = {m for m in _imported_modules(path) if m.startswith(("meterbench.sim", "meterbench.testing"))}
        assert simulated == ({"meterbench.sim", "meterbench.testing"} if path.name == "factory.py" else set()), path
    engine = (BENCH_DIR / "engine.py").read_text()
    assert not re.search(r"""["']sim["']|\bsim\b|simulat""", engine.split('"""', 2)[2])  # past the docstring


# -- live runs on the simulated bench ----------------------------------------------------------


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_sample_bench_is_conclusive_right_and_never_overwrites_an_earlier_run(tmp_path):
    out = tmp_path / "out"
    earlier = {  # what an earlier run (old layout, fixed session_id) left in the same --out
        "report.json": b'{"session": "earlier"}\n',
        "report.html": b"<html>earlier</html>\n",
        "bench.json": b'{"log": []}\n',
        "live-sim-bench/session.json": b'{"session_id": "live-sim-bench"}\n',
    }
    for name, data in earlier.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    process = _start(SAMPLE, out)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr

    assert {name: (out / name).read_bytes() for name in earlier} == earlier
    (run_dir,) = _run_dirs(out)
    assert sorted(p.name for p in run_dir.iterdir()) == ["bench.json", "report.html", "report.json", "session"]
    report = json.loads((run_dir / "report.json").read_text())
    reasons = [(i["id"], p["name"], p.get("reason")) for i in report["instruments"] for p in i["points"]]
    assert stdout.startswith(f"{run_dir.name}: fail"), (stdout, reasons, report.get("warnings"))

    truth = json.loads((run_dir / "session" / "truth.json").read_text())
    true_error = {(i["id"], p["name"]): p["true_error_pct"] for i in truth["instruments"] for p in i["points"]}
    assert true_error.keys() == {(m, q) for m in ("M1", "M2") for q in ("Q3", "Q2")}
    assert {k: round(v, 1) for k, v in true_error.items()} == {
        ("M1", "Q3"): -0.4,
        ("M1", "Q2"): -0.4,
        ("M2", "Q3"): 2.6,
        ("M2", "Q2"): 2.6,
    }
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            key = (instrument["id"], point["name"])
            assert point["verdict"] in ("pass", "fail"), (key, point["reason"])
            assert point["uncertainty_pct"] <= point["mpe_pct"] / 3, (key, point["reason"])
            expected = "pass" if abs(true_error[key]) <= point["mpe_pct"] else "fail"
            assert point["verdict"] == expected, (key, point["reason"])
            assert abs(point["error_pct"] - true_error[key]) <= min(point["uncertainty_pct"], 0.25), key
    assert [i["verdict"] for i in report["instruments"]] == ["pass", "fail"]
    # each flying start/stop is timed by the totaliser line it latched (reference_seq), not by the
    # MQTT event, which comes a few ms later through the broker (enough to fail the latch check at Q3)
    session_dir = run_dir / "session"
    line_t_s = {}
    for line in (session_dir / "devices" / "ref-meter.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["parsed"]:
            line_t_s.setdefault(event["parsed"]["seq"], event["t_s"])
    latches = {}
    for line in (session_dir / "devices" / "controller.jsonl").read_text().splitlines():
        parsed = json.loads(line)["parsed"] or {}
        if parsed.get("event") in ("point_start", "point_stop"):
            latches[(parsed["point"], parsed["event"])] = line_t_s[parsed["reference_seq"]]
    for point in report["instruments"][0]["points"]:  # report.json keeps 6 decimals of t_s
        for which in ("start", "stop"):
            latched_t_s = latches[(point["name"], f"point_{which}")]
            assert point["details"][f"{which}_t_s"] == pytest.approx(latched_t_s, abs=2e-6)


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_sigterm_makes_the_bench_safe_and_closes_the_session(tmp_path):
    out = tmp_path / "out"
    process = _start(_config(tmp_path, SHORT), out)
    run_dir = _wait_for(out, "session/devices/controller.jsonl", "point_start", 60.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "stopped: interrupted (signal SIGTERM)" in stderr and "valves set to safe" in stderr
    assert f"session saved in {run_dir / 'session'}" in stderr
    manifest = json.loads((run_dir / "session" / "session.json").read_text())
    assert manifest["stopped_reason"].startswith("interrupted") and manifest["session_id"] == run_dir.name
    controller_log = run_dir / "session" / "devices" / "controller.jsonl"
    events = [json.loads(x) for x in controller_log.read_text().splitlines()]
    after_stop = events[max(i for i, e in enumerate(events) if "point_start" in e["raw"]) :]
    commands = [e["parsed"] for e in after_stop if e.get("topic", "").endswith("/cmd/valve")]
    assert {"valve": "inlet", "state": "closed"}.items() <= commands[0].items()
    bench = json.loads((run_dir / "bench.json").read_text())
    assert bench["safe_state_failures"] == [] and any("Q3: flying start" in line for line in bench["log"])


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_kill_9_leaves_a_session_that_loads(tmp_path):
    from meterbench.session import load_session

    out = tmp_path / "out"
    process = _start(_config(tmp_path, SHORT), out)
    run_dir = _wait_for(out, "session/devices/controller.jsonl", "point_start", 60.0)
    time.sleep(0.5)
    process.kill()
    process.wait()
    os.killpg(process.pid, signal.SIGTERM)  # its broker and socat, left orphaned by the kill
    session = load_session(run_dir / "session")
    assert len(session.device_events("ref-meter")) > 10
    assert session.camera("cam-M1").frame_times.size > 10


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_flow_leaving_its_window_voids_the_attempt_and_repeats_the_point(tmp_path):
    config = _config(tmp_path, SHORT.replace("2.0", "3.0"))
    text = config.read_text().replace(
        "true_error_pct = [-0.4, 2.6]",
        "true_error_pct = [-0.4, 2.6]\ndisturbances = [{after_start_s = 1.0, duration_s = 2.5, factor = 0.7}]",
    )
    config.write_text(text)
    out = tmp_path / "out"
    steps: list[str] = []
    report = run_bench(config, out, on_step=steps.append)
    (run_dir,) = _run_dirs(out)
    assert report["bench"]["run_dir"] == str(run_dir)
    bench = json.loads((run_dir / "bench.json").read_text())
    assert any("Q3: attempt 1 void" in line for line in bench["log"])
    assert sum("Q3: flying start" in line for line in steps) == 2
    events = [json.loads(x) for x in (run_dir / "session" / "devices" / "controller.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["parsed"] and e["parsed"].get("event") == "point_start"]
    assert len(starts) == 2
    truth = json.loads((run_dir / "session" / "truth.json").read_text())
    q3 = [p for p in truth["instruments"][0]["points"] if p["name"] == "Q3"]
    assert len(q3) == 1 and q3[0]["true_error_pct"] == pytest.approx(-0.4, abs=0.01)
    manifest = json.loads((run_dir / "session" / "session.json").read_text())
    assert manifest["exit_status"] == "success"
    assert bench["simulator_sent"]["serial_lines"] > 0
