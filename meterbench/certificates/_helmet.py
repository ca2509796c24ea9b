"""Helmet-impact runs on a certificate: the report checks and the certificate's helmet fields. Pure.

A helmet impact has no error of indication, MPE or U of E: its evidence is the peak (g), the
cumulative dwell times above the profile's levels (ms), HIC and the impact velocity (m/s), judged
against the standard profile's limits with the guard band U of peak g (docs/helmets.md). certify
re-checks what it can from report.json alone:

- a pass or fail impact must have its features, a velocity inside the profile's window for its
  anvil, no void conditioning, and margins whose limits are the profile's and whose values are the
  impact's; the verdict must be possible under the guard band: a pass needs peak·(1+U) ≤ limit,
  HIC·(1+U)^2.5 ≤ limit and every dwell ≤ its limit; a fail needs at least one of peak·(1−U) >
  limit, HIC·(1−U)^2.5 > limit or a dwell > its limit (the dwell's band needs the trace, so only its
  side of the limit is checked here);
- the profile's values (report.json ``profile_values``) tagged SRC or MEM must be helmet.json's as
  shipped: only a CFG value (a session.json override, bound by the session's hash) may differ;
- each model's verdict must combine its helmets' (a would-be pass with programme gaps is
  inconclusive).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from meterbench.calibration import check_reference_drops, decide_instrument, helmet_profile, load_table

__all__ = [
    "HELMET_BENCH_KIND",
    "helmet_certificate_fields",
    "helmet_decision_statement",
    "helmet_report_problems",
]

HELMET_BENCH_KIND = "helmet-impact"
_HELMET_IDENTITY = ("serial", "model", "size", "lot", "profile")
_TOLERANCE = 1e-9  # report.json keeps 6 decimals; values are compared as written


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(a: Any, b: Any) -> bool:
    if _finite(a) and _finite(b):
        return abs(float(a) - float(b)) <= _TOLERANCE * max(1.0, abs(float(a)), abs(float(b)))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(map(str, a)) == set(map(str, b)) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _values(report: Mapping[str, Any]) -> dict[str, Any]:
    values = report.get("profile_values")
    return {k: v.get("value") for k, v in values.items() if isinstance(v, dict)} if isinstance(values, dict) else {}


def _profile_problems(report: Mapping[str, Any], label: str) -> list[str]:
    """profile_values present, each SRC/MEM value the shipped helmet.json's (only CFG may differ)."""
    values = report.get("profile_values")
    if not isinstance(values, dict) or not isinstance(report.get("profile"), str):
        return [f"{label}: profile, profile_values: missing (a helmet-impact run records its standard profile)"]
    try:
        shipped = helmet_profile(report["profile"]).provenance()
    except ValueError:
        shipped = {}  # a profile added by the session's overrides: all its values are CFG
    problems = []
    for key in ("peak_max_g", "dwell_limits_ms", "hic_max", "velocity_window_m_s"):
        entry = values.get(key)
        if not isinstance(entry, dict) or "value" not in entry:
            problems.append(f"{label}: profile_values.{key}: missing")
            continue
        if entry.get("provenance") == "CFG" or key not in shipped:
            continue
        want = shipped[key]
        if not _same(entry["value"], want["value"]) or entry.get("provenance") != want["provenance"]:
            problems.append(
                f"{label}: profile_values.{key}: {entry['value']!r} [{entry.get('provenance')}] is not "
                f"helmet.json's {want['value']!r} [{want['provenance']}] for {report['profile']}: "
                "the report was changed"
            )
    return problems


def _band_verdicts(details: Mapping[str, Any], limits: Mapping[str, Any]) -> tuple[bool, bool]:
    """(a pass is possible, a fail is possible) under the guard band from the recorded features."""
    u = float(details["peak_u_rel_pct"]) / 100.0
    peak, hic = float(details["peak_g"]), float(details["hic"])
    peak_limit = float(limits["peak_max_g"])
    hic_limit = limits.get("hic_max")
    dwell = {str(k): float(v) for k, v in (details.get("dwell_ms") or {}).items()}
    dwell_limits = {str(k): float(v) for k, v in (limits.get("dwell_limits_ms") or {}).items()}
    over = [dwell.get(level, math.inf) > limit for level, limit in dwell_limits.items()]
    can_pass = peak * (1 + u) <= peak_limit and not any(over)
    can_fail = peak * (1 - u) > peak_limit or any(over)
    if hic_limit is not None:
        can_pass = can_pass and hic * (1 + u) ** 2.5 <= float(hic_limit)
        can_fail = can_fail or hic * (1 - u) ** 2.5 > float(hic_limit)
    return can_pass, can_fail


