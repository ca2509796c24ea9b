"""Whole-bench simulator: a water-meter verification session folder with known truth.

K DN15 meters (Q3 2.5 m³/h, R100, class 2, T30) in series with a reference pulse
totaliser run a Q3, Q2, Q1 initial-verification plan with flying start/stop.
Written through `SessionRecorder` exactly as a live bench would be:
`devices/ref-meter.jsonl` (serial $TOT lines), `devices/controller.jsonl` (MQTT
telemetry and events), `cameras/cam-M<k>.mp4` + `.csv` (one camera per
register, frames rendered from the true register volume) and `truth.json`.
Same seed → same session.json, JSONL, CSV, truth.json and the same frames.

Near the MPE: a "near" meter (it passes) has one point just inside its MPE or
exactly at it, and some "outside" meters (they fail) have one just outside it;
"just" is within the profile's `near_band_pct` (about the engine's U, k=2), so
the decision rule is exercised where it matters. Such a point's true error is
solved for after the bench run, so truth.json holds the drawn target: exactly
±MPE for an "at-mpe" point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from meterbench.calibration import verification_flow_window, water_meter_flows, water_meter_mpe
from meterbench.devices.serial_totaliser import format_totaliser_line, parse_totaliser_line
from meterbench.errors import ConfigError
from meterbench.progress import ProgressFn
from meterbench.session.writer import SessionRecorder
from meterbench.sim.markerless import (
    LightChange,
    PlateMotion,
    SceneUpset,
    frontal_camera,
    reference_layout,
    reference_photo,
    render_markerless,
)
from meterbench.sim.physics import (
    BenchRun,
    ErrorCurve,
    PlannedPoint,
    PointTruth,
    simulate_bench_run,
    solve_for_target,
)
from meterbench.sim.register_render import RENDER_STYLES, CameraModel, RegisterRenderer
from meterbench.vision.layout import (
    RegisterLayout,
    default_register_layout,
    layout_file_register,
    positions_from_volume,
)

__all__ = ["simulate_water_meter", "PROFILES", "NEAR_KINDS", "NearTarget"]

START_TIME_UTC = "2026-11-27T09:00:00Z"
BENCH_ID = "sim-bench"
SIM_TECHNICIAN_ID = "sim-technician"
"""The default ``technician_id`` of simulated sessions (marked simulated: no lab has such a technician)."""
SIM_STANDARD_ID = "sim-reference-standard"
"""The default reference instruments' ``standard_id`` of simulated sessions (marked simulated)."""
Q3_M3H, R_RATIO, Q2_Q1, ACCURACY_CLASS = 2.5, 100, 1.6, 2
NOMINAL_WATER_C = 20.0
PULSE_VOLUME_L = 0.0001
SERIAL_PERIOD_S = 0.1
TELEMETRY_PERIOD_S = 0.5
FRAME_SIZE_PX = (640, 360)


@dataclass(frozen=True)
class Profile:
    """Planned reference volumes (L), ramp time constants (s), settling delay range (s), and how
    close to the MPE (%-points, per point) a near-MPE true error is drawn (about the engine's U, k=2)."""

    volumes_l: dict[str, float]
    ramp_tau_s: dict[str, float]
    settle_s: tuple[float, float]
    near_band_pct: dict[str, float]
    register_variants: tuple[str, str] = ("fine", "fine-wheels")  # drawn 50/50 per meter


PROFILES = {
    # Registers with a 0.1 L/turn test dial (0.01 L per division): volumes from the plan for
    # d = 0.01 L and u <= MPE/10 (calibration.plan_test_volumes: 5 / 5 / 2 L), Q3 raised to
    # 50 L because the test dial spins too fast at Q3 and the 1 L/turn dial is read there.
    "standard": Profile(
        {"Q3": 50.0, "Q2": 5.0, "Q1": 2.0},
        {"Q3": 2.0, "Q2": 1.5, "Q1": 1.5},
        (1.0, 3.0),
        {"Q3": 0.10, "Q2": 0.10, "Q1": 0.12},
    ),
    # a sample / test session of a few MB
    "short": Profile(
        {"Q3": 5.0, "Q2": 0.5, "Q1": 0.3},
        {"Q3": 0.6, "Q2": 0.4, "Q1": 0.4},
        (0.5, 1.0),
        {"Q3": 0.35, "Q2": 0.35, "Q1": 0.55},
    ),
    # ordinary registers (finest division 0.1 L) at the standard volumes: reading-limited
    "coarse": Profile(
        {"Q3": 50.0, "Q2": 5.0, "Q1": 2.0},
        {"Q3": 2.0, "Q2": 1.5, "Q1": 1.5},
        (1.0, 3.0),
        {"Q3": 0.10, "Q2": 0.30, "Q1": 0.60},
        ("dials", "wheels"),
    ),
}

