"""Test-volume planning: the smallest volume per test point whose reading uncertainty
stays within a fraction of the MPE, and how long the sequence takes on the bench.

Reading uncertainty: a start and a stop reading, each quantised to the register
resolution d (rectangular, u = d/√12), optionally plus a timing term q·u_t per
reading (the instant a flying reading is taken vs the reference latch);
relative expanded (k = 2): U_read = 2 √2 √(d²/12 + (q u_t)²) / V × 100 %.
The plan asks U_read <= ratio × MPE, so V >= 200 √2 √(d²/12 + (q u_t)²) / (ratio × MPE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ._flows import Flows, verification_flow_window_sourced
from ._mpe import water_meter_mpe, water_meter_zone
from ._tables import load_table, sourced
from ._uncertainty import UncertaintyBudget

BENCH_VOLUME_SERIES = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
"""Mantissas of the bench volumes a plan rounds up to (rounded R10 preferred numbers, ISO 3)."""

COVERAGE_K = 2.0


@dataclass(frozen=True)
class PlannedPoint:
    """One planned test point.

    flow_m3h: set point inside the verification window (m³/h); window_m3h: (low, high).
    min_volume_l: the smallest volume meeting the criterion (L); volume_l: rounded up.
    duration_s: volume / flow (s). reading_u_pct: reading U (k=2, %) at volume_l;
    total_u_pct: with the reference meter (k=2, %); equipment_ok: total_u_pct <=
    max_uncertainty_ratio × MPE; note: why not, or "".
    """

    name: str
    flow_m3h: float
    window_m3h: tuple[float, float]
    zone: str
    mpe_pct: float
    reading_resolution_l: float
    min_volume_l: float
    volume_l: float
    duration_s: float
    reading_u_pct: float
    total_u_pct: float
    equipment_ok: bool
    note: str


@dataclass(frozen=True)
class TestPlan:
    """A planned Q3/Q2/Q1 sequence; durations in s, volumes in L."""

    __test__ = False  # not a pytest test class despite the name

    points: tuple[PlannedPoint, ...]
    ratio: float
    settling_s: float
    total_duration_s: float
    total_volume_l: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) of the plan."""
        return asdict(self)


def round_up_to_series(volume_l: float, series: Sequence[float] = BENCH_VOLUME_SERIES) -> float:
    """Smallest m × 10^n >= volume_l (L) with m in ``series`` (mantissas in [1, 10)).

    >>> round_up_to_series(40.8)
    50.0
    """
    if not math.isfinite(volume_l) or volume_l <= 0:
        raise ValueError(f"volume_l: expected a finite volume > 0 L, got {volume_l!r}")
    if not series or any(not 1.0 <= m < 10.0 for m in series):
        raise ValueError(f"volume_series: expected mantissas in [1, 10), got {series!r}")
    exponent = math.floor(math.log10(volume_l))
    for power in (exponent - 1, exponent, exponent + 1):
        for mantissa in sorted(series):
            candidate = round(mantissa * 10.0**power, 12)
            if candidate >= volume_l * (1 - 1e-12):
                return candidate
    raise AssertionError("unreachable: 10^(exponent+1) always exceeds volume_l")


def _set_point(window: tuple[float, float], stability_pct: float) -> float:
    """Highest flow (m³/h) whose ±stability band stays under the window top, not below its centre."""
    low, high = window
    return max((low + high) / 2, high / (1 + stability_pct / 100))


def _reading_budget(d_l: float, volume_l: float, flow_m3h: float, timing_u_s: float) -> UncertaintyBudget:
    budget = UncertaintyBudget()
    budget.add_resolution(d_l, volume_l)
    if timing_u_s > 0:
        flow_l_s = flow_m3h / 3.6
        budget.add(
            "reading timing",
            flow_l_s * timing_u_s,
            unit="L",
            divisor=1 / math.sqrt(2),
            sensitivity=100.0 / volume_l,
            source=f"flow x u(t) = {timing_u_s:g} s per reading, 2 readings",
        )
    return budget


def _min_volume_l(d_l: float, flow_m3h: float, timing_u_s: float, limit_pct: float) -> float:
    per_volume = _reading_budget(d_l, 1.0, flow_m3h, timing_u_s).expanded_pct(COVERAGE_K)
    return per_volume / limit_pct  # U_read scales as 1/V


def _resolution_for(point: str, reading_resolution_l: float | Mapping[str, float]) -> float:
    d_l = reading_resolution_l.get(point) if isinstance(reading_resolution_l, Mapping) else reading_resolution_l
    if d_l is None:
        raise ValueError(f"reading_resolution_l: no resolution given for point {point}")
    d_l = float(d_l)
    if not math.isfinite(d_l) or d_l <= 0:
        raise ValueError(f"reading_resolution_l: expected > 0 L for point {point}, got {d_l!r}")
    return d_l


def _check_non_negative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return value