def _margin_problems(details: Mapping[str, Any], limits: Mapping[str, Any], where: str) -> list[str]:
    """The margins' limits are the profile's and their values the impact's features."""
    margins = details.get("margins")
    if not isinstance(margins, dict):
        return [f"{where}.details.margins: missing"]
    expected = {"peak_g": (details.get("peak_g"), limits.get("peak_max_g"))}
    for level, limit in (limits.get("dwell_limits_ms") or {}).items():
        expected[f"dwell_{level}_ms"] = ((details.get("dwell_ms") or {}).get(str(level)), limit)
    if limits.get("hic_max") is not None:
        expected["hic"] = (details.get("hic"), limits["hic_max"])
    problems = []
    if set(margins) != set(expected):
        problems.append(f"{where}.details.margins: criteria {sorted(margins)}, expected {sorted(expected)}")
    for name, (value, limit) in expected.items():
        margin = margins.get(name)
        if isinstance(margin, dict) and not (_same(margin.get("value"), value) and _same(margin.get("limit"), limit)):
            problems.append(
                f"{where}.details.margins.{name}: value {margin.get('value')!r} / limit {margin.get('limit')!r} "
                f"are not the impact's {value!r} / the profile's {limit!r}: the report was changed"
            )
    return problems


def _impact_problems(point: Any, where: str, limits: Mapping[str, Any]) -> list[str]:
    """Why one impact's verdict does not follow from its recorded features (module docstring)."""
    if not isinstance(point, dict):
        return [f"{where}: expected an object"]
    verdict, details = point.get("verdict"), point.get("details")
    if verdict not in ("pass", "fail", "inconclusive"):
        return [f"{where}.verdict: expected one of pass, fail, inconclusive, got {verdict!r}"]
    if verdict == "inconclusive":
        return []
    if not isinstance(details, dict):
        return [f"{where}: a {verdict} without details"]
    missing = [k for k in ("peak_g", "hic", "peak_u_rel_pct", "velocity_m_s") if not _finite(details.get(k))]
    dwell = details.get("dwell_ms")
    if not isinstance(dwell, dict) or not all(_finite(v) for v in dwell.values()):
        missing.append("dwell_ms")
    if missing:
        return [f"{where}: a {verdict} without a finite {', '.join(missing)}"]
    if details.get("void"):
        return [f"{where}.verdict: {verdict!r} for a void impact ({details['void']}): the report was changed"]
    window = (limits.get("velocity_window_m_s") or {}).get(details.get("anvil"))
    if not (isinstance(window, list) and len(window) == 2 and window[0] <= details["velocity_m_s"] <= window[1]):
        return [
            f"{where}.verdict: {verdict!r} at {details['velocity_m_s']} m/s on the {details.get('anvil')} anvil, "
            f"outside the profile's window {window!r}: the report was changed"
        ]
    problems = _margin_problems(details, limits, where)
    can_pass, can_fail = _band_verdicts(details, limits)
    if (verdict == "pass" and not can_pass) or (verdict == "fail" and not can_fail):
        problems.append(
            f"{where}.verdict: {verdict!r} does not follow from peak {details['peak_g']} g, dwell {dwell}, "
            f"HIC {details['hic']} and U {details['peak_u_rel_pct']} % under the guard band: the report was changed"
        )
    return problems


def _model_problems(report: Mapping[str, Any], label: str) -> list[str]:
    """Each helmet_models entry combines its helmets' verdicts (programme gaps turn a pass inconclusive)."""
    helmets = {i.get("id"): i for i in report.get("instruments") or [] if isinstance(i, dict)}
    problems = []
    for k, model in enumerate(report.get("helmet_models") or []):
        members = [helmets.get(h) for h in model.get("helmets") or []] if isinstance(model, dict) else [None]
        if not members or any(m is None or m.get("model") != model.get("model") for m in members):
            problems.append(f"{label}: helmet_models[{k}]: its helmets are not the report's helmets of that model")
            continue
        expected = decide_instrument({m["id"]: m.get("verdict") for m in members}).verdict
        if expected == "pass" and model.get("programme_gaps"):
            expected = "inconclusive"
        if model.get("verdict") != expected:
            problems.append(
                f"{label}: helmet_models[{k}].verdict: {model.get('verdict')!r} does not combine its helmets' "
                f"(expected {expected!r}): the report was changed"
            )
    return problems


def _rig_check_claims(report: Mapping[str, Any], label: str) -> list[str]:
    """A day said certifiable must have both series ok, a series said ok must pass the 16 CFR 1203.17(b)(1)
    check on its recorded peaks with helmet.json's window as shipped (a session that widened it, CFG, is
    not certified), and every impact said certifiable must be of such a day."""
    problems, good_days, refused_days = [], set(), set()
    for k, check in enumerate(report.get("rig_checks") or []):
        if not (isinstance(check, dict) and check.get("certifiable") is True):
            refused_days.add(check.get("day") if isinstance(check, dict) else None)
            continue  # refused already (_record._rig_check_problems)
        where = f"{label}: rig_checks[{k}]"
        for when in ("before", "after"):
            series = check.get(when) if isinstance(check.get(when), dict) else {}
            peaks = [d.get("peak_g") for d in series.get("drops") or [] if isinstance(d, dict)]
            ok, why = check_reference_drops(peaks) if all(_finite(p) for p in peaks) else (False, "peaks not numbers")
            if series.get("ok") is not True or not ok:
                problems.append(f"{where}: certifiable, but its {when} series is not a passing rig check ({why})")
        if not problems:
            good_days.add(check.get("day"))
    for i, instrument in enumerate(report.get("instruments") or []):
        for j, point in enumerate((instrument.get("points") or []) if isinstance(instrument, dict) else []):
            day = (point.get("details") or {}).get("test_day") if isinstance(point, dict) else None
            if day not in good_days and day not in refused_days:
                problems.append(
                    f"{label}: instruments[{i}].points[{j}]: test day {day!r} has no passing rig check in rig_checks"
                )
    return problems[:1] if problems else []