#: Kinds of near-MPE point: |true error| = MPE - d, MPE, MPE + d with 0 < d < the profile's band.
NEAR_KINDS = ("just-inside", "at-mpe", "just-outside")


@dataclass(frozen=True)
class NearTarget:
    """A point whose true error is set near the MPE: point name, kind (NEAR_KINDS), the sign of
    the error, and d as a fraction of the profile's near band (0 for "at-mpe")."""

    point: str
    kind: str
    sign: float
    band_fraction: float

    def error_pct(self, mpe_pct: float, band_pct: float) -> float:
        """The target true error (%) for an MPE (%) and the profile's near band (%-points)."""
        offset = {"just-inside": -1.0, "at-mpe": 0.0, "just-outside": 1.0}[self.kind] * self.band_fraction * band_pct
        return self.sign * (mpe_pct + offset)


@dataclass(frozen=True)
class SimulatedMeter:
    """One meter under test: its id, register, error curve, start volume and camera."""

    index: int
    variant: str
    layout: RegisterLayout
    curve: ErrorCurve
    node_errors_pct: dict[str, float]
    status: str  # "inside", "near" (a point just inside or at the MPE), "outside"
    start_volume_l: float
    camera: CameraModel
    near: NearTarget | None = None
    markers: bool = True  # False: a plate without fiducials, read against a reference photo

    @property
    def id(self) -> str:
        return f"M{self.index + 1}"

    @property
    def camera_id(self) -> str:
        return f"cam-{self.id}"

    @property
    def reference_image(self) -> str:
        """Where the session keeps this meter's reference photo (markerless registers)."""
        return f"cameras/{self.camera_id}-reference.png"

    def register(self) -> dict:
        """The session.json `register` object: the ArUco plate layout, or the marker-free layout
        in the reference photo's pixels."""
        if self.markers:
            return self.layout.to_dict()
        return reference_layout(self.layout, self.camera, self.reference_image)


@dataclass(frozen=True)
class MarkerlessScene:
    """What a markerless camera adds: the reference photo, the meter's motion since it was
    taken, the changing light, the red wheel style both share, and the stretches upset (a jump, a hand)."""

    photo: np.ndarray
    motion: PlateMotion
    light: LightChange
    red_wheel_style: str
    upsets: tuple[SceneUpset, ...] = ()


