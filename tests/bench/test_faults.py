"""Faults during a live run: too little disk to start, a disk that fills up mid-run (a real tmpfs),
and kill -9 at random instants of runs against one simulated bench that goes on between them.

Each is counted against what was acknowledged (the recorder's counts) or what the simulated
peer says it sent: nothing acknowledged is lost, every partial session loads, the stop is
recorded where the process could record it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.bench import BenchStopped, run_bench
from meterbench.errors import OutputError
from meterbench.session import load_session
from meterbench.session.integrity import chain_breaks
from tests.bench.sample_config import ROOT, SAMPLE, q3_point, sample_config

Q3 = q3_point(30.0)


def _check_acknowledged(session_dir: Path, recorded: dict[str, int]) -> None:
    """Every acknowledged record is in the files, nothing else, and each device log's chain holds."""
    session = load_session(session_dir)
    assert session.warnings == [], session.warnings  # no partial or damaged line: failed writes were undone
    for key, count in recorded.items():
        kind, name = key.split("/")
        if kind == "devices":
            lines = (session_dir / "devices" / f"{name}.jsonl").read_bytes().splitlines()
            assert len(lines) == count == len(session.device_events(name)), key
            assert chain_breaks(lines, name, f"devices/{name}.jsonl") == [], key
        else:
            assert session.camera(name).frame_times.size == count, key
            frames = list((session_dir / "cameras" / name).iterdir())
            assert len([f for f in frames if f.suffix == ".jpg"]) >= count and not any(
                f.suffix == ".tmp" for f in frames
            )


# -- free space --------------------------------------------------------------------------------


def test_a_run_is_refused_below_the_free_space_minimum_before_any_device(tmp_path):
    config = sample_config(tmp_path, {"min_free_disk_mb = 200": "min_free_disk_mb = 9000000"})
    started = time.monotonic()
    with pytest.raises(OutputError, match=r"--out .*: \d+ MB free, below bench.min_free_disk_mb = 9e\+06 MB"):
        run_bench(config, tmp_path / "out", on_step=None)
    assert time.monotonic() - started < 5.0  # no broker, pty or camera was started
    assert list((tmp_path / "out").iterdir()) == []  # the run folder claimed for it is removed again


