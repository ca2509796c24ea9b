"""Certificate records: their fields from a report and the lab, the traceability and report checks,
sealing (verification code + Ed25519 signature) and checking a record. Pure: no file I/O.

A record (the ``certificate-<n>.json`` file) is::

    {"format": "meterbench-certificate-record", "version": 1,
     "certificate": {...what the PDF and HTML show...}, "report_sha256": hex,
     "key_fingerprint": hex32, "verification_code": "XXXXX-XXXXX-C",
     "signature": base64(Ed25519 over the canonical JSON of all the fields above),
     "documents": {"certificate-<n>.pdf": sha256, "certificate-<n>.html": sha256},
     "documents_signature": base64(Ed25519 over the canonical JSON of
                                   {"documents", "record_signature", "verification_code"})}

The verification code is derived from the SHA-256 of the canonical JSON of the fields before
it (so it is bound to the record's contents); the first signature covers the code too.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from meterbench.calibration import decide, decide_instrument, load_table

from ._canonical import canonical_json, sha256_hex
from ._code import code_from_digest, parse_code
from ._helmet import HELMET_BENCH_KIND, helmet_certificate_fields, helmet_decision_statement, helmet_report_problems
from ._lab import Bench, Lab, ReferenceStandard, Technician

__all__ = [
    "RECORD_FORMAT",
    "certificate_fields",
    "check_record",
    "decision_rule_statement",
    "lab_traceability",
    "mark_points_inconclusive",
    "mark_untraceable_points",
    "report_problems",
    "report_test_date",
    "seal_documents",
    "seal_record",
    "summary_line",
    "traceability_problems",
]

RECORD_FORMAT = "meterbench-certificate-record"
RECORD_VERSION = 1
_SIGNED_KEYS = ("format", "version", "certificate", "report_sha256", "key_fingerprint", "verification_code")
_IDENTITY_KEYS = (
    "serial",
    "type",
    "dn",
    "q3_m3h",
    "r",
    "q2_q1",
    "accuracy_class",
    "temperature_class",
    "nominal_volume_l",
    "material",
    "manufacturer",
)
_VERDICTS = ("pass", "fail", "inconclusive")
_E_TOLERANCE_PCT = 1e-4  # report.json rounds volumes to 6 decimals: E recomputed from them agrees to well within this


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def report_test_date(report: Mapping[str, Any]) -> dt.date:
    """The UTC date of the test (report start_time_utc); ValueError if absent or not ISO 8601."""
    text = report.get("start_time_utc")
    if not isinstance(text, str):
        raise ValueError("start_time_utc: missing (expected the test's UTC start time)")
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).date()
    except ValueError:
        raise ValueError(f"start_time_utc: expected an ISO 8601 time, got {text!r}") from None


def report_problems(report: Any, label: str = "report.json") -> list[str]:
    """Why a report.json cannot be certified: its shape, or verdicts that do not follow from its numbers.

    A pass or fail must be what the stated decision rule gives for the point's E, MPE and U;
    E must be (indicated - reference) / reference x 100 %; each instrument's verdict must combine
    its points', the session's its instruments'. A report edited by hand fails one of these."""
    if not isinstance(report, dict):
        return [f"{label}: expected a JSON object"]
    if report.get("format") != "meterbench-report" or report.get("report_version") != 1:
        return [f"{label}: not a meterbench report (expected format 'meterbench-report', report_version 1)"]
    problems = []
    try:
        report_test_date(report)
    except ValueError as exc:
        problems.append(f"{label}: {exc}")
    problems += _recorded_identity_problems(report, label)
    problems += _rig_check_problems(report, label)
    rule = report.get("decision_rule", "simple")
    instruments = report.get("instruments")
    if not isinstance(instruments, list) or not instruments:
        return [*problems, f"{label}: instruments: expected at least one instrument"]
    helmet = report.get("bench_kind") == HELMET_BENCH_KIND
    if helmet:  # impacts: peak, dwell, HIC and velocity against the profile, not E / MPE / U
        problems += helmet_report_problems(report, label)
    for i, instrument in enumerate(instruments):
        where = f"{label}: instruments[{i}]"
        if not isinstance(instrument, dict) or not isinstance(instrument.get("points"), list):
            problems.append(f"{where}: expected an object with points")
            continue
        verdicts = {}
        for j, point in enumerate(instrument["points"]):
            if not helmet:
                problems += _point_problems(point, f"{where}.points[{j}]", rule)
            if isinstance(point, dict):
                verdicts[str(point.get("name", j))] = point.get("verdict")
        if not all(v in _VERDICTS for v in verdicts.values()):
            continue
        expected = decide_instrument(verdicts).verdict
        if instrument.get("verdict") != expected:
            problems.append(
                f"{where}.verdict: {instrument.get('verdict')!r} does not combine its points' verdicts "
                f"(expected {expected!r}): the report was changed"
            )
    if not problems:
        expected = decide_instrument([inst["verdict"] for inst in instruments]).verdict
        if report.get("verdict") != expected:
            problems.append(
                f"{label}: verdict: {report.get('verdict')!r} does not combine the instruments' "
                f"(expected {expected!r}): the report was changed"
            )
    return problems