def _markerless_scene(
    meter: SimulatedMeter,
    seed: int,
    duration_s: float,
    fixture_seed: int | None = None,
    upsets: Sequence[SceneUpset] = (),
) -> MarkerlessScene:
    """The reference photo (register at its start volume, camera at rest) and the run's motion and
    light, from a stream of their own (seed, meter): the other streams draw as with markers.  With
    `fixture_seed` the wheel style and the photo's draws come from that fixture's stream, the
    motion and light from this run's."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EF, meter.index]))
    fixed = (
        rng
        if fixture_seed is None
        else np.random.default_rng(np.random.SeedSequence([fixture_seed, 0x5EF, meter.index]))
    )
    style = "red" if fixed.random() < 0.6 else "red-on-white"
    positions = positions_from_volume(meter.layout, meter.start_volume_l % meter.layout.capacity_l)
    label = f"SIM-{meter.index + 1:04d}"
    photo = reference_photo(meter.layout, meter.camera, positions, fixed, label=label, red_wheel_style=style)
    corners = np.array(meter.camera.plate_corners_px)
    centre = tuple(float(v) for v in corners.mean(axis=0))
    motion = PlateMotion.random(rng, centre, duration_s)
    return MarkerlessScene(photo, motion, LightChange.random(rng), style, tuple(upsets))


def _mpe_pct(flow_m3h: float, water_c: float = NOMINAL_WATER_C) -> float:
    """MPE (%) of the simulated meters (class 2) at a flow (m³/h) and water temperature (°C)."""
    flows = water_meter_flows(Q3_M3H, R_RATIO, q2_q1=Q2_Q1)
    return water_meter_mpe(ACCURACY_CLASS, flow_m3h, flows, water_c).mpe_pct


def _set_flows_m3h() -> dict[str, float]:
    """Set points (m³/h): the middle of each initial-verification flow window."""
    flows = water_meter_flows(Q3_M3H, R_RATIO, q2_q1=Q2_Q1)
    return {p: sum(verification_flow_window(p, flows)) / 2 for p in ("Q3", "Q2", "Q1")}


def _node_errors(
    rng: np.random.Generator, near_rng: np.random.Generator, status: str, flows_m3h: dict[str, float]
) -> tuple[dict[str, float], NearTarget | None]:
    """True errors (%) at the test flows: typical curve shape, inside 0.75 MPE unless told; and the
    near-MPE target of the meter, if any.

    A "near" meter's chosen point is just inside (60 %) or at (40 %) the MPE; an "outside" meter's
    is just outside it (40 %) or at 1.3–1.8 MPE (60 %); so the pass/fail mix is unchanged. The
    near-MPE draws come from their own stream: `rng` draws as it always did.
    """
    errors = {
        "Q3": float(np.clip(rng.normal(0.1, 0.5), -1.4, 1.4)),
        "Q2": float(np.clip(rng.normal(0.4, 0.6), -1.5, 1.5)),
        "Q1": float(np.clip(rng.normal(-0.8, 1.4), -3.7, 3.7)),
    }
    kind_draw, band_fraction = float(near_rng.random()), float(near_rng.uniform(0.1, 0.8))
    if status == "inside":
        return errors, None
    point = str(rng.choice(["Q1", "Q2", "Q3"]))
    low, high = (1.3, 1.8) if status == "outside" else (0.8, 0.85)
    sign = float(rng.choice([-1.0, 1.0]))
    errors[point] = sign * _mpe_pct(flows_m3h[point]) * float(rng.uniform(low, high))
    if status == "near":
        kind = "at-mpe" if kind_draw < 0.4 else "just-inside"
    elif kind_draw < 0.4:
        kind = "just-outside"
    else:
        return errors, None
    return errors, NearTarget(point, kind, sign, 0.0 if kind == "at-mpe" else band_fraction)


def _meter_statuses(rng: np.random.Generator, meters: int) -> list[str]:
    """One meter (seed-chosen) outside the MPE when there are ≥ 2; others mostly inside."""
    statuses = [
        "near" if rng.random() < 0.15 else ("outside" if rng.random() < 0.05 else "inside") for _ in range(meters)
    ]
    if meters >= 2:
        outside = int(rng.integers(meters))
        statuses[outside] = "outside"
        inside = (outside + 1 + int(rng.integers(meters - 1))) % meters
        statuses[inside] = "inside"  # at least one clean pass
    return statuses


def _curve(flows_m3h: dict[str, float], errors: dict[str, float]) -> ErrorCurve:
    """The error curve through the node errors (%) at the test flows (m³/h)."""
    points = ("Q1", "Q2", "Q3")
    return ErrorCurve.through(tuple(flows_m3h[p] for p in points), tuple(errors[p] for p in points), q_ref_m3h=Q3_M3H)


def _make_meters(
    rngs: list[np.random.Generator],
    near_rng: np.random.Generator,
    statuses: list[str],
    flows_m3h: dict[str, float],
    variants: tuple[str, str],
    markers: bool = True,
    fixture_seed: int | None = None,
) -> list[SimulatedMeter]:
    """The meters in series; with `fixture_seed` each position's register type and camera come from
    that fixture's stream (seed, position) instead of the meter's (the same in every run of it)."""
    meters = []
    for k, (rng, status) in enumerate(zip(rngs, statuses, strict=True)):
        variant = variants[0] if rng.random() < 0.5 else variants[1]
        errors, near = _node_errors(rng, near_rng, status, flows_m3h)
        fixed = rng
        if fixture_seed is not None:
            fixed = np.random.default_rng(np.random.SeedSequence([fixture_seed, 0xF1C, k]))
            variant = variants[0] if fixed.random() < 0.5 else variants[1]
        layout = RegisterLayout.from_dict(default_register_layout(variant))
        if markers:
            camera = CameraModel.random(fixed, layout.plate_size_px, FRAME_SIZE_PX)
        else:  # a fixture holds the camera square to the register
            camera = frontal_camera(fixed, layout.plate_size_px, FRAME_SIZE_PX)
        start = round(float(rng.uniform(0.0, 99_000.0)), 4)
        meters.append(
            SimulatedMeter(k, variant, layout, _curve(flows_m3h, errors), errors, status, start, camera, near, markers)
        )
    return meters


def _carry_start(meter: SimulatedMeter, advance_l: float, rng: np.random.Generator) -> SimulatedMeter:
    """Move the start volume so that a whole m³ turns over `advance_l` litres into the run."""
    cubic_metres = int(rng.integers(0, 99)) * 1000.0
    return replace(meter, start_volume_l=round(cubic_metres + 1000.0 - advance_l, 4) % 99_000.0)


def _point_truth(run: BenchRun, track: np.ndarray, point: PointTruth, flows_m3h: dict[str, float]) -> dict[str, float]:
    """The true error (%) of a meter whose register follows `track` at `point`, its MPE (%) and volumes (L)."""
    r0, r1 = (float(run.at(track, ts)) for ts in (point.t_start_s, point.t_stop_s))
    v0, v1 = (float(run.at(run.volume_l, ts)) for ts in (point.t_start_s, point.t_stop_s))
    reference = point.reference_stop_l - point.reference_start_l
    indicated = r1 - r0
    water_c = float(np.mean(run.at(run.temperature_c, [point.t_start_s, point.t_stop_s])))
    return {
        "true_error_pct": (indicated - reference) / reference * 100.0,
        "true_reference_volume_l": reference,
        "true_indicated_volume_l": indicated,
        "true_volume_l": v1 - v0,
        "true_error_vs_volume_pct": (indicated - (v1 - v0)) / (v1 - v0) * 100.0,
        "mpe_pct": _mpe_pct(flows_m3h[point.name], water_c),
        "register_start_l": r0,
        "register_stop_l": r1,
    }


def _aim_near_mpe(
    run: BenchRun, meter: SimulatedMeter, flows_m3h: dict[str, float], band_pct: dict[str, float]
) -> SimulatedMeter:
    """The meter with its near-MPE point's curve node solved so the point's true error is the target.

    The true error (against the latched reference) differs from the curve's node error by the
    reference's own error, pulse rounding and flow noise, so the node is solved for on the run.
    """
    if meter.near is None:
        return meter
    near = meter.near
    point = next(p for p in run.points if p.name == near.point)
    facts = _point_truth(run, _register_track(run, meter), point, flows_m3h)
    target = near.error_pct(facts["mpe_pct"], band_pct[near.point])
    # the register readings are floats of up to ~1e5 L: their difference over a 0.3 L point moves in
    # steps of ~3e-9 %-points, coarser than TARGET_TOLERANCE_PCT: two float steps of the larger reading
    largest_l = max(abs(facts["register_start_l"]), abs(facts["register_stop_l"]))
    step_pct = 2 * float(np.spacing(largest_l)) / facts["true_reference_volume_l"] * 100.0

    def with_node(node_error_pct: float) -> SimulatedMeter:
        errors = {**meter.node_errors_pct, near.point: node_error_pct}
        return replace(meter, curve=_curve(flows_m3h, errors), node_errors_pct=errors)

    def true_error(node_error_pct: float) -> float:
        return _point_truth(run, _register_track(run, with_node(node_error_pct)), point, flows_m3h)["true_error_pct"]

    what = f"simulate water-meter: {meter.id} {near.point}"
    node = solve_for_target(true_error, target, target, what, resolution_pct=step_pct)
    return with_node(node)


def _reference_pulses(run: BenchRun, t_s: np.ndarray) -> np.ndarray:
    gain = 1.0 + run.meta["reference_error_pct"] / 100.0
    counted = (run.at(run.volume_l, t_s) * gain + run.meta["reference_offset_l"]) / PULSE_VOLUME_L
    return np.floor(counted + 1e-9).astype(np.int64)


def _write_serial(recorder: SessionRecorder, run: BenchRun, rng: np.random.Generator) -> None:
    """Reference totaliser lines (~10 Hz), raw as received, with what they parse to."""
    n = int(run.t_end_s / SERIAL_PERIOD_S)
    t = 0.05 + np.arange(n) * SERIAL_PERIOD_S + np.clip(rng.normal(0, 0.003, n), -0.01, 0.01)
    pulses = _reference_pulses(run, t)
    gain = 1.0 + run.meta["reference_error_pct"] / 100.0
    flow_l_h = run.at(run.flow_l_s, t) * 3600.0 * gain * (1 + rng.normal(0, 0.0005, n))
    temperature = run.at(run.temperature_c, t) + rng.normal(0, 0.01, n)
    seq0 = int(rng.integers(0, 50_000))
    log = recorder.device_log("ref-meter", "serial-totaliser")
    for k in range(n):
        line = format_totaliser_line(
            seq0 + k, int(pulses[k]), pulses[k] * PULSE_VOLUME_L, max(float(flow_l_h[k]), 0.0), float(temperature[k])
        )
        parsed, error = parse_totaliser_line(line)
        log.append(round(float(t[k]), 4), line.decode("latin-1"), parsed, error)


def _controller_events(run: BenchRun) -> list[tuple[float, str, dict]]:
    """(t_s, kind, payload) of the controller's events; kind is the topic suffix."""
    events: list[tuple[float, str, dict]] = [
        (run.t_sequence_start_s, "event", {"event": "sequence_start", "bench": BENCH_ID})
    ]
    for t_s, point, flow in run.set_points:
        payload = {"event": "flow_set", "flow_m3h": flow}
        if point:
            payload["point"] = point
        events.append((t_s, "event", payload))
    for p in run.points:
        for kind, t_s, ref in (
            ("flow_stable", p.t_stable_s, None),
            ("point_start", p.t_start_s, p.reference_start_l),
            ("point_stop", p.t_stop_s, p.reference_stop_l),
        ):
            payload = {"event": kind, "point": p.name, "flow_m3h": round(float(run.at(run.flow_l_s, t_s)) * 3.6, 5)}
            if ref is not None:
                payload["reference_volume_l"] = round(ref, 4)
            events.append((t_s, "event", payload))
    events.append((run.t_sequence_end_s, "event", {"event": "sequence_end", "bench": BENCH_ID}))
    return events


