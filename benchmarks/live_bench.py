"""Live bench: nothing lost across a broker restart and a serial unplug/replug; CPU use.

Starts a private mosquitto, a socat pty pair and the simulated bench peer
(meterbench/sim/live.py) with N meters, then records what the live drivers receive
(serial totaliser, MQTT controller, N simulated cameras) into a session. At 1/3
of the run the broker is restarted (down ``--down`` s), at 2/3 the serial link
is unplugged and replugged. Prints, counted against what the peer sent:

- serial lines: written by the peer / received / missing (and whether every
  missing one is recorded as a sequence gap);
- MQTT telemetry and events: published / received once / duplicates refused;
- frames: rendered by the peer / written into the session;
- CPU of this process (peer rendering included) in cores.

    python benchmarks/live_bench.py --duration 600 --cameras 3 --fps 10 [--json out.json]

``--sweep 2,8,16,24`` runs each camera count in turn (``--duration`` each) and reports, per
count, frames lost (rendered by the peer but not written, or missing against ``fps`` x the
duration, i.e. the capture fell behind its 10 fps) and the largest count with 0 lost frames:

    python benchmarks/live_bench.py --sweep 2,4,8,12,16,24 --duration 15

The bench process's own CPU with 3 cameras (without the simulator's rendering)
is measured by running ``meterbench bench`` against video-file cameras: see
docs/devices.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterbench.bench import load_bench_config  # noqa: E402
from meterbench.devices.camera import CameraCapture  # noqa: E402
from meterbench.devices.mqtt import BenchController, MqttConfig  # noqa: E402
from meterbench.devices.serial_totaliser import TotaliserReader  # noqa: E402
from meterbench.session import SessionRecorder  # noqa: E402
from meterbench.sim import SimMeter, SimulatedBenchPeer  # noqa: E402
from meterbench.testing import MosquittoBroker, SocatPtyPair  # noqa: E402
from meterbench.vision.layout import default_register_layout  # noqa: E402


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _manifest() -> dict:
    """A valid water-meter manifest (the shipped sample's meters and plan): the recorder checks it."""
    cfg = load_bench_config(Path(__file__).resolve().parents[1] / "samples" / "sim-bench.toml")
    return {
        "session_id": "live-bench",
        "bench_kind": "water-meter",
        "instruments": cfg.instruments,
        "reference_instruments": cfg.reference_instruments,
        "test_plan": {"points": [{"name": p.name, "flow_rate_m3h": p.flow_rate_m3h} for p in cfg.points]},
    }


def run(duration_s: float, cameras: int, fps: float, down_s: float, work: Path) -> dict:
    """Run the live devices against the simulated peer; return the loss and CPU figures."""
    broker = MosquittoBroker(work / "mosquitto").start()
    pty = SocatPtyPair(work, "tty").plug()
    peer = SimulatedBenchPeer(
        pty.b, "127.0.0.1", broker.port, "bench", [SimMeter(f"M{i}", 0.3 * i, 100.0 + i) for i in range(cameras)]
    )
    peer.start()
    recorder = SessionRecorder.create(work / "session", _manifest())
    totaliser = TotaliserReader(
        pty.a,
        recorder.device_log("ref-meter", "serial-totaliser"),
        recorder.now_s,
        pulse_volume_l=0.0001,
        reopen_interval_s=0.2,
    ).start()
    controller = BenchController(
        MqttConfig("bench", port=broker.port), recorder.device_log("controller", "mqtt"), recorder.now_s
    )
    controller.start()
    captures = []
    for i in range(cameras):
        writer = recorder.camera_writer(f"cam-{i}", fps, (640, 360), kind="images")
        source = peer.camera(i, default_register_layout("dials"))
        captures.append(CameraCapture(f"cam-{i}", source, writer, recorder.now_s, fps=fps).start())
    controller.set_valve("inlet", "open").wait(5.0)
    controller.set_flow(2.4).wait(5.0)
    wall0, cpu0 = time.monotonic(), _cpu_s()
    time.sleep(duration_s / 3)
    broker.restart(down_s=down_s)
    time.sleep(duration_s / 3)
    pty.unplug()
    time.sleep(1.0)
    pty.plug()
    time.sleep(duration_s / 3)
    wall, cpu = time.monotonic() - wall0, _cpu_s() - cpu0
    for capture in captures:
        capture.stop()
    peer.stop()
    time.sleep(0.5)
    totaliser.stop()
    controller.stop()
    recorder.close()
    broker.stop()
    pty.unplug()
    return _figures(work / "session", peer, controller, captures, wall, cpu)


def _figures(
    session: Path,
    peer: SimulatedBenchPeer,
    controller: BenchController,
    captures: list[CameraCapture],
    wall_s: float,
    cpu_s: float,
) -> dict:
    serial = _lines(session / "devices" / "ref-meter.jsonl")
    seqs = {e["parsed"]["seq"] for e in serial if e["parsed"]}
    missing = set(range(1, max(seqs) + 1)) - seqs
    noted = sum(
        int(e["error"].split("(")[1].split()[0]) for e in serial if e["error"] and e["error"].startswith("sequence gap")
    )
    messages = [e for e in _lines(session / "devices" / "controller.jsonl") if e["parsed"] and "seq" in e["parsed"]]
    telemetry = {e["parsed"]["seq"] for e in messages if e["topic"].endswith("/telemetry")}
    events = {e["parsed"]["seq"] for e in messages if e["topic"].endswith("/event")}
    return {
        "duration_s": round(wall_s, 1),
        "serial": {
            "written_by_peer": peer.counts.serial_lines,
            "not_written_port_absent": peer.counts.serial_unsent,
            "received": len(seqs),
            "missing": len(missing),
            "missing_recorded_as_gap": noted == len(missing),
        },
        "mqtt": {
            "telemetry_sent": peer.counts.telemetry,
            "telemetry_received": len(telemetry),
            "events_sent": peer.counts.events,
            "events_received": len(events),
            "duplicates_refused": controller.counts.duplicates,
            "late_accepted": controller.counts.late,
        },
        "frames": {
            c.camera_id: {"rendered": peer.counts.frames.get(f"M{i}", 0), "written": c.counts.written}
            for i, c in enumerate(captures)
        },
        "cpu_cores": round(cpu_s / wall_s, 3),
    }


def lost_frames(figures: dict, fps: float) -> int:
    """Frames lost over all cameras: rendered but not written, plus those short of ``fps`` x duration (2 % slack)."""
    nominal = fps * figures["duration_s"]
    return sum(
        (c["rendered"] - c["written"]) + max(0, int(0.98 * nominal) - c["written"]) for c in figures["frames"].values()
    )


def sweep(counts: list[int], duration_s: float, fps: float, down_s: float) -> dict:
    """Run each camera count; return per count the lost frames and CPU, and the largest count with none lost."""
    results = {}
    for cameras in counts:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(duration_s, cameras, fps, down_s, Path(tmp))
        results[cameras] = {"lost_frames": lost_frames(figures, fps), "cpu_cores": figures["cpu_cores"]}
        print(f"{cameras:3d} cameras: {results[cameras]}", file=sys.stderr, flush=True)
    clean = [n for n, r in results.items() if r["lost_frames"] == 0]
    return {"fps": fps, "duration_s": duration_s, "by_cameras": results, "largest_without_loss": max(clean, default=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="s")
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--down", type=float, default=1.0, help="broker down time, s")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--sweep", help="comma-separated camera counts to run in turn, e.g. 2,8,16,24")
    args = parser.parse_args()
    if args.sweep:
        figures = sweep([int(n) for n in args.sweep.split(",")], args.duration, args.fps, args.down)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(args.duration, args.cameras, args.fps, args.down, Path(tmp))
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
