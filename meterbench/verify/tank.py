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

A run that cannot be measured is "inconclusive" with the reason, never guessed.
Controller vocabulary used (MQTT ``bench/<id>/event``): ``point_start`` /
``point_stop`` (with ``reference_volume_l``), ``valve_set`` with ``valve`` in
{"fill", "slow_fill", "drain"} and ``state``; telemetry carries
``tank_temperature_c`` next to ``temperature_c`` (at the reference meter).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from meterbench import calibration
from meterbench.vision.neck_scale import NeckScaleGeometry, NeckScaleReading, read_neck_scale

__all__ = ["TankConfig", "evaluate_tank_session", "tank_figures", "CONSISTENCY_DIVISIONS"]

CONSISTENCY_DIVISIONS = 0.2  # max spread of the settled readings of one run
MIN_READINGS = 3
_DEFAULT_SETTLE_S = 10.0
_DEFAULT_TEMPERATURE_U_C = 0.1  # standard uncertainty of each thermometer (°C)
_BETA_RELATIVE_U = 0.1  # relative standard uncertainty of the can's expansion coefficient


def _config_error(where: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"session.json: {where}: expected {expected}, got {got!r}")


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
        """Validate one ``tanks[i]`` entry; raise ValueError naming the field."""
        if not isinstance(tank, dict):
            raise _config_error(where, "an object", tank)
        nominal = _positive(tank, "nominal_volume_l", where)
        material = tank.get("material")
        try:
            calibration.cubic_expansion(str(material))
        except ValueError as exc:
            raise ValueError(f"session.json: {where}.material: {exc}") from None
        try:
            scale = NeckScaleGeometry.from_dict(tank.get("scale"))
        except ValueError as exc:
            raise ValueError(f"session.json: {where}.{str(exc).removeprefix('tank ')}") from None
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


class _Inconclusive(Exception):
    """A run cannot be measured; the message is the reason."""


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
            raise _Inconclusive(f"{len(found)} {kind} events for run {name} (expected 1)")
        t, payload = found[0]
        volume = payload.get("reference_volume_l")
        if not isinstance(volume, int | float) or isinstance(volume, bool):
            raise _Inconclusive(f"{kind} of run {name} without reference_volume_l")
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
        rate = payload.get("flow_set_m3h", math.nan)
    return _RunTimes(start_t, stop_t, start_l, stop_l, after[0] if after else math.inf, drain_before, float(rate))


def _mean_in(values: list[tuple[float, float]], t0: float, t1: float, what: str) -> float:
    chosen = [v for t, v in values if t0 <= t <= t1 and math.isfinite(v)]
    if not chosen:
        raise _Inconclusive(f"no {what} between {t0:.1f} s and {t1:.1f} s")
    return float(np.mean(chosen))


