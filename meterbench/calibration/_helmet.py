"""Helmet impact standard profiles and the per-impact decision rule (pure).

Profiles live in ``data/helmet.json`` with SRC/MEM provenance per value, like
the MPE tables. The decision compares the filtered peak g, the cumulative
dwell times and (when the profile has one) HIC with their limits under a
guard band: the peak's expanded relative uncertainty U (k=2, from the rig's
accelerometer certificate, MEM default 1.5 %) widens the limit both ways, so
pass needs peak <= limit - U·peak and fail needs peak > limit + U·peak;
between them the impact is inconclusive. Dwell and HIC scale with the same
calibration error (dwell through the level crossings: a level L is crossed
where a·(1±u) = L, so dwell is re-read at L/(1±u)); HIC scales as (1±u)^2.5.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ._decision import Decision
from ._tables import Sourced, _merge, iter_sourced, sourced

PROFILE_NAMES = ("fmvss-218", "cns-13371", "cns-2396", "un-r22-06")


@cache
def _default_table() -> dict[str, Any]:
    text = resources.files("meterbench.calibration").joinpath("data", "helmet.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_helmet_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The helmet table with ``overrides`` merged over it (overridden leaves get provenance "CFG")."""
    table = copy.deepcopy(_default_table())
    if overrides is None:
        return table
    if not isinstance(overrides, Mapping):
        raise ValueError(f"helmet table override: expected a dict, got {type(overrides).__name__}")
    return _merge(table, overrides, "")


@dataclass(frozen=True)
class HelmetProfile:
    """One standard's limits. Values are :class:`Sourced` (value, provenance, source)."""

    name: str
    peak_max_g: Sourced
    dwell_limits_ms: Sourced
    hic_max: Sourced
    velocity_window_m_s: Sourced
    cfc: Sourced
    max_minutes_out_of_chamber: Sourced

    def provenance(self) -> dict[str, dict[str, Any]]:
        """Every value as a dict for report.json (value, provenance, source, confirmed)."""
        return {field: getattr(self, field).as_dict() for field in _PROFILE_FIELDS}

    def unconfirmed(self) -> list[str]:
        """Names of the values tagged MEM or CFG, for the report's [MEM] notes."""
        return [k for k, v in self.provenance().items() if not v["confirmed"]]


_PROFILE_FIELDS = (
    "peak_max_g",
    "dwell_limits_ms",
    "hic_max",
    "velocity_window_m_s",
    "cfc",
    "max_minutes_out_of_chamber",
)


def helmet_profile(name: str, overrides: Mapping[str, Any] | None = None) -> HelmetProfile:
    """The standard profile ``name`` (one of PROFILE_NAMES or a profile added by ``overrides``)."""
    table = load_helmet_table(overrides)
    profiles = table["profiles"]
    if name not in profiles:
        raise ValueError(f"profile: expected one of {', '.join(profiles)}, got {name!r}")
    return HelmetProfile(
        name=name,
        **{field: sourced(table, "profiles", name, field) for field in _PROFILE_FIELDS},
    )


def peak_uncertainty_rel_pct(overrides: Mapping[str, Any] | None = None) -> Sourced:
    """Default expanded (k=2) relative uncertainty of peak g in % (MEM; set from the rig's certificate)."""
    return sourced(load_helmet_table(overrides), "peak_u_rel_pct")


@dataclass(frozen=True)
class ImpactCheck:
    """One criterion of an impact: measured value, limit, margin (limit - value, same unit), verdict."""

    criterion: str
    value: float
    limit: float
    margin: float
    verdict: str


def _three_way(value: float, low: float, high: float, limit: float) -> str:
    """pass if even the high reading is within the limit, fail if even the low one exceeds it."""
    if high <= limit:
        return "pass"
    if low > limit:
        return "fail"
    return "inconclusive"


