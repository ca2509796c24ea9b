"""Verify a `bench_kind: "helmet-impact"` session: each impact's trace → features → verdict.

Per impact: `read_trace` the file under ``traces/``, subtract each axis's pre-impact offset (the
median of the first 10 ms), `analyse_impact` at the profile's CFC, then `decide_impact` under
the session's profile with the guard band U of peak (helmet.json ``peak_u_rel_pct`` [MEM], or
session.json ``peak_u_rel_pct``). A clipped trace, a dead channel, a failed J211 pre-condition,
an unreadable trace or a velocity outside the window make the impact inconclusive with the
reason. A helmet's verdict combines its impacts (`decide_instrument`).

The session is a loaded :class:`meterbench.session.Session` (schema, cross-checks and the SHA-256
of every trace checked by `load_session`; a changed or truncated trace refuses the session).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from meterbench import calibration
from meterbench.calibration import (
    Decision,
    analyse_impact,
    check_reference_drops,
    conditioning_void_reason,
    decide_impact,
    dwell_time_s,
    helmet_profile,
    helmet_provenance_notes,
    load_helmet_table,
)
from meterbench.errors import SessionError
from meterbench.session.traces import TraceError
from meterbench.verify.helmet_plot import impact_svg, svg_data_uri
from meterbench.verify.results import InstrumentResult, PointResult

__all__ = [
    "OFFSET_WINDOW_S",
    "evaluate_helmet_session",
    "helmet_decision",
    "helmet_figures",
    "helmet_report_keys",
    "helmet_results",
    "inconclusive_helmets",
    "model_verdicts",
    "programme_gaps",
    "rig_checks",
    "drop_features",
    "session_profile",
    "verify_helmet_session",
]

OFFSET_WINDOW_S = 0.010
"""Leading stretch of a trace (s) whose per-axis median is the accelerometer's zero offset."""

_HELMET_IDENTITY = ("model", "size", "lot", "serial")


def _table_overrides(session) -> dict[str, Any] | None:
    """session.json ``helmet_table``: overrides of helmet.json (its nesting; overridden values are CFG)."""
    return session.manifest.get("helmet_table")


def session_profile(session) -> calibration.HelmetProfile:
    """The standard profile session.json names, with its ``helmet_table`` overrides; SessionError
    naming the field when the profile is unknown or an override does not fit."""
    try:
        return helmet_profile(session.manifest["profile"], _table_overrides(session))
    except ValueError as exc:
        raise SessionError(f"session.json: profile: {exc}") from None


def drop_features(session, entry: dict[str, Any], profile) -> tuple[calibration.ImpactFeatures, list[str]]:
    """The features of one recorded drop (impact or reference drop) and why they cannot be used:
    its trace, each axis's pre-impact offset (median of the first 10 ms) removed, analysed at the
    profile's CFC; clipping, a dead channel or a failed J211 pre-condition are the problems.
    TraceError when the (intact) trace file is not a readable trace."""
    trace = session.trace(entry)
    rest = max(1, round(OFFSET_WINDOW_S * trace.fs_hz))
    accel = trace.accel_g - np.median(trace.accel_g[:rest], axis=0)
    features = analyse_impact(accel, trace.fs_hz, cfc=int(profile.cfc.value))
    problems = []
    if features.clipped:
        problems.append("trace clipped (a channel flat at its extreme)")
    if features.dead_channels:
        problems.append(f"dead channel(s) {', '.join(map(str, features.dead_channels))}")
    if not features.preconditions_ok:
        problems.append(str(features.precondition_problem))
    return features, problems


def _dwell_bounds_ms(features, profile, u_pct: float) -> dict[str, tuple[float, float]]:
    """(low, high) of each limited dwell under the peak's guard band U: the time above L/(1-U) and
    above L/(1+U) (ms), as the decision rule asks (calibration._helmet), so a dwell within the
    calibration's reach of its limit is inconclusive rather than decided."""
    u = u_pct / 100.0
    bounds = {}
    for level in profile.dwell_limits_ms.value:
        low, high = (dwell_time_s(features.filtered_g, features.fs_hz, float(level) / (1 + s)) for s in (-u, u))
        bounds[level] = (low * 1e3, high * 1e3)
    return bounds


def _utc_day(entry: dict[str, Any], session) -> str:
    """The UTC date (YYYY-MM-DD) of a drop: its ``day``, else the date of its ``time_utc``, else the session's start."""
    if entry.get("day"):
        return str(entry["day"])
    when = str(entry.get("time_utc") or session.manifest["start_time_utc"])
    return dt.datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(dt.UTC).date().isoformat()


