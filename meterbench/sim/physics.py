"""Physics of a simulated water-meter bench: flow profile, meter error curves, volumes.

Pure NumPy, no I/O.  The bench runs a test plan of flying-start/stop points:
set flow, first-order ramp, stable, flying start at an instant during stable
flow, flying stop when the reference totaliser has passed the planned volume,
next point.  Everything is integrated on one fine time grid (`GRID_DT_S`), so
any quantity at any instant comes from the same arrays (linear interpolation),
and the truth is exactly what the logs and frames show.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

__all__ = ["ErrorCurve", "PlannedPoint", "PointTruth", "BenchRun", "simulate_bench_run", "solve_for_target"]

GRID_DT_S = 0.01


@dataclass(frozen=True)
class ErrorCurve:
    """A meter's true error (%) vs flow: quadratic in x = log10(Q / q_ref_m3h).

    Built through three (flow m³/h, error %) nodes, so it is smooth in log Q and
    equals the chosen errors exactly at the test flows.
    """

    q_ref_m3h: float
    coefficients: tuple[float, float, float]  # c0 + c1 x + c2 x²

    @classmethod
    def through(
        cls, flows_m3h: tuple[float, float, float], errors_pct: tuple[float, float, float], q_ref_m3h: float
    ) -> ErrorCurve:
        # Newton's divided differences in plain floats: the same coefficients on every machine
        # (np.polyfit goes through LAPACK, whose last bits differ between builds).
        (x0, x1, x2), (y0, y1, y2) = (math.log10(q / q_ref_m3h) for q in flows_m3h), map(float, errors_pct)
        slope01, slope12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
        c2 = (slope12 - slope01) / (x2 - x0)
        c1 = slope01 - c2 * (x0 + x1)
        c0 = y0 - slope01 * x0 + c2 * x0 * x1
        return cls(q_ref_m3h=q_ref_m3h, coefficients=(c0, c1, c2))

    def error_pct(self, flow_m3h: np.ndarray | float) -> np.ndarray:
        """Error (%) at flow(s) (m³/h); flows ≤ 0 give the error at 1e-6 × q_ref (no flow)."""
        q = np.maximum(np.asarray(flow_m3h, np.float64), 1e-6 * self.q_ref_m3h)
        x = np.log10(q / self.q_ref_m3h)
        c0, c1, c2 = self.coefficients
        return c0 + c1 * x + c2 * x * x

    def registration_factor(self, flow_m3h: np.ndarray | float) -> np.ndarray:
        """Register advance per true litre, 1 + e/100, clipped to [0, 1.5] (a meter never
        runs backwards; far below Q1 the quadratic is extrapolated, so it is bounded)."""
        return np.clip(1.0 + self.error_pct(flow_m3h) / 100.0, 0.0, 1.5)

    def to_dict(self) -> dict:
        return {
            "model": "e = c0 + c1*x + c2*x^2, x = log10(Q / q_ref_m3h), e in %",
            "q_ref_m3h": self.q_ref_m3h,
            "coefficients": list(self.coefficients),
        }


@dataclass(frozen=True)
class PlannedPoint:
    """A test point: name, set flow (m³/h), planned reference volume (L), ramp time constant (s)."""

    name: str
    flow_m3h: float
    volume_l: float
    ramp_tau_s: float


@dataclass(frozen=True)
class PointTruth:
    """Instants (s) and latched reference totals (L) of one simulated point."""

    name: str
    t_set_s: float
    t_stable_s: float
    t_start_s: float
    t_stop_s: float
    reference_start_l: float  # totaliser reading latched at t_start (pulses × pulse volume)
    reference_stop_l: float


@dataclass
class BenchRun:
    """Time grid (s) and integrated volumes (L) of one simulated sequence."""

    t_s: np.ndarray
    flow_l_s: np.ndarray  # true flow through the line (L/s)
    volume_l: np.ndarray  # true volume passed since t = 0 (L)
    temperature_c: np.ndarray
    pressure_kpa: np.ndarray
    points: list[PointTruth]
    set_points: list[tuple[float, str, float]]  # (t_s, point or "", flow m³/h)
    t_sequence_start_s: float
    t_sequence_end_s: float
    t_end_s: float
    meta: dict = field(default_factory=dict)

    def at(self, values: np.ndarray, t_s: np.ndarray | float) -> np.ndarray:
        """`values` (on the grid) at instants `t_s` (s), linearly interpolated."""
        return np.interp(t_s, self.t_s, values)

    def integrate(self, weight: np.ndarray) -> np.ndarray:
        """Cumulative ∫ flow × weight dt on the grid (L), trapezoid rule."""
        rate = self.flow_l_s * weight
        out = np.zeros_like(rate)
        out[1:] = np.cumsum((rate[1:] + rate[:-1]) * (GRID_DT_S / 2))
        return out


def _flow_noise(rng: np.random.Generator, n: int, sigma_rel: float, tau_s: float) -> np.ndarray:
    """Multiplicative flow noise: AR(1) with std `sigma_rel` and correlation time `tau_s`."""
    a = math.exp(-GRID_DT_S / tau_s)
    drive = rng.normal(0, sigma_rel * math.sqrt(1 - a * a), n)
    return lfilter([1.0], [1.0, -a], drive)


def simulate_bench_run(
    plan: list[PlannedPoint],
    rng: np.random.Generator,
    *,
    reference_error_pct: float,
    pulse_volume_l: float,
    reference_offset_l: float,
    lead_in_s: float = 2.0,
    settle_s: tuple[float, float] = (1.0, 3.0),
    tail_s: float = 3.0,
    flow_noise_rel: float = 0.003,
) -> BenchRun:
    """Run the flow profile of `plan` and return the grid with all volumes and instants.

    The reference totaliser counts pulses of `pulse_volume_l` of its own volume
    (true × (1 + reference_error_pct/100)), starting from `reference_offset_l`.
    The flying stop is the first grid instant where the latched reference total
    has advanced by the planned volume.
    """
    horizon = (
        lead_in_s
        + tail_s
        + sum(10 * p.ramp_tau_s + settle_s[1] + 1.0 + 1.5 * p.volume_l / (p.flow_m3h / 3.6) for p in plan)
        + 5 * plan[-1].ramp_tau_s
    )
    n = int(math.ceil(horizon / GRID_DT_S)) + 1
    t = np.arange(n) * GRID_DT_S
    target = np.zeros(n)
    noise = 1.0 + _flow_noise(rng, n, flow_noise_rel, tau_s=1.5)
    ref_gain = 1.0 + reference_error_pct / 100.0
    flow = np.zeros(n)
    volume = np.zeros(n)
    level = 0.0  # flow level (L/s) reached so far
    t_set = lead_in_s
    points: list[PointTruth] = []
    set_points: list[tuple[float, str, float]] = []

    def fill_ramp(i0: int, start_level: float, goal: float, tau: float) -> None:
        dt = t[i0:] - t[i0]
        target[i0:] = goal + (start_level - goal) * np.exp(-dt / tau)
        flow[i0:] = target[i0:] * noise[i0:]
        volume[i0 + 1 :] = volume[i0] + np.cumsum((flow[i0 + 1 :] + flow[i0:-1]) * GRID_DT_S / 2)

    def reference_total(i: int) -> float:
        counted = (volume[i] * ref_gain + reference_offset_l) / pulse_volume_l
        return math.floor(counted + 1e-9) * pulse_volume_l

    for p in plan:
        i_set = int(round(t_set / GRID_DT_S))
        goal = p.flow_m3h / 3.6
        fill_ramp(i_set, level, goal, p.ramp_tau_s)
        set_points.append((float(t[i_set]), p.name, p.flow_m3h))
        t_stable = t[i_set] + 5 * p.ramp_tau_s
        t_start = t_stable + rng.uniform(*settle_s)
        i_start = int(round(t_start / GRID_DT_S))
        ref_start = reference_total(i_start)
        counted = (volume * ref_gain + reference_offset_l) / pulse_volume_l
        passed = np.floor(counted + 1e-9) * pulse_volume_l - ref_start
        after = np.nonzero(passed[i_start:] >= p.volume_l - 1e-9)[0]
        if after.size == 0:
            raise RuntimeError(f"simulate_bench_run: point {p.name} did not reach {p.volume_l} L within the horizon")
        i_stop = i_start + int(after[0])
        points.append(
            PointTruth(
                p.name,
                float(t[i_set]),
                float(t_stable),
                float(t[i_start]),
                float(t[i_stop]),
                ref_start,
                reference_total(i_stop),
            )
        )
        level = float(target[i_stop])
        t_set = t[i_stop] + 0.5
    i_off = int(round(t_set / GRID_DT_S))
    fill_ramp(i_off, float(target[i_off]), 0.0, plan[-1].ramp_tau_s)
    set_points.append((float(t[i_off]), "", 0.0))
    t_end = t[i_off] + 5 * plan[-1].ramp_tau_s + tail_s
    keep = t <= t_end + 1e-9
    flow_kept = flow[keep]
    temperature = (
        19.6 + rng.uniform(-0.8, 0.8) + 0.4 * t[keep] / max(t_end, 1.0) + 0.05 * np.sin(2 * math.pi * t[keep] / 97.0)
    )
    pressure = 320.0 - 25.0 * (flow_kept / 0.7) ** 2 + rng.normal(0, 0.3, keep.sum())
    run = BenchRun(
        t_s=t[keep],
        flow_l_s=flow_kept,
        volume_l=volume[keep],
        temperature_c=temperature,
        pressure_kpa=pressure,
        points=points,
        set_points=set_points,
        t_sequence_start_s=lead_in_s - 0.5,
        t_sequence_end_s=float(t_end - tail_s / 2),
        t_end_s=float(t_end),
    )
    run.meta = {
        "reference_error_pct": reference_error_pct,
        "pulse_volume_l": pulse_volume_l,
        "reference_offset_l": reference_offset_l,
        "flow_noise_rel": flow_noise_rel,
    }
    return run


#: How close (%-points) a solved true error must come to its target. The register and tank volumes
#: behind a true error are floats of up to 1e5 L, resolved to ~1e-11 L: ~1e-9 %-points of a 2 L point.
TARGET_TOLERANCE_PCT = 1e-9


def solve_for_target(
    error_of: Callable[[float], float],
    guess: float,
    target: float,
    what: str,
    resolution_pct: float = 0.0,
) -> float:
    """The parameter p with ``error_of(p) == target`` (within TARGET_TOLERANCE_PCT), by secant steps.

    ``error_of`` is the true error (%) a simulated instrument shows as a function of one of its
    parameters (a node of a meter's error curve, a tank's volume); it is affine or nearly so, so
    two or three steps reach float resolution. At float resolution it is a staircase: where its
    steps are coarser than TARGET_TOLERANCE_PCT (small volumes read off large register values), the
    caller states them as ``resolution_pct`` (%-points) and the closest step within that is taken.
    Raises RuntimeError naming ``what`` if neither is reached.
    """
    p0, p1 = guess, guess + 0.1 * max(abs(guess), 1.0)
    e0, e1 = error_of(p0), error_of(p1)
    best = min((abs(e0 - target), p0), (abs(e1 - target), p1))
    for _ in range(8):
        if abs(e1 - target) <= TARGET_TOLERANCE_PCT or e1 == e0:
            break
        p0, e0, p1 = p1, e1, p1 + (target - e1) * (p1 - p0) / (e1 - e0)
        e1 = error_of(p1)
        best = min(best, (abs(e1 - target), p1))
    if abs(e1 - target) <= TARGET_TOLERANCE_PCT:
        return p1
    if best[0] <= resolution_pct:
        return best[1]
    raise RuntimeError(f"{what}: true error {e1!r} % did not reach the target {target!r} %")