def helmet_report_problems(report: Mapping[str, Any], label: str) -> list[str]:
    """Why a helmet-impact report's impacts, profile values or model verdicts cannot be certified."""
    problems = _profile_problems(report, label)
    if problems:
        return problems
    limits = _values(report)
    for i, instrument in enumerate(report.get("instruments") or []):
        for j, point in enumerate((instrument.get("points") or []) if isinstance(instrument, dict) else []):
            problems += _impact_problems(point, f"{label}: instruments[{i}].points[{j}]", limits)
    return problems + _model_problems(report, label) + _rig_check_claims(report, label)


def helmet_decision_statement() -> str:
    """The helmet decision rule in words (ISO/IEC 17025:2017 7.8.6.2; docs/helmets.md)."""
    source = load_table("decision")["rules"]["guard-band"]["source"]
    return (
        f"Guard band w = U ({source}), U the expanded (k = 2) relative uncertainty of peak acceleration from the "
        "rig's accelerometer calibration. An impact passes when peak x (1 + U) <= the peak limit, HIC x (1 + U)^2.5 "
        "<= the HIC limit (where the standard sets one) and the time above L / (1 + U) <= each dwell limit; it fails "
        "when peak x (1 - U), HIC x (1 - U)^2.5 or the time above L / (1 - U) exceeds its limit; otherwise, or when "
        "the impact velocity is outside the standard's window, the trace is clipped, a channel is dead, the "
        "SAE J211 pre-conditions fail, or the helmet was out of its conditioning chamber too long (void), it is "
        "inconclusive. A helmet fails if any impact fails, passes only if every impact passes, and is "
        "inconclusive otherwise. Limits tagged [MEM] are recalled, not confirmed from the standard's text; "
        "[CFG] values were set by the session."
    )


def _impact_row(point: Mapping[str, Any]) -> dict[str, Any]:
    details = point.get("details") or {}
    return {
        "name": point.get("name"),
        "site": details.get("site"),
        "anvil": details.get("anvil"),
        "velocity_m_s": details.get("velocity_m_s"),
        "conditioning": details.get("conditioning"),
        "out_of_chamber_s": details.get("out_of_chamber_s"),
        "peak_g": details.get("peak_g"),
        "t_peak_ms": details.get("t_peak_ms"),
        "dwell_ms": dict(details.get("dwell_ms") or {}),
        "hic": details.get("hic"),
        "hic15": details.get("hic15"),
        "hic36": details.get("hic36"),
        "peak_u_rel_pct": details.get("peak_u_rel_pct"),
        "margins": dict(details.get("margins") or {}),
        "test_day": details.get("test_day"),
        "trace": details.get("trace"),
        "verdict": point.get("verdict"),
        "reason": point.get("reason", ""),
    }


def _rig_check_row(check: Mapping[str, Any]) -> dict[str, Any]:
    series = {
        when: {
            "ok": (check.get(when) or {}).get("ok"),
            "reason": (check.get(when) or {}).get("reason"),
            "peaks_g": [d.get("peak_g") for d in (check.get(when) or {}).get("drops") or []],
        }
        for when in ("before", "after")
    }
    return {"day": check.get("day"), "certifiable": check.get("certifiable"), "reason": check.get("reason"), **series}


def helmet_certificate_fields(report: Mapping[str, Any], instrument: Mapping[str, Any]) -> dict[str, Any]:
    """What a helmet's certificate adds: identity, impacts, the profile's limits with provenance, the rig
    checks of its test days and its model's verdict over the run's helmets of that model."""
    points = [_impact_row(p) for p in instrument.get("points") or []]
    days = {p["test_day"] for p in points}
    model = next(
        (m for m in report.get("helmet_models") or [] if m.get("model") == instrument.get("model")),
        None,
    )
    return {
        "identity": {k: instrument[k] for k in _HELMET_IDENTITY if instrument.get(k) is not None},
        "points": points,
        "helmet": {
            "profile": report.get("profile"),
            "limits": {k: dict(v) for k, v in (report.get("profile_values") or {}).items()},
            "rig_checks": [_rig_check_row(c) for c in report.get("rig_checks") or [] if c.get("day") in days],
            "rig_check_limits": dict(report.get("rig_check_limits") or {}),
            "model": None
            if model is None
            else {
                "model": model.get("model"),
                "verdict": model.get("verdict"),
                "reason": model.get("reason"),
                "helmets": list(model.get("helmets") or []),
                "programme_gaps": list(model.get("programme_gaps") or []),
            },
        },
    }