def _series_check(session, profile, day: str, when: str) -> dict[str, Any]:
    """One reference series (``when`` "before"/"after" the impacts of ``day``) and its 16 CFR 1203.17(b)(1) check."""
    series = [d for d in session.reference_drops if d["when"] == when and _utc_day(d, session) == day]
    if not series:
        return {
            "ok": False,
            "reason": f"rig check missing: no reference drops {when} the impacts of {day}",
            "drops": [],
        }
    drops, unusable = [], []
    table = load_helmet_table(_table_overrides(session))["reference_drop"]
    v_nominal, v_tol_pct = float(table["velocity_m_s"]["value"]), float(table["velocity_tolerance_pct"]["value"])
    for entry in series:
        velocity = entry.get("velocity_m_s")
        if velocity is not None and abs(float(velocity) - v_nominal) > v_nominal * v_tol_pct / 100:
            unusable.append(
                f"{entry['name']}: velocity {float(velocity):.3f} m/s not {v_nominal:g} m/s +- {v_tol_pct:g} %"
            )
        try:
            features, problems = drop_features(session, entry, profile)
        except TraceError as exc:
            features, problems = None, [f"trace unreadable: {exc}"]
        drops.append({"name": entry["name"], "peak_g": None if features is None else features.peak_g})
        if problems:
            unusable.append(f"{entry['name']}: {'; '.join(problems)}")
    if unusable:
        reason = f"{when}: rig check failed: reference drop(s) unusable: " + " | ".join(unusable)
        return {"ok": False, "reason": reason, "drops": drops}
    ok, reason = check_reference_drops([d["peak_g"] for d in drops], _table_overrides(session))
    return {"ok": ok, "reason": f"{when}: {reason}", "drops": drops}


def rig_checks(session, profile) -> dict[str, dict[str, Any]]:
    """The rig check of each day with impacts (UTC date -> {day, before, after, certifiable, reason}):
    a reference series before and after the day's impacts, each passing `check_reference_drops`.
    A failed or missing series makes the day's impacts not certifiable."""
    days = sorted({_utc_day(i, session) for i in session.impacts})
    checks = {}
    for day in days:
        before, after = (_series_check(session, profile, day, when) for when in ("before", "after"))
        failed = [s["reason"] for s in (before, after) if not s["ok"]]
        checks[day] = {
            "day": day,
            "before": before,
            "after": after,
            "certifiable": not failed,
            "reason": "; ".join(failed) if failed else f"rig checks before and after the impacts of {day} passed",
        }
    return checks


def _mark_certifiable(point: PointResult, check: dict[str, Any]) -> PointResult:
    """The point with details.certifiable (and, when not, the rig check's reason in its reason and details)."""
    details = dict(point.details or {}, certifiable=check["certifiable"], test_day=check["day"])
    if check["certifiable"]:
        return dataclasses.replace(point, details=details)
    details["rig_check"] = check["reason"]
    reason = f"{point.reason} [not certifiable: {check['reason']}]"
    return dataclasses.replace(point, decision=dataclasses.replace(point.decision, reason=reason), details=details)


def _impact_result(session, impact: dict[str, Any], profile, u_pct: float) -> tuple[PointResult, Any]:
    """One impact's PointResult (details: peak_g, hic, dwell_ms, margins, site, velocity) and its
    ImpactFeatures (None when the trace could not be read)."""
    name = impact["name"]
    details: dict[str, Any] = {
        "site": impact.get("site"),
        "anvil": impact["anvil"],
        "velocity_m_s": impact["velocity_m_s"],
        "conditioning": impact.get("conditioning"),
        "out_of_chamber_s": impact.get("out_of_chamber_s"),
        "trace": impact["trace"],
    }
    void = conditioning_void_reason(impact.get("conditioning"), impact.get("out_of_chamber_s"), profile)
    if void is not None:
        details["void"] = void
    try:
        features, problems = drop_features(session, impact, profile)
    except TraceError as exc:
        return PointResult.inconclusive(name, f"trace unreadable: {exc}", details=details), None
    details.update(
        {
            "peak_g": features.peak_g,
            "hic": features.hic,
            "hic15": features.hic15,
            "hic36": features.hic36,
            "dwell_ms": dict(features.dwell_ms),
            "t_peak_ms": features.t_peak_ms,
            "peak_u_rel_pct": u_pct,
        }
    )
    if problems and void is not None:
        problems.insert(0, void)
    if problems:
        return PointResult.inconclusive(name, "; ".join(problems), details=details), features
    try:
        decision, checks = decide_impact(
            features.peak_g,
            features.dwell_ms,
            features.hic,
            profile,
            velocity_m_s=float(impact["velocity_m_s"]),
            anvil=impact["anvil"],
            peak_u_rel_pct=u_pct,
            dwell_ms_bounds=_dwell_bounds_ms(features, profile, u_pct),
        )
    except ValueError as exc:
        return PointResult.inconclusive(name, f"impact {name!r}: {exc}", details=details), features
    details["margins"] = {c.criterion: {"value": c.value, "limit": c.limit, "margin": c.margin} for c in checks}
    if void is not None:  # a void impact gives no verdict, whatever its trace says (a fail included)
        return PointResult.inconclusive(
            name, f"{void} (measured: {decision.verdict}; {decision.reason})", details=details
        ), features
    return PointResult(name, decision, details=details), features


