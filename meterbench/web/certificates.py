"""The run's certificates on the live view: ``certificate`` events read from a folder `meterbench certify` wrote.

A certificate belongs to the session played back when its record names that session (``certificate.session.id``)
and hashes the very session.json (``certificate.session.inputs["session.json"]``, SHA-256) and its instrument is
one of the session's. Per instrument the highest-numbered such certificate is published (a re-issue supersedes).
Each record's verification code is checked against its contents (the seal of
:func:`meterbench.certificates.check_record`); its signature is not (the replay holds no public key): the
customer checks the code with the lab (`meterbench verify --code`). The QR code is drawn here, server side, by
segno (the [cert] extra) from the code itself, the payload the certificate's own QR holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from meterbench.errors import ConfigError

__all__ = ["QR_OPTIONS", "certificate_events", "qr_svg"]

QR_OPTIONS: dict[str, Any] = {"error": "m", "micro": False}
"""segno.make options: those of the certificate's QR (meterbench/certificates/_render.py), same payload, same symbol."""
QR_SVG_OPTIONS: dict[str, Any] = {"scale": 6, "dark": "#000", "light": "#fff", "title": "verification code"}
"""segno svg_inline options: 6 px per module, black on white (readable on the display's dark page)."""


def qr_svg(code: str) -> str:
    """The verification code as an inline ``<svg>`` QR code (segno; ConfigError without the [cert] extra)."""
    try:
        import segno
    except ImportError:
        raise ConfigError("--certificates: the QR code needs the [cert] extra (pip install -e '.[cert]')") from None
    return segno.make(code, **QR_OPTIONS).svg_inline(**QR_SVG_OPTIONS)


def _sealed_record(path: Path) -> dict[str, Any]:
    """The record in ``path`` (certificate-<n>.json), its code checked against its contents; ConfigError if not."""
    try:
        from meterbench.certificates import check_record
    except ImportError as exc:
        raise ConfigError(f"--certificates: needs the [cert] extra (pip install -e '.[cert]'): {exc}") from None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: expected a certificate record (JSON), could not read it: {exc}") from None
    reason = check_record(record, None, None)  # without a key: "" never, "unknown key ..." once the seal holds
    if not reason.startswith("unknown key"):
        raise ConfigError(f"{path}: not a valid certificate record: {reason}")
    return record


def certificate_events(folder: Path, session_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``certificate`` events of the session in ``session_dir`` from the records in ``folder``.

    One per instrument with a certificate (instrument order of session.json): ``instrument``, ``serial``,
    ``number``, ``verification_code``, ``verdict``, ``issued_utc``, ``qr_svg``. ConfigError (one line
    naming the folder or file) when ``folder`` is not a folder or a certificate-*.json in it is not a
    sealed record; records of other sessions are left out."""
    if not folder.is_dir():
        raise ConfigError(f"--certificates: expected a folder of certificates (meterbench certify --out), got {folder}")
    session_sha256 = hashlib.sha256((session_dir / "session.json").read_bytes()).hexdigest()
    order = [e["id"] for e in list(manifest.get("tanks", [])) + list(manifest.get("instruments", []))]
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("certificate-*.json")):
        record = _sealed_record(path)
        cert = record["certificate"]
        session = cert.get("session") or {}
        instrument = (cert.get("instrument") or {}).get("id")
        if (
            session.get("id") != manifest.get("session_id")
            or (session.get("inputs") or {}).get("session.json") != session_sha256
            or instrument not in order
        ):
            continue
        known = latest.get(instrument)
        if known is None or cert["number"] > known["certificate"]["number"]:
            latest[instrument] = record
    events = []
    for instrument in (i for i in order if i in latest):
        record = latest[instrument]
        cert = record["certificate"]
        events.append(
            {
                "type": "certificate",
                "instrument": instrument,
                "serial": cert["instrument"].get("serial"),
                "number": cert["number"],
                "verification_code": record["verification_code"],
                "verdict": cert.get("verdict"),
                "issued_utc": cert.get("issued_utc"),
                "qr_svg": qr_svg(record["verification_code"]),
            }
        )
    return events
