"""Uncertainty budget of a relative error (%), after JCGM 100 (GUM).

Each component i has an input ``value`` in its own unit (%, L, °C), a
distribution with a divisor turning it into a standard uncertainty, and a
sensitivity coefficient (% per unit): u_i = |c_i| × value_i / divisor_i (%).
Independent components combine in quadrature; U = k × u_c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ._density import water_expansion_coefficient

DISTRIBUTION_DIVISORS = {"normal": 1.0, "rectangular": math.sqrt(3.0), "triangular": math.sqrt(6.0)}
"""Default divisor per distribution: normal = value is already a standard uncertainty;
rectangular / triangular = value is the half-width a (u = a/√3, a/√6)."""


@dataclass(frozen=True)
class UncertaintyComponent:
    """One line of a budget; ``u_pct`` is its standard uncertainty contribution in %."""

    name: str
    value: float
    unit: str
    distribution: str
    divisor: float
    sensitivity: float
    source: str
    u_pct: float


def _finite_non_negative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return value


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return value


@dataclass
class UncertaintyBudget:
    """Named components of the uncertainty of a relative error, in %.

    >>> budget = UncertaintyBudget()
    >>> _ = budget.add_reference(0.1, k=2)           # reference meter U = 0.1 % (k=2)
    >>> _ = budget.add_resolution(0.001, 10.0)       # two readings, d = 1 mL, V = 10 L
    >>> round(budget.expanded_pct(), 4)
    0.1003
    """

    components: list[UncertaintyComponent] = field(default_factory=list)

    def add(
        self,
        name: str,
        value: float,
        distribution: str = "normal",
        source: str = "",
        *,
        unit: str = "%",
        divisor: float | None = None,
        sensitivity: float = 1.0,
    ) -> UncertaintyComponent:
        """Add a component: u = |sensitivity| × value / divisor (%).

        ``value`` is a standard uncertainty (normal, divisor 1) or a half-width
        (rectangular √3, triangular √6) unless ``divisor`` is given (e.g. k of
        an expanded uncertainty). ``sensitivity`` is in % per ``unit``.
        """
        if not name:
            raise ValueError("name: expected a non-empty component name")
        if any(c.name == name for c in self.components):
            raise ValueError(f"name: component {name!r} is already in the budget")
        if distribution not in DISTRIBUTION_DIVISORS:
            raise ValueError(f"distribution: expected one of {', '.join(DISTRIBUTION_DIVISORS)}, got {distribution!r}")
        value = _finite_non_negative("value", value)
        divisor = DISTRIBUTION_DIVISORS[distribution] if divisor is None else _positive("divisor", divisor)
        sensitivity = float(sensitivity)
        if not math.isfinite(sensitivity):
            raise ValueError(f"sensitivity: expected a finite number, got {sensitivity!r}")
        component = UncertaintyComponent(
            name=name,
            value=value,
            unit=unit,
            distribution=distribution,
            divisor=divisor,
            sensitivity=sensitivity,
            source=source,
            u_pct=abs(sensitivity) * value / divisor,
        )
        self.components.append(component)
        return component

    def add_component(self, name: str, u_pct: float, *, source: str = "") -> UncertaintyComponent:
        """Add a standard uncertainty already expressed in % (normal, divisor 1, sensitivity 1)."""
        return self.add(name, u_pct, "normal", source)

    def add_resolution(
        self, d_l: float, volume_l: float, *, readings: int = 2, name: str = "reading resolution", source: str = ""
    ) -> UncertaintyComponent:
        """Quantisation of ``readings`` register readings with resolution d (L) over volume V (L).

        Each reading: rectangular, half-width d/2, u = d/√12; the readings are
        independent: u = √readings × d/√12 (two readings: d/√6), relative to V.
        """
        d_l = _finite_non_negative("d_l", d_l)
        volume_l = _positive("volume_l", volume_l)
        if int(readings) != readings or readings < 1:
            raise ValueError(f"readings: expected an integer >= 1, got {readings!r}")
        return self.add(
            name,
            d_l,
            unit="L",
            distribution="rectangular",
            divisor=math.sqrt(12.0 / readings),
            sensitivity=100.0 / volume_l,
            source=source or f"resolution {d_l:g} L, {readings} readings, each d/sqrt(12) (JCGM 100 4.3.7)",
        )

    def add_reference(
        self, u_pct: float, k: float = 2.0, *, name: str = "reference", source: str = ""
    ) -> UncertaintyComponent:
        """Reference standard's expanded uncertainty ``u_pct`` (%) with coverage factor ``k``."""
        return self.add(
            name,
            u_pct,
            distribution="normal",
            divisor=_positive("k", k),
            source=source or f"calibration certificate U = {u_pct:g} % (k = {k:g})",
        )

    def add_repeatability(
        self, values_pct: Sequence[float], *, mean_reported: bool = True, name: str = "repeatability", source: str = ""
    ) -> UncertaintyComponent:
        """Type A: experimental standard deviation s of repeated errors (%).

        u = s/√n when the mean of the n runs is reported, else s (one run reported).
        """
        values = [float(v) for v in values_pct]
        if len(values) < 2 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"values_pct: expected >= 2 finite errors in %, got {values_pct!r}")
        n = len(values)
        mean = sum(values) / n
        s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        return self.add(
            name,
            s,
            distribution="normal",
            divisor=math.sqrt(n) if mean_reported else 1.0,
            source=source or f"type A, s of {n} runs" + (", mean reported (s/sqrt(n))" if mean_reported else ""),
        )

    def add_temperature(
        self,
        u_temperature_c: float,
        *,
        coefficient_per_c: float | None = None,
        water_temperature_c: float = 20.0,
        distribution: str = "normal",
        name: str = "temperature",
        source: str = "",
    ) -> UncertaintyComponent:
        """Temperature uncertainty u (°C) times an expansion coefficient (1/°C) → %.

        Default coefficient: the water's cubic expansion at ``water_temperature_c``
        (liquid between reference and meter); pass a tank's beta for the can.
        With a rectangular distribution ``u_temperature_c`` is the half-width.
        """
        coefficient = (
            water_expansion_coefficient(water_temperature_c) if coefficient_per_c is None else float(coefficient_per_c)
        )
        return self.add(
            name,
            u_temperature_c,
            unit="°C",
            distribution=distribution,
            sensitivity=coefficient * 100.0,
            source=source or f"temperature, coefficient {coefficient:.3g} /°C",
        )

    def combined_pct(self) -> float:
        """Combined standard uncertainty u_c (%), root sum of squares of the components."""
        return math.sqrt(sum(c.u_pct**2 for c in self.components))

    def expanded_pct(self, k: float = 2.0) -> float:
        """Expanded uncertainty U = k × u_c (%), k = 2 for about 95 %."""
        return _positive("k", k) * self.combined_pct()

    def combined(self) -> float:
        """Same as :meth:`combined_pct` (name used in docs/INTERFACES.md)."""
        return self.combined_pct()

    def expanded(self, k: float = 2.0) -> float:
        """Same as :meth:`expanded_pct` (name used in docs/INTERFACES.md)."""
        return self.expanded_pct(k)

    def as_dict(self, k: float = 2.0) -> dict[str, Any]:
        """Budget for a report: each component (value, unit, distribution, divisor,
        sensitivity, u_pct, source), combined_pct, k and expanded_pct."""
        return {
            "components": [asdict(c) for c in self.components],
            "combined_pct": self.combined_pct(),
            "k": float(k),
            "expanded_pct": self.expanded_pct(k),
        }