def _temperatures(session, events, times: _RunTimes) -> tuple[float, float]:
    """Mean water temperature (°C) at the reference meter during the fill and in the tank after."""
    meter: list[tuple[float, float]] = []
    reference = (session.manifest.get("reference_instruments") or [{}])[0].get("device")
    if reference is not None:
        meter = [
            (e.t_s, float(e.parsed["temperature_c"]))
            for e in session.device_events(reference)
            if isinstance(e.parsed, dict) and "temperature_c" in e.parsed
        ]
    if not meter:
        meter = [(t, float(p["temperature_c"])) for t, k, p in events if k == "telemetry" and "temperature_c" in p]
    tank = [(t, float(p["tank_temperature_c"])) for t, k, p in events if k == "telemetry" and "tank_temperature_c" in p]
    end = min(times.read_until_t, times.stop_t + 600.0)
    return (
        _mean_in(meter, times.start_t, times.stop_t, "reference-meter temperature"),
        _mean_in(tank, times.stop_t, end, "tank temperature (tank_temperature_c)"),
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
        raise _Inconclusive(f"no camera frame between {t0:.1f} s (settled) and the drain")
    readings: list[tuple[float, NeckScaleReading]] = []
    frames: dict[int, np.ndarray] = {}
    failures: dict[str, int] = {}
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
            failures[reading.reason] = failures.get(reading.reason, 0) + 1
    if len(readings) < MIN_READINGS:
        why = "; ".join(f"{n}× {r}" for r, n in sorted(failures.items(), key=lambda x: -x[1]))
        raise _Inconclusive(
            f"scale read on {len(readings)} of {len(indices)} settled frames "
            f"(need {MIN_READINGS}): {why or 'no frames'}"
        )
    levels = np.array([r.level_ml for _, r in readings])
    spread = float(np.ptp(levels))
    tolerance = CONSISTENCY_DIVISIONS * config.scale.ml_per_division
    if spread > tolerance:
        raise _Inconclusive(
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
    u_ref = reference.get("expanded_uncertainty_pct")
    if not isinstance(u_ref, int | float) or isinstance(u_ref, bool):
        raise _Inconclusive("reference_instruments[0].expanded_uncertainty_pct missing: no uncertainty budget")
    budget.add_reference(float(u_ref), k=float(reference.get("coverage_factor", 2.0)))
    resolution = reference.get("resolution_l")
    if isinstance(resolution, int | float) and resolution > 0:
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


def _inconclusive_point(name: str, rate: float, mpe_pct: float, reason: str) -> dict:
    return {
        "name": name,
        "flow_rate": rate,
        "reference_volume": math.nan,
        "indicated_volume": math.nan,
        "error_pct": math.nan,
        "mpe_pct": mpe_pct,
        "uncertainty_pct": math.nan,
        "verdict": "inconclusive",
        "reason": reason,
    }


def _evaluate_run(session, config: TankConfig, events, point: dict, mpe: calibration.MpeResult, rule: str) -> dict:
    name = point["name"]
    plan_rate = point.get("flow_rate_m3h")
    try:
        times = _run_times(events, name, plan_rate)
        if not times.drain_before_s >= config.drain_time_s:
            seen = "no drain seen" if math.isnan(times.drain_before_s) else f"drain lasted {times.drain_before_s:.1f} s"
            raise _Inconclusive(f"{seen} before run {name}; the tank needs {config.drain_time_s:.0f} s")
        meter_c, tank_c = _temperatures(session, events, times)
        scale = _read_settled(session, config, times)
        delivered = times.stop_l - times.start_l
        if delivered <= 0:
            raise _Inconclusive(f"delivered volume {delivered:.4f} L is not positive")
        read_l = config.nominal_volume_l + scale.level_ml / 1000.0
        result = calibration.tank_error(read_l, delivered, meter_c, tank_c, config.material)
        budget = _budget(
            config, session.manifest["reference_instruments"][0], scale, result.reference_volume_l, meter_c, tank_c
        )
    except _Inconclusive as exc:
        rate = float(plan_rate) if plan_rate is not None else math.nan
        return _inconclusive_point(name, rate, mpe.mpe_pct, str(exc))
    expanded = budget.expanded_pct(k=2.0)
    decision = calibration.decide(result.error_pct, mpe.mpe_pct, expanded, rule=rule)
    return {
        "name": name,
        "flow_rate": times.fill_rate_m3h,
        "reference_volume": result.reference_volume_l,
        "indicated_volume": result.indicated_volume_l,
        "error_pct": result.error_pct,
        "mpe_pct": mpe.mpe_pct,
        "uncertainty_pct": expanded,
        "verdict": decision.verdict,
        "reason": decision.reason,
        "details": {
            "start_t_s": times.start_t,
            "stop_t_s": times.stop_t,
            "delivered_l_at_meter": delivered,
            "scale_level_ml": scale.level_ml,
            "scale_u_ml": scale.u_ml,
            "frames_read": len(scale.readings),
            "meter_temperature_c": meter_c,
            "tank_temperature_c": tank_c,
            "drain_before_s": times.drain_before_s,
            "mpe_source": mpe.source,
            "mpe_provenance": mpe.provenance,
            "uncertainty_budget": budget.as_dict(),
        },
        "_figure": scale.figure,
    }


def _tank_entries(session) -> list[tuple[str, dict]]:
    entries = [(f"tanks[{i}]", t) for i, t in enumerate(session.manifest.get("tanks", []))]
    entries += [
        (f"instruments[{i}]", t) for i, t in enumerate(session.manifest["instruments"]) if t.get("kind") == "tank"
    ]
    return entries


def evaluate_tank_session(session) -> list[dict]:
    """Verify every tank of a loaded tank session; returns report.json instrument objects.

    Each point (run) also carries ``"_figure"``: a BGR crop of the neck with the
    meniscus reading drawn (None when not read); report writers drop ``_`` keys.
    """
    manifest = session.manifest
    if not manifest.get("reference_instruments"):
        raise ValueError("session.json: reference_instruments: expected the reference totaliser, got none")
    rule = manifest.get("decision_rule", "simple")
    events = _controller_events(session)
    instruments = []
    for where, entry in _tank_entries(session):
        config = TankConfig.from_manifest(entry, where)
        mpe = calibration.tank_mpe(
            config.nominal_volume_l,
            accuracy_class=config.accuracy_class,
            scale_division_l=config.scale.ml_per_division / 1000.0,
        )
        points = [_evaluate_run(session, config, events, point, mpe, rule) for point in manifest["test_plan"]["points"]]
        verdict = calibration.decide_instrument({p["name"]: p["verdict"] for p in points})
        warnings = (
            []
            if mpe.provenance == "SRC"
            else [f"MPE {mpe.mpe_pct:.4g} % is a configurable default ({mpe.provenance}): {mpe.source}"]
        )
        instruments.append(
            {
                "id": config.id,
                "kind": "tank",
                "verdict": getattr(verdict, "verdict", verdict),
                "points": points,
                "nominal_volume_l": config.nominal_volume_l,
                "material": config.material,
                "warnings": warnings,
            }
        )
    return instruments


def tank_figures(session, instruments: list[dict]) -> dict[str, dict[str, str]]:
    """Per tank id: {caption: PNG data URI} of each run's neck crop with the reading drawn."""
    figures: dict[str, dict[str, str]] = {}
    for instrument in instruments:
        for point in instrument.get("points", []):
            image = point.get("_figure")
            if image is None:
                continue
            ok, png = cv2.imencode(".png", image)
            if ok:
                caption = f"{instrument['id']} {point['name']}: meniscus {point['details']['scale_level_ml']:+.1f} mL"
                figures.setdefault(instrument["id"], {})[caption] = "data:image/png;base64," + base64.b64encode(
                    png.tobytes()
                ).decode("ascii")
    return figures
