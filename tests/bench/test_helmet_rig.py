"""`meterbench helmet-rig`: a DAQ drop folder recorded into a helmet-impact session, live.

The simulator's session is replayed as a DAQ would write it (each trace in pieces, then its .done
marker) into the folder of a `meterbench helmet-rig` process, which is stopped by SIGTERM; the
recorded session must verify to the same verdicts and features as the simulated one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterbench.bench.helmet_rig import load_rig_config
from meterbench.errors import ConfigError
from meterbench.sim.helmet import simulate_helmet
from meterbench.verify import run_session

RIG_TOML = """
[session]
session_id = "rig-live"
profile = "fmvss-218"
bench_id = "helmet-rig"
technician_id = "tech-01"
"""


def _rig_toml(path: Path, helmets: list[dict]) -> Path:
    tables = "".join(
        "\n[[helmets]]\n" + "".join(f'{k} = "{v}"\n' for k, v in h.items()) for h in helmets
    )  # fmt: skip
    path.write_text(RIG_TOML + tables, encoding="utf-8")
    return path


def _drop(folder: Path, source: Path, entry: dict, kind: str, marker_pause_s: float = 0.0) -> None:
    """Write one drop as a DAQ does: the trace in two pieces with a pause, then the marker (in two
    pieces too with ``marker_pause_s``: a marker seen half-written is waited for, not refused)."""
    data = (source / entry["trace"]).read_bytes()
    trace = folder / Path(entry["trace"]).name
    with trace.open("wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(0.06)  # longer than the rig's poll: a half-written trace sits in the folder
        f.write(data[len(data) // 2 :])
    marker = {k: v for k, v in entry.items() if k not in ("trace", "fs_hz", "units", "sha256")}
    text = json.dumps({**marker, "kind": kind}).encode("utf-8")
    with (folder / f"{entry['name']}.done").open("wb") as f:
        f.write(text[:10])
        f.flush()
        time.sleep(marker_pause_s)
        f.write(text[10:])


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_drops_written_into_the_folder_are_recorded_and_verify_as_the_simulated_session(tmp_path):
    sim = simulate_helmet(tmp_path / "sim", seed=0)
    manifest = json.loads((sim / "session.json").read_text(encoding="utf-8"))
    config = _rig_toml(tmp_path / "RIG.toml", manifest["helmets"])
    drop, live = tmp_path / "drop", tmp_path / "live"
    drop.mkdir()
    rig = subprocess.Popen(
        [sys.executable, "-m", "meterbench", "helmet-rig", "--watch", str(drop), "--config", str(config),
         "--out", str(live), "--poll-s", "0.02"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    try:
        _wait_for(lambda: (live / "session.json").exists(), 20, "the rig to open its session")
        (drop / "junk.csv").write_text("not a trace\n1,2\n", encoding="utf-8")
        (drop / "junk.done").write_text('{"helmet": "H1", "anvil": "flat", "velocity_m_s": 6}', encoding="utf-8")
        (drop / "ghost.csv").write_bytes((sim / manifest["impacts"][0]["trace"]).read_bytes())
        (drop / "ghost.done").write_text('{"helmet": "H9", "anvil": "flat", "velocity_m_s": 6}', encoding="utf-8")
        for entry in manifest["reference_drops"]:
            _drop(drop, sim, entry, "reference_drop")
        for entry in manifest["impacts"]:
            _drop(drop, sim, entry, "impact")
        (drop / "late.csv").write_text("time_s,ax_g,ay_g,az_g\n0,1,", encoding="utf-8")  # no marker: not read
        expected = len(manifest["reference_drops"]) + len(manifest["impacts"])
        _wait_for(lambda: len(list((drop / "recorded").glob("*.done"))) == expected, 30, f"{expected} drops")
        rig.send_signal(signal.SIGTERM)
        out, err = rig.communicate(timeout=20)
    finally:
        if rig.poll() is None:
            rig.kill()
    assert rig.returncode == 0, err
    refused = [line for line in err.splitlines() if line.startswith("helmet rig: refused")]
    assert sorted(refused) == [
        "helmet rig: refused ghost: ghost.done: helmet: 'H9' is not a helmet of RIG.toml (expected one of H1, H2, H3, "
        "H4, H5)",
        "helmet rig: refused junk: junk.csv: line 2: expected 1 comma-separated values, got 2",
    ], err  # fmt: skip
    assert err.splitlines()[-1] == f"helmet rig: {live}: 26 drop(s) recorded, 2 refused (SIGTERM)"
    assert sorted(p.name for p in (drop / "refused").iterdir()) == ["ghost.csv", "ghost.done", "junk.csv", "junk.done"]
    assert (drop / "late.csv").exists()
    recorded = json.loads((live / "session.json").read_text(encoding="utf-8"))
    assert recorded["stopped_reason"] == "SIGTERM" and recorded["bench_id"] == "helmet-rig"
    assert (live / "hashes.json").exists()
    for key in ("impacts", "reference_drops"):  # the very bytes the DAQ wrote, complete
        assert [(e["name"], e["sha256"]) for e in recorded[key]] == [(e["name"], e["sha256"]) for e in manifest[key]]
    live_report = run_session(live, tmp_path / "live-run")
    sim_report = run_session(sim, tmp_path / "sim-run")
    assert live_report["certifiable"] is True and live_report["verdict"] == sim_report["verdict"] == "fail"

    def points(report):
        return [(p["name"], p["verdict"], p["details"].get("peak_g"), p["details"].get("hic"))
                for i in report["instruments"] for p in i["points"]]  # fmt: skip

    assert points(live_report) == points(sim_report) and len(points(live_report)) == 14


def test_a_bad_rig_config_is_one_line_naming_the_key(tmp_path):
    path = tmp_path / "RIG.toml"
    path.write_text('[session]\nprofile = "fmvss-218"\n\n[[helmets]]\nid = "H1"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"RIG.toml: helmets\[0\]: missing model$"):
        load_rig_config(path)
    path.write_text('[session]\nprofile = "fmvss-218"\nfs = 20000\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"RIG.toml: session: unknown key\(s\) fs \(expected "):
        load_rig_config(path)


def test_the_stop_file_closes_the_session_after_the_drops_already_complete(tmp_path):
    import io
    import threading

    from meterbench.bench.helmet_rig import watch_drop_folder

    sim = simulate_helmet(tmp_path / "sim", seed=1)
    manifest = json.loads((sim / "session.json").read_text(encoding="utf-8"))
    config = load_rig_config(_rig_toml(tmp_path / "RIG.toml", manifest["helmets"]))
    drop = tmp_path / "drop"
    drop.mkdir()

    def daq() -> None:
        for entry in manifest["impacts"][:2]:
            _drop(drop, sim, entry, "impact", marker_pause_s=0.3)
        (drop / "STOP").touch()  # after both markers: the rig records what is complete, then stops

    writer = threading.Thread(target=daq)
    writer.start()
    log = io.StringIO()
    watch = watch_drop_folder(drop, config, tmp_path / "live", poll_s=0.05, log=log)
    writer.join()
    assert watch.recorded == ["H1-front", "H1-rear"] and watch.refused == {}
    assert watch.stopped_reason == "stop file"
    recorded = json.loads((tmp_path / "live/session.json").read_text(encoding="utf-8"))
    assert recorded["stopped_reason"] == "stop file" and [e["sha256"] for e in recorded["impacts"]] == [
        e["sha256"] for e in manifest["impacts"][:2]
    ]
    with pytest.raises(ConfigError, match="the stop file exists already"):
        watch_drop_folder(drop, config, tmp_path / "live2", log=log)
