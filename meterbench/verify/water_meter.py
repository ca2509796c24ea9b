"""Water-meter verification of a recorded (or live-recorded) bench session.

For every test point of the plan: the controller's flying start/stop events
give the instants and the latched reference totals; the camera frames around
those instants give the register values (robust fit against the reference
track, misreads rejected); sparse frames in between prove the register
followed the flow. Error, MPE, uncertainty and decision come from
`meterbench.calibration`. Every point becomes a
:class:`~meterbench.verify.results.PointResult`; a point or meter whose
recorded data cannot give a verdict is inconclusive with the reason, and one
meter's damaged camera never costs the other meters their verdicts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from meterbench import calibration
from meterbench.errors import SessionError
from meterbench.progress import ProgressFn
from meterbench.session import EvidenceGap
from meterbench.session.format import short
from meterbench.verify.fusion import (
    Completion,
    InstantEstimate,
    ReferenceTrack,
    check_track,
    complete_partial_readings,
    estimate_at_instant,
)
from meterbench.verify.results import (
    Inconclusive,
    InstrumentResult,
    PointResult,
    ReasonCounts,
    bench_point_problem,
    instrument_identity,
    is_number,
    reference_uncertainty,
    require_frames,
    water_temperature,
)

__all__ = [
    "ReadingOptions",
    "PointTiming",
    "RegisterFrameCache",
    "camera_fps",
    "evaluate_point",
    "frame_observer",
    "UntrustedEvidence",
    "evaluate_water_meter_session",
    "finest_usable_element",
    "point_timings",
    "read_ahead",
    "reference_track",
    "select_frames",
]

L_PER_M3 = 1000.0
S_PER_H = 3600.0

frame_observer: ContextVar[Callable[[str, int, float, Any, Any], None] | None] = ContextVar(
    "frame_observer", default=None
)
"""Set (e.g. by `meterbench replay`) to be called with (camera id, frame index, t_s, RegisterReading,
register reader) for each frame the verification reads; None (default): nobody is told."""


@dataclass(frozen=True)
class ReadingOptions:
    """Which frames are read around each instant, and how strictly."""

    window_before_s: float = 4.0  # frames read before each flying start/stop (s)
    window_after_s: float = 4.0  # frames read after a flying start (s)
    stop_after_s: float = 0.5  # frames read after a flying stop (s): keeps the verdict prompt
    track_interval_s: float = 0.25  # spacing of the frames read between the windows (s): track check and point fit
    max_read_fps: float = 10.0  # frames read per second inside the windows (faster cameras are thinned)
    every_frame: bool = False  # read every frame of the point (reference run for batch checks)
    # "point": the register is fitted against the reference over the whole point, from the flying
    # start to the flying stop (the meter's error is constant at a held flow; frames before the start
    # belong to the previous flow), "windows": each instant from its own window only.
    fit: str = "point"
    max_turns_per_frame: float = 0.12  # finest usable element: turns between frames at most
    latch_tolerance_l: float = (
        0.002  # latched vs streamed reference volume agreement (L), latches without reference_seq
    )
    line_tolerance_l: float = 0.00015  # latched volume vs the totaliser line it names (L): that line's 0.1 mL rounding
    temperature_u_c: float = 0.2  # standard uncertainty of the water temperature (°C)
    coarser_fallbacks: int = 1  # coarser register elements tried when the finest cannot be read
    # frames whose upper elements are unreadable (a reflection) completed from the point's other frames
    # (fusion.complete_partial_readings); False: only frames read whole are used (before issue 17)
    cross_frame: bool = True
    # an element never read that turns during the point: count its turnovers along the chained frames
    # instead of abstaining.  Off: the count says how far the element should have moved, not that it
    # did; a sticking carry is a fault of the register under test (docs/registers.md). For measuring.
    count_unread_turns: bool = False


@dataclass
class PointTiming:
    """A test point's flying start/stop as the controller latched them."""

    name: str
    start_t_s: float | None = None
    stop_t_s: float | None = None
    start_reference_l: float | None = None
    stop_reference_l: float | None = None
    start_line_l: float | None = None  # volume (L) of the totaliser line the start latch names (reference_seq)
    stop_line_l: float | None = None
    problems: list[str] = field(default_factory=list)


def _device_ids(manifest: dict, kinds: Sequence[str]) -> list[str]:
    return [d["id"] for d in manifest.get("devices", []) if d.get("kind") in kinds]


def _good_events(events) -> list:
    return [e for e in events if e.error is None and isinstance(e.parsed, dict)]


