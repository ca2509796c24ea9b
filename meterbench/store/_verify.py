"""Certificate codes resolved through the store: the stored record is re-verified with the lab's key."""

from __future__ import annotations

from sqlalchemy import select

from ._ingest import Store
from ._schema import certificates, runs


def verify_code_in_store(code: str, url: str | None, trust=None):
    """A certificates.Verdict for a verification code looked up in the store at ``url``.

    Valid only when the code is stored, its record's signature checks with ``trust`` (the lab's
    key: --lab or --public-key) and the record signed the SHA-256 of the stored report."""
    from meterbench.certificates import Verdict, check_record_bytes, parse_code, summary_line

    try:
        normalized = parse_code(code)
    except ValueError as exc:
        return Verdict(False, f"NOT valid: code checksum wrong or malformed: {exc}")
    with Store(url) as store, store.engine.connect() as connection:
        row = connection.execute(
            select(certificates.c.record_json, runs.c.report_sha256)
            .select_from(certificates.join(runs, certificates.c.run_id == runs.c.id))
            .where(certificates.c.verification_code == normalized)
        ).first()
    if row is None:
        return Verdict(False, f"NOT valid: verification code {normalized} is not in the store")
    record, reason = check_record_bytes(row[0].encode("utf-8"), trust)
    if reason:
        return Verdict(False, f"NOT valid: stored record of {normalized}: {reason}")
    if record["report_sha256"] != row[1]:
        return Verdict(False, f"NOT valid: stored record of {normalized} signed another report than the stored one")
    return Verdict(True, "valid: " + summary_line(record))