def _write_controller(recorder: SessionRecorder, run: BenchRun, rng: np.random.Generator) -> None:
    """MQTT telemetry at 2 Hz and test-sequence events, merged in time order."""
    n = int(run.t_end_s / TELEMETRY_PERIOD_S)
    t = 0.25 + np.arange(n) * TELEMETRY_PERIOD_S + np.clip(rng.normal(0, 0.005, n), -0.02, 0.02)
    flow = run.at(run.flow_l_s, t) * 3.6 * (1 + rng.normal(0, 0.002, n))
    temperature = run.at(run.temperature_c, t) + rng.normal(0, 0.02, n)
    pressure = run.at(run.pressure_kpa, t)
    messages = _controller_events(run)
    for k in range(n):
        running = run.t_sequence_start_s <= t[k] <= run.t_sequence_end_s
        state = "open" if running else "closed"
        messages.append(
            (
                float(t[k]),
                "telemetry",
                {
                    "flow_m3h": round(max(float(flow[k]), 0.0), 5),
                    "temperature_c": round(float(temperature[k]), 2),
                    "pressure_kpa": round(float(pressure[k]), 1),
                    "valves": {"inlet": state, "outlet": state, "bypass": "closed" if running else "open"},
                },
            )
        )
    messages.sort(key=lambda m: m[0])
    log = recorder.device_log("controller", "mqtt")
    for t_s, kind, payload in messages:
        raw = json.dumps(payload, separators=(",", ":"))
        log.append(round(t_s, 4), raw, json.loads(raw), None, topic=f"bench/{BENCH_ID}/{kind}")


