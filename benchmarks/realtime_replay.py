"""Real-time replay: is each test point's verdict out within 1 s of its flying stop?

Replays a recorded session at real-time speed (or faster with --speed): frames
of every camera arrive at their capture times and are read as they arrive
(the same reading cache the offline run uses); when a point's stop window has
closed, the point is evaluated with only the device events received so far.
Prints, per point, the latency from the flying stop to the verdict, and the
CPU share the reading took. Usage:

    python benchmarks/realtime_replay.py SESSION [--speed 1.0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from meterbench.session.reader import load_session
from meterbench.verify.fusion import ReferenceTrack
from meterbench.verify.run import RegisterReaders
from meterbench.verify.water_meter import (
    ReadingOptions,
    RegisterFrameCache,
    camera_fps,
    evaluate_point,
    finest_usable_element,
    point_timings,
    read_ahead,
)


def _events_until(events, t_s: float):
    return [e for e in events if e.t_s <= t_s]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    args = parser.parse_args()

    session = load_session(Path(args.session))
    manifest = session.manifest
    options = ReadingOptions()
    readers = RegisterReaders()
    caches = {i["id"]: RegisterFrameCache(session.camera(i["camera"]), readers(i)) for i in manifest["instruments"]}
    ref_device = manifest["reference_instruments"][0]["device"]
    ref_events = [e for e in session.device_events(ref_device) if e.error is None and e.parsed]
    ref_t = np.array([e.t_s for e in ref_events])
    ref_v = np.array([e.parsed["volume_l"] for e in ref_events])
    plan = manifest["test_plan"]["points"]
    final_timings = point_timings(session, [p["name"] for p in plan])
    frames = sorted(
        (t, inst["id"], idx)
        for inst in manifest["instruments"]
        for idx, t in enumerate(session.camera(inst["camera"]).frame_times)
    )
    pending = sorted(
        (final_timings[p["name"]].stop_t_s + options.stop_after_s, p["name"])
        for p in plan
        if final_timings[p["name"]].stop_t_s is not None
    )
    read_aheads = sorted(
        (final_timings[p["name"]].start_t_s + options.window_after_s, p["name"])
        for p in plan
        if final_timings[p["name"]].start_t_s is not None
    )
    instruments = {i["id"]: i for i in manifest["instruments"]}
    t_first = frames[0][0]
    wall0 = time.perf_counter()
    busy_s = 0.0
    latencies: list[tuple[str, str, float, str]] = []

    for t_s, instrument_id, index in frames:
        target = wall0 + (t_s - t_first) / args.speed
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        cache = caches[instrument_id]
        recent = (ref_t <= t_s) & (ref_t >= t_s - 2.0)
        flow_l_s = float(np.ptp(ref_v[recent]) / max(np.ptp(ref_t[recent]), 1e-3)) if recent.sum() > 1 else 0.0
        finest = finest_usable_element(
            cache.register_reader.layout.elements, flow_l_s, camera_fps(cache.camera), options.max_turns_per_frame
        )
        cache.read([index], finest)
        while read_aheads and read_aheads[0][0] <= t_s:
            _, point_name = read_aheads.pop(0)
            start_t_s = final_timings[point_name].start_t_s  # the point_start event has been received
            known = (ref_t >= start_t_s) & (ref_t <= t_s)
            point_flow_l_s = float(np.ptp(ref_v[known]) / max(np.ptp(ref_t[known]), 1e-3))
            for read_cache in caches.values():
                read_ahead(read_cache, start_t_s, t_s, point_flow_l_s, options)
        while pending and pending[0][0] <= t_s:
            _, point_name = pending.pop(0)
            known = ref_t <= t_s
            track = ReferenceTrack.from_samples(ref_t[known], ref_v[known])
            timing = point_timings(_SessionUntil(session, t_s), [point_name])[point_name]
            plan_point = next(p for p in plan if p["name"] == point_name)
            for inst_id, inst in instruments.items():
                read_before, eval_started = caches[inst_id].frames_read, time.perf_counter()
                point = evaluate_point(
                    session,
                    inst,
                    plan_point,
                    timing,
                    track,
                    caches[inst_id],
                    options,
                    float(manifest["reference_instruments"][0]["expanded_uncertainty_pct"]),
                    manifest.get("decision_rule", "simple"),
                )
                verdict_wall = time.perf_counter()
                print(
                    f"  {inst_id} {point_name}: evaluation {1000 * (verdict_wall - eval_started):.0f} ms, "
                    f"{caches[inst_id].frames_read - read_before} frames read on demand"
                )
                stop_wall = wall0 + (timing.stop_t_s - t_first) / args.speed
                latency_s = (verdict_wall - stop_wall) * args.speed
                latencies.append((inst_id, point_name, latency_s, f"{point.verdict}: {point.reason[:120]}"))
        busy_s += time.perf_counter() - started
    elapsed = time.perf_counter() - wall0
    for inst_id, name, latency, verdict in latencies:
        print(f"{inst_id} {name}: verdict '{verdict}' {latency:.3f} s (session time) after the flying stop")
    worst = max(lat for _, _, lat, _ in latencies)
    print(
        f"worst latency {worst:.3f} s (stop window after the stop: {options.stop_after_s} s); "
        f"reading busy {busy_s:.1f} s of {elapsed:.1f} s wall = {100 * busy_s / elapsed:.0f} % of one core "
        f"for {len(instruments)} cameras at {camera_fps(next(iter(caches.values())).camera):.1f} fps, "
        f"speed {args.speed}x"
    )


class _SessionUntil:
    """A view of a session that only shows device events received up to ``t_s``."""

    def __init__(self, session, t_s: float) -> None:
        self._session, self._t_s = session, t_s
        self.manifest = session.manifest

    def device_events(self, device_id: str):
        return _events_until(self._session.device_events(device_id), self._t_s)


if __name__ == "__main__":
    main()