def _reference_instrument(manifest: dict) -> dict:
    refs = manifest.get("reference_instruments") or []
    if not refs:
        raise SessionError("session.json: reference_instruments: expected at least one reference meter, got none")
    return refs[0]


def _in_order(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of the samples (file order) that keep time strictly increasing and volume non-decreasing.

    A sample out of line with its neighbours (a t_s of 5e12 s, a volume edited down or up) is
    left out, and so is each sample of a run that goes back in time or volume after it; samples
    with the time of the one before (a repeat) are left out too."""
    keep = np.zeros(t.size, dtype=bool)
    last_t, last_v = -math.inf, -math.inf
    for i in range(t.size):
        following_ok = i + 1 >= t.size or (t[i] < t[i + 1] and v[i] <= v[i + 1]) or (t[i + 1] <= last_t)
        if t[i] > last_t and v[i] >= last_v and following_ok:
            keep[i] = True
            last_t, last_v = t[i], v[i]
    return keep


def reference_track(session) -> tuple[ReferenceTrack, list[str], list[EvidenceGap]]:
    """The reference meter's volume track, a list of problems found in its log, and the stretches of
    time its log cannot vouch for (hash-chain breaks, refused lines, lines left out of order).

    Raises Inconclusive when the log gives no usable track (every point needs it).
    """
    device = _reference_instrument(session.manifest)["device"]
    events = session.device_events(device)
    gaps = session.device_gaps(device)
    good = [e for e in _good_events(events) if is_number(e.parsed.get("volume_l"))]
    problems = []
    if len(good) < len(events):
        problems.append(
            f"reference meter {device}: {len(events) - len(good)} of {len(events)} lines "
            f"unusable (recorded raw, not used)"
        )
    t = np.array([e.t_s for e in good], dtype=np.float64)
    v = np.array([e.parsed["volume_l"] for e in good], dtype=np.float64)
    # lines that came in one read of the port share its reception time: the last of them is the
    # freshest volume at that instant, the earlier ones are superseded (kept raw, no gap: not suspect)
    superseded = np.zeros(t.size, dtype=bool)
    superseded[:-1] = (t[:-1] == t[1:]) & (v[:-1] <= v[1:])
    keep = np.zeros(t.size, dtype=bool)
    keep[~superseded] = _in_order(t[~superseded], v[~superseded])
    dropped = np.flatnonzero(~keep & ~superseded)
    if dropped.size:
        kept_t = t[keep]
        for i in dropped:
            before = kept_t[kept_t < t[i]] if np.isfinite(t[i]) else kept_t
            reason = (
                f"reference meter {device}: line seq {good[i].seq} (t_s {t[i]:.6g} s, volume_l {v[i]:.6g} L) "
                "out of order with its neighbours: not used"
            )
            neighbours = [float(before[-1])] if before.size else []
            later = t[(np.arange(t.size) > i) & keep]
            neighbours += [float(later[0])] if later.size else []
            gaps.append(EvidenceGap(min(neighbours, default=-math.inf), max(neighbours, default=math.inf), reason))
        problems.append(f"reference meter {device}: {dropped.size} line(s) out of order in time or volume, not used")
    if int(keep.sum()) < 2:
        raise Inconclusive(f"reference meter {device}: {int(keep.sum())} valid volume readings in its log (need 2)")
    return ReferenceTrack.from_samples(t[keep], v[keep]), problems, gaps


def _reference_lines(session) -> dict[int, tuple[float, float]]:
    """(reception time s, volume L) of each good reference line, by the line's own ``seq`` (first one kept)."""
    device = _reference_instrument(session.manifest)["device"]
    lines: dict[int, tuple[float, float]] = {}
    for event in _good_events(session.device_events(device)):
        seq, volume = event.parsed.get("seq"), event.parsed.get("volume_l")
        if isinstance(seq, int) and not isinstance(seq, bool) and is_number(volume):
            lines.setdefault(seq, (event.t_s, float(volume)))
    return lines


def _controller_devices(manifest: dict) -> list[str]:
    return _device_ids(manifest, ("mqtt", "controller"))


def point_timings(session, point_names: Sequence[str]) -> dict[str, PointTiming]:
    """Flying start/stop instants and latched reference totals per test point.

    A latch event that names its totaliser line (``reference_seq``) is matched to that line by
    identity: the line's reception time is the instant and the line's volume the reference
    (the line carries the latched volume, while the MQTT event arrives a few ms later through the
    broker: 4 ms = 0.003 L at 2.4 m3/h). A latch without ``reference_seq`` keeps its own
    reception time and volume (checked against the reference stream at that time).
    """
    timings = {name: PointTiming(name) for name in point_names}
    lines = _reference_lines(session)
    for device in _controller_devices(session.manifest):
        for event in _good_events(session.device_events(device)):
            kind, point = event.parsed.get("event"), event.parsed.get("point")
            timing = timings.get(point) if isinstance(point, str) else None
            if timing is None or kind not in ("point_start", "point_stop"):
                continue
            latched = event.parsed.get("reference_volume_l")
            if latched is not None and not is_number(latched):
                timing.problems.append(
                    f"{kind} of {timing.name} in {device}: reference_volume_l: expected a number, got {short(latched)}"
                )
                latched = None
            t_s, line_l = event.t_s, None
            seq = event.parsed.get("reference_seq")
            if seq is not None:
                if not isinstance(seq, int) or isinstance(seq, bool) or seq not in lines:
                    timing.problems.append(
                        f"{kind} of {timing.name} names totaliser line seq {short(seq)}, which is not among "
                        "the reference meter's good lines"
                    )
                else:
                    t_s, line_l = lines[seq]
            if kind == "point_start":
                timing.start_t_s, timing.start_reference_l, timing.start_line_l = t_s, latched, line_l
            else:
                timing.stop_t_s, timing.stop_reference_l, timing.stop_line_l = t_s, latched, line_l
    for timing in timings.values():
        if timing.start_t_s is None:
            timing.problems.append(f"no point_start event for {timing.name} in the controller log")
        if timing.stop_t_s is None:
            timing.problems.append(f"no point_stop event for {timing.name} in the controller log")
        if not timing.problems and timing.stop_t_s <= timing.start_t_s:
            timing.problems.append(f"point_stop before point_start for {timing.name}")
    return timings


@dataclass(frozen=True)
class UntrustedEvidence:
    """The stretches of the reference log and of the controller logs that cannot be trusted."""

    reference: tuple[EvidenceGap, ...] = ()
    controller: tuple[EvidenceGap, ...] = ()

    def reasons(self, timing: PointTiming, options: ReadingOptions) -> list[str]:
        """Why a point's evidence is not trusted ([] when it is): a reference gap from ``window_before_s``
        before its start to ``stop_after_s`` after its stop (the reference samples its frames are
        fitted against), a controller gap strictly inside [start, stop] (its latches and the
        temperatures logged); every gap when a latch is missing (the changed line may be it)."""
        if timing.start_t_s is None or timing.stop_t_s is None:
            return [gap.reason for gap in (*self.reference, *self.controller)]
        t0, t1 = timing.start_t_s, timing.stop_t_s
        reasons = [
            g.reason for g in self.reference if g.overlaps(t0 - options.window_before_s, t1 + options.stop_after_s)
        ]
        return reasons + [g.reason for g in self.controller if g.t_from_s < t1 and t0 < g.t_to_s]


def _first(reasons: list[str], limit: int = 3) -> str:
    more = f" (and {len(reasons) - limit} more)" if len(reasons) > limit else ""
    return "; ".join(dict.fromkeys(reasons[:limit])) + more


def select_frames(frame_times_s: np.ndarray, start_t_s: float, stop_t_s: float, options: ReadingOptions) -> np.ndarray:
    """Indices of the frames a point's verdict needs (sorted, unique)."""
    t = frame_times_s
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    if options.every_frame:
        mask = (t >= start_t_s - options.window_before_s) & (t <= stop_t_s + options.stop_after_s)
        return np.flatnonzero(mask)
    near_start = (t >= start_t_s - options.window_before_s) & (t <= start_t_s + options.window_after_s)
    near_stop = (t >= stop_t_s - options.window_before_s) & (t <= stop_t_s + options.stop_after_s)
    windows = np.flatnonzero(near_start | near_stop)
    # A 30 fps camera gives no better fit than 10 readings a second: read every k-th frame.
    fps = (len(t) - 1) / float(t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 1.0
    stride = max(1, int(round(fps / options.max_read_fps)))
    chosen = set(windows[::stride].tolist())
    if stop_t_s - start_t_s > 2 * options.track_interval_s:
        for instant in np.arange(start_t_s, stop_t_s, options.track_interval_s):
            chosen.add(int(np.argmin(np.abs(t - instant))))
    return np.array(sorted(chosen), dtype=np.int64)


def finest_usable_element(elements, flow_l_s: float, fps: float, max_turns_per_frame: float) -> int:
    """Index of the finest register element that turns slowly enough to be read between frames."""
    finest = 0
    for index, element in enumerate(elements):
        turns_per_frame = flow_l_s / element.litres_per_turn / max(fps, 1e-6)
        if turns_per_frame <= max_turns_per_frame:
            finest = index
    return finest


@dataclass
class _Readings:
    t_s: np.ndarray
    volume_l: np.ndarray
    u_l: np.ndarray
    n_frames: int
    n_unreadable: int
    reasons: ReasonCounts
    completion: Completion | None = None  # how the frames completed each other (cross_frame)


@dataclass(frozen=True)
class _FrameResult:
    t_s: float
    volume_l: float  # nan when not read
    u_l: float
    reason: str  # "" when read
    partial_l: float = math.nan  # volume modulo modulus_l from the elements resolved from the finest up
    modulus_l: float = math.nan  # inf when read whole, nan when not even the finest element was read


class RegisterFrameCache:
    """Register readings of one camera, keyed by (frame index, finest element), read at most once.

    A live or real-time replay fills it frame by frame as frames arrive; the
    point evaluation then finds the frames it needs already read.
    """

    def __init__(self, camera, register_reader, batch_frames: int = 16) -> None:
        self.camera = camera
        self.register_reader = register_reader
        self.batch_frames = batch_frames
        self._results: dict[tuple[int, int], _FrameResult] = {}
        self.frames_read = 0  # frames decoded and read so far (a measure of the work done)
        from meterbench.vision.reference_align import AlignmentWatch

        self.watch = AlignmentWatch()  # frames a reference layout's aligner refused, and when

    def read(self, indices, finest_element: int) -> None:
        """Read the frames not read yet at this finest element."""
        todo = [int(i) for i in indices if (int(i), finest_element) not in self._results]
        self.frames_read += len(todo)
        batch: list[tuple[int, float, Any]] = []
        for index, t_s, frame in self.camera.iter_frames(todo):
            if frame is None:
                self._results[(index, finest_element)] = _FrameResult(
                    t_s, float("nan"), float("nan"), "frame missing or corrupt"
                )
                continue
            batch.append((index, t_s, frame))
            if len(batch) >= self.batch_frames:
                self._flush(batch, finest_element)
        if batch:
            self._flush(batch, finest_element)

    def _flush(self, batch: list, finest_element: int) -> None:
        readings = self.register_reader.read_frames([f for _, _, f in batch], finest_element=finest_element)
        self.watch.note_readings([t_s for _, t_s, _ in batch], readings)
        observer = frame_observer.get()
        if observer is not None:
            for (index, t_s, _), reading in zip(batch, readings, strict=True):
                observer(self.camera.camera_id, index, t_s, reading, self.register_reader)
        for (index, t_s, _), reading in zip(batch, readings, strict=True):
            self._results[(index, finest_element)] = (
                _FrameResult(t_s, reading.volume_l, reading.resolution_l, "", reading.volume_l, math.inf)
                if reading.ok
                else _FrameResult(
                    t_s,
                    float("nan"),
                    reading.resolution_l,
                    reading.reason or "unreadable",
                    getattr(reading, "partial_l", math.nan),
                    getattr(reading, "partial_modulus_l", math.nan),
                )
            )
        batch.clear()

    def readings(
        self,
        indices,
        finest_element: int,
        track: ReferenceTrack | None = None,
        count_unread_turns: bool = False,
        needed_s: tuple[float, float] | None = None,
    ) -> _Readings:
        """The readings of these frames (reading any not read yet).

        With the reference `track`, frames whose upper elements could not be read are
        completed from the other frames (`complete_partial_readings`); without it only
        the frames read whole are used."""
        self.read(indices, finest_element)
        results = [self._results[(int(i), finest_element)] for i in indices]
        if track is None:
            good = [r for r in results if not r.reason]
            return _Readings(
                np.array([r.t_s for r in good]),
                np.array([r.volume_l for r in good]),
                np.array([r.u_l for r in good]),
                len(results),
                len(results) - len(good),
                ReasonCounts(r.reason for r in results if r.reason),
            )
        completion = complete_partial_readings(
            np.array([r.t_s for r in results]),
            np.array([r.volume_l for r in results]),
            np.array([r.partial_l for r in results]),
            np.array([r.modulus_l for r in results]),
            np.array([r.u_l for r in results]),
            track,
            count_unread_turns=count_unread_turns,
            needed_s=needed_s,
        )
        good = np.isfinite(completion.volume_l)
        return _Readings(
            np.array([r.t_s for r in results])[good],
            completion.volume_l[good],
            np.array([r.u_l for r in results])[good],
            len(results),
            int((~good).sum()),
            ReasonCounts(r.reason for r, g in zip(results, good, strict=True) if not g and r.reason),
            completion,
        )


def _temperatures_logged(session, start_t_s: float, stop_t_s: float) -> list:
    """Every ``temperature_c`` (°C) the bench's devices logged in [start, stop]."""
    return [
        event.parsed.get("temperature_c")
        for device in _device_ids(session.manifest, ("mqtt", "controller", "serial-totaliser"))
        for event in _good_events(session.device_events(device))
        if start_t_s <= event.t_s <= stop_t_s
    ]


def _rated_flows(instrument: dict, where: str) -> tuple[calibration.Flows, list[str]]:
    """Q1..Q4 (m³/h) of a meter's rating, and warnings for a rating outside the ISO 4064 series."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", calibration.NonStandardRatingWarning)
        try:
            flows = calibration.water_meter_flows(instrument["q3_m3h"], instrument["r"])
        except ValueError as exc:
            raise SessionError(f"session.json: {where}: {exc}") from None
    return flows, [f"{where} ({instrument['id']}): {w.message}" for w in caught]


def _fuse_point(readings: _Readings, track: ReferenceTrack, t0: float, t1: float, options: ReadingOptions):
    """(start, stop, track check, readings) of a point, or the reason it cannot be fused.

    Each instant is first estimated from its own window. The window estimates define the line the
    register must follow; with ``fit == "point"`` every reading between start and stop that lies on
    it (misreads, e.g. during a wheel roll-over, do not) then refines both instants in one fit.
    """

    completion = readings.completion
    if completion is not None and completion.unread_carries:
        return completion.reason

    def window_estimate(instant: float, after_s: float) -> InstantEstimate:
        near = (readings.t_s >= instant - options.window_before_s) & (readings.t_s <= instant + after_s)
        return estimate_at_instant(readings.t_s[near], readings.volume_l[near], readings.u_l[near], track, instant)

    start, stop = window_estimate(t0, options.window_after_s), window_estimate(t1, options.stop_after_s)
    for label, est in (("start", start), ("stop", stop)):
        if not est.ok:
            why = f"flying {label}: {est.reason}"
            if readings.reasons:
                why += f" (unreadable frames: {readings.reasons})"
            return why
    track_check = check_track(readings.t_s, readings.volume_l, readings.u_l, track, start, stop, t0, t1)
    if not track_check.ok:
        return track_check.reason
    if options.fit == "point":
        start, stop = _refine_over_point(readings, track, t0, t1, start, stop, track_check)
    return start, stop, track_check, readings


def _refine_over_point(
    readings: _Readings,
    track: ReferenceTrack,
    t0: float,
    t1: float,
    start: InstantEstimate,
    stop: InstantEstimate,
    track_check,
) -> tuple:
    """Both instants from one fit over the readings in [t0, t1] that follow the window line."""
    inside = (readings.t_s >= t0) & (readings.t_s <= t1)
    on_line = inside & ~np.isin(readings.t_s, track_check.outlier_times_s)
    ref0, ref1 = track.volume_at([t0, t1])
    progress = (track.volume_at(readings.t_s) - ref0) / (ref1 - ref0)
    expected = start.volume_l + (stop.volume_l - start.volume_l) * progress
    limit = 6.0 * np.sqrt(readings.u_l**2 + max(start.u_l, stop.u_l) ** 2)
    on_line &= np.abs(readings.volume_l - expected) <= limit
    args = (readings.t_s[on_line], readings.volume_l[on_line], readings.u_l[on_line], track)
    refined = estimate_at_instant(*args, t0), estimate_at_instant(*args, t1)
    return refined if all(r.ok for r in refined) else (start, stop)


def _name_unread(layout, readings: _Readings, reason: str) -> str:
    """The fusion's reason, naming the element never read when the volume needed it."""
    completion = readings.completion
    if completion is None or not completion.unread_carries:
        return reason
    above = [e for e in layout.elements if math.isclose(e.litres_per_turn, 10.0 * completion.modulus_l)]
    what = f"{above[0].kind} {above[0].name}" if above else reason
    seen = (
        "unreadable in every frame of the point"
        if completion.n_whole == 0
        else f"read in only {completion.n_whole} frame(s) of the point (3 needed to know it)"
    )
    return (
        f"{what} {seen} and it carries during the point, so the volume needs it (unreadable frames: {readings.reasons})"
    )


def _completion_details(completion: Completion | None) -> dict:
    """report.json details of how the frames completed each other ({} when they did not need to)."""
    if completion is None or not completion.completed.any() and completion.corrected == 0:
        return {}
    details = {
        "frames_completed": int(completion.completed.sum()),
        "frames_outvoted": completion.corrected,
    }
    if not completion.offset_known:
        details["register_offset_unknown_l"] = completion.modulus_l  # start/stop known modulo this
    if completion.turns_counted:  # ReadingOptions.count_unread_turns: an assumption the report must show
        details["unread_turns_counted"] = {
            "turns": completion.turns_counted,
            "litres_per_turn": completion.modulus_l,
            "assumption": "the elements above were never read; their advance during the point was counted "
            "from the turnovers of the elements below (assumes their carry / gear train is sound)",
        }
    return details


def read_ahead(
    cache: RegisterFrameCache, start_t_s: float, until_t_s: float, flow_l_s: float, options: ReadingOptions
) -> None:
    """Read a running point's frames so far, at the finest element its flow allows.

    A live or real-time run calls this once the flying start's window has closed,
    so that at the flying stop only the stop window remains to be read.
    """
    finest = finest_usable_element(
        cache.register_reader.layout.elements, flow_l_s, camera_fps(cache.camera), options.max_turns_per_frame
    )
    times = cache.camera.frame_times
    indices = select_frames(times, start_t_s, until_t_s, options)
    cache.read(indices[times[indices] <= until_t_s], finest)


def camera_fps(camera) -> float:
    """Mean frame rate of a camera (frames/s) from its frame times."""
    times = camera.frame_times
    if len(times) < 2:
        return 1.0
    return float(len(times) - 1) / float(times[-1] - times[0])


def evaluate_point(
    session,
    instrument,
    plan_point,
    timing: PointTiming,
    track: ReferenceTrack,
    cache: RegisterFrameCache,
    options: ReadingOptions,
    gaps: UntrustedEvidence,
    decision_rule: str,
) -> PointResult:
    """One test point of one meter; inconclusive with the reason when its data cannot give a verdict.

    ``gaps``: the stretches of the reference and controller logs that cannot be trusted."""
    planned_flow = float(plan_point.get("flow_rate_m3h", math.nan))
    return PointResult.from_evaluation(
        plan_point["name"],
        lambda: _measure_point(session, instrument, plan_point, timing, track, cache, options, gaps, decision_rule),
        flow_rate=planned_flow,
    )


def _measure_point(
    session,
    instrument,
    plan_point,
    timing: PointTiming,
    track: ReferenceTrack,
    cache: RegisterFrameCache,
    options: ReadingOptions,
    gaps: UntrustedEvidence,
    decision_rule: str,
) -> PointResult:
    """evaluate_point's work; raises Inconclusive (with what is known so far) when the data falls short."""
    name = plan_point["name"]
    vouched = bench_point_problem(session.manifest, name)
    if vouched is not None:
        raise Inconclusive(vouched)
    untrusted = gaps.reasons(timing, options)
    if untrusted:
        raise Inconclusive(f"evidence not trusted: {_first(untrusted)}")
    if timing.problems:
        raise Inconclusive("; ".join(timing.problems))
    t0, t1 = timing.start_t_s, timing.stop_t_s
    if not track.covers(t0, t1):
        raise Inconclusive("reference meter log does not cover the point (truncated device log?)")
    streamed0, streamed1 = track.volume_at([t0, t1])
    reference_l = float(streamed1 - streamed0)
    problems = []
    for label, latched, line_l, streamed in (
        ("start", timing.start_reference_l, timing.start_line_l, streamed0),
        ("stop", timing.stop_reference_l, timing.stop_line_l, streamed1),
    ):
        if line_l is not None:  # by identity: the latched volume is that line's
            if latched is not None and abs(latched - line_l) > options.line_tolerance_l:
                problems.append(
                    f"latched reference at {label} ({latched:.4f} L) disagrees with the totaliser line "
                    f"it names ({line_l:.4f} L)"
                )
        elif latched is not None and abs(latched - streamed) > options.latch_tolerance_l + abs(reference_l) * 1e-5:
            problems.append(
                f"latched reference at {label} ({latched:.4f} L) disagrees with the reference stream ({streamed:.4f} L)"
            )
    if timing.start_line_l is not None and timing.stop_line_l is not None:
        reference_l = float(timing.stop_line_l - timing.start_line_l)
    elif timing.start_reference_l is not None and timing.stop_reference_l is not None:
        reference_l = float(timing.stop_reference_l - timing.start_reference_l)
    flow_l_s = reference_l / (t1 - t0)
    flow_m3h = flow_l_s * S_PER_H / L_PER_M3
    known: dict[str, Any] = {"flow_rate": flow_m3h, "reference_volume": reference_l}
    if problems:
        raise Inconclusive("; ".join(problems), **known)
    if not reference_l > 0:
        raise Inconclusive(f"reference volume {reference_l:.4f} L is not positive (no flow during the point?)", **known)

    flows, _ = _rated_flows(instrument, f"instrument {instrument['id']}")
    try:
        temperature = water_temperature(
            _temperatures_logged(session, t0, t1), session.manifest, f"{t0:.1f} s to {t1:.1f} s"
        )
    except Inconclusive as exc:
        raise Inconclusive(exc.reason, **known) from None
    temperature_c = temperature.value_c
    try:
        mpe = calibration.water_meter_mpe(instrument["accuracy_class"], flow_m3h, flows, temperature_c)
    except ValueError as exc:
        raise Inconclusive(f"no MPE for this point: {exc}", **known) from None
    known["mpe_pct"] = mpe.mpe_pct
    if name in ("Q1", "Q2", "Q3"):  # a point named after a rated flow must be run inside its window
        low, high = calibration.verification_flow_window(name, flows)
        if not low <= flow_m3h <= high:
            raise Inconclusive(
                f"mean flow {flow_m3h:.5g} m3/h outside the {name} verification window [{low:.5g}, {high:.5g}] m3/h",
                **known,
            )
    try:
        reference_u_pct, reference_k = reference_uncertainty(_reference_instrument(session.manifest))
    except Inconclusive as exc:
        raise Inconclusive(exc.reason, **known) from None

    camera = cache.camera
    layout = cache.register_reader.layout
    finest = finest_usable_element(layout.elements, flow_l_s, camera_fps(camera), options.max_turns_per_frame)
    indices = select_frames(camera.frame_times, t0, t1, options)
    if indices.size == 0:
        times = camera.frame_times
        raise Inconclusive(
            f"camera {camera.camera_id}: no frame around the point ({t0:.1f} s to {t1:.1f} s); "
            f"its frames cover {times[0]:.1f} s to {times[-1]:.1f} s",
            **known,
        )
    # The finest usable element first; if it cannot be read (glare, blur), the next coarser one:
    # a coarser reading widens the uncertainty and the decision rule sees that.
    failures = []
    for level in range(finest, max(finest - options.coarser_fallbacks, 0) - 1, -1):
        level_readings = cache.readings(
            indices, level, track if options.cross_frame else None, options.count_unread_turns, (t0, t1)
        )
        fused = _fuse_point(level_readings, track, t0, t1, options)
        if isinstance(fused, str):
            failures.append(f"reading to {layout.elements[level].name}: {_name_unread(layout, level_readings, fused)}")
            continue
        start, stop, track_check, readings = fused
        break
    else:
        times = camera.frame_times
        if times[0] > t0 or times[-1] < t1:  # say why the frames fell short when the camera is the cause
            failures.insert(
                0,
                f"camera {camera.camera_id}: its frames cover {times[0]:.1f} s to {times[-1]:.1f} s "
                f"of the point's {t0:.1f} s to {t1:.1f} s",
            )
        raise Inconclusive("; ".join(failures), **known)
    finest = level

    indicated_l = stop.volume_l - start.volume_l
    error_pct = (indicated_l - reference_l) / reference_l * 100.0
    budget = calibration.UncertaintyBudget()
    budget.add_reference(reference_u_pct, k=reference_k)
    budget.add_component(
        "register reading (flying start and stop, fitted)",
        100.0 * math.hypot(start.u_l, stop.u_l) / reference_l,
        source="fit of the camera readings against the reference track",
    )
    # Meters in series share the water; a temperature difference between the reference and
    # the meter under test changes the volume by the water's expansion coefficient.
    beta = calibration.water_expansion_coefficient(temperature_c)
    budget.add_component(
        "water temperature between reference and meter",
        100.0 * beta * options.temperature_u_c,
        source=f"u(t) = {options.temperature_u_c} °C, beta = {beta:.2e} /°C",
    )
    temperature_details = {"water_temperature_c": temperature_c}
    if temperature.assumed:
        temperature_details["water_temperature_assumed"] = True
    return PointResult.decided(
        name,
        flow_rate=flow_m3h,
        reference_volume=reference_l,
        indicated_volume=indicated_l,
        error_pct=error_pct,
        mpe_pct=mpe.mpe_pct,
        uncertainty_pct=budget.expanded_pct(k=2.0),
        rule=decision_rule,
        details={
            "start_t_s": t0,
            "stop_t_s": t1,
            **temperature_details,
            "zone": mpe.zone,
            "mpe_source": mpe.source,
            "finest_element": layout.elements[finest].name,
            "register_start_l": start.volume_l,
            "register_stop_l": stop.volume_l,
            "frames_read": readings.n_frames,
            "frames_unreadable": readings.n_unreadable,
            **_completion_details(readings.completion),
            "readings_rejected": start.n_rejected + stop.n_rejected + track_check.n_outliers,
            "uncertainty_budget": budget.as_dict(),
        },
        notes=([temperature.note] if temperature.assumed else []) + _counted_turns_note(readings.completion),
    )


def _counted_turns_note(completion: Completion | None) -> list[str]:
    """The warning a point decided with `count_unread_turns` carries (report.html, summary)."""
    if completion is None or not completion.turns_counted:
        return []
    return [
        f"register elements above {completion.modulus_l:g} L per turn never read: their advance was counted from "
        "the turnovers below (--count-unread-turns: assumes their carry / gear train is sound)"
    ]


def _evaluate_meter(
    session,
    instrument: dict,
    register_reader,
    timings: dict[str, PointTiming],
    track: ReferenceTrack,
    gaps: UntrustedEvidence,
    options: ReadingOptions,
    identity: dict,
    instrument_warnings: list[str],
) -> InstrumentResult:
    """Every point of one meter; raises Inconclusive when its camera has no frames to read."""
    manifest = session.manifest
    rule = manifest.get("decision_rule", "simple")
    camera = session.camera(instrument["camera"])
    require_frames(camera)
    cache = RegisterFrameCache(camera, register_reader)
    points = [
        evaluate_point(session, instrument, p, timings[p["name"]], track, cache, options, gaps, rule)
        for p in manifest["test_plan"]["points"]
    ]
    alignment_warnings = cache.watch.warnings(instrument["camera"])  # when refused stretches began
    return InstrumentResult.from_points(
        instrument["id"], "water-meter", points, identity=identity, warnings=instrument_warnings + alignment_warnings
    )


def evaluate_water_meter_session(
    session,
    register_reader_for: Callable[[dict], Any],
    options: ReadingOptions | None = None,
    progress: ProgressFn | None = None,
) -> list[InstrumentResult]:
    """Verify every water meter of a session, one InstrumentResult each; ``progress(done, total, id)``
    after each meter.

    Bad session.json content raises SessionError. Unusable recorded data stays
    local: a reference log without a track makes every point inconclusive, a
    camera without frames its meter's points, a point without its events that point.
    """
    options = options or ReadingOptions()
    manifest = session.manifest
    names = [p["name"] for p in manifest["test_plan"]["points"]]
    try:
        track, track_problems, reference_gaps = reference_track(session)
        track_reason = ""
    except Inconclusive as exc:
        track, track_problems, reference_gaps, track_reason = None, [], [], exc.reason
    controller_gaps = [gap for device in _controller_devices(manifest) for gap in session.device_gaps(device)]
    gaps = UntrustedEvidence(tuple(reference_gaps), tuple(controller_gaps))
    timings = point_timings(session, names)
    instruments = []
    if progress is not None:
        progress(0, len(manifest["instruments"]), "")
    for index, instrument in enumerate(manifest["instruments"]):
        identity = instrument_identity(instrument)
        _, rating_warnings = _rated_flows(instrument, f"instruments[{index}]")
        instrument_warnings = track_problems + rating_warnings
        register_reader = register_reader_for(instrument)
        if track is None:
            result = InstrumentResult.inconclusive(
                instrument["id"], "water-meter", names, track_reason, identity=identity, warnings=instrument_warnings
            )
        else:
            evaluate = partial(
                _evaluate_meter,
                session,
                instrument,
                register_reader,
                timings,
                track,
                gaps,
                options,
                identity,
                instrument_warnings,
            )
            result = InstrumentResult.from_evaluation(
                instrument["id"], "water-meter", names, evaluate, identity=identity, warnings=instrument_warnings
            )
        instruments.append(result)
        if progress is not None:
            progress(len(instruments), len(manifest["instruments"]), instrument["id"])
    return instruments
