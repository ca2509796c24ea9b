"""Water density (Tanaka et al. 2001) and volume corrections for temperature.

Volumes in L, temperatures in °C, density in kg/m³.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._tables import Sourced, load_table, sourced

_PHYSICAL = load_table("physical")
_TANAKA = {key: sourced(_PHYSICAL, "tanaka_2001", key).value for key in _PHYSICAL["tanaka_2001"]}
REFERENCE_TEMPERATURE_C: float = float(sourced(_PHYSICAL, "reference_temperature_c").value)

CUBIC_EXPANSION: Mapping[str, Sourced] = MappingProxyType(
    {name: sourced(_PHYSICAL, "cubic_expansion_per_c", name) for name in _PHYSICAL["cubic_expansion_per_c"]}
)
"""Cubic thermal expansion coefficient (1/°C) of tank materials, with provenance."""

_MATERIAL_ALIASES = {
    "mild": "mild-steel",
    "mild steel": "mild-steel",
    "mild_steel": "mild-steel",
    "steel": "mild-steel",
    "carbon-steel": "mild-steel",
    "stainless": "stainless-steel",
    "stainless steel": "stainless-steel",
    "stainless_steel": "stainless-steel",
}


def _check_temperature(name: str, temperature_c: float) -> float:
    temperature = float(temperature_c)
    low, high = _TANAKA["valid_range_c"]
    if not (math.isfinite(temperature) and low <= temperature <= high):
        raise ValueError(f"{name}: {temperature_c!r} °C outside the Tanaka 2001 range {low:g}..{high:g} °C")
    return temperature


def water_density(temperature_c: float, *, air_saturated: bool = False, pressure_kpa: float | None = None) -> float:
    """Density of pure water (SMOW) in kg/m³ at a temperature (°C, 0..40), Tanaka 2001.

    rho = a5 [1 - (t+a1)² (t+a2) / (a3 (t+a4))] for air-free water at 101.325 kPa;
    ``air_saturated`` adds (-4.612 + 0.106 t)·1e-3 kg/m³; ``pressure_kpa``
    (absolute) multiplies by 1 + (k0 + k1 t + k2 t²)(p - 101.325 kPa).

    >>> round(water_density(20.0), 4)
    998.2067
    """
    t = _check_temperature("temperature_c", temperature_c)
    c = _TANAKA
    rho = c["a5_kg_m3"] * (1 - (t + c["a1_c"]) ** 2 * (t + c["a2_c"]) / (c["a3_c2"] * (t + c["a4_c"])))
    if air_saturated:
        rho += c["air_saturation_s0_kg_m3"] + c["air_saturation_s1_kg_m3_c"] * t
    if pressure_kpa is not None:
        pressure = float(pressure_kpa)
        if not (math.isfinite(pressure) and pressure > 0):
            raise ValueError(f"pressure_kpa: expected an absolute pressure > 0 kPa, got {pressure_kpa!r}")
        k = (
            c["compressibility_k0_per_pa"]
            + c["compressibility_k1_per_pa_c"] * t
            + c["compressibility_k2_per_pa_c2"] * t * t
        )
        rho *= 1 + k * (pressure - c["reference_pressure_kpa"]) * 1000.0
    return rho


def water_expansion_coefficient(temperature_c: float) -> float:
    """Cubic expansion coefficient of water, gamma = -(1/rho) drho/dt, in 1/°C (Tanaka 2001).

    >>> round(water_expansion_coefficient(20.0) * 1e4, 2)
    2.07
    """
    t = _check_temperature("temperature_c", temperature_c)
    c = _TANAKA
    a1, a2, a3, a4, a5 = c["a1_c"], c["a2_c"], c["a3_c2"], c["a4_c"], c["a5_kg_m3"]
    # f(t) = (t+a1)^2 (t+a2) / (a3 (t+a4)); rho = a5 (1 - f); drho/dt = -a5 f'
    numerator = (t + a1) ** 2 * (t + a2)
    d_numerator = 2 * (t + a1) * (t + a2) + (t + a1) ** 2
    d_f = (d_numerator * (t + a4) - numerator) / (a3 * (t + a4) ** 2)
    return a5 * d_f / water_density(t)


def _material_key(material: str) -> str:
    key = str(material).strip().lower()
    key = _MATERIAL_ALIASES.get(key, key)
    if key not in CUBIC_EXPANSION:
        raise ValueError(
            f"material: {material!r} unknown; expected one of "
            f"{', '.join(CUBIC_EXPANSION)} (or give cubic_expansion_per_c)"
        )
    return key


def cubic_expansion(material: str) -> Sourced:
    """Cubic expansion coefficient (1/°C) of a tank material, with its source."""
    return CUBIC_EXPANSION[_material_key(material)]


def tank_volume_at_20c(
    read_volume_l: float, tank_temperature_c: float, material: str, *, cubic_expansion_per_c: float | None = None
) -> float:
    """Liquid volume (L, at the tank's temperature) held up to a scale reading.

    The tank's scale is graduated at 20 °C; at tank temperature t its capacity
    up to the read mark is V = V_read [1 + beta (t - 20)] (METROLOGY §3, §5:
    beta 33e-6 /°C mild steel, 51e-6 /°C stainless). Compare V with the
    delivered volume brought to the tank's temperature (:func:`transfer_volume`),
    or use :func:`tank_error` which does both.

    >>> round(tank_volume_at_20c(20.0, 30.0, "stainless-steel"), 5)
    20.0102
    """
    volume = float(read_volume_l)
    if not math.isfinite(volume) or volume < 0:
        raise ValueError(f"read_volume_l: expected a volume >= 0 L, got {read_volume_l!r}")
    temperature = float(tank_temperature_c)
    if not math.isfinite(temperature) or not -50.0 <= temperature <= 150.0:
        raise ValueError(f"tank_temperature_c: expected -50..150 °C, got {tank_temperature_c!r}")
    beta = cubic_expansion(material).value if cubic_expansion_per_c is None else float(cubic_expansion_per_c)
    return volume * (1 + beta * (temperature - REFERENCE_TEMPERATURE_C))


def transfer_volume(volume_l: float, from_temperature_c: float, to_temperature_c: float) -> float:
    """Volume (L) that a quantity of water of ``volume_l`` at one temperature has at another.

    Mass is conserved: V_to = V_from × rho(t_from) / rho(t_to) (Tanaka 2001), e.g.
    from the reference meter's temperature to the tank's.

    >>> round(transfer_volume(100.0, 20.0, 25.0), 4)
    100.1163
    """
    volume = float(volume_l)
    if not math.isfinite(volume) or volume < 0:
        raise ValueError(f"volume_l: expected a volume >= 0 L, got {volume_l!r}")
    return volume * water_density(from_temperature_c) / water_density(to_temperature_c)


@dataclass(frozen=True)
class TankError:
    """Error of a measuring tank, both volumes as water at 20 °C (L).

    reference_volume_l: the delivered water, at 20 °C.
    indicated_volume_l: the water the tank holds up to its read mark, at 20 °C.
    error_pct: (indicated - reference) / reference × 100 (the same in any common frame).
    """

    reference_volume_l: float
    indicated_volume_l: float
    error_pct: float


def tank_error(
    read_volume_l: float,
    delivered_volume_l: float,
    meter_temperature_c: float,
    tank_temperature_c: float,
    material: str,
    *,
    cubic_expansion_per_c: float | None = None,
) -> TankError:
    """Error (%) of a tank reading against the volume delivered by a reference meter.

    The delivered volume (at the reference meter's temperature) and the volume
    the tank holds up to its read mark (:func:`tank_volume_at_20c`, at the
    tank's temperature) are both brought to water at 20 °C by density.

    >>> round(tank_error(20.0, 20.0, 20.0, 20.0, "mild-steel").error_pct, 9)
    0.0
    """
    delivered = float(delivered_volume_l)
    if not math.isfinite(delivered) or delivered <= 0:
        raise ValueError(f"delivered_volume_l: expected a volume > 0 L, got {delivered_volume_l!r}")
    held = tank_volume_at_20c(read_volume_l, tank_temperature_c, material, cubic_expansion_per_c=cubic_expansion_per_c)
    reference = transfer_volume(delivered, meter_temperature_c, REFERENCE_TEMPERATURE_C)
    indicated = transfer_volume(held, tank_temperature_c, REFERENCE_TEMPERATURE_C)
    return TankError(
        reference_volume_l=reference, indicated_volume_l=indicated, error_pct=(indicated - reference) / reference * 100
    )