def _impact_point(session, impact: dict[str, Any], profile, u_pct: float) -> PointResult:
    """One impact's PointResult, its ``figure`` the SVG trace plot for report.html (helmet_plot)."""
    point, features = _impact_result(session, impact, profile, u_pct)
    if features is None:
        return point
    svg = impact_svg(
        features.filtered_g,
        features.fs_hz,
        title=f"{impact['helmet']} {point.name}: {point.verdict}",
        peak_limit_g=float(profile.peak_max_g.value),
        dwell_limits_ms=profile.dwell_limits_ms.value,
        hic_window_s=features.hic_window_s,
        hic_value=features.hic,
    )
    return dataclasses.replace(point, figure=svg)


def helmet_figures(helmets: list[InstrumentResult]) -> dict[str, dict[str, str]]:
    """Per helmet id: {caption: SVG data URI} of each impact's trace plot (report.html)."""
    figures: dict[str, dict[str, str]] = {}
    for helmet in helmets:
        for point in helmet.points:
            if isinstance(point.figure, str):
                details = point.details or {}
                caption = f"{helmet.id} {point.name}: {point.verdict}, peak {details.get('peak_g', math.nan):.1f} g"
                figures.setdefault(helmet.id, {})[caption] = svg_data_uri(point.figure)
    return figures


def _identity(helmet: dict[str, Any], profile) -> dict[str, Any]:
    identity = {k: helmet.get(k) for k in _HELMET_IDENTITY}
    identity["profile"] = profile.name
    return identity


def evaluate_helmet_session(session) -> list[InstrumentResult]:
    """One InstrumentResult per helmet of a loaded session, its points the helmet's impacts in session order."""
    return helmet_results(session)[0]


def helmet_results(session) -> tuple[list[InstrumentResult], dict[str, Any]]:
    """(one InstrumentResult per helmet, what report.json adds: :func:`helmet_report_keys`)."""
    profile = session_profile(session)
    u_pct = float(
        session.manifest.get("peak_u_rel_pct", calibration.peak_uncertainty_rel_pct(_table_overrides(session)).value)
    )
    checks = rig_checks(session, profile)
    helmets = []
    for helmet in session.helmets:
        mine = [impact for impact in session.impacts if impact["helmet"] == helmet["id"]]
        points = [
            _mark_certifiable(_impact_point(session, impact, profile, u_pct), checks[_utc_day(impact, session)])
            for impact in mine
        ]
        days = dict.fromkeys(_utc_day(impact, session) for impact in mine)
        warnings = [
            f"impacts of {day} not certifiable: {checks[day]['reason']}"
            for day in days
            if not checks[day]["certifiable"]
        ]
        identity = _identity(helmet, profile)
        helmets.append(
            InstrumentResult.from_points(helmet["id"], "helmet", points, identity=identity, warnings=warnings)
        )
    return helmets, helmet_report_keys(session, helmets, checks)


def inconclusive_helmets(session, reason: str) -> list[InstrumentResult]:
    """Every helmet with every impact inconclusive for ``reason`` (session.json changed since it was closed)."""
    profile = session_profile(session)
    return [
        InstrumentResult.inconclusive(
            helmet["id"],
            "helmet",
            [i["name"] for i in session.impacts if i["helmet"] == helmet["id"]],
            reason,
            identity=_identity(helmet, profile),
        )
        for helmet in session.helmets
    ]


def helmet_decision(helmets: list[InstrumentResult]) -> Decision:
    """The session's verdict: the helmets' combined as the impacts of one helmet are."""
    return calibration.decide_instrument({h.id: h.decision for h in helmets})