def plan_test_volumes(
    flows: Flows,
    accuracy_class: int | str | None,
    *,
    reading_resolution_l: float | Mapping[str, float],
    points: Sequence[str] = ("Q3", "Q2", "Q1"),
    ratio: float = 0.1,
    reference_u_pct: float = 0.1,
    temperature_c: float = 20.0,
    settling_s: float = 30.0,
    timing_u_s: float = 0.0,
    min_duration_s: float = 0.0,
    min_volume_l: float = 0.0,
    mpe_pct: Mapping[str, float] | None = None,
    max_uncertainty_ratio: float = 1 / 3,
    volume_series: Sequence[float] = BENCH_VOLUME_SERIES,
    table: Mapping[str, Any] | None = None,
) -> TestPlan:
    """Plan the shortest test at each verification point.

    Per point: a flow set point inside the verification window (the highest
    whose ±stability band, 2.5 % lower / 5 % upper zone, MEM, stays under the
    window top, and not below the window centre); the minimal volume whose
    reading U (k=2) <= ratio × MPE (see module doc), rounded up to a bench
    volume; the run time volume/flow (s). The sequence time adds ``settling_s``
    per point (flow set and stabilised). ``reading_resolution_l`` (L) may be a
    mapping point → resolution (fine elements are unreadable at high flow).
    ``reference_u_pct`` is the reference meter's U (k=2, %): each point
    reports whether reading + reference stay <= ``max_uncertainty_ratio`` × MPE.
    ``mpe_pct`` ({"lower": 5, "upper": 2}) replaces the class lookup.
    """
    ratio = float(ratio)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio: expected 0 < ratio <= 1 (fraction of the MPE), got {ratio!r}")
    settling_s = _check_non_negative("settling_s", settling_s)
    timing_u_s = _check_non_negative("timing_u_s", timing_u_s)
    min_duration_s = _check_non_negative("min_duration_s", min_duration_s)
    min_volume_l = _check_non_negative("min_volume_l", min_volume_l)
    reference_u_pct = _check_non_negative("reference_u_pct", reference_u_pct)
    if not points:
        raise ValueError("points: expected at least one of Q1, Q2, Q3")
    tables = load_table("water_meter", table)
    planned = tuple(
        _plan_point(
            name,
            flows,
            accuracy_class,
            _resolution_for(name, reading_resolution_l),
            ratio=ratio,
            reference_u_pct=reference_u_pct,
            temperature_c=temperature_c,
            timing_u_s=timing_u_s,
            min_duration_s=min_duration_s,
            min_volume_l=min_volume_l,
            mpe_pct=mpe_pct,
            max_uncertainty_ratio=max_uncertainty_ratio,
            volume_series=volume_series,
            tables=tables,
            table=table,
        )
        for name in points
    )
    total = sum(p.duration_s + settling_s for p in planned)
    return TestPlan(
        points=planned,
        ratio=ratio,
        settling_s=settling_s,
        total_duration_s=total,
        total_volume_l=sum(p.volume_l for p in planned),
    )


def _plan_point(
    name: str,
    flows: Flows,
    accuracy_class: int | str | None,
    d_l: float,
    *,
    ratio: float,
    reference_u_pct: float,
    temperature_c: float,
    timing_u_s: float,
    min_duration_s: float,
    min_volume_l: float,
    mpe_pct: Mapping[str, float] | None,
    max_uncertainty_ratio: float,
    volume_series: Sequence[float],
    tables: Mapping[str, Any],
    table: Mapping[str, Any] | None,
) -> PlannedPoint:
    window, _ = verification_flow_window_sourced(name, flows, table=table)
    provisional_zone = water_meter_zone(window[0], flows)
    stability = float(sourced(tables, "flow_stability_pct", provisional_zone).value)
    flow = _set_point(window, stability)
    zone = water_meter_zone(flow, flows)
    if mpe_pct is not None:
        if zone not in mpe_pct:
            raise ValueError(f"mpe_pct: expected keys 'lower' and 'upper', missing {zone!r}")
        mpe = float(mpe_pct[zone])
    elif accuracy_class is None:
        raise ValueError("accuracy_class: give the meter's class or mpe_pct per zone")
    else:
        mpe = water_meter_mpe(accuracy_class, flow, flows, temperature_c, table=table).mpe_pct
    flow_l_s = flow / 3.6
    needed = max(_min_volume_l(d_l, flow, timing_u_s, ratio * mpe), flow_l_s * min_duration_s, min_volume_l)
    volume = round_up_to_series(needed, volume_series)
    budget = _reading_budget(d_l, volume, flow, timing_u_s)
    reading_u = budget.expanded_pct(COVERAGE_K)
    total_u = math.hypot(reading_u, reference_u_pct)
    equipment_ok = total_u <= max_uncertainty_ratio * mpe
    note = (
        "" if equipment_ok else (f"reading + reference U = {total_u:.3g} % exceeds {max_uncertainty_ratio:.3g} x MPE")
    )
    return PlannedPoint(
        name=name,
        flow_m3h=flow,
        window_m3h=window,
        zone=zone,
        mpe_pct=mpe,
        reading_resolution_l=d_l,
        min_volume_l=needed,
        volume_l=volume,
        duration_s=volume / flow_l_s,
        reading_u_pct=reading_u,
        total_u_pct=total_u,
        equipment_ok=equipment_ok,
        note=note,
    )


def format_test_plan(plan: TestPlan) -> str:
    """Printable table of a plan: one line per point and the sequence total."""
    header = (
        f"{'point':<5} {'flow m3/h':>10} {'zone':<5} {'MPE %':>6} {'d L':>8} "
        f"{'Vmin L':>9} {'V L':>8} {'run s':>9} {'Uread %':>8} {'Utot %':>7}  note"
    )
    lines = [header, "-" * len(header)]
    for p in plan.points:
        lines.append(
            f"{p.name:<5} {p.flow_m3h:>10.4g} {p.zone:<5} {p.mpe_pct:>6.3g} "
            f"{p.reading_resolution_l:>8.4g} {p.min_volume_l:>9.4g} {p.volume_l:>8.4g} "
            f"{p.duration_s:>9.1f} {p.reading_u_pct:>8.3f} {p.total_u_pct:>7.3f}  "
            f"{p.note}"
        )
    minutes = plan.total_duration_s / 60
    lines.append(
        f"sequence: {plan.total_volume_l:.4g} L, {plan.total_duration_s:.0f} s "
        f"({minutes:.1f} min) incl. {plan.settling_s:g} s settling per point; "
        f"criterion U_read(k=2) <= {plan.ratio:g} x MPE"
    )
    return "\n".join(lines)
