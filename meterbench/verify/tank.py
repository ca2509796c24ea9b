"""Verify measuring tanks (standard capacity measures) from a recorded tank-bench session.

Per run (a test-plan point): the controller's point_start / point_stop events
latch the reference totaliser (delivered volume at the meter's temperature);
the drain before the run must have lasted the tank's drain time; after the
settle time, every camera frame up to the next drain is read on the neck scale
(:func:`meterbench.vision.read_neck_scale`); the readings must agree within
``CONSISTENCY_DIVISIONS``. The tank's reading and the delivered volume are both
brought to water at 20 °C (:func:`meterbench.calibration.tank_error`: water
density between meter and tank temperature, the can's cubic expansion) and
compared; the MPE comes from :func:`meterbench.calibration.tank_mpe`.

A run that cannot be measured is "inconclusive" with the reason, never guessed;
each run becomes a :class:`~meterbench.verify.results.PointResult`, each tank an
:class:`~meterbench.verify.results.InstrumentResult`. Bad session.json content
raises SessionError naming the field.
Controller vocabulary used (MQTT ``bench/<id>/event``): ``point_start`` /
``point_stop`` (with ``reference_volume_l``), ``valve_set`` with ``valve`` in
{"fill", "slow_fill", "drain"} and ``state``; telemetry carries
``tank_temperature_c`` next to ``temperature_c`` (at the reference meter).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np

from meterbench import calibration
from meterbench.errors import SessionError
from meterbench.session import EvidenceGap
from meterbench.verify.results import (
    Inconclusive,
    InstrumentResult,
    PointResult,
    ReasonCounts,
    WaterTemperature,
    bench_point_problem,
    instrument_identity,
    is_number,
    reference_uncertainty,
    require_frames,
    water_temperature,
)
from meterbench.vision.neck_scale import NeckScaleGeometry, NeckScaleReading, read_neck_scale

__all__ = ["TankConfig", "evaluate_tank_session", "tank_figures", "CONSISTENCY_DIVISIONS"]

CONSISTENCY_DIVISIONS = 0.2  # max spread of the settled readings of one run
MIN_READINGS = 3
_DEFAULT_SETTLE_S = 10.0
_DEFAULT_TEMPERATURE_U_C = 0.1  # standard uncertainty of each thermometer (°C)
_BETA_RELATIVE_U = 0.1  # relative standard uncertainty of the can's expansion coefficient


def _config_error(where: str, expected: str, got: Any) -> SessionError:
    return SessionError(f"session.json: {where}: expected {expected}, got {got!r}")


def _positive(tank: dict, key: str, where: str, default: float | None = None) -> float:
    value = tank.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise _config_error(f"{where}.{key}", "a number > 0", value)
    return float(value)


@dataclass(frozen=True)
class TankConfig:
    """A tank's entry of session.json, checked (volumes L, times s, temperatures °C)."""

    id: str
    nominal_volume_l: float
    material: str
    accuracy_class: str | None
    camera: str
    drain_time_s: float
    settle_time_s: float
    temperature_u_c: float
    scale: NeckScaleGeometry

    @classmethod
    def from_manifest(cls, tank: dict, where: str) -> TankConfig:
        """Validate one ``tanks[i]`` entry; raise SessionError naming the field."""
        if not isinstance(tank, dict):
            raise _config_error(where, "an object", tank)
        nominal = _positive(tank, "nominal_volume_l", where)
        material = tank.get("material")
        try:
            calibration.cubic_expansion(str(material))
        except ValueError as exc:
            raise SessionError(f"session.json: {where}.material: {exc}") from None
        try:
            scale = NeckScaleGeometry.from_dict(tank.get("scale"))
        except ValueError as exc:
            raise SessionError(f"session.json: {where}.{str(exc).removeprefix('tank ')}") from None
        default_drain = 60.0 if nominal >= 10.0 else 30.0  # UK practice, METROLOGY §3
        accuracy_class = tank.get("class")
        return cls(
            id=str(tank.get("id")),
            nominal_volume_l=nominal,
            material=str(material),
            accuracy_class=None if accuracy_class is None else str(accuracy_class),
            camera=str(tank.get("camera")),
            drain_time_s=_positive(tank, "drain_time_s", where, default_drain),
            settle_time_s=_positive(tank, "settle_time_s", where, _DEFAULT_SETTLE_S),
            temperature_u_c=_positive(tank, "temperature_u_c", where, _DEFAULT_TEMPERATURE_U_C),
            scale=scale,
        )