@pytest.fixture
def small_disk(tmp_path):
    """A real 40 MB file system (tmpfs; mounting needs root, which the test machine and CI have)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (needs root): {result.stderr.decode().strip()}", pytrace=False)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave_bytes: int) -> int:
    """Write a file until only ``leave_bytes`` are free (0: until the disk is full); return bytes written."""
    written = 0
    block = bytes(1 << 18)
    with open(folder / "filler", "wb", buffering=0) as f:
        while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave_bytes + len(block):
            written += f.write(block)
        if leave_bytes == 0:
            try:
                while True:
                    written += f.write(block[:4096])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return written


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
@pytest.mark.parametrize("how", ["disk full", "below stop_free_disk_mb"])
def test_disk_filling_up_mid_run_stops_the_bench_gracefully(small_disk, tmp_path, how):
    limits = "min_free_disk_mb = 10\nstop_free_disk_mb = " + ("0" if how == "disk full" else "8")
    config = sample_config(tmp_path, {"min_free_disk_mb = 200     #": f"{limits}  #", "stop_free_disk_mb = 50": "#"})
    filled = threading.Event()

    def on_step(line: str) -> None:  # someone else fills the disk during the point
        if "flying start" in line and not filled.is_set():
            filled.set()
            threading.Timer(1.0, _fill, (small_disk, 0 if how == "disk full" else 5_000_000)).start()

    with pytest.raises(BenchStopped) as stopped:
        run_bench(config, small_disk / "out", on_step=on_step)
    message = str(stopped.value)
    assert "stopped: disk: " in message and "valves set to safe state" in message, message
    (run_dir,) = (small_disk / "out").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["bench.json", "session"]  # the reserve file is gone
    manifest = json.loads((run_dir / "session" / "session.json").read_text())
    stop = manifest["stop"]
    expected = "a write failed" if how == "disk full" else "disk space low: "
    assert manifest["stopped_reason"] == stop["reason"] and expected in stop["reason"], stop
    assert manifest["exit_status"] == "abort"
    assert stop["safe_state"] == "confirmed"
    assert stop["valves"] == {"inlet": "closed", "outlet": "open", "bypass": "open"}
    bench = json.loads((run_dir / "bench.json").read_text())
    assert bench["stop"] == stop and bench["safe_state_failures"] == []
    _check_acknowledged(run_dir / "session", bench["recorded"])
    assert bench["recorded"]["cameras/cam-M1"] > 10 and bench["recorded"]["devices/ref-meter"] > 30
    assert (run_dir / "session" / "hashes.json").is_file()


# -- kill -9 -----------------------------------------------------------------------------------


def _video(path: Path, seconds: float = 60.0, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
    for i in range(int(seconds * fps)):
        writer.write(np.full((120, 160, 3), i % 256, np.uint8))
    writer.release()
    return path


def _external_bench(tmp_path: Path, serial_port: str, mqtt_port: int, video: Path) -> Path:
    """The sample as a real bench (no [simulator]) wired to a peer that outlives each bench process."""
    text = SAMPLE.read_text()
    text = text[: text.index("\n[simulator]\n")] + text[text.index("\n[mqtt]\n") :]
    text = text[: text.index('[[devices]]\nid = "flow-computer"')] + text[text.index("[[reference_instruments]]") :]
    text = text.replace("port = 0 ", f"port = {mqtt_port}\ninsecure = true ")
    text = text.replace('port = "sim"', f'port = "{serial_port}"').replace('source = "sim"', f'source = "{video}"')
    path = tmp_path / "bench.toml"
    path.write_text(text.split("[[test_plan.points]]")[0] + Q3)
    return path


def _log(path: Path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):  # the line being written at the kill
            out.append(json.loads(line))
    return out


@pytest.mark.network
@pytest.mark.serial
@pytest.mark.slow
def test_kill_9_at_random_instants_loses_no_acknowledged_record(mosquitto_broker, pty_pair, tmp_path):
    from meterbench.sim import SimMeter, SimulatedBenchPeer

    meters = [SimMeter("M1", -0.4, 100.0), SimMeter("M2", 2.6, 137.1)]
    peer = SimulatedBenchPeer(pty_pair.b, "127.0.0.1", mosquitto_broker.port, "sim1", meters).start()
    config = _external_bench(tmp_path, pty_pair.a, mosquitto_broker.port, _video(tmp_path / "cam.mp4"))
    out = tmp_path / "out"
    rng = random.Random(16)
    signals = [signal.SIGKILL] * 20 + [signal.SIGTERM] * 2
    rng.shuffle(signals)
    runs: list[tuple[Path, float, float, int]] = []  # (run folder, devices opened, killed: monotonic), signal
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for sig in signals:
            before = set(out.iterdir()) if out.exists() else set()
            process = subprocess.Popen(
                [sys.executable, "-m", "meterbench", "bench", "--config", str(config), "--out", str(out)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 30.0
            run_dir = None
            while time.monotonic() < deadline and run_dir is None:
                new = [p for p in (set(out.iterdir()) if out.exists() else set()) - before]
                if new and (new[0] / "session" / "devices" / "controller.jsonl").exists():
                    run_dir = new[0]
                time.sleep(0.02)
            assert run_dir is not None, "the bench did not open its devices in 30 s"
            opened = time.monotonic()
            time.sleep(rng.uniform(0.0, 5.0))
            killed = time.monotonic()
            process.send_signal(sig)
            process.wait(timeout=30)
            runs.append((run_dir, opened, killed, sig))
    finally:
        peer.stop()
    sent = peer.counts.sent

    assert len([r for r in runs if r[3] == signal.SIGKILL]) == 20
    seen = {"telemetry": set(), "event": set()}
    refused: list[str] = []
    for run_dir, opened, killed, sig in runs:
        session = load_session(run_dir / "session")  # every partial session loads
        serial = _log(run_dir / "session" / "devices" / "ref-meter.jsonl")
        received = {e["parsed"]["seq"] for e in serial if e["parsed"]}
        expected = {seq for t, seq in sent["serial"] if opened + 0.5 <= t <= killed - 0.5}
        assert expected <= received, (run_dir.name, sorted(expected - received)[:5])
        for e in _log(run_dir / "session" / "devices" / "controller.jsonl"):
            kind = (e.get("topic") or "").rsplit("/", 1)[-1]
            if kind in seen:  # recorded, used or refused with its reason (e.g. implausible): not lost
                seen[kind].add(json.loads(e["raw"])["seq"])
                if e["error"]:
                    refused.append(e["error"])
        manifest = session.manifest
        if sig == signal.SIGTERM:  # the process could record its stop
            assert manifest["stopped_reason"] == "interrupted (signal SIGTERM)"
            assert manifest["stop"]["safe_state"] == "confirmed"
            assert (run_dir / "bench.json").is_file()
        else:
            assert "stopped_reason" not in manifest and not (run_dir / "bench.json").exists()
    # MQTT: the broker keeps the bench's persistent session, so what was published while a bench
    # was dead reaches the next one: every message from the first connection to the last kill
    first_open, last_kill = runs[0][1], runs[-1][2]
    for kind in ("telemetry", "event"):
        expected = {seq for t, seq in sent[kind] if first_open + 0.5 <= t <= last_kill - 0.5}
        assert expected <= seen[kind], (kind, sorted(expected - seen[kind])[:5], refused[:3])
    assert peer.safe_stops >= 1  # the Last Will stopped the flow of a killed bench
