"""Ingest run outputs into the store: find report.json files, check them, write one transaction per run.

A run is its report.json (keyed by the SHA-256 of its bytes), the certificate records beside it
(``certificate-*.json`` of the same session, their signatures checked with the lab's key) and, when
the report lies in its session folder, the session.json's instrument metadata (lot). A report that
is not a meterbench report, that does not follow from its own numbers (the certificates package's
``report_problems``), or whose bytes are not the ones a certificate beside it signed, is refused
with one line naming the file and field. A run already stored (same SHA-256) is skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterbench.errors import ConfigError
from meterbench.protocols import strict_json_loads
from meterbench.session import read_bounded

from ._engine import create_store_engine, migrate, resolve_db_url, unavailable
from ._helmets import insert_impacts
from ._schema import (
    certificates,
    column_number,
    column_text,
    instruments,
    points,
    reference_standards,
    run_reference_standards,
    runs,
)

REPORT_FILE = "report.json"
MAX_REPORT_BYTES = 64 * 2**20
CAPACITY_CLASSES_L = ((20.0, "<= 20 L"), (200.0, "20-200 L"), (2000.0, "200-2000 L"))
"""Tank capacity classes (upper bound in L, label; above the last: "> 2000 L"). [MEM] a reporting
convention of this store, not a legal class: change here if the lab groups otherwise."""


@dataclass
class RunFiles:
    """The bytes of one run: its report.json, the certificate records beside it, its session.json if any."""

    report_path: Path
    report_raw: bytes
    certificate_raws: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes
    session_raw: bytes | None = None
    source: str = ""  # where it came from (a run folder; the spool keeps the original's)

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the report.json bytes: the run's key in the store."""
        return hashlib.sha256(self.report_raw).hexdigest()


@dataclass
class ParsedRun:
    """A checked run: the report and the rows to insert."""

    files: RunFiles
    report: dict
    lots: dict[str, str]  # instrument id -> lot
    records: list[dict]  # certificate records of this report (signatures checked)


@dataclass(frozen=True)
class IngestResult:
    """What happened to one run: "stored", "already stored" or "queued" (store down), with a line to print."""

    path: str
    sha256: str
    status: str
    points: int
    message: str