@dataclass
class _RunTimes:
    start_t: float
    stop_t: float
    start_l: float
    stop_l: float
    read_until_t: float
    drain_before_s: float  # nan when no drain was seen before the run
    fill_rate_m3h: float


def _device_id(session, kind: str) -> str | None:
    return next((d["id"] for d in session.manifest.get("devices", []) if d.get("kind") == kind), None)


def _controller_events(session) -> list[tuple[float, str, dict]]:
    device = _device_id(session, "mqtt")
    if device is None:
        return []
    events = []
    for event in session.device_events(device):
        if isinstance(event.parsed, dict):
            kind = (event.topic or "").rsplit("/", 1)[-1]
            events.append((event.t_s, kind, event.parsed))
    return events


def _run_times(events: list[tuple[float, str, dict]], name: str, plan_rate: float | None) -> _RunTimes:
    """Latch instants and volumes of run ``name``, the drain before it, the end of its read window."""

    def latch(kind: str) -> tuple[float, float]:
        found = [(t, p) for t, k, p in events if k == "event" and p.get("event") == kind and p.get("point") == name]
        if len(found) != 1:
            raise Inconclusive(f"{len(found)} {kind} events for run {name} (expected 1)")
        t, payload = found[0]
        volume = payload.get("reference_volume_l")
        if not is_number(volume):
            raise Inconclusive(f"{kind} of run {name} without a numeric reference_volume_l (got {volume!r})")
        return t, float(volume)

    start_t, start_l = latch("point_start")
    stop_t, stop_l = latch("point_stop")
    drains = [
        (t, p.get("state"))
        for t, k, p in events
        if k == "event" and p.get("event") == "valve_set" and p.get("valve") == "drain"
    ]
    before = [(t, s) for t, s in drains if t < start_t]
    drain_before = math.nan
    if len(before) >= 2 and before[-1][1] == "closed" and before[-2][1] == "open":
        drain_before = before[-1][0] - before[-2][0]
    after = [t for t, s in drains if t > stop_t and s == "open"]
    rate = plan_rate
    if rate is None:
        payload = next(
            p for t, k, p in events if k == "event" and p.get("event") == "point_start" and p.get("point") == name
        )
        rate = payload.get("flow_set_m3h")
    rate = float(rate) if is_number(rate) else math.nan
    return _RunTimes(start_t, stop_t, start_l, stop_l, after[0] if after else math.inf, drain_before, rate)


def _logged(samples: list[tuple[float, Any]], t0: float, t1: float) -> list[Any]:
    return [v for t, v in samples if t0 <= t <= t1]


def _temperatures(session, events, times: _RunTimes) -> tuple[WaterTemperature, WaterTemperature]:
    """Mean water temperature (°C) at the reference meter during the fill and in the tank after.

    Either one missing: session.json's assumed_water_temperature_c (flagged), else Inconclusive.
    """
    meter: list[tuple[float, Any]] = []
    reference = (session.manifest.get("reference_instruments") or [{}])[0].get("device")
    if reference is not None:
        meter = [
            (e.t_s, e.parsed["temperature_c"])
            for e in session.device_events(reference)
            if isinstance(e.parsed, dict) and is_number(e.parsed.get("temperature_c"))
        ]
    if not meter:
        meter = [(t, p["temperature_c"]) for t, k, p in events if k == "telemetry" and "temperature_c" in p]
    tank = [(t, p["tank_temperature_c"]) for t, k, p in events if k == "telemetry" and "tank_temperature_c" in p]
    end = min(times.read_until_t, times.stop_t + 600.0)
    manifest = session.manifest
    return (
        water_temperature(
            _logged(meter, times.start_t, times.stop_t),
            manifest,
            f"reference-meter temperature from {times.start_t:.1f} s to {times.stop_t:.1f} s",
        ),
        water_temperature(
            _logged(tank, times.stop_t, end),
            manifest,
            f"tank temperature (tank_temperature_c) from {times.stop_t:.1f} s to {end:.1f} s",
        ),
    )


