"""Simulate a measuring-tank (standard capacity measure) verification session.

One tank under test, a reference totaliser on serial and a bench controller on
MQTT. Every run: the drain of the previous run (or the wetting drain) has
lasted its drain time; the fill valve opens at the planned rate (point_start
latches the totaliser); near the nominal mark the controller switches to slow
fill; it closes the valve at its target (point_stop latches); the surface
settles (decaying waves); the camera frames are read; the drain valve opens
for the drain time. The camera records only around the end of the fill, the
settling and the reading (2 frames/s, a 200×400 px crop of the neck), so a
session stays a few MB.

Physics: the delivered water (totaliser volume at the meter's temperature) is
carried to the tank's temperature by density (mass conserved); the tank's true
capacity up to scale reading r (mL) at 20 °C is V0 + r, and at temperature t it
is (V0 + r)·[1 + β (t − 20)]. V0 = V_nominal / (1 + e/100) for a seeded tank
error e (%). truth.json gives, per run, the error a perfect scale reading gives
(`calibration.tank_error` with the true level and temperatures).

Near the MPE: some tanks that pass are made to pass just inside the MPE or
exactly at it, some that fail just outside it ("just": within `NEAR_BAND_PCT`,
about the engine's U, k=2). V0 is then solved so that run R1's true error is
the target (the later runs share V0, so theirs differ by their levels' share,
~1e-4 %-points); truth.json names the kind and holds R1's target exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from meterbench import calibration
from meterbench.devices.serial_totaliser import format_totaliser_line
from meterbench.errors import ConfigError
from meterbench.session.writer import SessionRecorder
from meterbench.sim.physics import solve_for_target
from meterbench.sim.tank_render import (
    FRAME_SIZE_WH,
    NeckRenderConditions,
    random_conditions,
    render_neck,
)
from meterbench.sim.water_meter import name_lab_ids
from meterbench.vision.neck_scale import NeckScaleGeometry

__all__ = ["TankRunTruth", "simulate_tank", "sample_tank_error_pct", "NEAR_BAND_PCT"]

BENCH_ID = "tank-bench-1"
CAMERA_ID = "cam-T1"
_PULSE_L = 0.0001
_TOTALISER_HZ = 10.0
_TELEMETRY_HZ = 2.0
_CAMERA_FPS = 2.0
_SLOW_FILL_M3H = 0.06  # last _SLOW_FILL_L at 1 L/min
_SLOW_FILL_L = 0.25
_RECORD_BEFORE_STOP_S = 6.0
_READ_WINDOW_S = 5.0
_WAVE_TAU_S = 2.0
#: How close (%-points) to the MPE a near-MPE tank error is drawn: the engine's U (k=2) is ~0.02 %.
NEAR_BAND_PCT = 0.02


@dataclass(frozen=True)
class TankRunTruth:
    """What really happened in one run (volumes L, temperatures °C, level mL)."""

    name: str
    delivered_l: float  # totaliser volume between the latches, at the meter
    meter_temperature_c: float
    tank_temperature_c: float
    level_ml: float  # true settled level relative to the nominal mark
    true_error_pct: float
    reference_volume_20c_l: float
    indicated_volume_20c_l: float


def sample_tank_error_pct(rng: np.random.Generator, mpe_pct: float) -> float:
    """A seeded tank error (%), within or outside ±MPE but never within 0.02 %-points of it.

    The margin keeps the simulated verdict unambiguous for a reading that meets
    the 0.02 %-point target (a borderline tank is the decision rule's business).
    """
    while True:
        error = float(rng.uniform(-2.0, 2.0) * mpe_pct)
        if abs(abs(error) - mpe_pct) > 0.02:
            return error


def _near_target(near_rng: np.random.Generator, drawn_pct: float, mpe_pct: float) -> tuple[str, float] | None:
    """(kind, target error %) for run R1, or None to keep the drawn tank error.

    A passing tank becomes "at-mpe" (25 %) or "just-inside" (25 %), a failing one "just-outside"
    (40 %), so the pass/fail mix of `sample_tank_error_pct` is kept; the sign is the drawn one.
    """
    kind_draw, band_fraction = float(near_rng.random()), float(near_rng.uniform(0.1, 0.8))
    sign = math.copysign(1.0, drawn_pct)
    if abs(drawn_pct) <= mpe_pct:
        if kind_draw < 0.25:
            return "at-mpe", sign * mpe_pct
        if kind_draw < 0.5:
            return "just-inside", sign * (mpe_pct - band_fraction * NEAR_BAND_PCT)
        return None
    if kind_draw < 0.4:
        return "just-outside", sign * (mpe_pct + band_fraction * NEAR_BAND_PCT)
    return None


def _level_ml(delivered_l: float, meter_c: float, tank_c: float, v0_l: float, beta: float) -> float:
    """Scale reading (mL) where the delivered water stands in the tank."""
    at_tank = calibration.transfer_volume(delivered_l, meter_c, tank_c)
    return (at_tank / (1.0 + beta * (tank_c - 20.0)) - v0_l) * 1000.0


def _tank_manifest(
    seed: int, geometry_hint: NeckScaleGeometry, runs: int, fill_rate_m3h: float, nominal_l: float, material: str
) -> dict:
    return {
        "session_id": f"sim-tank-seed{seed}",
        "bench_kind": "tank",
        "bench_id": BENCH_ID,
        "start_time_utc": "2026-11-27T09:00:00Z",
        "instruments": [],
        "tanks": [
            {
                "id": "T1",
                "kind": "tank",
                "type": f"{nominal_l:g} L standard capacity measure, graduated neck with gauge glass",
                "serial": f"SIM-T-{seed:04d}",
                "nominal_volume_l": nominal_l,
                "material": material,
                "class": "scale-division",
                "camera": CAMERA_ID,
                "drain_time_s": 60.0,
                "settle_time_s": 10.0,
                "scale": geometry_hint.to_dict(),
            }
        ],
        "reference_instruments": [
            {
                "id": "ref",
                "kind": "pulse-totaliser",
                "device": "ref-meter",
                "expanded_uncertainty_pct": 0.02,
                "coverage_factor": 2,
                "resolution_l": _PULSE_L,
            }
        ],
        "test_plan": {
            "points": [
                {"name": f"R{i + 1}", "flow_rate_m3h": fill_rate_m3h, "volume_l": nominal_l} for i in range(runs)
            ]
        },
        "decision_rule": "simple",
        "simulator": {"seed": seed, "generator": "meterbench.sim.tank"},
    }


class _Bench:
    """Accumulates totaliser, controller and camera events on the session clock."""

    def __init__(self, rng: np.random.Generator, meter_c: float, tank_c: float) -> None:
        self.rng = rng
        self.t = 0.0
        self.total_l = 0.0
        self.flow_l_s = 0.0
        self.meter_c = meter_c
        self.tank_c = tank_c
        self.valves = {"fill": "closed", "slow_fill": "closed", "drain": "closed"}
        self.serial: list[tuple[float, dict]] = []
        self.mqtt: list[tuple[float, str, dict]] = []
        self._next_serial = 0.0
        self._next_telemetry = 0.0

    def advance(self, duration_s: float) -> None:
        """Let time run, filling at the current flow, emitting serial lines and telemetry."""
        end = self.t + duration_s
        while True:
            t_next = min(self._next_serial, self._next_telemetry, end)
            self.total_l += self.flow_l_s * (t_next - self.t)
            self.t = t_next
            if t_next == end:
                return
            if t_next == self._next_serial:
                self.serial.append(
                    (
                        self.t,
                        {
                            "pulses": int(self.total_l / _PULSE_L + 1e-9),
                            "flow_l_h": self.flow_l_s * 3600.0,
                            "temperature_c": self._sensor(self.meter_c),
                        },
                    )
                )
                self._next_serial += 1.0 / _TOTALISER_HZ
            else:
                self.mqtt.append(
                    (
                        self.t,
                        "telemetry",
                        {
                            "flow_m3h": round(self.flow_l_s * 3.6, 5),
                            "temperature_c": self._sensor(self.meter_c),
                            "tank_temperature_c": self._sensor(self.tank_c),
                            "pressure_kpa": 250.0 if self.flow_l_s else 300.0,
                            "valves": dict(self.valves),
                        },
                    )
                )
                self._next_telemetry += 1.0 / _TELEMETRY_HZ

    def _sensor(self, true_c: float) -> float:
        return round(true_c + float(self.rng.normal(0.0, 0.02)), 2)

    def event(self, payload: dict) -> None:
        self.mqtt.append((self.t, "event", payload))

    def valve(self, name: str, state: str, **extra: object) -> None:
        self.valves[name] = state
        self.event({"event": "valve_set", "valve": name, "state": state, **extra})

    def latched_l(self) -> float:
        return round(int(self.total_l / _PULSE_L + 1e-9) * _PULSE_L, 4)


def _write_logs(recorder: SessionRecorder, bench: _Bench) -> None:
    serial_log = recorder.device_log("ref-meter", "serial-totaliser")
    for seq, (t_s, values) in enumerate(bench.serial):
        volume = round(values["pulses"] * _PULSE_L, 4)
        raw = format_totaliser_line(seq, values["pulses"], volume, values["flow_l_h"], values["temperature_c"])
        parsed = {
            "seq": seq,
            "pulses": values["pulses"],
            "volume_l": volume,
            "flow_l_h": round(values["flow_l_h"], 1),
            "temperature_c": values["temperature_c"],
        }
        serial_log.append(t_s, raw.decode("latin-1"), parsed)
    mqtt_log = recorder.device_log("controller", "mqtt")
    for t_s, kind, payload in bench.mqtt:
        mqtt_log.append(t_s, json.dumps(payload, separators=(",", ":")), payload, topic=f"bench/{BENCH_ID}/{kind}")


def simulate_tank(
    out_dir: Path,
    *,
    seed: int = 0,
    runs: int = 3,
    conditions: NeckRenderConditions | None = None,
    bench_id: str | None = None,
    technician_id: str | None = None,
    standard_id: str | None = None,
) -> Path:
    """Write a simulated tank-verification session folder to ``out_dir``; return its path.

    Deterministic for a seed: a 20 L stainless can (neck scale ±10 divisions of
    20 mL), a seeded tank error (sometimes outside MPE), ``runs`` fill–settle–
    read–drain runs at 2.4 m³/h. ``conditions`` fixes the camera's imaging
    conditions (default: random for the seed, with tilt, glare, tint, bubbles).
    ``bench_id``, ``technician_id``, ``standard_id``: the lab file's ids for session.json
    (``meterbench.sim.water_meter.name_lab_ids``; default the simulator's, marked "sim").
    """
    if runs < 1:
        raise ConfigError(f"runs: expected >= 1, got {runs}")
    rng = np.random.default_rng(seed)
    nominal_l, material, fill_m3h = 20.0, "stainless-steel", 2.4
    geometry = NeckScaleGeometry()
    beta = calibration.cubic_expansion(material).value
    mpe_pct = calibration.tank_mpe(
        nominal_l, accuracy_class="scale-division", scale_division_l=geometry.ml_per_division / 1000
    ).mpe_pct
    tank_error_pct = sample_tank_error_pct(rng, mpe_pct)
    v0_l = nominal_l / (1.0 + tank_error_pct / 100.0)
    camera = conditions or random_conditions(rng, hard=True)
    hint = NeckScaleGeometry(
        **{
            **geometry.__dict__,
            "glass_x_px": tuple(float(v + rng.uniform(-1.5, 1.5)) for v in geometry.glass_x_px),
            "zero_mark_y_px": geometry.zero_mark_y_px + float(rng.uniform(-4, 4)),
        }
    )
    meter_c = float(rng.uniform(17.0, 23.0))
    tank_c = meter_c + float(rng.uniform(-0.4, 0.4))
    manifest = name_lab_ids(
        _tank_manifest(seed, hint, runs, fill_m3h, nominal_l, material), bench_id, technician_id, standard_id
    )
    spec = (runs, nominal_l, fill_m3h, beta, material, meter_c, tank_c)
    state = rng.bit_generator.state
    bench, truths, frames = _run_sequence(rng, v0_l, *spec)
    near = _near_target(np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]), tank_error_pct, mpe_pct)
    if near is not None:  # the runs draw nothing that depends on V0: replay them with V0 solved for R1

        def error_of(v0: float) -> float:
            first = truths[0]
            level = _level_ml(first.delivered_l, meter_c, tank_c, v0, beta)
            return calibration.tank_error(
                nominal_l + level / 1000.0, first.delivered_l, meter_c, tank_c, material
            ).error_pct

        v0_l = solve_for_target(error_of, v0_l, near[1], f"simulate tank: seed {seed} R1")
        rng.bit_generator.state = state
        bench, truths, frames = _run_sequence(rng, v0_l, *spec)
        truths[0] = replace(truths[0], true_error_pct=near[1])  # met to within float resolution
    out_dir = Path(out_dir)
    with SessionRecorder.create(out_dir, manifest) as recorder:
        _write_logs(recorder, bench)
        writer = recorder.camera_writer(
            CAMERA_ID, _CAMERA_FPS, FRAME_SIZE_WH, kind="images", image_format="jpg", quality=92
        )
        for t_s, level, frame_seed in frames:
            frame_conditions = NeckRenderConditions(
                **{**camera.__dict__, "seed": frame_seed, "bubbles": int(frame_seed % 3)}
            )
            writer.write(render_neck(level, geometry, frame_conditions), t_s)
        recorder.write_truth(
            {
                "instruments": [
                    {
                        "id": "T1",
                        "points": [
                            {
                                "name": t.name,
                                "true_error_pct": t.true_error_pct,
                                "true_reference_volume_l": t.reference_volume_20c_l,
                                "true_indicated_volume_l": t.indicated_volume_20c_l,
                                "true_level_ml": t.level_ml,
                                "delivered_l": t.delivered_l,
                                "meter_temperature_c": t.meter_temperature_c,
                                "tank_temperature_c": t.tank_temperature_c,
                            }
                            for t in truths
                        ],
                    }
                ],
                "tank_error_pct": tank_error_pct,
                "near_mpe": {"run": "R1", "kind": near[0], "true_error_pct": near[1]} if near else None,
                "tank_volume_at_nominal_mark_20c_l": v0_l,
                "mpe_pct": mpe_pct,
                "camera_conditions": {k: v for k, v in camera.__dict__.items() if k != "extra"},
            }
        )
    return out_dir


def _run_sequence(
    rng: np.random.Generator,
    v0_l: float,
    runs: int,
    nominal_l: float,
    fill_m3h: float,
    beta: float,
    material: str,
    meter_c: float,
    tank_c: float,
) -> tuple[_Bench, list[TankRunTruth], list[tuple[float, float, int]]]:
    """The wetting drain and `runs` runs of a tank whose nominal mark holds `v0_l` (L at 20 °C).

    Returns the bench (its logs), the runs' truth and the frames to render (t_s, level mL, seed).
    """
    bench = _Bench(rng, meter_c, tank_c)
    truths: list[TankRunTruth] = []
    frames: list[tuple[float, float, int]] = []
    bench.event({"event": "sequence_start", "runs": runs})
    bench.advance(1.0)
    bench.valve("drain", "open", drain_time_s=60.0, purpose="wetting drain")
    bench.advance(60.0 + float(rng.uniform(0, 3)))
    bench.valve("drain", "closed")
    for i in range(runs):
        truths.append(_one_run(bench, f"R{i + 1}", nominal_l, fill_m3h, v0_l, beta, material, frames, rng))
    bench.event({"event": "sequence_end"})
    bench.advance(0.5)
    return bench, truths, frames


def _one_run(
    bench: _Bench,
    name: str,
    nominal_l: float,
    fill_m3h: float,
    v0_l: float,
    beta: float,
    material: str,
    frames: list[tuple[float, float, int]],
    rng: np.random.Generator,
) -> TankRunTruth:
    """Fill, slow fill, settle, read, drain; append the camera frames to record."""
    bench.advance(2.0)
    start_l = bench.latched_l()
    bench.event({"event": "point_start", "point": name, "reference_volume_l": start_l, "flow_set_m3h": fill_m3h})
    target_l = nominal_l + float(rng.uniform(-0.06, 0.06))  # the controller aims near 0 mL
    bench.valve("fill", "open", point=name, flow_set_m3h=fill_m3h)
    bench.flow_l_s = fill_m3h / 3.6
    bench.advance((target_l - _SLOW_FILL_L) / bench.flow_l_s)
    bench.valve("fill", "closed", point=name)
    bench.valve("slow_fill", "open", point=name, flow_set_m3h=_SLOW_FILL_M3H)
    bench.flow_l_s = _SLOW_FILL_M3H / 3.6
    slow_start_t, slow_start_l = bench.t, bench.total_l - start_l
    slow_s = (target_l - slow_start_l) / bench.flow_l_s
    bench.advance(slow_s)
    bench.flow_l_s = 0.0
    stop_l = bench.latched_l()
    bench.valve("slow_fill", "closed", point=name)
    bench.event({"event": "point_stop", "point": name, "reference_volume_l": stop_l})
    stop_t = bench.t
    delivered = stop_l - start_l
    level = _level_ml(delivered, bench.meter_c, bench.tank_c, v0_l, beta)
    wave_ml = float(rng.uniform(10, 30))
    wave_hz = float(rng.uniform(0.8, 1.5))
    first = math.ceil((stop_t - _RECORD_BEFORE_STOP_S) * _CAMERA_FPS)
    last = math.floor((stop_t + 10.0 + _READ_WINDOW_S + 1.0) * _CAMERA_FPS)
    for k in range(first, last + 1):
        t_s = k / _CAMERA_FPS
        if t_s <= stop_t:
            filled = slow_start_l + (t_s - slow_start_t) * _SLOW_FILL_M3H / 3.6
            level_t = _level_ml(filled, bench.meter_c, bench.tank_c, v0_l, beta)
        else:
            dt = t_s - stop_t
            level_t = level + wave_ml * math.exp(-dt / _WAVE_TAU_S) * math.sin(2 * math.pi * wave_hz * dt)
        frames.append((t_s, level_t, int(rng.integers(2**31))))
    bench.advance(last / _CAMERA_FPS - stop_t + 0.2)
    drain_s = 60.0 + float(rng.uniform(0.0, 4.0))
    bench.valve("drain", "open", point=name, drain_time_s=60.0)
    bench.advance(drain_s)
    bench.valve("drain", "closed", point=name, drained_s=round(drain_s, 2))
    truth = calibration.tank_error(nominal_l + level / 1000.0, delivered, bench.meter_c, bench.tank_c, material)
    return TankRunTruth(
        name,
        delivered,
        bench.meter_c,
        bench.tank_c,
        level,
        truth.error_pct,
        truth.reference_volume_l,
        truth.indicated_volume_l,
    )
