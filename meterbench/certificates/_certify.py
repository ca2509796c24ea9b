"""`meterbench certify`: a signed certificate (PDF, HTML, JSON record) per instrument of a verified run.

Everything is checked before anything is written: the lab file, the key against its fingerprint,
report.json (present, well-formed, its verdicts following from its numbers), the session when
given (its session.json must be the one the report hashed), the bench, technician and reference
standards against the lab file, and traceability (no reference standard past its due date on
the test date, no understated reference uncertainty). Then, under the register's lock, each
certificate gets the next number, is sealed, drawn, written (never over an existing file) and
logged in the audit trail.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterbench import __version__, source_revision
from meterbench.calibration import table_sha256
from meterbench.errors import ConfigError, OutputError, SessionError
from meterbench.protocols import strict_json_loads
from meterbench.session import read_bounded

from ._canonical import record_file_text, sha256_hex
from ._keys import LabKey, load_private_key
from ._lab import Bench, Lab, ReferenceStandard, Technician, load_lab
from ._record import (
    certificate_fields,
    report_problems,
    seal_documents,
    seal_record,
    traceability_problems,
)
from ._register import LabRegister, RegisterEntry
from ._render import check_renderers, render_html, render_pdf

__all__ = ["IssuedCertificate", "certify_run", "check_lab_key", "log_run_configuration", "software_identity"]

_MAX_REPORT_BYTES = 256 * 1024 * 1024
KEYS_DIR = "keys"
"""Folder of the register holding the lab's public key(s) by fingerprint (``<fingerprint>.pub``)."""


@dataclass(frozen=True)
class IssuedCertificate:
    """One certificate written by certify."""

    number: int
    verification_code: str
    instrument_id: str
    verdict: str
    files: tuple[Path, ...]


def _read_json(path: Path, what: str) -> tuple[Any, bytes]:
    raw = read_bounded(path, _MAX_REPORT_BYTES, SessionError, f"a {what}")
    try:
        return strict_json_loads(raw), raw
    except (ValueError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path}: not valid JSON ({exc})") from None


def software_identity(report: dict[str, Any]) -> dict[str, Any]:
    """Software identity for the certificate (OIML D 31): version, git revision, SHA-256 of models and tables.

    All as report.json recorded them for the run (``software``, ``git_revision``, ``models``, ``tables``).
    A report of an older meterbench records no git revision or tables: those are then taken from the
    installation at certification, and the note says so."""
    recorded = "git_revision" in report and isinstance(report.get("tables"), dict) and bool(report["tables"])
    if recorded:
        revision = report["git_revision"] or "unknown (the run's meterbench was not a git checkout)"
        tables = dict(report["tables"])
        note = "version, git revision, models and tables as recorded by the run (report.json)"
    else:
        revision = source_revision() or "unknown (meterbench is not installed from a git checkout, or no git)"
        tables = table_sha256()
        note = (
            "models as recorded by the run; git revision and tables as installed at certification "
            "(report.json of this run does not record them)"
        )
    return {
        "version": str(report.get("software") or "unknown"),
        "certified_with": f"meterbench {__version__}",
        "git_revision": revision,
        "models": dict(report.get("models") or {}),
        "tables": tables,
        "note": note,
    }


