"""Verify a `bench_kind: "helmet-impact"` session: each impact's trace → features → verdict.

Per impact: `read_trace` the file under ``traces/``, subtract each axis's pre-impact offset (the
median of the first 10 ms), `analyse_impact` at the profile's CFC, then `decide_impact` under
the session's profile with the guard band U of peak (helmet.json ``peak_u_rel_pct`` [MEM], or
session.json ``peak_u_rel_pct``). A clipped trace, a dead channel, a failed J211 pre-condition,
an unreadable trace or a velocity outside the window make the impact inconclusive with the
reason. A helmet's verdict combines its impacts (`decide_instrument`).

session.json is read here directly: the session schema and reader know only the water-meter
and tank kinds (docs/helmets.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from meterbench import calibration
from meterbench.calibration import Decision, analyse_impact, decide_impact, helmet_profile, helmet_provenance_notes
from meterbench.errors import MeterbenchError, SessionError
from meterbench.session.integrity import hash_files
from meterbench.session.traces import read_trace
from meterbench.verify.results import InstrumentResult, PointResult

__all__ = [
    "OFFSET_WINDOW_S",
    "evaluate_helmet_session",
    "helmet_decision",
    "read_helmet_manifest",
    "verify_helmet_session",
]

OFFSET_WINDOW_S = 0.010
"""Leading stretch of a trace (s) whose per-axis median is the accelerometer's zero offset."""

_REQUIRED_IMPACT = ("name", "helmet", "anvil", "velocity_m_s", "trace", "fs_hz")


def read_helmet_manifest(folder: Path) -> dict[str, Any]:
    """session.json of a helmet-impact session, its helmets and impacts checked; SessionError naming the field."""
    path = Path(folder) / "session.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SessionError(f"{path}: expected a readable JSON session, got {exc}") from None
    if manifest.get("bench_kind") != "helmet-impact":
        raise SessionError(f"{path}: bench_kind: expected 'helmet-impact', got {manifest.get('bench_kind')!r}")
    for key in ("session_id", "start_time_utc", "profile", "helmets", "impacts"):
        if key not in manifest:
            raise SessionError(f"{path}: {key}: missing")
    ids = [h.get("id") for h in manifest["helmets"] if isinstance(h, dict)]
    if len(ids) != len(manifest["helmets"]) or len(set(ids)) != len(ids) or None in ids:
        raise SessionError(f"{path}: helmets: expected objects with unique ids")
    for i, impact in enumerate(manifest["impacts"]):
        missing = [k for k in _REQUIRED_IMPACT if not isinstance(impact, dict) or k not in impact]
        if missing:
            raise SessionError(f"{path}: impacts[{i}]: missing {', '.join(missing)}")
        if impact["helmet"] not in ids:
            raise SessionError(f"{path}: impacts[{i}].helmet: {impact['helmet']!r} is not in helmets")
    return manifest


def _impact_point(folder: Path, impact: dict[str, Any], profile, u_pct: float) -> PointResult:
    """One impact's PointResult (details: peak_g, hic, dwell_ms, margins, site, velocity)."""
    name = impact["name"]
    details: dict[str, Any] = {
        "site": impact.get("site"),
        "anvil": impact["anvil"],
        "velocity_m_s": impact["velocity_m_s"],
        "conditioning": impact.get("conditioning"),
        "trace": impact["trace"],
    }
    try:
        trace = read_trace(folder / impact["trace"], fs_hz=float(impact["fs_hz"]))
    except (MeterbenchError, OSError, ValueError) as exc:
        return PointResult.inconclusive(name, f"trace unreadable: {exc}", details=details)
    accel = trace.accel_g
    rest = max(1, round(OFFSET_WINDOW_S * trace.fs_hz))
    accel = accel - np.median(accel[:rest], axis=0)
    features = analyse_impact(accel, trace.fs_hz, cfc=int(profile.cfc.value))
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
    problems = []
    if features.clipped:
        problems.append("trace clipped (a channel flat at its extreme)")
    if features.dead_channels:
        problems.append(f"dead channel(s) {', '.join(map(str, features.dead_channels))}")
    if not features.preconditions_ok:
        problems.append(str(features.precondition_problem))
    if problems:
        return PointResult.inconclusive(name, "; ".join(problems), details=details)
    try:
        decision, checks = decide_impact(
            features.peak_g,
            features.dwell_ms,
            features.hic,
            profile,
            velocity_m_s=float(impact["velocity_m_s"]),
            anvil=impact["anvil"],
            peak_u_rel_pct=u_pct,
        )
    except ValueError as exc:
        return PointResult.inconclusive(name, f"impact {name!r}: {exc}", details=details)
    details["margins"] = {c.criterion: {"value": c.value, "limit": c.limit, "margin": c.margin} for c in checks}
    return PointResult(name, decision, details=details)