def find_reports(paths: Iterable[Path]) -> list[Path]:
    """report.json files under PATHs: a report file itself, a run folder, or a batch folder (searched)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / REPORT_FILE).is_file():
            found.append(path / REPORT_FILE)
        elif path.is_dir():
            below = sorted(path.rglob(REPORT_FILE))
            if not below:
                raise ConfigError(f"{path}: no {REPORT_FILE} in it or below it (expected run or batch folders)")
            found += below
        else:
            raise ConfigError(f"{path}: no such file or folder (expected a run folder, batch folder or report.json)")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _read(path: Path) -> bytes:
    return read_bounded(path, MAX_REPORT_BYTES, ConfigError, "a run's report.json or certificate record")


def load_run(report_path: Path, source: str | None = None) -> RunFiles:
    """The bytes of the run whose report is ``report_path`` (certificates and session.json beside it)."""
    report_path = Path(report_path)
    folder = report_path.parent
    certs = {p.name: _read(p) for p in sorted(folder.glob("certificate-*.json"))}
    session = next((p for p in (folder / "session.json", folder / "session" / "session.json") if p.is_file()), folder)
    return RunFiles(
        report_path,
        _read(report_path),
        certs,
        _read(session) if session.is_file() else None,
        source or str(folder),
    )


def _json(raw: bytes, label: Path | str) -> Any:
    try:
        return strict_json_loads(raw)
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text (expected a report.json)") from None
    except ValueError as exc:
        raise ConfigError(f"{label}: not valid JSON ({exc})") from None


def _lots(session_raw: bytes | None, report: dict, label: Path) -> dict[str, str]:
    lots = {str(i.get("id")): str(i["lot"]) for i in report["instruments"] if i.get("lot") is not None}
    if session_raw is None:
        return lots
    session = _json(session_raw, label.parent / "session.json")
    if isinstance(session, dict) and session.get("session_id") == report.get("session"):
        for instrument in session.get("instruments") or []:
            if isinstance(instrument, dict) and instrument.get("lot") is not None:
                lots.setdefault(str(instrument.get("id")), str(instrument["lot"]))
    return lots


def parse_run(files: RunFiles, trust=None, trusted_fingerprint: str | None = None) -> ParsedRun:
    """Check a run's files; ConfigError (one line naming the file and field) when they cannot be stored.

    ``trust`` (certificates.Trust / PublicKey) checks the certificate records' signatures; a run with
    certificate records of its session and no key is refused, unless ``trusted_fingerprint`` says
    the spool already checked them with that key (then code, hash and fingerprint are rechecked)."""
    from meterbench.certificates import report_problems

    label = files.report_path
    report = _json(files.report_raw, label)
    if not isinstance(report, dict) or report.get("format") != "meterbench-report":
        raise ConfigError(f"{label}: format: expected 'meterbench-report' (a meterbench report.json)")
    problems = report_problems(report, str(label))
    for key in ("session", "bench_kind", "verdict"):
        if not isinstance(report.get(key), str):
            problems.insert(0, f"{label}: {key}: expected a string, got {report.get(key)!r}")
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    records = [
        r
        for r in (
            _certificate(files, name, raw, report, trust, trusted_fingerprint)
            for name, raw in files.certificate_raws.items()
        )
        if r is not None
    ]
    return ParsedRun(files, report, _lots(files.session_raw, report, label), records)


def _certificate(files: RunFiles, name: str, raw: bytes, report: dict, trust, trusted_fingerprint) -> dict | None:
    from meterbench.certificates import check_record_bytes

    where = files.report_path.parent / name
    record = _json(raw, where)
    certificate = record.get("certificate") if isinstance(record, dict) else None
    session = (certificate or {}).get("session") if isinstance(certificate, dict) else None
    if not isinstance(session, dict) or session.get("id") != report.get("session"):
        return None  # another session's certificate in the same folder: not this run's
    if trust is None and trusted_fingerprint is None:
        raise ConfigError(f"{where}: cannot check its signature: give --lab LAB.toml or --public-key lab.pub")
    _, reason = check_record_bytes(raw, trust)
    if trust is None and reason.startswith("unknown key"):  # spooled: checked with this key when queued
        reason = (
            ""
            if record.get("key_fingerprint") == trusted_fingerprint
            else f"signed by another key than {trusted_fingerprint}"
        )
    if reason:
        raise ConfigError(f"{where}: {reason}")
    if record["report_sha256"] != files.sha256:
        raise ConfigError(
            f"{files.report_path}: SHA-256 {files.sha256[:16]}... is not the report_sha256 "
            f"{record['report_sha256'][:16]}... signed in {name} (the report changed after signing)"
        )
    return record


def capacity_class(capacity_l: float | None) -> str | None:
    """The capacity class label of a tank of ``capacity_l`` litres (None when not a tank)."""
    if capacity_l is None:
        return None
    for upper, label in CAPACITY_CLASSES_L:
        if capacity_l <= upper:
            return label
    return f"> {CAPACITY_CLASSES_L[-1][0]:g} L"


def insert_run(connection, run: ParsedRun) -> int:
    """Insert one checked run (inside the caller's transaction); its number of points."""
    from sqlalchemy import insert, select

    from meterbench.certificates import report_test_date

    report = run.report
    day = report_test_date(report)
    run_id = connection.execute(
        insert(runs).returning(runs.c.id),
        {
            "report_sha256": run.files.sha256,
            "session_id": report["session"],
            "bench_kind": report["bench_kind"],
            "bench_id": column_text(report.get("bench_id")),
            "technician_id": column_text(report.get("technician_id")),
            "test_date": day,
            "month": day.strftime("%Y-%m"),
            "start_time_utc": column_text(report.get("start_time_utc")),
            "verdict": report["verdict"],
            "simulated": bool(report.get("simulated", False)),
            "decision_rule": column_text(report.get("decision_rule")),
            "software": column_text(report.get("software")),
            "git_revision": column_text(report.get("git_revision")),
            "source_path": run.files.source,
            "ingested_at_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "report_json": run.files.report_raw.decode("utf-8"),
        },
    ).scalar_one()
    for standard_id in dict.fromkeys(str(s) for s in report.get("reference_standard_ids") or []):
        pk = connection.execute(
            select(reference_standards.c.id).where(reference_standards.c.standard_id == standard_id)
        ).scalar()
        if pk is None:
            pk = connection.execute(
                insert(reference_standards).returning(reference_standards.c.id), {"standard_id": standard_id}
            ).scalar_one()
        connection.execute(insert(run_reference_standards), {"run_id": run_id, "standard_pk": pk})
    rows = []
    instrument_pks: dict[str, int] = {}
    for instrument in report["instruments"]:
        capacity = column_number(instrument.get("nominal_volume_l"))
        instrument_pk = instrument_pks[str(instrument.get("id"))] = connection.execute(
            insert(instruments).returning(instruments.c.id),
            {
                "run_id": run_id,
                "instrument_id": str(instrument.get("id")),
                "kind": str(instrument.get("kind", report["bench_kind"])),
                "meter_type": column_text(instrument.get("type")),
                "serial": column_text(instrument.get("serial")),
                "lot": run.lots.get(str(instrument.get("id"))),
                "accuracy_class": column_text(instrument.get("accuracy_class")),
                "capacity_l": capacity,
                "capacity_class": capacity_class(capacity),
                "verdict": str(instrument.get("verdict")),
            },
        ).scalar_one()
        for ordinal, point in enumerate(instrument["points"]):
            details = point.get("details") or {}
            rows.append(
                {
                    "run_id": run_id,
                    "instrument_pk": instrument_pk,
                    "ordinal": ordinal,
                    "bench_kind": report["bench_kind"],
                    "name": str(point.get("name", ordinal)),
                    "flow_rate": column_number(point.get("flow_rate")),
                    "reference_volume": column_number(point.get("reference_volume")),
                    "indicated_volume": column_number(point.get("indicated_volume")),
                    "error_pct": column_number(point.get("error_pct")),
                    "mpe_pct": column_number(point.get("mpe_pct")),
                    "uncertainty_pct": column_number(point.get("uncertainty_pct")),
                    "verdict": str(point.get("verdict")),
                    "water_temperature_c": column_number(
                        next((details[k] for k in ("water_temperature_c", "tank_temperature_c") if k in details), None)
                    ),
                    "meter_type": column_text(instrument.get("type")),
                    "lot": run.lots.get(str(instrument.get("id"))),
                    "pressure_bar": column_number(
                        next((details[k] for k in ("water_pressure_bar", "pressure_bar") if k in details), None)
                    ),
                }
            )
    if rows:
        connection.execute(insert(points), rows)
    insert_impacts(connection, run_id, report, run.lots, instrument_pks)
    for record in run.records:
        certificate = record["certificate"]
        connection.execute(
            insert(certificates),
            {
                "verification_code": record["verification_code"],
                "run_id": run_id,
                "number": column_text(certificate.get("number")),
                "instrument_id": column_text((certificate.get("instrument") or {}).get("id")),
                "verdict": column_text(certificate.get("verdict")),
                "report_sha256": record["report_sha256"],
                "record_json": _record_text(record),
            },
        )
    return len(rows)


def _record_text(record: dict) -> str:
    from meterbench.certificates import record_file_text

    return record_file_text(record)


class Store:
    """An open store (engine + schema at the newest migration); ``ingest`` stores runs, one transaction each."""

    def __init__(self, url: str | None = None, timeout_s: float | None = None) -> None:
        from sqlalchemy.exc import DBAPIError

        from ._engine import DEFAULT_TIMEOUT_S

        self.url = resolve_db_url(url)
        self.engine = create_store_engine(self.url, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)
        try:
            migrate(self.engine)
        except DBAPIError as exc:
            self.engine.dispose()
            raise unavailable(self.url, exc) from None

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stored(self, sha256: str) -> bool:
        """True when the run with this report SHA-256 is in the store."""
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        try:
            with self.engine.connect() as connection:
                return connection.execute(select(runs.c.id).where(runs.c.report_sha256 == sha256)).first() is not None
        except DBAPIError as exc:
            raise unavailable(self.url, exc) from None

    def ingest(self, run: ParsedRun) -> IngestResult:
        """Store one checked run in one transaction ("already stored" when its SHA-256 is there)."""
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError, IntegrityError

        sha, path = run.files.sha256, str(run.files.report_path)
        try:
            with self.engine.begin() as connection:
                if connection.execute(select(runs.c.id).where(runs.c.report_sha256 == sha)).first() is not None:
                    return IngestResult(path, sha, "already stored", 0, f"{path}: already stored ({sha[:12]})")
                count = insert_run(connection, run)
        except IntegrityError as exc:
            if self.stored(sha):  # another bench stored the same run meanwhile
                return IngestResult(path, sha, "already stored", 0, f"{path}: already stored ({sha[:12]})")
            text = " ".join(str(exc.orig).split())[:200]
            raise ConfigError(f"{path}: conflicts with a stored run ({text})") from None
        except DBAPIError as exc:
            raise unavailable(self.url, exc) from None
        return IngestResult(path, sha, "stored", count, f"{path}: stored, {count} points ({sha[:12]})")


def check_runs(report_paths: Sequence[Path], trust=None) -> list[ParsedRun]:
    """Load and check every run first (nothing is written when one of them is refused)."""
    return [parse_run(load_run(path), trust) for path in report_paths]