def _session_facts(session_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """session.json of the run, after checking it is the file the report hashed."""
    path = session_dir / "session.json"
    manifest, raw = _read_json(path, "session manifest")
    recorded = (report.get("inputs") or {}).get("session.json")
    if recorded != sha256_hex(raw):
        raise SessionError(f"{path}: not the session.json this report verified (SHA-256 differs from report.json)")
    manifest = manifest if isinstance(manifest, dict) else {}
    simulated = "simulated" in manifest or (session_dir / "truth.json").exists()
    if simulated and report.get("simulated") is not True:
        raise SessionError(
            f"{path}: the session is simulated but its report.json says simulated = {report.get('simulated')!r} "
            "(the report was changed): a simulated session is never certified as a real one"
        )
    return manifest


def check_lab_key(lab: Lab, key: LabKey, where: str) -> None:
    """ConfigError (naming ``where``) unless ``key`` is the one the lab file names ([lab] key_fingerprint)."""
    if key.public.fingerprint != lab.key_fingerprint:
        raise ConfigError(
            f"{where}: key fingerprint {key.public.fingerprint} does not match {lab.path} [lab] key_fingerprint "
            f"{lab.key_fingerprint} (wrong key or wrong lab file)"
        )


def _pick(
    option: str | None,
    recorded: Any,
    from_session: Any,
    choices: dict[str, Any],
    what: str,
    flag: str,
    lab: Lab,
) -> Any:
    """The lab file's entry: ``flag``'s, else the one report.json recorded, else the session's, else the
    lab's only one. An option that contradicts what the run recorded is refused (a certificate names who
    and what did the test, never something else)."""
    recorded = recorded if isinstance(recorded, str) else None
    if option is not None and recorded is not None and option != recorded:
        raise ConfigError(
            f"{flag}: {what} {option!r}, but report.json records {what} {recorded!r} for this run "
            f"(a certificate names the {what} of the test; leave {flag} out)"
        )
    chosen = option or recorded or (from_session if isinstance(from_session, str) else None)
    if chosen is None and len(choices) == 1:
        chosen = next(iter(choices))
    if chosen is None:
        raise ConfigError(f"{flag}: which {what}? expected one of {', '.join(sorted(choices))} (from {lab.path})")
    if chosen not in choices:
        raise ConfigError(
            f"{flag}: {what} {chosen!r} is not in {lab.path} (expected one of {', '.join(sorted(choices))})"
        )
    return choices[chosen]


def _utc(text: str) -> dt.datetime:
    """An ISO 8601 time (Z or an offset) as an aware UTC datetime; ConfigError if it is not one."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"expected an ISO 8601 time, got {text!r}") from None
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _now_utc() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _write_new_files(files: dict[Path, bytes]) -> None:
    """Write files as a unit, each created only where no file is (link of an fsynced temporary)."""
    done: list[Path] = []
    temps: list[Path] = []
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(Path(tmp))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
        for tmp, path in zip(temps, files, strict=True):
            os.link(tmp, path)  # fails if the name exists: never overwrites
            done.append(path)
        dir_fd = os.open(next(iter(files)).parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        for path in done:
            path.unlink(missing_ok=True)
        where = (exc.filename2 or exc.filename) if isinstance(exc, FileExistsError) else next(iter(files)).parent
        raise OutputError(f"{where}: cannot write the certificate: {exc.strerror or exc}") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the output folder: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: not writable")


def _store_public_key(register: LabRegister, key: LabKey) -> None:
    """Keep the lab's public key in the register (keys/<fingerprint>.pub) for `verify --lab`."""
    folder = register.folder / KEYS_DIR
    path = folder / f"{key.public.fingerprint}.pub"
    if path.exists():
        return
    folder.mkdir(mode=0o700, exist_ok=True)
    _write_new_files({path: key.public.pem()})


@dataclass(frozen=True)
class _Plan:
    """Everything certify checked before writing: what to certify, by whom, with what."""

    lab: Lab
    lab_bytes: bytes
    key: LabKey
    report: dict[str, Any]
    report_path: Path
    report_sha256: str
    bench: Bench
    technician: Technician
    standards: tuple[ReferenceStandard, ...]
    instruments: tuple[dict[str, Any], ...]
    session_instruments: dict[str, dict[str, Any]]
    software: dict[str, Any]
    out_dir: Path


def _plan(
    run_dir: Path,
    key_path: Path,
    lab_path: Path,
    out_dir: Path | None,
    bench_id: str | None,
    technician_id: str | None,
    reference_ids: list[str] | None,
    session_dir: Path | None,
    instrument_ids: list[str] | None,
) -> _Plan:
    """Every check of certify (module docstring), in order; the first failure raises, nothing is written."""
    lab, lab_bytes = load_lab(lab_path)
    key = load_private_key(key_path)
    check_renderers()
    check_lab_key(lab, key, str(key_path))
    run_dir = Path(run_dir)
    report_path = run_dir / "report.json"
    if not run_dir.is_dir():
        raise SessionError(f"{run_dir}: not a folder (expected a run folder holding report.json)")
    report, report_raw = _read_json(report_path, "report.json written by `meterbench run`")
    problems = report_problems(report, str(report_path))
    if problems:
        raise SessionError(problems)
    manifest = _session_facts(Path(session_dir), report) if session_dir is not None else {}
    bench = _pick(bench_id, report.get("bench_id"), manifest.get("bench_id"), lab.benches, "bench", "--bench", lab)
    session_technician = manifest.get("technician_id", manifest.get("technician"))
    technician = _pick(
        technician_id,
        report.get("technician_id"),
        session_technician,
        lab.technicians,
        "technician",
        "--technician",
        lab,
    )
    recorded_refs = list(report.get("reference_standard_ids") or [])
    if reference_ids and recorded_refs and sorted(set(reference_ids)) != sorted(set(recorded_refs)):
        raise ConfigError(
            f"--reference: {', '.join(reference_ids)}, but report.json records the reference standards "
            f"{', '.join(recorded_refs)} for this run (leave --reference out)"
        )
    wanted = reference_ids or recorded_refs or list(bench.reference_standards)
    unknown = [r for r in wanted if r not in lab.reference_standards]
    if unknown:
        raise ConfigError(f"--reference: {', '.join(unknown)} not in {lab.path} [[reference_standards]]")
    standards = tuple(lab.reference_standards[r] for r in wanted)
    untraceable = traceability_problems(report, standards)
    if untraceable:
        raise ConfigError(
            "\n".join(f"{lab.path}: {p}: the run's points are inconclusive, not certified" for p in untraceable)
        )
    instruments = report["instruments"]
    if instrument_ids:
        known = {i.get("id") for i in instruments}
        missing = [i for i in instrument_ids if i not in known]
        if missing:
            raise ConfigError(
                f"--instrument: {', '.join(missing)} not in {report_path} (expected {', '.join(map(str, known))})"
            )
        instruments = [i for i in instruments if i.get("id") in instrument_ids]
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    _check_out_dir(out_dir)
    entries = (manifest.get("instruments") or []) + (manifest.get("tanks") or [])
    return _Plan(
        lab=lab,
        lab_bytes=lab_bytes,
        key=key,
        report=report,
        report_path=report_path,
        report_sha256=sha256_hex(report_raw),
        bench=bench,
        technician=technician,
        standards=standards,
        instruments=tuple(instruments),
        session_instruments={e.get("id"): e for e in entries if isinstance(e, dict)},
        software=software_identity(report),
        out_dir=out_dir,
    )


def _note_configuration(
    register: LabRegister,
    lab: Lab,
    lab_bytes: bytes,
    fingerprint: str,
    software: dict[str, Any],
    context: dict[str, Any] | None = None,
) -> list[RegisterEntry]:
    """Log the lab file, key, software, models and tables when first seen or changed (audit trail).

    ``context`` (who saw it: certify, or the run of a session) goes into each new entry's details."""
    context = context or {}
    noted = [
        register.note_config("lab file", sha256_hex(lab_bytes), {"path": str(lab.path), **context}),
        register.note_config("signing key", fingerprint, dict(context)),
        register.note_config(
            "software",
            sha256_hex(f"{software['version']} {software['git_revision']}".encode()),
            {"version": software["version"], "git_revision": software["git_revision"], **context},
        ),
    ]
    noted += [register.note_config(f"model {n}", d, dict(context)) for n, d in sorted(software["models"].items())]
    noted += [register.note_config(f"table {n}", d, dict(context)) for n, d in sorted(software["tables"].items())]
    return [entry for entry in noted if entry is not None]


def log_run_configuration(lab: Lab, lab_bytes: bytes, key: LabKey, report: dict[str, Any]) -> list[RegisterEntry]:
    """`meterbench run --lab --key`: log, in the lab's register, the configuration this run saw (lab file,
    signing key, software, each model and each MPE/decision table, as report.json recorded them) where it
    differs from the last seen; returns the entries written (signed and chained like certify's)."""
    check_lab_key(lab, key, "--key")
    register = LabRegister(lab.records)
    who = f"{report.get('technician_id') or 'technician not named'} (os user {getpass.getuser()})"
    context = {"seen_by": "meterbench run", "session": report.get("session")}
    with register.locked(key.sign, who):
        _store_public_key(register, key)
        return _note_configuration(register, lab, lab_bytes, key.public.fingerprint, software_identity(report), context)


def _issue(register: LabRegister, plan: _Plan, instrument: dict[str, Any], issued_utc: str) -> IssuedCertificate:
    """Reserve the next number, seal, draw, write and log one instrument's certificate (under the lock)."""
    key, software = plan.key, plan.software
    number = register.reserve_number(
        {"session": plan.report.get("session"), "instrument": instrument.get("id"), "report_sha256": plan.report_sha256}
    )
    fields = certificate_fields(
        plan.report,
        instrument,
        plan.lab,
        number=number,
        bench=plan.bench,
        technician=plan.technician,
        standards=plan.standards,
        issued_utc=issued_utc,
        software=software,
        report_file=str(plan.report_path.resolve()),
        extra_identity=plan.session_instruments.get(instrument.get("id")),
    )
    if software["version"] != software["certified_with"]:
        fields["warnings"].append(f"the run used {software['version']}; certified with {software['certified_with']}")
    record = seal_record(fields, plan.report_sha256, key.public.fingerprint, key.sign)
    stem = f"certificate-{number}"
    pdf, page = render_pdf(record), render_html(record).encode("utf-8")
    record = seal_documents(record, {f"{stem}.pdf": sha256_hex(pdf), f"{stem}.html": sha256_hex(page)}, key.sign)
    text = record_file_text(record)
    files = {
        plan.out_dir / f"{stem}.json": text.encode("utf-8"),
        plan.out_dir / f"{stem}.pdf": pdf,
        plan.out_dir / f"{stem}.html": page,
    }
    _write_new_files(files)
    register.store_record(number, text)
    register.append(
        "certificate-issued",
        f"certificate {number}",
        None,
        sha256_hex(text.encode("utf-8")),
        {
            "number": number,
            "verification_code": record["verification_code"],
            "record": f"{stem}.json",
            "instrument": instrument.get("id"),
            "serial": fields["instrument"].get("serial"),
            "verdict": fields["verdict"],
            "written_to": str(plan.out_dir.resolve()),
        },
    )
    return IssuedCertificate(
        number, record["verification_code"], str(instrument.get("id")), str(fields["verdict"]), tuple(files)
    )


def certify_run(
    run_dir: Path,
    key_path: Path,
    lab_path: Path,
    out_dir: Path | None = None,
    *,
    bench_id: str | None = None,
    technician_id: str | None = None,
    reference_ids: list[str] | None = None,
    session_dir: Path | None = None,
    instrument_ids: list[str] | None = None,
    issued_utc: str | None = None,
) -> list[IssuedCertificate]:
    """Certify every (or each named) instrument of the run in ``run_dir``; see the module docstring.

    ``issued_utc`` (ISO 8601, default now) is the issue time printed on the certificates."""
    plan = _plan(
        run_dir, key_path, lab_path, out_dir, bench_id, technician_id, reference_ids, session_dir, instrument_ids
    )
    issued = _utc(issued_utc) if issued_utc else _utc(_now_utc())
    issued_utc = issued.isoformat().replace("+00:00", "Z")
    start = str(plan.report.get("start_time_utc"))
    if issued < _utc(start):
        raise ConfigError(f"issue time {issued_utc} is before the test started ({start}): is the clock right?")
    register = LabRegister(plan.lab.records)
    with register.locked(plan.key.sign, f"{plan.technician.id} (os user {getpass.getuser()})"):
        _store_public_key(register, plan.key)
        _note_configuration(register, plan.lab, plan.lab_bytes, plan.key.public.fingerprint, plan.software)
        return [_issue(register, plan, instrument, issued_utc) for instrument in plan.instruments]