@dataclass
class _ScaleResult:
    level_ml: float
    u_ml: float
    readings: list[tuple[float, NeckScaleReading]]
    figure: np.ndarray | None


def _read_settled(session, config: TankConfig, times: _RunTimes) -> _ScaleResult:
    """Read every settled frame of the run; the mean level if they agree, else _Inconclusive."""
    camera = session.camera(config.camera)
    t0 = times.stop_t + config.settle_time_s
    indices = [i for i, t in enumerate(camera.frame_times) if t0 <= t < times.read_until_t]
    if not indices:
        raise Inconclusive(f"camera {config.camera}: no frame between {t0:.1f} s (settled) and the drain")
    readings: list[tuple[float, NeckScaleReading]] = []
    frames: dict[int, np.ndarray] = {}
    failures = ReasonCounts()
    for _index, t_s, frame in camera.iter_frames(indices):
        reading = (
            read_neck_scale(frame, config.scale)
            if frame is not None
            else NeckScaleReading(False, "frame cannot be decoded")
        )
        if reading.ok:
            readings.append((t_s, reading))
            frames[len(readings) - 1] = frame
        else:
            failures.add(reading.reason)
    if len(readings) < MIN_READINGS:
        raise Inconclusive(
            f"camera {config.camera}: scale read on {len(readings)} of {len(indices)} settled frames "
            f"(need {MIN_READINGS}): {failures or 'no frames'}"
        )
    levels = np.array([r.level_ml for _, r in readings])
    spread = float(np.ptp(levels))
    tolerance = CONSISTENCY_DIVISIONS * config.scale.ml_per_division
    if spread > tolerance:
        raise Inconclusive(
            f"settled readings inconsistent: spread {spread:.1f} mL over "
            f"{len(readings)} frames > {tolerance:.1f} mL (surface not settled?)"
        )
    u_frames = np.array([r.u_ml for _, r in readings])
    u_ml = math.sqrt(float(np.mean(u_frames**2)) + float(np.var(levels, ddof=1)) / len(levels))
    median_index = int(np.argsort(levels)[len(levels) // 2])
    figure = _draw_reading(frames[median_index], readings[median_index][1], config.scale)
    return _ScaleResult(float(np.mean(levels)), u_ml, readings, figure)


def _draw_reading(frame: np.ndarray, reading: NeckScaleReading, scale: NeckScaleGeometry) -> np.ndarray:
    """A 2× crop of the neck around the meniscus with the reading drawn on it (BGR uint8)."""
    image = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    x, y = reading.meniscus_xy_px
    half = int(3 * scale.px_per_division)
    top = int(np.clip(y - half, 0, max(0, image.shape[0] - 2 * half)))
    crop = cv2.resize(image[top : top + 2 * half], None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    row = int(round((y - top) * 2))
    g0, g1 = scale.glass_x_px
    cv2.line(crop, (int(2 * g0) - 6, row), (int(2 * g1) + 6, row), (0, 0, 255), 1)
    cv2.putText(
        crop, f"{reading.level_ml:+.1f} mL", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA
    )
    return crop


def _budget(
    config: TankConfig, reference: dict, scale: _ScaleResult, volume_l: float, meter_c: float, tank_c: float
) -> calibration.UncertaintyBudget:
    budget = calibration.UncertaintyBudget()
    u_ref, k_ref = reference_uncertainty(reference)
    budget.add_reference(u_ref, k=k_ref)
    resolution = reference.get("resolution_l")
    if is_number(resolution) and resolution > 0:
        budget.add_resolution(float(resolution), volume_l, name="reference resolution")
    budget.add_component(
        "neck-scale reading (meniscus, marks, frame scatter)",
        100.0 * scale.u_ml / 1000.0 / volume_l,
        source=f"u = {scale.u_ml:.2f} mL from {len(scale.readings)} frames",
    )
    for what, t_c in (("reference meter", meter_c), ("tank", tank_c)):
        budget.add_temperature(
            config.temperature_u_c,
            water_temperature_c=t_c,
            name=f"water temperature at the {what}",
            source=f"u(t) = {config.temperature_u_c} °C (tank config)",
        )
    beta = calibration.cubic_expansion(config.material).value
    budget.add_component(
        "tank expansion coefficient",
        100.0 * _BETA_RELATIVE_U * beta * abs(tank_c - 20.0),
        source=f"u(beta) = {_BETA_RELATIVE_U:.0%} of {beta:.2e} /°C (MEM)",
    )
    return budget


def _untrusted(session) -> list[EvidenceGap]:
    """The stretches of the controller and reference logs that cannot be trusted (session/reader.py)."""
    devices = [_device_id(session, "mqtt")]
    devices += [(session.manifest.get("reference_instruments") or [{}])[0].get("device")]
    return [gap for device in dict.fromkeys(devices) if device is not None for gap in session.device_gaps(device)]


def _evaluate_run(
    session, config: TankConfig, events, point: dict, mpe: calibration.MpeResult, rule: str, gaps=()
) -> PointResult:
    """One run of one tank; inconclusive with the reason when its data cannot give a verdict."""
    plan_rate = point.get("flow_rate_m3h")
    rate = float(plan_rate) if is_number(plan_rate) else math.nan
    return PointResult.from_evaluation(
        point["name"],
        partial(_measure_run, session, config, events, point["name"], plan_rate, mpe, rule, gaps),
        flow_rate=rate,
        mpe_pct=mpe.mpe_pct,
    )


def _measure_run(
    session, config: TankConfig, events, name: str, plan_rate: Any, mpe: calibration.MpeResult, rule: str, gaps=()
) -> PointResult:
    """_evaluate_run's work; raises Inconclusive when the data falls short.

    A run whose latches, fill or settled readings lie in an untrusted stretch of a log (``gaps``:
    a hash-chain break, a line whose parsed disagrees with its raw, a changed or unreadable log)
    is inconclusive; so is a run missing a latch while the log has any such stretch."""
    vouched = bench_point_problem(session.manifest, name)
    if vouched is not None:
        raise Inconclusive(vouched)
    try:
        times = _run_times(events, name, plan_rate if is_number(plan_rate) else None)
    except Inconclusive as exc:
        if gaps:
            raise Inconclusive(f"{exc.reason}; evidence not trusted: {gaps[0].reason}") from None
        raise
    end = min(times.read_until_t, times.stop_t + 600.0)
    untrusted = [gap.reason for gap in gaps if gap.t_from_s < end and times.start_t < gap.t_to_s]
    if untrusted:
        raise Inconclusive(f"evidence not trusted: {'; '.join(dict.fromkeys(untrusted[:3]))}")
    if not times.drain_before_s >= config.drain_time_s:
        seen = "no drain seen" if math.isnan(times.drain_before_s) else f"drain lasted {times.drain_before_s:.1f} s"
        raise Inconclusive(f"{seen} before run {name}; the tank needs {config.drain_time_s:.0f} s")
    meter, tank = _temperatures(session, events, times)
    scale = _read_settled(session, config, times)
    delivered = times.stop_l - times.start_l
    if delivered <= 0:
        raise Inconclusive(f"delivered volume {delivered:.4f} L is not positive")
    read_l = config.nominal_volume_l + scale.level_ml / 1000.0
    meter_c, tank_c = meter.value_c, tank.value_c
    result = calibration.tank_error(read_l, delivered, meter_c, tank_c, config.material)
    budget = _budget(
        config, session.manifest["reference_instruments"][0], scale, result.reference_volume_l, meter_c, tank_c
    )
    details: dict[str, Any] = {
        "start_t_s": times.start_t,
        "stop_t_s": times.stop_t,
        "delivered_l_at_meter": delivered,
        "scale_level_ml": scale.level_ml,
        "scale_u_ml": scale.u_ml,
        "frames_read": len(scale.readings),
        "meter_temperature_c": meter_c,
        "tank_temperature_c": tank_c,
    }
    for key, temperature in (("meter_temperature_assumed", meter), ("tank_temperature_assumed", tank)):
        if temperature.assumed:
            details[key] = True
    details |= {
        "drain_before_s": times.drain_before_s,
        "mpe_source": mpe.source,
        "mpe_provenance": mpe.provenance,
        "uncertainty_budget": budget.as_dict(),
    }
    return PointResult.decided(
        name,
        flow_rate=times.fill_rate_m3h,
        reference_volume=result.reference_volume_l,
        indicated_volume=result.indicated_volume_l,
        error_pct=result.error_pct,
        mpe_pct=mpe.mpe_pct,
        uncertainty_pct=budget.expanded_pct(k=2.0),
        rule=rule,
        details=details,
        notes=sorted({t.note for t in (meter, tank) if t.assumed}),
        figure=scale.figure,
    )


def _tank_entries(session) -> list[tuple[str, dict]]:
    entries = [(f"tanks[{i}]", t) for i, t in enumerate(session.manifest.get("tanks", []))]
    entries += [
        (f"instruments[{i}]", t) for i, t in enumerate(session.manifest["instruments"]) if t.get("kind") == "tank"
    ]
    return entries


def _tank_mpe(config: TankConfig, where: str) -> calibration.MpeResult:
    try:
        return calibration.tank_mpe(
            config.nominal_volume_l,
            accuracy_class=config.accuracy_class,
            scale_division_l=config.scale.ml_per_division / 1000.0,
        )
    except ValueError as exc:  # an unknown class, a scale without divisions
        raise SessionError(f"session.json: {where}: {exc}") from None


def _evaluate_tank(session, config: TankConfig, events, mpe, rule: str, identity: dict, warnings: list[str]):
    """Every run of one tank; raises Inconclusive when its camera has no frames."""
    require_frames(session.camera(config.camera), MIN_READINGS)
    gaps = _untrusted(session)
    points = [
        _evaluate_run(session, config, events, point, mpe, rule, gaps)
        for point in session.manifest["test_plan"]["points"]
    ]
    return InstrumentResult.from_points(config.id, "tank", points, identity=identity, warnings=warnings)


def evaluate_tank_session(session) -> list[InstrumentResult]:
    """Verify every tank of a loaded tank session, one InstrumentResult each.

    Each measured point (run) carries ``figure``: a BGR crop of the neck with
    the meniscus reading drawn (see :func:`tank_figures`).
    """
    manifest = session.manifest
    if not manifest.get("reference_instruments"):
        raise SessionError("session.json: reference_instruments: expected the reference totaliser, got none")
    rule = manifest.get("decision_rule", "simple")
    events = _controller_events(session)
    names = [point["name"] for point in manifest["test_plan"]["points"]]
    instruments = []
    for where, entry in _tank_entries(session):
        config = TankConfig.from_manifest(entry, where)
        mpe = _tank_mpe(config, where)
        warnings = (
            []
            if mpe.provenance == "SRC"
            else [f"MPE {mpe.mpe_pct:.4g} % is a configurable default ({mpe.provenance}): {mpe.source}"]
        )
        identity = instrument_identity(entry)
        instruments.append(
            InstrumentResult.from_evaluation(
                config.id,
                "tank",
                names,
                partial(_evaluate_tank, session, config, events, mpe, rule, identity, warnings),
                identity=identity,
                warnings=warnings,
            )
        )
    return instruments


def tank_figures(session, instruments: list[InstrumentResult]) -> dict[str, dict[str, str]]:
    """Per tank id: {caption: PNG data URI} of each run's neck crop with the reading drawn."""
    figures: dict[str, dict[str, str]] = {}
    for instrument in instruments:
        for point in instrument.points:
            if point.figure is None:
                continue
            ok, png = cv2.imencode(".png", point.figure)
            if ok:
                caption = f"{instrument.id} {point.name}: meniscus {point.details['scale_level_ml']:+.1f} mL"
                figures.setdefault(instrument.id, {})[caption] = "data:image/png;base64," + base64.b64encode(
                    png.tobytes()
                ).decode("ascii")
    return figures