def _profile_notes(profile_name: str, overrides: dict[str, Any] | None = None) -> list[str]:
    """The [MEM]/[CFG] lines of helmet.json this session's verdicts rest on (its profile's, and the shared ones)."""
    mine = f"helmet.profiles.{profile_name}."
    return [n for n in helmet_provenance_notes(overrides) if "helmet.profiles." not in n or mine in n]


def programme_gaps(helmet: InstrumentResult, programme: tuple[int, int] | None) -> str | None:
    """Why a helmet's impacts fall short of the profile's test programme (``programme`` = (sites,
    impacts per site), e.g. FMVSS 218 S7.1: 4 x 2), or None when complete or the profile sets none."""
    if programme is None:
        return None
    sites, per_site = programme
    by_site: dict[str, int] = {}
    for point in helmet.points:
        site = str((point.details or {}).get("site"))
        by_site[site] = by_site.get(site, 0) + 1
    full = sum(count >= per_site for count in by_site.values())
    if full >= sites:
        return None
    return (
        f"{helmet.id}: programme incomplete: {len(helmet.points)} impacts at {len(by_site)} site(s), "
        f"{full} with {per_site}; the profile asks {sites} sites x {per_site} impacts"
    )


def _programme(session) -> tuple[int, int] | None:
    """(sites, impacts per site) of the session's profile in helmet.json, None when it sets none."""
    entry = load_helmet_table(_table_overrides(session))["profiles"][session.manifest["profile"]]
    if "sites" not in entry or "impacts_per_site" not in entry:
        return None
    return int(entry["sites"]["value"]), int(entry["impacts_per_site"]["value"])


def model_verdicts(helmets: list[InstrumentResult], programme: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """One verdict per helmet model: its helmets' combined as a helmet's impacts are (any fail ->
    fail, else any inconclusive -> inconclusive), so a void or undecided impact never makes a pass;
    a model that would pass is inconclusive while a helmet's impacts fall short of the profile's
    programme (:func:`programme_gaps`). Each with the helmets, the count of impacts by verdict
    (void counted apart, also inconclusive) and the programme gaps."""
    by_model: dict[str, list[InstrumentResult]] = {}
    for helmet in helmets:
        by_model.setdefault(str(helmet.identity.get("model")), []).append(helmet)
    models = []
    for model, members in by_model.items():
        decision = calibration.decide_instrument({h.id: h.decision for h in members})
        points = [p for h in members for p in h.points]
        counts = {v: sum(p.verdict == v for p in points) for v in ("pass", "fail", "inconclusive")}
        counts["void"] = sum(bool((p.details or {}).get("void")) for p in points)
        gaps = [gap for gap in (programme_gaps(h, programme) for h in members) if gap]
        verdict, reason = decision.verdict, decision.reason
        if verdict == "pass" and gaps:
            verdict, reason = "inconclusive", "every impact passes, but " + "; ".join(gaps)
        models.append(
            {
                "model": model,
                "verdict": verdict,
                "reason": reason,
                "helmets": [h.id for h in members],
                "impacts": counts,
                "programme_gaps": gaps,
            }
        )
    return models


def helmet_report_keys(
    session, helmets: list[InstrumentResult], checks: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """What report.json adds or sets for a helmet-impact session: the guard-band rule, the
    profile, its values with their provenance, a verdict per helmet model and its [MEM]/[CFG] lines (for
    ``warnings``)."""
    profile = session_profile(session)
    checks = list((rig_checks(session, profile) if checks is None else checks).values())
    failed = [
        f"rig check {c['day']}: {c['reason']}: that day's impacts are not certifiable"
        for c in checks
        if not c["certifiable"]
    ]
    return {
        "decision_rule": "guard-band",
        "rig_checks": checks,
        "rig_check_limits": {
            key: load_helmet_table(_table_overrides(session))["reference_drop"][key]["value"]
            for key in ("peak_window_g", "max_spread_g")
        },
        "certifiable": not failed,
        "profile": profile.name,
        "profile_values": profile.provenance(),
        "helmet_models": model_verdicts(helmets, _programme(session)),
        "profile_warnings": failed + _profile_notes(profile.name, _table_overrides(session)),
    }


def verify_helmet_session(folder: Path) -> dict[str, Any]:
    """report.json of the helmet-impact session in ``folder`` (`meterbench run` without writing it)."""
    from meterbench.session import load_session
    from meterbench.verify.run import verify_session

    with load_session(Path(folder)) as session:
        if session.bench_kind != "helmet-impact":
            raise SessionError(f"{folder}: bench_kind: expected 'helmet-impact', got {session.bench_kind!r}")
        return verify_session(session)[0]