def _rig_check_problems(report: Mapping[str, Any], label: str) -> list[str]:
    """A helmet-impact run is certified only for days whose rig checks (reference drops before and
    after the impacts, docs/helmets.md) passed: a failed or missing check, a report without its
    rig_checks, or an impact marked not certifiable refuses the certificate."""
    if report.get("bench_kind") != "helmet-impact":
        return []
    checks = report.get("rig_checks")
    if not isinstance(checks, list) or not checks:
        return [f"{label}: rig_checks: missing (a helmet-impact run records its rig checks): not certifiable"]
    problems = [
        f"{label}: rig check {c.get('day')}: {c.get('reason')}: that day's impacts are not certifiable"
        for c in checks
        if not (isinstance(c, dict) and c.get("certifiable") is True)
    ]
    marked = [
        str(point.get("name"))
        for instrument in report.get("instruments") or []
        if isinstance(instrument, dict)
        for point in instrument.get("points") or []
        if isinstance(point, dict) and (point.get("details") or {}).get("certifiable") is not True
    ]
    if marked and not problems:
        problems.append(f"{label}: impacts {', '.join(marked[:5])} are marked not certifiable (rig check)")
    return problems


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _recorded_identity_problems(report: Mapping[str, Any], label: str) -> list[str]:
    """The shape of the keys a run records for certify (all optional: older reports lack them)."""
    problems = []
    for key in ("git_revision", "bench_id", "technician_id"):
        if key in report and report[key] is not None and not (isinstance(report[key], str) and report[key]):
            problems.append(f"{label}: {key}: expected a non-empty string or null, got {report[key]!r}")
    ids = report.get("reference_standard_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        problems.append(f"{label}: reference_standard_ids: expected a list of ids, got {ids!r}")
    tables = report.get("tables", {})
    if not isinstance(tables, dict) or not all(isinstance(k, str) and _is_sha256(v) for k, v in tables.items()):
        problems.append(f"{label}: tables: expected {{table name: SHA-256 hex}}, got {tables!r}")
    if "test_date" in report:
        try:
            recorded = dt.date.fromisoformat(report["test_date"])
        except (TypeError, ValueError):
            recorded = None
        try:
            start = report_test_date(report)
        except ValueError:
            start = recorded  # reported above
        if recorded is None or recorded != start:
            problems.append(
                f"{label}: test_date: {report['test_date']!r} is not the UTC date of start_time_utc "
                "(the report was changed)"
            )
    return problems


def _point_problems(point: Any, where: str, rule: str) -> list[str]:
    if not isinstance(point, dict):
        return [f"{where}: expected an object"]
    verdict = point.get("verdict")
    if verdict not in _VERDICTS:
        return [f"{where}.verdict: expected one of {', '.join(_VERDICTS)}, got {verdict!r}"]
    if verdict == "inconclusive":
        return []
    numbers = {k: point.get(k) for k in ("error_pct", "mpe_pct", "uncertainty_pct")}
    missing = [k for k, v in numbers.items() if not _finite(v)]
    if missing:
        return [f"{where}: a {verdict} without a finite {', '.join(missing)}"]
    try:
        expected = decide(numbers["error_pct"], numbers["mpe_pct"], numbers["uncertainty_pct"], rule=rule).verdict
    except ValueError as exc:
        return [f"{where}: {exc}"]
    problems = []
    if expected != verdict:
        problems.append(
            f"{where}.verdict: {verdict!r} does not follow from E, MPE and U under the {rule} rule "
            f"(expected {expected!r}): the report was changed"
        )
    ref, ind = point.get("reference_volume"), point.get("indicated_volume")
    if _finite(ref) and _finite(ind) and ref > 0:
        recomputed = (ind - ref) / ref * 100.0
        if abs(recomputed - numbers["error_pct"]) > _E_TOLERANCE_PCT + 1e-6 * abs(recomputed):
            problems.append(
                f"{where}.error_pct: {numbers['error_pct']} is not (indicated - reference) / reference "
                f"= {recomputed:.6f} %: the report was changed"
            )
    return problems


def _reference_u_pct(point: Mapping[str, Any]) -> float | None:
    """The standard uncertainty (%) the run gave the reference standard at a point (budget 'reference';
    for a helmet impact half its U of peak g, k = 2, which comes from the accelerometer's certificate)."""
    details = point.get("details") or {}
    if _finite(details.get("peak_u_rel_pct")):  # a helmet impact: U of peak g (k = 2) is the accelerometer's
        return float(details["peak_u_rel_pct"]) / 2.0
    budget = details.get("uncertainty_budget") or {}
    for component in budget.get("components") or []:
        if isinstance(component, dict) and component.get("name") == "reference" and _finite(component.get("u_pct")):
            return float(component["u_pct"])
    return None


def traceability_problems(report: Mapping[str, Any], standards: Sequence[ReferenceStandard]) -> list[str]:
    """Why the run is not traceable through ``standards``: one past its calibration due date on the
    test date, or a run that gave the reference a smaller uncertainty than every standard's certificate."""
    when = report_test_date(report)
    problems = [
        f"reference standard {s.id} (serial {s.serial}, calibration certificate {s.calibration_certificate}) "
        f"was past its calibration due date {s.due_date.isoformat()} on the test date {when.isoformat()}"
        for s in standards
        if s.due_date < when
    ]
    problems += [
        f"instrument {instrument_id} point {name}: {reason}"
        for (instrument_id, name), reason in _understated_points(report, standards).items()
    ]
    return problems


def _understated_points(
    report: Mapping[str, Any], standards: Sequence[ReferenceStandard]
) -> dict[tuple[Any, Any], str]:
    """(instrument id, point name) -> why: points whose budget gave the reference a standard uncertainty
    below every standard's U / k (the run's U is understated, so its verdict is not supported)."""
    if not standards:
        return {}
    least = min(s.standard_uncertainty_pct for s in standards)
    found = {}
    for instrument in report.get("instruments") or []:
        for point in instrument.get("points") or []:
            used = _reference_u_pct(point)
            if used is not None and used < least * (1 - 1e-9):
                found[(instrument.get("id"), point.get("name"))] = (
                    f"the run took the reference's standard uncertainty as {used:.4g} %, below the calibration "
                    f"certificates' {least:.4g} % (U / k): its U is understated"
                )
    return found


def mark_points_inconclusive(report: Mapping[str, Any], reason: str | Mapping[tuple[Any, Any], str]) -> dict[str, Any]:
    """A copy of ``report`` with points inconclusive: every point for a ``reason`` text, or those a
    ``{(instrument id, point name): reason}`` map names; instrument and session verdicts combined again
    (``calibration.decide_instrument``), so the copy is a consistent report."""
    reasons = (lambda i, p: reason) if isinstance(reason, str) else (lambda i, p: reason.get((i, p)))
    instruments = []
    for instrument in report.get("instruments") or []:
        points = [
            {**p, "verdict": "inconclusive", "reason": why} if (why := reasons(instrument.get("id"), p["name"])) else p
            for p in instrument.get("points") or []
        ]
        verdict = decide_instrument({p["name"]: p["verdict"] for p in points}).verdict
        instruments.append({**instrument, "points": points, "verdict": verdict})
    return {
        **report,
        "instruments": instruments,
        "verdict": decide_instrument([i["verdict"] for i in instruments]).verdict,
    }


def _expired_reason(standards: Sequence[ReferenceStandard], when: dt.date) -> str:
    return "; ".join(
        f"reference standard {s.id} (serial {s.serial}, calibration certificate {s.calibration_certificate}) "
        f"past its calibration due date {s.due_date.isoformat()} on the test date {when.isoformat()}"
        for s in standards
    )


def mark_untraceable_points(report: Mapping[str, Any], standards: Sequence[ReferenceStandard]) -> dict[str, Any]:
    """A copy of ``report`` in which every point is inconclusive when a standard was past its due date.

    The reason names the standard, its certificate and due date; the instrument and session verdicts
    are combined again. A standard due on the test day itself is still valid that day."""
    when = report_test_date(report)
    expired = [s for s in standards if s.due_date < when]
    return mark_points_inconclusive(report, _expired_reason(expired, when)) if expired else dict(report)


def lab_traceability(report: Mapping[str, Any], lab: Lab, lab_sha256: str) -> dict[str, Any]:
    """``report`` checked against the lab file (`meterbench run --lab`): a copy with key ``lab_traceability``.

    The reference standards are those the session names (``reference_standard_ids``), else its
    bench's in the lab file. One unknown to the lab file, or past its due date on the test date,
    makes every point inconclusive with that reason (a lab must not certify with it); else a point
    whose budget took the reference's uncertainty below the standards' U / k (understated) is
    inconclusive with that reason. When neither
    names a standard, nothing can be checked: the verdicts stand, with a warning saying so."""
    named = list(report.get("reference_standard_ids") or [])
    bench = lab.benches.get(report.get("bench_id"))  # type: ignore[arg-type]
    ids = named or (list(bench.reference_standards) if bench else [])
    source = "the session" if named else f"bench {bench.id} in {lab.path}" if bench else "nobody"
    unknown = [i for i in ids if i not in lab.reference_standards]
    standards = [lab.reference_standards[i] for i in ids if i in lab.reference_standards]
    when = report_test_date(report)
    expired = [s for s in standards if s.due_date < when]
    reasons = [
        f"reference standard {i} (named by {source}) is not in {lab.path} [[reference_standards]]: not traceable"
        for i in unknown
    ]
    if expired:
        reasons.append(_expired_reason(expired, when))
    understated = {} if reasons else _understated_points(report, standards)
    reasons += [f"instrument {i} point {name}: {why}" for (i, name), why in understated.items()]
    if understated:
        out = mark_points_inconclusive(report, understated)
    else:
        out = mark_points_inconclusive(report, "; ".join(reasons)) if reasons else dict(report)
    if not ids:
        out["warnings"] = [
            *(report.get("warnings") or []),
            f"{lab.path}: the session names no reference standard and its bench {report.get('bench_id')!r} is not "
            "in the lab file: traceability not checked",
        ]
    out["lab_traceability"] = {
        "lab": lab.name,
        "lab_file_sha256": lab_sha256,
        "reference_standards": {s.id: s.due_date.isoformat() for s in standards},
        "named_by": source,
        "problems": reasons,
    }
    return out


def decision_rule_statement(rule: str) -> str:
    """The decision rule in words (ISO/IEC 17025:2017 7.8.6.2), from calibration's decision table."""
    table = load_table("decision")
    entry = table["rules"].get(rule)
    if entry is None:
        return f"decision rule {rule!r} (not described in meterbench's decision table)"
    ratio = table["max_uncertainty_ratio"]["verification"]["value"]
    return (
        f"{entry['value']} ({entry['source']}). E is the error of indication, MPE the maximum permissible "
        f"error, U the expanded uncertainty of E (k = 2, about 95 % coverage). A point is inconclusive, "
        f"with the reason stated, when U exceeds {ratio:.3g} x MPE or the recorded evidence cannot be "
        f"trusted. An instrument fails if any point fails, passes only if every point passes, and is "
        f"inconclusive otherwise."
    )


def _conditions(details: Mapping[str, Any]) -> dict[str, Any]:
    """Test conditions of a point as recorded (water temperature in °C, pressure in bar; None = not recorded)."""
    temperature = next(
        (details[k] for k in ("water_temperature_c", "meter_temperature_c", "tank_temperature_c") if k in details),
        None,
    )
    pressure = next((details[k] for k in ("water_pressure_bar", "pressure_bar") if k in details), None)
    return {"water_temperature_c": temperature, "water_pressure_bar": pressure}


def certificate_fields(
    report: Mapping[str, Any],
    instrument: Mapping[str, Any],
    lab: Lab,
    *,
    number: int,
    bench: Bench,
    technician: Technician,
    standards: Iterable[ReferenceStandard],
    issued_utc: str,
    software: Mapping[str, Any],
    report_file: str,
    extra_identity: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything one instrument's certificate states (the ``certificate`` object of its record)."""
    identity = {k: instrument[k] for k in _IDENTITY_KEYS if instrument.get(k) is not None}
    for key, value in (extra_identity or {}).items():
        if key in _IDENTITY_KEYS and value is not None:
            identity.setdefault(key, value)
    points = []
    for point in instrument.get("points") or []:
        details = point.get("details") or {}
        points.append(
            {
                "name": point.get("name"),
                "flow_rate_m3h": point.get("flow_rate"),
                "reference_volume_l": point.get("reference_volume"),
                "indicated_volume_l": point.get("indicated_volume"),
                "error_pct": point.get("error_pct"),
                "mpe_pct": point.get("mpe_pct"),
                "uncertainty_pct": point.get("uncertainty_pct"),
                "verdict": point.get("verdict"),
                "reason": point.get("reason", ""),
                **_conditions(details),
            }
        )
    rule = report.get("decision_rule", "simple")
    statement = decision_rule_statement(rule)
    helmet: dict[str, Any] = {}
    if report.get("bench_kind") == HELMET_BENCH_KIND:  # impacts: peak, dwell, HIC, velocity; limits; rig checks
        helmet = helmet_certificate_fields(report, instrument)
        identity, points, statement = helmet["identity"], helmet["points"], helmet_decision_statement()
        helmet = {"helmet": helmet["helmet"]}
    warnings = [str(w) for w in report.get("warnings") or []] + [str(w) for w in instrument.get("warnings") or []]
    return {
        "number": number,
        "lab": lab.identity(),
        "issued_utc": issued_utc,
        "place": lab.place,
        "test_start_utc": report.get("start_time_utc"),
        "bench": {"id": bench.id, "name": bench.name, "location": bench.location},
        "technician": {"id": technician.id, "name": technician.name},
        "reference_standards": [s.as_dict() for s in standards],
        "instrument": {"id": instrument.get("id"), "kind": instrument.get("kind"), **identity},
        "points": points,
        "verdict": instrument.get("verdict"),
        "decision_rule": {"name": rule, "statement": statement},
        "software": dict(software),
        "session": {
            "id": report.get("session"),
            "simulated": bool(report.get("simulated")),
            "bench_kind": report.get("bench_kind"),
            "report_file": report_file,
            "inputs": dict(report.get("inputs") or {}),
        },
        "warnings": warnings,
        **helmet,
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def seal_record(
    certificate: Mapping[str, Any], report_sha256: str, fingerprint: str, sign: Callable[[bytes], bytes]
) -> dict[str, Any]:
    """The signed record of ``certificate``: with its verification code and signature (not yet its documents)."""
    body: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "certificate": dict(certificate),
        "report_sha256": report_sha256,
        "key_fingerprint": fingerprint,
    }
    body["verification_code"] = code_from_digest(sha256_hex(canonical_json(body)))
    return {**body, "signature": _b64(sign(canonical_json(body)))}


def _documents_message(record: Mapping[str, Any]) -> bytes:
    return canonical_json(
        {
            "documents": record.get("documents"),
            "record_signature": record.get("signature"),
            "verification_code": record.get("verification_code"),
        }
    )


def seal_documents(record: Mapping[str, Any], documents: Mapping[str, str], sign: Callable[[bytes], bytes]) -> dict:
    """``record`` with the SHA-256 of its PDF and HTML (file name -> hex) and their signature."""
    out = {**record, "documents": dict(documents)}
    out["documents_signature"] = _b64(sign(_documents_message(out)))
    return out


def check_record(record: Any, verify: Callable[[bytes, bytes], bool] | None, trusted_fingerprint: str | None) -> str:
    """Why a record is not valid ("" when it is): shape, code, key, signatures.

    ``verify(signature, message)`` checks with the trusted public key whose fingerprint is
    ``trusted_fingerprint``; without one, every record is "unknown key"."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return f"not a certificate record (expected format {RECORD_FORMAT!r})"
    if record.get("version") != RECORD_VERSION:
        return f"record version {record.get('version')!r} unknown (expected {RECORD_VERSION})"
    missing = [k for k in (*_SIGNED_KEYS, "signature") if k not in record]
    if missing:
        return f"record lacks {', '.join(missing)}"
    if not isinstance(record["certificate"], dict):
        return "record's certificate is not an object"
    try:
        code = parse_code(str(record["verification_code"]))
    except ValueError as exc:
        return f"verification code {record['verification_code']!r} is malformed: {exc}"
    body = {k: record[k] for k in _SIGNED_KEYS if k != "verification_code"}
    try:
        expected_code = code_from_digest(sha256_hex(canonical_json(body)))
    except (TypeError, ValueError) as exc:
        return f"record is not canonical JSON ({exc})"
    if code != expected_code or record["verification_code"] != expected_code:
        return "verification code does not match the record's contents (the record was changed after sealing)"
    fingerprint = record["key_fingerprint"]
    if verify is None or trusted_fingerprint is None:
        return f"unknown key {fingerprint} (give the lab's public key --public-key, or its lab file --lab)"
    if fingerprint != trusted_fingerprint:
        return f"signed by key {fingerprint}, not by the trusted key {trusted_fingerprint}"
    signature = _unb64(record["signature"])
    if signature is None or not verify(signature, canonical_json({k: record[k] for k in _SIGNED_KEYS})):
        return "signature mismatch (the record was changed after signing, or not signed by this key)"
    if "documents" in record or "documents_signature" in record:
        docs_signature = _unb64(record.get("documents_signature"))
        if (
            not isinstance(record.get("documents"), dict)
            or docs_signature is None
            or not verify(docs_signature, _documents_message(record))
        ):
            return "signature of the document digests mismatch (the PDF/HTML digests were changed)"
    return ""


def summary_line(record: Mapping[str, Any]) -> str:
    """'certificate N, instrument S/N X, verdict V, issued D by LAB' (+ SIMULATED) of a valid record."""
    cert = record["certificate"]
    instrument = cert.get("instrument") or {}
    serial = instrument.get("serial") or instrument.get("id")
    issued = str(cert.get("issued_utc", ""))[:10]
    simulated = " (SIMULATED session, not a real test)" if (cert.get("session") or {}).get("simulated") else ""
    return (
        f"certificate {cert.get('number')}, instrument S/N {serial}, verdict {cert.get('verdict')}, "
        f"issued {issued} by {(cert.get('lab') or {}).get('name')}{simulated}"
    )