def _register_track(run: BenchRun, meter: SimulatedMeter) -> np.ndarray:
    """Register volume (L) of `meter` on the run's grid."""
    return meter.start_volume_l + run.integrate(meter.curve.registration_factor(run.flow_l_s * 3.6))


def _write_camera(
    recorder: SessionRecorder,
    run: BenchRun,
    meter: SimulatedMeter,
    register_l: np.ndarray,
    fps: float,
    rng: np.random.Generator,
    scene: MarkerlessScene | None = None,
    render_style: str = "classic",
) -> int:
    """Render and record the camera of `meter`; frames at `fps` with ±2 ms jitter.  A markerless
    `scene` moves the meter and changes the light frame by frame.  `render_style`: see
    `RegisterRenderer` ("varied": TrueType digits, curved drums, a reflection over one element)."""
    n = int(run.t_end_s * fps)
    t = (np.arange(n) + rng.uniform(0.0, 1.0)) / fps + np.clip(rng.normal(0, 0.001, n), -0.004, 0.004)
    t = t[t < run.t_end_s]
    half = meter.camera.exposure_s / 2
    capacity = meter.layout.capacity_l
    opening = positions_from_volume(meter.layout, run.at(register_l, t - half) % capacity)
    closing = positions_from_volume(meter.layout, run.at(register_l, t + half) % capacity)
    motion = (closing - opening) % 10.0
    label = f"SIM-{meter.index + 1:04d}"
    if scene is None:
        renderer = RegisterRenderer(meter.layout, rng=rng, camera=meter.camera, label=label, style=render_style)
    else:
        renderer = RegisterRenderer(
            meter.layout,
            rng=rng,
            camera=meter.camera,
            label=label,
            red_wheel_style=scene.red_wheel_style,
            markers=False,
        )
    writer = recorder.camera_writer(meter.camera_id, fps, FRAME_SIZE_PX, kind="video")
    for k in range(t.size):
        t_s = float(t[k])
        if scene is None:
            frame = renderer.render(opening[k], motion[k])
        else:
            frame = render_markerless(renderer, opening[k], t_s, scene.motion, scene.light, scene.upsets, motion[k])
        writer.write(frame, round(t_s, 4))
    return int(t.size)


