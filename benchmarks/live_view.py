"""Live view: frame capture -> screen latency in the browser, and what a page or a stalled client costs the bench.

Runs the live bench (``meterbench.bench.run_bench`` with a ``BenchFeed``, the simulated bench of
samples/sim-bench.toml: private Mosquitto, socat ptys, simulated peer) with ``--cameras`` meters and
cameras at 10 fps and the live view served on a free loopback port, once per case:

- ``no page``: nobody subscribed to /events (the baseline);
- ``page``: headless Chromium (Playwright, /usr/bin/chromium) on the technician page ``/``;
- ``stalled``: a raw socket that sends ``GET /events`` and never reads.

Per case it prints the bench's reading cost: the verification's reading of the recorded frames at the
end of the run (``verify s``: from the "sequence complete" step to the verdict, wall), the live
register read for the page (ms per frame read, wall, in the feed's worker), the capture's timing
(p95 of the interval between two recorded frames, ms), the bench process's CPU (cores, peer
rendering included), frames captured vs written and totaliser lines recorded vs parsed (nothing
lost), the publisher's drop count per subscriber, and ratios against the no-page baseline
(medians over ``--repeat`` interleaved runs per case). The ``page`` case also gives
the frame capture -> screen latency measured in the browser: ``Date.now()`` once the frame's JPEG is
decoded and the next animation frame is due, minus the frame's capture instant (``captured_unix``,
the capture thread's ``time.time()`` at the frame's session time stamp): p50, p95, max.

    python benchmarks/live_view.py --cameras 3 --volume 4 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meterbench.bench import run_bench  # noqa: E402
from meterbench.web import EventPublisher, start_server  # noqa: E402
from meterbench.web.live import BenchFeed  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ERRORS = [-0.4, 2.6, 0.8, -1.1, 1.5, 0.2]


def _config(folder: Path, cameras: int, volume_l: float) -> Path:
    """samples/sim-bench.toml with ``cameras`` meters (one camera each, 10 fps) and one Q3 point of ``volume_l``."""
    text = (ROOT / "samples" / "sim-bench.toml").read_text().split("[[test_plan.points]]")[0]
    head, _, rest = text.partition("[[instruments]]")
    meter = "[[instruments]]" + rest.split("[[cameras]]")[0].split("[[instruments]]")[0]
    camera = "[[cameras]]" + rest.split("[[cameras]]")[1]
    meters = "".join(
        re.sub(r'"M1"', f'"M{n}"', meter).replace("SIM-0001", f"SIM-{n:04d}").replace("cam-M1", f"cam-M{n}")
        for n in range(1, cameras + 1)
    )
    cams = "".join(camera.replace("cam-M1", f"cam-M{n}") for n in range(1, cameras + 1))
    head = re.sub(r"true_error_pct = \[[^\]]*\]", f"true_error_pct = {ERRORS[:cameras]}", head)
    points = f'[[test_plan.points]]\nname = "Q3"\nflow_rate_m3h = 2.4\nvolume_l = {volume_l}\nwindow_pct = 5.0\n'
    path = folder / "bench.toml"
    path.write_text(head + meters + cams + points)
    return path


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu_s() -> float:
    """CPU seconds of this process's children so far (Playwright's driver and Chromium's processes)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _stalled_client(port: int) -> socket.socket:
    """A client that asks for /events and never reads (a small receive buffer: it fills at once)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def run_case(case: str, config: Path, out: Path) -> dict:
    """One live bench run with the live view served and ``case``'s client; its figures."""
    publisher = EventPublisher()
    server = start_server(publisher, "127.0.0.1", 0)
    feed = BenchFeed(publisher)
    result: dict = {}
    steps: list[tuple[float, str]] = []
    stalled = _stalled_client(server.port) if case == "stalled" else None

    def bench() -> None:
        started_cpu, started = _cpu_s(), time.monotonic()
        try:
            result["report"] = run_bench(
                config, out / case, on_step=lambda line: steps.append((time.monotonic(), line)), feed=feed
            )
        except Exception as exc:  # noqa: BLE001 (reported, the benchmark goes on)
            result["error"] = repr(exc)
        result["cpu_cores"] = (_cpu_s() - started_cpu) / (time.monotonic() - started)
        result["drops"] = publisher.drops()
        result["published"] = publisher.published

    thread = threading.Thread(target=bench)
    latencies: list[float] = []
    try:
        if case == "page":
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(server.url + "/")
                page.wait_for_function("document.body.dataset.connection === 'open'")
                browser_cpu = _children_cpu_s()
                thread.start()
                started = time.monotonic()
                while thread.is_alive():
                    time.sleep(0.5)
                result["browser_cores"] = (_children_cpu_s() - browser_cpu) / (time.monotonic() - started)
                latencies = page.evaluate("live.latencies")
                result["page_events"] = page.evaluate("live.events")
                browser.close()
        else:
            thread.start()
            thread.join()
    finally:
        if stalled is not None:
            stalled.close()
        server.stop()
    if "error" in result:
        raise SystemExit(f"{case}: the bench run failed: {result['error']}")
    bench_summary = result["report"]["bench"]
    from meterbench.session import load_session

    with load_session(Path(bench_summary["run_dir"]) / "session") as session:
        intervals = np.concatenate([np.diff(session.camera(c).frame_times) for c in bench_summary["cameras"]])
    sequence_done = next(t for t, line in steps if "sequence complete" in line)
    verdict_given = next(t for t, line in steps if "verdict" in line)
    stats = feed.frames.read_stats() if feed.frames else {}
    frames_read = sum(s["frames_read"] for s in stats.values())
    figures = {
        "case": case,
        "verify_s": verdict_given - sequence_done,
        "capture_interval_p95_ms": 1e3 * float(np.percentile(intervals, 95)),
        "read_ms_per_frame": sum(s["read_ms"] * s["frames_read"] for s in stats.values()) / max(frames_read, 1),
        "frames_read_for_page": frames_read,
        "frames_published": feed.frames.published if feed.frames else 0,
        "cpu_cores": result["cpu_cores"],
        "frames_captured": sum(c["captured"] for c in bench_summary["cameras"].values()),
        "frames_written": sum(c["written"] for c in bench_summary["cameras"].values()),
        "serial_lines_sent": bench_summary["simulator_sent"]["serial_lines"],
        "serial_lines_recorded": bench_summary["devices"]["ref-meter"]["lines"],
        "serial_lines_parsed": bench_summary["devices"]["ref-meter"]["parsed"],
        "serial_lost_lines": bench_summary["devices"]["ref-meter"]["lost_lines"],
        "events_published": result["published"],
        "subscriber_drops": result["drops"],
        "verdicts": [p["verdict"] for i in result["report"]["instruments"] for p in i["points"]],
    }
    if case == "page":
        lat = np.array(latencies, float) / 1e3
        figures["page_events"] = result["page_events"]
        figures["browser_cores"] = result["browser_cores"]
        figures["latency_frames"] = int(lat.size)
        if lat.size:
            figures["latency_s"] = {
                "p50": float(np.percentile(lat, 50)),
                "p95": float(np.percentile(lat, 95)),
                "max": float(lat.max()),
            }
    return figures


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([row[key] for row in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=3, help="meters and cameras (10 fps each)")
    parser.add_argument("--volume", type=float, default=4.0, help="the Q3 point's test volume (L): ~1.5 s per L")
    parser.add_argument("--cases", default="none,page,stalled", help="comma-separated: none, page, stalled")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case, interleaved")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    cases = args.cases.split(",")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="meterbench-live-view-") as scratch:
        config = _config(Path(scratch), args.cameras, args.volume)
        for n in range(args.repeat):
            for case in cases:
                rows.append(run_case(case, config, Path(scratch) / f"out{n}"))
                print(json.dumps(rows[-1]), flush=True)
    by_case = {case: [r for r in rows if r["case"] == case] for case in cases}
    keys = ("verify_s", "read_ms_per_frame", "capture_interval_p95_ms", "cpu_cores")
    base = {key: _median(by_case[cases[0]], key) for key in keys}
    print(f"\n{args.cameras} cameras x 10 fps, Q3 {args.volume:g} L, {args.repeat} runs per case (medians);")
    print(f"ratio = against '{cases[0]}'")
    print(f"{'case':8} {'verify s':>9} {'ratio':>6} {'read ms':>8} {'ratio':>6} {'capture p95 ms':>15} {'ratio':>6} "
          f"{'CPU':>5} {'ratio':>6}")  # fmt: skip
    for case, group in by_case.items():
        cells = []
        for key, width, digits in zip(keys, (9, 8, 15, 5), (2, 1, 1, 2), strict=True):
            value = _median(group, key)
            cells.append(f"{value:{width}.{digits}f} {value / base[key]:6.3f}")
        print(f"{case:8} " + " ".join(cells))
    print("\nnothing lost (each run):")
    for row in rows:
        print(
            f"  {row['case']:8} frames captured/written {row['frames_captured']}/{row['frames_written']}, "
            f"totaliser lines recorded/parsed {row['serial_lines_recorded']}/{row['serial_lines_parsed']} "
            f"(lost {row['serial_lost_lines']}), events published {row['events_published']}, "
            f"dropped per subscriber {row['subscriber_drops']}"
            + (f", page received {row['page_events']}" if "page_events" in row else "")
        )
    for row in rows:
        if "latency_s" in row:
            lat = row["latency_s"]
            print(
                f"capture -> screen ({row['latency_frames']} frames shown): p50 {lat['p50']:.3f} s, "
                f"p95 {lat['p95']:.3f} s, max {lat['max']:.3f} s (target p95 <= 0.5 s); "
                f"the browser used {row['browser_cores']:.2f} cores"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
