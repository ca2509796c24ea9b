"""`meterbench verify`: is this certificate (PDF, HTML, JSON record) or report.json the one the lab signed?

The trusted key is the lab's public key given with ``--public-key``, or the one the lab's
register keeps for the fingerprint of its lab file (``--lab``). Without either every
certificate is "NOT valid: unknown key": a record signed by any key would otherwise pass.
Each result is one line: "valid: certificate N, ..." or "NOT valid: <reason>".
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterbench.errors import ConfigError
from meterbench.protocols import strict_json_loads
from meterbench.session import read_bounded

from ._canonical import record_file_text, sha256_hex
from ._certify import KEYS_DIR
from ._code import parse_code
from ._keys import PublicKey, load_public_key
from ._lab import Lab, load_lab
from ._record import RECORD_FORMAT, check_record, summary_line
from ._register import LabRegister, register_gaps

__all__ = ["Trust", "Verdict", "audit_verify", "check_record_bytes", "trusted_key", "verify_code", "verify_file"]

_MAX_FILE_BYTES = 256 * 1024 * 1024
_PDF_CODE = re.compile(rb"meterbench certificate ([0-9A-Z*~$=]{5}-[0-9A-Z]{5}-[0-9A-Z*~$=U])\)")
_HTML_CODE = re.compile(r"<meta name='meterbench-verification-code' content='([^']{1,40})'>")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``valid`` and the line to print."""

    valid: bool
    line: str


def _not_valid(reason: str) -> Verdict:
    return Verdict(False, f"NOT valid: {reason}")