def _truth(
    run: BenchRun,
    meters: list[SimulatedMeter],
    tracks: list[np.ndarray],
    flows_m3h: dict[str, float],
    seed: int,
    profile: str,
    scenes: dict[str, MarkerlessScene] | None = None,
) -> dict:
    band_pct = PROFILES[profile].near_band_pct
    scenes = scenes or {}
    instruments = []
    for meter, track in zip(meters, tracks, strict=True):
        points = []
        for p in run.points:
            facts = _point_truth(run, track, p, flows_m3h)
            near = meter.near if meter.near is not None and meter.near.point == p.name else None
            if near is not None:  # solved to within float resolution: the target is the truth
                facts["true_error_pct"] = near.error_pct(facts["mpe_pct"], band_pct[p.name])
            error, mpe = facts["true_error_pct"], facts["mpe_pct"]
            points.append(
                {
                    "name": p.name,
                    **{k: facts[k] for k in ("true_error_pct", "true_reference_volume_l", "true_indicated_volume_l")},
                    **{k: facts[k] for k in ("true_volume_l", "true_error_vs_volume_pct")},
                    "curve_error_pct": meter.node_errors_pct[p.name],
                    "mpe_pct": mpe,
                    "true_verdict": "pass" if abs(error) <= mpe else "fail",
                    "near_mpe": near.kind if near is not None else None,
                    "t_start_s": p.t_start_s,
                    "t_stop_s": p.t_stop_s,
                    "register_start_l": facts["register_start_l"],
                    "register_stop_l": facts["register_stop_l"],
                }
            )
        instruments.append(
            {
                "id": meter.id,
                "status": meter.status,
                "register_variant": meter.variant,
                "register_start_volume_l": meter.start_volume_l,
                "true_verdict": "fail" if any(q["true_verdict"] == "fail" for q in points) else "pass",
                "error_curve": meter.curve.to_dict(),
                "camera": meter.camera.to_dict()
                | (
                    {
                        "plate_motion": scenes[meter.id].motion.to_dict(),
                        "upsets": [u.to_dict() for u in scenes[meter.id].upsets],
                        "light_change": scenes[meter.id].light.to_dict(),
                    }
                    if meter.id in scenes
                    else {}
                ),
                "points": points,
            }
        )
    return {
        "format": "meterbench-truth",
        "format_version": 1,
        "seed": seed,
        "profile": profile,
        "note": "true_error_pct = (register advance - reference totaliser advance) / reference "
        "advance x 100 between the point_start and point_stop instants; "
        "true_error_vs_volume_pct uses the true water volume instead; near_mpe names a point whose "
        "true error was solved to a target near the MPE (just-inside, at-mpe, just-outside): its "
        "true_error_pct is the target, met by the register to within 1e-9 %-points",
        "reference": {
            "device": "ref-meter",
            "error_pct": run.meta["reference_error_pct"],
            "pulse_volume_l": PULSE_VOLUME_L,
            "offset_l": run.meta["reference_offset_l"],
        },
        "flows_m3h": flows_m3h,
        "points": [
            {
                "name": p.name,
                "t_set_s": p.t_set_s,
                "t_stable_s": p.t_stable_s,
                "t_start_s": p.t_start_s,
                "t_stop_s": p.t_stop_s,
                "reference_start_l": p.reference_start_l,
                "reference_stop_l": p.reference_stop_l,
            }
            for p in run.points
        ],
        "instruments": instruments,
    }


