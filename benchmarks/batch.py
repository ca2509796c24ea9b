"""Batch re-verification benchmark (issue 6).

Simulates (or reuses) N water-meter sessions, then:
- a reference run reading every frame (the first --reference sessions);
- for each track interval: `meterbench batch --jobs 1` and `--jobs 2` (wall time, speed-up,
  speed against real time), and the verdicts and largest error difference against the
  every-frame run (the batch reads only the frames a verdict needs).
Usage:

    python benchmarks/batch.py --sessions 6 --meters 3 --profile short --keep /tmp/batch-sessions
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from meterbench.batch import find_sessions, run_batch
from meterbench.session.reader import load_session
from meterbench.sim import simulate_water_meter
from meterbench.verify.run import RegisterReaders, verify_session
from meterbench.verify.water_meter import ReadingOptions


def _duration_s(session) -> float:
    return max(float(session.camera(c["id"]).frame_times[-1]) for c in session.manifest["cameras"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--meters", type=int, default=3)
    parser.add_argument("--profile", default="short")
    parser.add_argument("--seed0", type=int, default=200)
    parser.add_argument("--keep", help="folder holding the simulated sessions (made if missing)")
    parser.add_argument(
        "--reference", type=int, default=None, help="sessions also verified reading every frame (default: all)"
    )
    parser.add_argument(
        "--intervals", type=float, nargs="+", default=[1.0, 0.25], help="track_interval_s values to batch with (s)"
    )
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="meterbench-batch-"))
    folders = find_sessions([root])[: args.sessions]  # sessions already there are used as they are
    for k in range(len(folders), args.sessions):
        folder = root / f"wm-{args.seed0 + k}"
        simulate_water_meter(folder, seed=args.seed0 + k, meters=args.meters, profile=args.profile)
        folders.append(folder)
    sessions = [load_session(f) for f in folders]
    recorded_s = sum(_duration_s(s) for s in sessions)
    camera_s = sum(_duration_s(s) * len(s.manifest["cameras"]) for s in sessions)

    out = Path(tempfile.mkdtemp(prefix="meterbench-batch-out-"))
    reference = list(zip(folders, sessions, strict=True))[: args.reference]
    reference_s = sum(_duration_s(s) for _, s in reference)
    readers = RegisterReaders()
    started = time.perf_counter()
    full_reports = {
        folder.name: verify_session(session, ReadingOptions(every_frame=True), readers)[0]
        for folder, session in reference
    }
    full_wall = time.perf_counter() - started
    print(
        f"every-frame reference run: {full_wall:.1f} s ({reference_s / full_wall:.1f}x real time, "
        f"one process) on {len(reference)} sessions"
    )
    for interval in args.intervals:
        options = ReadingOptions(track_interval_s=interval)
        walls = {}
        for jobs in (1, 2):
            target = out / f"i{interval}-jobs{jobs}"
            started = time.perf_counter()
            status = run_batch(folders, target, jobs=jobs, options=options)
            walls[jobs] = time.perf_counter() - started
            print(
                f"track_interval_s {interval}: --jobs {jobs}: {walls[jobs]:.1f} s wall, exit {status}; "
                f"{recorded_s / walls[jobs]:.1f}x real time ({recorded_s:.0f} s of bench time, "
                f"{camera_s:.0f} camera-seconds)"
            )
        identical = all(
            (out / f"i{interval}-jobs1" / f.name / "report.json").read_bytes()
            == (out / f"i{interval}-jobs2" / f.name / "report.json").read_bytes()
            for f in folders
        )
        print(
            f"track_interval_s {interval}: --jobs 2 speed-up {walls[1] / walls[2]:.2f}x; "
            f"report.json byte-identical across --jobs: {identical}"
        )
        worst, verdict_changes, points = 0.0, 0, 0
        for name, full in full_reports.items():
            batch = json.loads((out / f"i{interval}-jobs1" / name / "report.json").read_text())
            for full_i, batch_i in zip(full["instruments"], batch["instruments"], strict=True):
                for full_p, batch_p in zip(full_i["points"], batch_i["points"], strict=True):
                    points += 1
                    verdict_changes += full_p["verdict"] != batch_p["verdict"]
                    if "inconclusive" not in (full_p["verdict"], batch_p["verdict"]):
                        worst = max(worst, abs(full_p["error_pct"] - batch_p["error_pct"]))
        print(
            f"track_interval_s {interval}: against every frame, {points} points: verdicts differing "
            f"{verdict_changes}, max |error difference| {worst:.5f} %-points"
        )
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