@dataclass(frozen=True)
class Trust:
    """The keys a verifier trusts: the lab's current key, and its retired keys with the day each was retired
    (LAB.toml ``previous_keys``): a retired key's signature counts only on what was issued before that day."""

    current: PublicKey
    retired: dict[str, tuple[PublicKey, dt.date]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """The current key's fingerprint."""
        return self.current.fingerprint

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when any trusted key (current or retired) made ``signature`` of ``message`` (audit entries)."""
        return self.current.verify(signature, message) or any(
            k.verify(signature, message) for k, _ in self.retired.values()
        )


def _register_key(lab: Lab, fingerprint: str) -> PublicKey | None:
    """The register's copy of the lab's public key with ``fingerprint`` (keys/<fingerprint>.pub), if any."""
    path = lab.records / KEYS_DIR / f"{fingerprint}.pub"
    if not path.is_file():
        return None
    key = load_public_key(path)
    if key.fingerprint != fingerprint:
        raise ConfigError(f"{path}: holds key {key.fingerprint}, not {fingerprint} (register edited)")
    return key


def trusted_key(public_key: Path | None, lab: Lab | None) -> Trust | None:
    """The keys to trust: --public-key, else the register's copies of the lab file's key and retired keys."""
    if public_key is not None:
        key = load_public_key(public_key)
        if lab is not None and key.fingerprint != lab.key_fingerprint:
            raise ConfigError(
                f"{public_key}: fingerprint {key.fingerprint} is not the key_fingerprint {lab.key_fingerprint} "
                f"of {lab.path}"
            )
    elif lab is None:
        return None
    else:
        key = _register_key(lab, lab.key_fingerprint)
        if key is None:
            raise ConfigError(
                f"{lab.records / KEYS_DIR / (lab.key_fingerprint + '.pub')}: the register has no public key for "
                f"{lab.path}'s key_fingerprint (give --public-key lab.pub)"
            )
    retired = {}
    for fingerprint, day in (lab.previous_keys if lab is not None else {}).items():
        old = _register_key(lab, fingerprint)
        if old is not None:
            retired[fingerprint] = (old, day)
    return Trust(key, retired)


def _check(record: Any, trust: Trust | PublicKey | None) -> str:
    """check_record with the trusted key the record names (a retired one only for what it signed before)."""
    if trust is None:
        return check_record(record, None, None)
    retired = getattr(trust, "retired", {})
    fingerprint = record.get("key_fingerprint") if isinstance(record, dict) else None
    if isinstance(fingerprint, str) and fingerprint in retired:
        key, day = retired[fingerprint]
        reason = check_record(record, key.verify, key.fingerprint)
        issued = str((record.get("certificate") or {}).get("issued_utc", ""))[:10]
        if not reason and not issued < day.isoformat():
            reason = f"signed by key {fingerprint}, retired on {day.isoformat()} (issued {issued or 'on no date'})"
        return reason
    current = getattr(trust, "current", trust)
    return check_record(record, current.verify, current.fingerprint)


def check_record_bytes(raw: bytes, key: Trust | PublicKey | None) -> tuple[dict | None, str]:
    """(record, reason) of a record file's bytes, reason "" when valid: the record's checks, then its exact bytes."""
    try:
        record = strict_json_loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"record is not valid JSON ({exc})"
    reason = _check(record, key)
    if reason:
        return record, reason
    if raw != record_file_text(record).encode("utf-8"):
        return record, "record file was edited (its bytes are not those it was written with)"
    return record, ""


def _read(path: Path) -> bytes:
    return read_bounded(path, _MAX_FILE_BYTES, ConfigError, "a certificate record")


def _record_for_document(path: Path, code: str | None, lab: Lab | None) -> tuple[Path | None, str]:
    """The record of a PDF/HTML: the .json beside it, else the lab register's copy for its code."""
    beside = path.with_suffix(".json")
    if beside.is_file():
        return beside, ""
    if code and lab is not None:
        stored = LabRegister(lab.records).find_code(code)
        if stored is not None:
            return stored, ""
        return None, f"verification code {code} is not in the register of {lab.path}"
    return None, f"no record {beside.name} beside it (give --lab LAB.toml to look the code up in the lab's register)"


def _verify_document(path: Path, raw: bytes, code: str | None, key: PublicKey | None, lab: Lab | None) -> Verdict:
    record_path, why = _record_for_document(path, code, lab)
    if record_path is None:
        return _not_valid(f"{path.name}: {why}")
    record, reason = check_record_bytes(_read(record_path), key)
    if reason:
        return _not_valid(f"{record_path.name}: {reason}")
    assert record is not None
    digest = sha256_hex(raw)
    if digest not in (record.get("documents") or {}).values():
        return _not_valid(
            f"record and {path.suffix.lstrip('.').upper()} disagree: {path.name} is not the document signed in "
            f"{record_path.name} (changed after signing, or another certificate's)"
        )
    if code is not None and code != record["verification_code"]:
        return _not_valid(f"{path.name} states code {code}, its record {record['verification_code']}")
    return Verdict(True, "valid: " + summary_line(record))


def _verify_report(path: Path, raw: bytes, report: dict, key: PublicKey | None, lab: Lab | None) -> list[Verdict]:
    candidates = sorted(path.parent.glob("certificate-*.json"))
    if lab is not None and LabRegister(lab.records).records_dir.is_dir():
        candidates += sorted(LabRegister(lab.records).records_dir.glob("certificate-*.json"))
    session = report.get("session")
    digest = sha256_hex(raw)
    verdicts, seen = [], set()
    for candidate in candidates:
        record, reason = check_record_bytes(_read(candidate), key)
        if not isinstance(record, dict) or (record.get("certificate") or {}).get("session", {}).get("id") != session:
            continue
        number = record["certificate"].get("number")
        if number in seen:
            continue
        seen.add(number)
        if reason:
            verdicts.append(_not_valid(f"{candidate.name}: {reason}"))
        elif record["report_sha256"] != digest:
            verdicts.append(
                _not_valid(
                    f"report changed since signing: certificate {number} signed report SHA-256 "
                    f"{record['report_sha256'][:16]}..., {path.name} has {digest[:16]}..."
                )
            )
        else:
            verdicts.append(Verdict(True, "valid: " + summary_line(record)))
    if not verdicts:
        where = "beside it" + (f" or in the register of {lab.path}" if lab else " (give --lab to search the register)")
        return [_not_valid(f"no certificate record of session {session!r} found {where}")]
    return verdicts


def verify_file(path: Path, public_key: Path | None = None, lab_path: Path | None = None) -> list[Verdict]:
    """Verify a certificate PDF or HTML, its JSON record, or a report.json; one Verdict per certificate."""
    path = Path(path)
    lab = load_lab(lab_path)[0] if lab_path is not None else None
    key = trusted_key(public_key, lab)
    raw = _read(path)
    if raw.startswith(b"%PDF-"):
        found = _PDF_CODE.search(raw)
        return [_verify_document(path, raw, found.group(1).decode() if found else None, key, lab)]
    if raw.lstrip()[:15].lower().startswith(b"<!doctype html"):
        found = _HTML_CODE.search(raw.decode("utf-8", "replace"))
        return [_verify_document(path, raw, found.group(1) if found else None, key, lab)]
    try:
        data = strict_json_loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return [_not_valid(f"{path.name}: neither a certificate PDF/HTML nor JSON ({exc})")]
    if isinstance(data, dict) and data.get("format") == "meterbench-report":
        return _verify_report(path, raw, data, key, lab)
    if isinstance(data, dict) and data.get("format") == RECORD_FORMAT:
        _, reason = check_record_bytes(raw, key)
        return [_not_valid(f"{path.name}: {reason}") if reason else Verdict(True, "valid: " + summary_line(data))]
    return [_not_valid(f"{path.name}: not a certificate record or report.json (no known 'format')")]


def verify_code(code: str, lab_path: Path | None, public_key: Path | None = None) -> Verdict:
    """Look a typed verification code up in the lab's register and verify the stored record."""
    try:
        normalized = parse_code(code)
    except ValueError as exc:
        return _not_valid(f"code checksum wrong or malformed: {exc}")
    if lab_path is None:
        raise ConfigError("--code: give --lab LAB.toml (the lab's register holds its certificates)")
    lab = load_lab(lab_path)[0]
    key = trusted_key(public_key, lab)
    stored = LabRegister(lab.records).find_code(normalized)
    if stored is None:
        return _not_valid(f"verification code {normalized} was not issued by {lab.name} (not in its register)")
    record, reason = check_record_bytes(_read(stored), key)
    if reason:
        return _not_valid(f"{stored.name}: {reason}")
    assert record is not None
    if record["verification_code"] != normalized:
        return _not_valid(f"{stored.name} holds code {record['verification_code']}, not {normalized}")
    return Verdict(True, "valid: " + summary_line(record))


def audit_verify(log: Path, public_key: Path | None = None, lab_path: Path | None = None) -> tuple[list[str], bool]:
    """Check an audit log (``audit.jsonl`` of a register): (lines to print, intact).

    Any edit, deletion, insertion or reordering of lines is a problem; with a key (--public-key,
    or the lab file's via --lab) every signature is checked too; the register's stored records
    must all be in the log (a cut-off end). Numbers reserved but never issued are listed as gaps."""
    log = Path(log)
    if not log.is_file():
        raise ConfigError(f"{log}: not a file (expected the audit.jsonl of a lab's register)")
    lab = load_lab(lab_path)[0] if lab_path is not None else None
    key = trusted_key(public_key, lab)
    register = LabRegister(log.parent)
    register.audit_path = log
    problems = register.problems(key.verify if key else None)
    entries = register.read_entries()
    lines = [f"NOT intact: {p}" for p in problems]
    issued = sum(e.event == "certificate-issued" for e in entries)
    if not problems:
        checked = "hash chain and signatures" if key else "hash chain only (give --public-key or --lab for signatures)"
        lines.append(f"intact: {len(entries)} entries, {issued} certificates issued; checked {checked}")
    lines += [f"gap: {g}" for g in register_gaps(entries)]
    return lines, not problems