def evaluate_helmet_session(folder: Path) -> tuple[dict[str, Any], list[InstrumentResult]]:
    """(manifest, one InstrumentResult per helmet, its points the helmet's impacts in session order)."""
    folder = Path(folder)
    manifest = read_helmet_manifest(folder)
    try:
        profile = helmet_profile(manifest["profile"])
    except (KeyError, ValueError) as exc:
        raise SessionError(f"{folder / 'session.json'}: profile: {exc}") from None
    u_pct = float(manifest.get("peak_u_rel_pct", calibration.peak_uncertainty_rel_pct().value))
    if not math.isfinite(u_pct):
        raise SessionError(f"{folder / 'session.json'}: peak_u_rel_pct: expected a number, got {u_pct!r}")
    helmets = []
    for helmet in manifest["helmets"]:
        points = [
            _impact_point(folder, impact, profile, u_pct)
            for impact in manifest["impacts"]
            if impact["helmet"] == helmet["id"]
        ]
        identity = {k: helmet.get(k) for k in ("model", "size", "lot", "serial")}
        identity["profile"] = profile.name
        helmets.append(InstrumentResult.from_points(helmet["id"], "helmet", points, identity=identity))
    return manifest, helmets


def helmet_decision(helmets: list[InstrumentResult]) -> Decision:
    """The session's verdict: the helmets' combined as the impacts of one helmet are."""
    return calibration.decide_instrument({h.id: h.decision for h in helmets})


def _profile_notes(profile_name: str) -> list[str]:
    """The [MEM] lines of helmet.json this session's verdicts rest on (its profile's, and the shared ones)."""
    mine = f"helmet.profiles.{profile_name}."
    return [n for n in helmet_provenance_notes() if "helmet.profiles." not in n or mine in n]


def verify_helmet_session(folder: Path) -> dict[str, Any]:
    """report.json of a helmet-impact session (the envelope of the other kinds; instruments =
    helmets, points = impacts, the features and margins in each point's ``details``); the
    unconfirmed helmet.json values are listed in ``warnings`` as [MEM] lines."""
    from meterbench import __version__, source_revision

    folder = Path(folder)
    manifest, helmets = evaluate_helmet_session(folder)
    start = str(manifest["start_time_utc"])
    said = manifest.get("warnings")
    bench = [f"bench: {w}" for w in said if isinstance(w, str)] if isinstance(said, list) else []
    return {
        "session": manifest["session_id"],
        "verdict": helmet_decision(helmets).verdict,
        "instruments": [h.to_dict() for h in helmets],
        "format": "meterbench-report",
        "report_version": 1,
        "bench_kind": "helmet-impact",
        "simulated": bool(manifest.get("simulated", False)),
        "start_time_utc": start,
        "decision_rule": "guard-band",
        "software": f"meterbench {__version__}",
        "models": {},
        "inputs": hash_files(folder),
        "warnings": bench + _profile_notes(manifest["profile"]),
        "git_revision": source_revision(),
        "tables": calibration.table_sha256(),
        "bench_id": manifest.get("bench_id"),
        "technician_id": manifest.get("technician_id"),
        "reference_standard_ids": list(manifest.get("reference_standard_ids", [])),
        "test_date": start[:10],
    }
