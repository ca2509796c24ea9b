"""Maximum permissible errors: water meters (R 49), measuring tanks (R 120, unknown: configurable),
measuring systems / fuel dispensers (R 117, MI-005)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._flows import Flows
from ._tables import CONFIRMED_PROVENANCES, Sourced, load_table, sourced

# Relative tolerance for flow-rate boundary comparisons: a flow equal to Q2 up to
# float rounding (e.g. 1.6 * 0.025) is "at Q2" and belongs to the upper zone.
FLOW_BOUNDARY_REL_TOL = 1e-9


@dataclass(frozen=True)
class MpeResult:
    """A maximum permissible error and where it comes from.

    mpe_pct: symmetric MPE, % of the measured volume (the limit is ±mpe_pct).
    zone: "lower" / "upper" for water meters, "nominal" for tanks, "volume" for dispensers.
    source: the source strings of every table value used (joined with "; ").
    provenance: the weakest tag among them ("CFG" > "MEM" > "DER" > "SRC").
    mpe_l: the MPE in litres when the rule is absolute (tanks, small volumes), else None.
    """

    mpe_pct: float
    zone: str
    source: str
    provenance: str
    mpe_l: float | None = None

    @property
    def confirmed(self) -> bool:
        """True when every value used is confirmed (SRC) or derived (DER)."""
        return self.provenance in CONFIRMED_PROVENANCES


_WEAKNESS = {"SRC": 0, "DER": 1, "MEM": 2, "CFG": 3}


def _combine(mpe_pct: float, zone: str, parts: list[Sourced], mpe_l: float | None = None) -> MpeResult:
    provenance = max((p.provenance for p in parts), key=_WEAKNESS.__getitem__)
    source = "; ".join(f"[{p.provenance}] {p.source}" for p in parts)
    return MpeResult(mpe_pct=float(mpe_pct), zone=zone, source=source, provenance=provenance, mpe_l=mpe_l)


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return value


def _class_key(accuracy_class: Any, available: Mapping[str, Any], what: str) -> str:
    for key in available:
        try:
            if math.isclose(float(key), float(accuracy_class)):
                return key
        except (TypeError, ValueError):
            if str(key) == str(accuracy_class):
                return key
    raise ValueError(f"accuracy_class: {what} class {accuracy_class!r} unknown; expected one of {', '.join(available)}")


def water_meter_zone(flow_m3h: float, flows: Flows) -> str:
    """ "lower" for Q1 <= Q < Q2, "upper" for Q2 <= Q <= Q4; ValueError outside [Q1, Q4]."""
    flow = _finite("flow_m3h", flow_m3h)
    tol = FLOW_BOUNDARY_REL_TOL
    if flow < flows.q1 * (1 - tol):
        raise ValueError(f"flow_m3h: {flow:g} m³/h is below Q1 = {flows.q1:g} m³/h (no MPE defined)")
    if flow > flows.q4 * (1 + tol):
        raise ValueError(f"flow_m3h: {flow:g} m³/h is above Q4 = {flows.q4:g} m³/h (no MPE defined)")
    return "upper" if flow >= flows.q2 * (1 - tol) else "lower"


def water_meter_mpe(
    accuracy_class: int | str,
    flow_m3h: float,
    flows: Flows,
    water_temperature_c: float,
    in_service: bool = False,
    *,
    table: Mapping[str, Any] | None = None,
) -> MpeResult:
    """MPE (±%) of a water meter at a flow rate (m³/h) and water temperature (°C).

    Zone by flow: lower Q1 <= Q < Q2, upper Q2 <= Q <= Q4. Upper-zone MPE switches
    at water temperature > 30 °C (30.0 °C is still "cold"). ``in_service``
    multiplies by the in-service factor (2, national practice; MEM for OIML).
    ``table`` overrides entries of data/water_meter.json.

    >>> flows = Flows(q1=0.025, q2=0.04, q3=2.5, q4=3.125)
    >>> water_meter_mpe(2, 0.04, flows, 20.0).mpe_pct
    2.0
    >>> water_meter_mpe(2, 0.039, flows, 20.0).mpe_pct
    5.0
    """
    tables = load_table("water_meter", table)
    zone = water_meter_zone(flow_m3h, flows)
    temperature = _finite("water_temperature_c", water_temperature_c)
    t_min = sourced(tables, "minimum_water_temperature_c")
    t_max = sourced(tables, "maximum_water_temperature_c")
    if not t_min.value <= temperature <= t_max.value:
        raise ValueError(
            f"water_temperature_c: {temperature:g} °C outside the water-meter range {t_min.value:g}..{t_max.value:g} °C"
        )
    key = _class_key(accuracy_class, tables["mpe_pct"], "water-meter")
    parts: list[Sourced] = []
    if zone == "lower":
        entry = sourced(tables, "mpe_pct", key, "lower")
    else:
        switch = sourced(tables, "warm_above_c")
        parts.append(switch)
        warm = temperature > switch.value
        entry = sourced(tables, "mpe_pct", key, "upper_warm" if warm else "upper_cold")
    parts.insert(0, entry)
    mpe = float(entry.value)
    if in_service:
        factor = sourced(tables, "in_service_factor")
        parts.append(factor)
        mpe *= float(factor.value)
    return _combine(mpe, zone, parts)


def tank_mpe(
    nominal_volume_l: float,
    *,
    accuracy_class: str | None = None,
    scale_division_l: float | None = None,
    table: Mapping[str, Any] | None = None,
) -> MpeResult:
    """MPE of a standard capacity measure (measuring tank) of nominal volume (L).

    The OIML R 120 values are not known (METROLOGY §3), so every class here is
    configuration with a MEM default. ``accuracy_class`` names a class of
    data/tank.json (default ``"scale-division"``: MPE = one smallest scale
    division, the Taiwan rule for operator-owned standard cans, which needs
    ``scale_division_l``); ``"third-of-dispenser"`` = 1/3 of 0.5 % = 0.1667 %.
    Add a lab class with ``table={"classes": {"lab": {"rule": "percent",
    "percent": 0.2}}}``.

    >>> tank_mpe(20.0, scale_division_l=0.01).mpe_pct
    0.05
    """
    volume = _finite("nominal_volume_l", nominal_volume_l)
    if volume <= 0:
        raise ValueError(f"nominal_volume_l: expected > 0 L, got {volume:g}")
    tables = load_table("tank", table)
    default_class = sourced(tables, "default_class")
    name = default_class.value if accuracy_class is None else str(accuracy_class)
    classes = tables["classes"]
    if name not in classes:
        raise ValueError(
            f"accuracy_class: tank class {name!r} unknown; expected one of "
            f"{', '.join(classes)} (or add it via table={{'classes': ...}})"
        )
    spec = classes[name]
    rule = spec.get("rule")
    if rule == "scale-division":
        return _tank_mpe_divisions(volume, scale_division_l, tables, name)
    if rule == "percent":
        percent = sourced(tables, "classes", name, "percent")
        mpe_pct = float(percent.value)
        return _combine(mpe_pct, "nominal", [percent], mpe_l=mpe_pct / 100 * volume)
    raise ValueError(f"tank table classes.{name}.rule: expected 'scale-division' or 'percent', got {rule!r}")


def _tank_mpe_divisions(
    volume_l: float, scale_division_l: float | None, tables: Mapping[str, Any], name: str
) -> MpeResult:
    if scale_division_l is None:
        raise ValueError(
            f"scale_division_l: tank class {name!r} sets the MPE in scale divisions; "
            "give the tank's smallest scale division in L"
        )
    division = _finite("scale_division_l", scale_division_l)
    if division <= 0:
        raise ValueError(f"scale_division_l: expected > 0 L, got {division:g}")
    divisions = sourced(tables, "classes", name, "divisions")
    mpe_l = float(divisions.value) * division
    return _combine(mpe_l / volume_l * 100, "nominal", [divisions], mpe_l=mpe_l)


def _small_volume_mpe_l(volume_l: float, table_pct: float, rules: list[dict[str, Any]]) -> float:
    for rule in rules:
        if volume_l < rule["below_l"]:
            applied = volume_l if rule["applied_to_l"] is None else rule["applied_to_l"]
            return rule["factor"] * table_pct / 100 * applied
    return table_pct / 100 * volume_l


def dispenser_mpe(
    volume_l: float,
    accuracy_class: float | str = 0.5,
    *,
    line: str = "A",
    mmq_l: float | None = None,
    table: Mapping[str, Any] | None = None,
) -> MpeResult:
    """MPE of a liquid measuring system (R 117 / MI-005) for a measured volume (L).

    Line "A" = complete system, "B" = meter alone. Below 2 L the MI-005 table 3
    multipliers apply (SRC). With ``mmq_l`` (minimum measured quantity) the MPE
    is at least Emin = 2 × MMQ × A % (MEM).

    >>> dispenser_mpe(20.0).mpe_pct
    0.5
    >>> round(dispenser_mpe(0.5).mpe_l, 6)   # 2 x 0.5 % of 0.5 L
    0.005
    """
    volume = _finite("volume_l", volume_l)
    if volume <= 0:
        raise ValueError(f"volume_l: expected > 0 L, got {volume:g}")
    if line not in ("A", "B"):
        raise ValueError(f"line: expected 'A' (system) or 'B' (meter), got {line!r}")
    tables = load_table("dispenser", table)
    key = _class_key(accuracy_class, tables["mpe_pct"], "R 117 / MI-005")
    entry = sourced(tables, "mpe_pct", key, line)
    rules = sourced(tables, "small_volume_rules")
    parts = [entry, rules]
    mpe_l = _small_volume_mpe_l(volume, float(entry.value), rules.value)
    if mmq_l is not None:
        mmq = _finite("mmq_l", mmq_l)
        if mmq <= 0:
            raise ValueError(f"mmq_l: expected > 0 L, got {mmq:g}")
        factor = sourced(tables, "emin_factor")
        parts.append(factor)
        line_a = float(sourced(tables, "mpe_pct", key, "A").value)
        e_min = float(factor.value) * _small_volume_mpe_l(mmq, line_a, rules.value)
        mpe_l = max(mpe_l, e_min)
    return _combine(mpe_l / volume * 100, "volume", parts, mpe_l=mpe_l)