def name_lab_ids(manifest: dict, bench_id: str | None, technician_id: str | None, standard_id: str | None) -> dict:
    """Put the lab file's ids into a simulated manifest: ``bench_id``, ``technician_id`` and each reference
    instrument's ``standard_id`` (None: the simulator's defaults, marked "sim")."""
    manifest["bench_id"] = bench_id or manifest["bench_id"]
    manifest["technician_id"] = technician_id or SIM_TECHNICIAN_ID
    for reference in manifest.get("reference_instruments", []):
        reference["standard_id"] = standard_id or SIM_STANDARD_ID
    return manifest


def _manifest(seed: int, profile: str, meters: list[SimulatedMeter], plan: list[PlannedPoint], run: BenchRun) -> dict:
    suffix = "" if profile == "standard" else f"-{profile}"
    return {
        "session_id": f"sim-water-meter-seed{seed}{suffix}",
        "bench_kind": "water-meter",
        "bench_id": BENCH_ID,
        "start_time_utc": START_TIME_UTC,
        "instruments": [
            {
                "id": m.id,
                "kind": "water-meter",
                "type": "DN15 single-jet",
                "serial": f"SIM-{m.index + 1:04d}",
                "accuracy_class": ACCURACY_CLASS,
                "q3_m3h": Q3_M3H,
                "r": R_RATIO,
                "q2_q1": Q2_Q1,
                "temperature_class": "T30",
                "camera": m.camera_id,
                "register": m.register(),
            }
            for m in meters
        ],
        "tanks": [],
        "reference_instruments": [
            {
                "id": "ref",
                "kind": "pulse-totaliser",
                "device": "ref-meter",
                "expanded_uncertainty_pct": 0.1,
                "coverage_factor": 2,
                "resolution_l": PULSE_VOLUME_L,
            }
        ],
        "test_plan": {"points": [{"name": p.name, "flow_rate_m3h": p.flow_m3h, "volume_l": p.volume_l} for p in plan]},
        "decision_rule": "simple",
        "simulated": {"seed": seed, "profile": profile, "duration_s": run.t_end_s},
    }