def decide_impact(
    peak_g: float,
    dwell_ms: Mapping[str, float],
    hic_value: float,
    profile: HelmetProfile,
    *,
    velocity_m_s: float | None = None,
    anvil: str | None = None,
    peak_u_rel_pct: float = 1.5,
    dwell_ms_bounds: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[Decision, list[ImpactCheck]]:
    """Verdict of one impact under ``profile`` with the guard band described in the module doc.

    ``dwell_ms`` maps a level in g (as a string, "150") to the cumulative time
    above it in ms. ``dwell_ms_bounds`` optionally gives (low, high) dwell
    re-read at L/(1+u) and L/(1-u); without it the dwell is compared with no
    band. A velocity outside the profile's window for ``anvil`` is
    inconclusive ("velocity out of window").
    """
    u = float(peak_u_rel_pct) / 100.0
    if not (math.isfinite(u) and 0 <= u < 0.5):
        raise ValueError(f"peak_u_rel_pct: expected 0 <= U < 50 %, got {peak_u_rel_pct!r}")
    if velocity_m_s is not None:
        windows = profile.velocity_window_m_s.value
        if anvil not in windows:
            raise ValueError(f"anvil: expected one of {', '.join(windows)} for {profile.name}, got {anvil!r}")
        low_v, high_v = windows[anvil]
        if not (low_v <= velocity_m_s <= high_v):
            reason = f"velocity out of window: {velocity_m_s:.3f} m/s not in {low_v}-{high_v} m/s ({anvil})"
            return Decision("inconclusive", reason, "guard-band", math.nan, "inconclusive"), []
    checks = []
    peak_limit = float(profile.peak_max_g.value)
    checks.append(
        ImpactCheck(
            "peak_g",
            peak_g,
            peak_limit,
            peak_limit - peak_g,
            _three_way(peak_g, peak_g * (1 - u), peak_g * (1 + u), peak_limit),
        )
    )
    for level, limit in sorted(profile.dwell_limits_ms.value.items(), key=lambda kv: float(kv[0])):
        if level not in dwell_ms:
            raise ValueError(f"dwell_ms: level {level} g missing; profile {profile.name} limits it")
        value = float(dwell_ms[level])
        low, high = (dwell_ms_bounds or {}).get(level, (value, value))
        checks.append(
            ImpactCheck(
                f"dwell_{level}_ms", value, float(limit), float(limit) - value, _three_way(value, low, high, limit)
            )
        )
    if profile.hic_max.value is not None:
        limit = float(profile.hic_max.value)
        low, high = hic_value * (1 - u) ** 2.5, hic_value * (1 + u) ** 2.5
        checks.append(ImpactCheck("hic", hic_value, limit, limit - hic_value, _three_way(hic_value, low, high, limit)))
    verdicts = [c.verdict for c in checks]
    facts = "; ".join(f"{c.criterion} {c.value:.4g} (limit {c.limit:.4g})" for c in checks)
    if "fail" in verdicts:
        failed = ", ".join(c.criterion for c in checks if c.verdict == "fail")
        return Decision("fail", f"beyond limit + U: {failed}; {facts}", "guard-band", peak_limit, "fail"), checks
    if "inconclusive" in verdicts:
        near = ", ".join(c.criterion for c in checks if c.verdict == "inconclusive")
        return (
            Decision(
                "inconclusive", f"within U of the limit: {near}; {facts}", "guard-band", peak_limit, "inconclusive"
            ),
            checks,
        )
    return Decision("pass", f"within limit - U; {facts}", "guard-band", peak_limit, "pass"), checks


AMBIENT_CONDITIONING = "ambient"
"""The conditioning a helmet has in the lab itself: no chamber, no timer."""


def conditioning_void_reason(
    conditioning: str | None, out_of_chamber_s: float | None, profile: HelmetProfile
) -> str | None:
    """Why an impact is void for its conditioning, or None: a helmet conditioned in a chamber (hot,
    cold, wet, ...) must be dropped within the profile's ``max_minutes_out_of_chamber`` of its removal
    (FMVSS 218 S6.4: within 2-4 min, else re-condition). No timer recorded for such a helmet is void
    too; an ambient-conditioned helmet (or one with no conditioning named) needs none."""
    if conditioning in (None, AMBIENT_CONDITIONING):
        return None
    limit = profile.max_minutes_out_of_chamber
    tag = f"{profile.name} max_minutes_out_of_chamber [{limit.provenance}: {limit.source}]"
    if out_of_chamber_s is None:
        return f"void: no conditioning timer (out_of_chamber_s) recorded for a {conditioning}-conditioned helmet"
    minutes = float(out_of_chamber_s) / 60.0
    if not (math.isfinite(minutes) and minutes >= 0):
        return f"void: conditioning timer {out_of_chamber_s!r} s is not a time"
    if limit.value is not None and minutes > float(limit.value):
        return (
            f"void: out of the {conditioning} conditioning {minutes:.2f} min before the drop > "
            f"{float(limit.value):g} min ({tag}); re-condition and repeat"
        )
    return None


def check_reference_drops(peaks_g: Sequence[float], overrides: Mapping[str, Any] | None = None) -> tuple[bool, str]:
    """Rig check (16 CFR 1203.17(b)(1)): the last three reference drops within 380-425 g, spread <= 20 g."""
    table = load_helmet_table(overrides)
    low, high = sourced(table, "reference_drop", "peak_window_g").value
    spread_max = float(sourced(table, "reference_drop", "max_spread_g").value)
    if len(peaks_g) < 3:
        return False, f"rig check failed: {len(peaks_g)} reference drop(s), expected at least 3"
    last = [float(p) for p in peaks_g[-3:]]
    outside = [p for p in last if not low <= p <= high]
    if outside:
        return (
            False,
            f"rig check failed: reference peak(s) {', '.join(f'{p:.1f}' for p in outside)} g not in {low}-{high} g",
        )
    spread = max(last) - min(last)
    if spread > spread_max:
        return False, f"rig check failed: reference spread {spread:.1f} g > {spread_max} g"
    return True, f"rig check ok: last three {', '.join(f'{p:.1f}' for p in last)} g, spread {spread:.1f} g"


def helmet_provenance_notes(overrides: Mapping[str, Any] | None = None) -> list[str]:
    """One line per unconfirmed (MEM/CFG) helmet value, '[MEM] path = value (source)'."""
    return [
        f"[{v.provenance}] helmet.{path} = {v.value!r} ({v.source})"
        for path, v in iter_sourced(load_helmet_table(overrides))
        if not v.confirmed
    ]
