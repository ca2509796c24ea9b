"""Water-meter flow rates Q1..Q4 (OIML R 49 / ISO 4064) and verification flow windows."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._tables import Sourced, load_table, sourced

POINT_NAMES = ("Q1", "Q2", "Q3")


class NonStandardRatingWarning(UserWarning):
    """Q3 or R is not in the ISO 4064 series (legal for national variants, but check it)."""


@dataclass(frozen=True)
class Flows:
    """The four characteristic flow rates of a water meter, in m³/h.

    q1 minimum, q2 transitional (lower/upper zone boundary), q3 permanent,
    q4 overload.
    """

    q1: float
    q2: float
    q3: float
    q4: float

    @property
    def r(self) -> float:
        """Measuring range ratio R = Q3/Q1."""
        return self.q3 / self.q1


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return value


def _in_series(value: float, series: list[float]) -> bool:
    return any(math.isclose(value, s, rel_tol=1e-9) for s in series)


def water_meter_flows(
    q3_m3h: float,
    r: float,
    *,
    q2_q1: float = 1.6,
    q4_q3: float = 1.25,
    strict: bool = False,
    table: Mapping[str, Any] | None = None,
) -> Flows:
    """Derive Q1..Q4 (m³/h) from the designation "Q3 = q3_m3h, R = r".

    Q1 = Q3/R, Q2 = q2_q1 × Q1, Q4 = q4_q3 × Q3 (METROLOGY §1, SRC).
    Q3 or R outside the ISO 4064 series gives a :class:`NonStandardRatingWarning`
    (national variants exist), or a ValueError when ``strict``.

    >>> water_meter_flows(2.5, 100)
    Flows(q1=0.025, q2=0.04, q3=2.5, q4=3.125)
    """
    q3 = _check_positive("q3_m3h", q3_m3h)
    r = _check_positive("r", r)
    q2_q1 = _check_positive("q2_q1", q2_q1)
    q4_q3 = _check_positive("q4_q3", q4_q3)
    if r <= q2_q1:
        raise ValueError(f"r: expected R > q2_q1 ({q2_q1}) so that Q2 < Q3, got {r}")
    if q4_q3 < 1:
        raise ValueError(f"q4_q3: expected >= 1 (Q4 >= Q3), got {q4_q3}")
    tables = load_table("water_meter", table)
    for name, value, key in (("q3_m3h", q3, "q3_series_m3h"), ("r", r, "r_series")):
        series = sourced(tables, key)
        if not _in_series(value, series.value):
            message = f"{name} = {value:g} is not in the ISO 4064 series ({series.source})"
            if strict:
                raise ValueError(message)
            warnings.warn(message, NonStandardRatingWarning, stacklevel=2)
    return Flows(q1=q3 / r, q2=q2_q1 * q3 / r, q3=q3, q4=q4_q3 * q3)


def _point_flow(point_name: str, flows: Flows) -> float:
    if point_name not in POINT_NAMES:
        raise ValueError(f"point_name: expected one of {', '.join(POINT_NAMES)}, got {point_name!r}")
    return {"Q1": flows.q1, "Q2": flows.q2, "Q3": flows.q3}[point_name]


def verification_flow_window_sourced(
    point_name: str, flows: Flows, *, table: Mapping[str, Any] | None = None
) -> tuple[tuple[float, float], Sourced]:
    """Like :func:`verification_flow_window`, plus the table entry it came from."""
    nominal = _point_flow(point_name, flows)
    entry = sourced(load_table("water_meter", table), "verification_flow_windows", point_name)
    low_factor, high_factor = (float(f) for f in entry.value)
    if not 0 < low_factor <= high_factor:
        raise ValueError(
            f"verification_flow_windows.{point_name}: expected 0 < low <= high factors, got {entry.value!r}"
        )
    return (low_factor * nominal, high_factor * nominal), entry


def verification_flow_window(
    point_name: str, flows: Flows, *, table: Mapping[str, Any] | None = None
) -> tuple[float, float]:
    """Flow window (low, high) in m³/h for an initial-verification point.

    Q1: [Q1, 1.1 Q1], Q2: [Q2, 1.1 Q2], Q3: [0.9 Q3, Q3] (OIML R 49-2, MEM:
    override with ``table={"verification_flow_windows": {"Q1": [1.0, 1.05]}}``).

    >>> verification_flow_window("Q3", water_meter_flows(2.5, 100))
    (2.25, 2.5)
    """
    window, _ = verification_flow_window_sourced(point_name, flows, table=table)
    return window