def simulate_water_meter(
    out_dir: Path,
    *,
    seed: int = 0,
    meters: int = 3,
    profile: str = "standard",
    fps: float = 10.0,
    progress: ProgressFn | None = None,
    markers: bool = True,
    render_style: str = "classic",
    bench_id: str | None = None,
    technician_id: str | None = None,
    standard_id: str | None = None,
    fixture_seed: int | None = None,
    registers: Mapping[str, str | Path] | None = None,
    upsets: Mapping[str, Sequence[SceneUpset]] | None = None,
) -> Path:
    """Write a complete simulated water-meter session folder to `out_dir`; return it.

    ``progress(done, total, label)`` is called as each meter's camera video is written (the slow part).

    `meters` DN15 meters (1–50) in series, test plan Q3, Q2, Q1 with the
    `profile`'s volumes ("standard" or "short"), one camera per meter at `fps`
    (frames/s).  The same `seed` gives the same session.  `markers` False: registers
    without fiducials, each with a reference photo in the session
    (cameras/<camera_id>-reference.png) and a layout in its pixels; the meter sits
    up to ±15 px and ±3° off where the photo shows it, drifts slowly, and the light
    changes.  `render_style` "varied" draws the registers as real ones look (TrueType
    digits, curved drums, a reflection over one element of each register for the whole
    session, Bayer noise; `meterbench.sim.register_render.RenderStyle`); "classic" is
    the default and gives the same session as before for the same seed.  `bench_id`,
    `technician_id` and `standard_id` (the reference's) are the lab file's ids written into
    session.json (default: "sim-bench", "sim-technician", "sim-reference-standard").

    Another run of a bench fixture (markerless, docs/markerless.md): `fixture_seed` draws each
    position's register type, camera and reference photo from that fixture alone, so every seed
    run with it puts other meters (errors, start volumes, run, motion, light) under the same
    cameras; `registers` (meter id -> a marker-free layout file of that fixture, e.g. from
    `layout propose` or `layout teach`) is what the bench config would name: the session records
    it (a `taught` block kept) and its photo as the meter's register.  `upsets` (meter id ->
    `SceneUpset`s): stretches where that camera is knocked or a hand is over the register.
    """
    if profile not in PROFILES:
        raise ConfigError(f"simulate water-meter: profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    if render_style not in RENDER_STYLES:
        raise ConfigError(
            f"simulate water-meter: render_style: expected one of {', '.join(RENDER_STYLES)}, got {render_style!r}"
        )
    if isinstance(meters, bool) or not isinstance(meters, int) or not 1 <= meters <= 50:
        raise ConfigError(f"simulate water-meter: meters: expected an integer 1..50, got {meters!r}")
    if not (math.isfinite(fps) and 1.0 <= fps <= 60.0):
        raise ConfigError(f"simulate water-meter: fps: expected 1..60 frames/s, got {fps!r}")
    spec = PROFILES[profile]
    # the near-MPE stream is spawned last, so every other stream draws what it did before it
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5 + 2 * meters)]
    bench_rng, serial_rng, controller_rng, plan_rng = streams[:4]
    meter_rngs, camera_rngs, near_rng = streams[4 : 4 + meters], streams[4 + meters : 4 + 2 * meters], streams[-1]
    flows = _set_flows_m3h()
    plan = [PlannedPoint(p, flows[p], spec.volumes_l[p], spec.ramp_tau_s[p]) for p in ("Q3", "Q2", "Q1")]
    run = simulate_bench_run(
        plan,
        bench_rng,
        reference_error_pct=float(plan_rng.normal(0.0, 0.015)),
        pulse_volume_l=PULSE_VOLUME_L,
        reference_offset_l=round(float(plan_rng.uniform(1e3, 1e5)), 4),
        settle_s=spec.settle_s,
    )
    statuses = _meter_statuses(plan_rng, meters)
    sim_meters = _make_meters(meter_rngs, near_rng, statuses, flows, spec.register_variants, markers, fixture_seed)
    q3_mid = (run.points[0].t_start_s + run.points[0].t_stop_s) / 2
    advance_mid_q3 = float(run.at(run.volume_l, q3_mid))
    sim_meters = [_carry_start(m, advance_mid_q3, plan_rng) if plan_rng.random() < 0.35 else m for m in sim_meters]
    sim_meters = [_aim_near_mpe(run, m, flows, spec.near_band_pct) for m in sim_meters]
    tracks = [_register_track(run, m) for m in sim_meters]
    manifest = name_lab_ids(_manifest(seed, profile, sim_meters, plan, run), bench_id, technician_id, standard_id)
    upsets = dict(upsets or {})
    scenes = {
        m.id: _markerless_scene(m, seed, run.t_end_s, fixture_seed, upsets.pop(m.id, ()))
        for m in sim_meters
        if not m.markers
    }
    photos = {m.camera_id: scenes[m.id].photo for m in sim_meters if m.id in scenes}
    for k, meter in enumerate(sim_meters):
        if registers and meter.id in registers:
            register, photo = layout_file_register(registers[meter.id], meter.reference_image)
            if meter.markers or photo is None or photo.shape[:2] != FRAME_SIZE_PX[::-1]:
                raise ConfigError(
                    f"simulate water-meter: registers[{meter.id}]: {registers[meter.id]}: expected a marker-free "
                    f"layout of a {FRAME_SIZE_PX[0]}x{FRAME_SIZE_PX[1]} photo of the fixture, with markers=False"
                )
            manifest["instruments"][k]["register"] = register
            photos[meter.camera_id] = photo
    stray = sorted(set(upsets) | (set(registers or {}) - set(scenes)))  # upsets left: not a markerless meter's
    if stray:
        raise ConfigError(f"simulate water-meter: upsets, registers: expected ids of markerless meters, got {stray}")
    if not markers:
        manifest["session_id"] += "-markerless"
        manifest["simulated"]["markers"] = False
    with SessionRecorder.create(out_dir, manifest, reference_images=photos) as recorder:
        recorder.write_truth(_truth(run, sim_meters, tracks, flows, seed, profile, scenes))
        _write_serial(recorder, run, serial_rng)
        _write_controller(recorder, run, controller_rng)
        if progress is not None:
            progress(0, len(sim_meters), "")
        for done, (meter, track, rng) in enumerate(zip(sim_meters, tracks, camera_rngs, strict=True), start=1):
            _write_camera(recorder, run, meter, track, fps, rng, scenes.get(meter.id), render_style)
            if progress is not None:
                progress(done, len(sim_meters), f"meter {meter.id}")
    return Path(out_dir)
