"""`meterbench run`: verify one recorded session folder and write its reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from pathlib import Path

from meterbench import __version__, source_revision
from meterbench.calibration import table_sha256
from meterbench.errors import SessionError
from meterbench.progress import ProgressFn
from meterbench.verify.report import write_reports
from meterbench.verify.results import InstrumentResult, instrument_identity, session_decision
from meterbench.verify.water_meter import ReadingOptions, evaluate_water_meter_session

__all__ = ["ReportCheck", "run_session", "verify_session", "RegisterReaders"]


class RegisterReaders:
    """Builds one register reader per instrument, sharing the loaded ONNX models."""

    def __init__(self, model_dir: Path | None = None) -> None:
        from meterbench.models import DialReader, DigitReader

        self.digit_reader = DigitReader(model_dir / "digit_wheel.onnx" if model_dir else None)
        self.dial_reader = DialReader(model_dir / "pointer_dial.onnx" if model_dir else None)

    def __call__(self, instrument: dict, session=None):
        """The register reader of one session.json water meter; SessionError naming it for a bad layout.

        A marker-free layout's reference photo is read from `session` (its folder)."""
        from meterbench.vision import RegisterLayout, RegisterReader
        from meterbench.vision.teach import self_taught_reason, taught_offsets

        read_image = session.reference_image if session is not None else None
        try:
            layout = RegisterLayout.from_dict(instrument["register"], read_image=read_image)
            offsets = taught_offsets(instrument["register"])  # `layout teach`'s corrections, if any
        except ValueError as exc:  # "register layout: <field>: expected ..., got ..." or the reference photo's
            raise SessionError(f"session.json: instrument {instrument['id']!r}: {exc}") from None
        refusal = self_taught_reason(instrument["register"], session.manifest["session_id"]) if session else ""
        if refusal:
            return _RefusedReader(layout, refusal)
        return RegisterReader(layout, self.digit_reader, self.dial_reader, element_offsets=offsets)

    @property
    def model_hashes(self) -> dict[str, str]:
        """SHA-256 of each ONNX model used, for the report."""
        return {"digit_wheel": self.digit_reader.model_sha256, "pointer_dial": self.dial_reader.model_sha256}


class _RefusedReader:
    """A register reader that reads nothing: its layout's corrections were taught from the very
    session it would verify (docs/layouts.md), so every point is inconclusive with that reason."""

    def __init__(self, layout, reason: str) -> None:
        self.layout = layout
        self.reason = reason

    def read_frames(self, frames, finest_element=None):
        from meterbench.verify.results import Inconclusive

        raise Inconclusive(self.reason)


def verify_session(
    session,
    options: ReadingOptions | None = None,
    readers: RegisterReaders | None = None,
    progress: ProgressFn | None = None,
) -> tuple[dict, dict]:
    """Verify a loaded session; returns (report dict, figures for the human report).

    The report dict is report.json (DESIGN.md, "Run command") before rounding;
    the session's verdict combines the instruments' by the same rule as an
    instrument combines its points (:func:`meterbench.verify.results.session_decision`).
    """
    manifest = session.manifest
    figures: dict[str, dict[str, str]] = {}
    models: dict[str, str] = {}
    extra: dict = {}
    if manifest["bench_kind"] == "helmet-impact":
        from meterbench.verify import helmet

        if session.tampered:
            instruments = helmet.inconclusive_helmets(session, "; ".join(session.tampered))
            extra = helmet.helmet_report_keys(session, instruments)
        else:
            instruments, extra = helmet.helmet_results(session)
            figures = helmet.helmet_figures(instruments)
    elif session.tampered:  # session.json changed since it was closed: no instrument's verdict rests on it
        instruments = _all_inconclusive(session, "; ".join(session.tampered))
    elif manifest["bench_kind"] == "water-meter":
        readers = readers or RegisterReaders()
        instruments = evaluate_water_meter_session(session, partial(readers, session=session), options, progress)
        models = readers.model_hashes
    else:
        from meterbench.verify.tank import evaluate_tank_session, tank_figures

        instruments = evaluate_tank_session(session)
        figures = tank_figures(session, instruments)
    report = {
        "session": manifest["session_id"],
        "verdict": session_decision(instruments).verdict,
        "instruments": [i.to_dict() for i in instruments],
        "format": "meterbench-report",
        "report_version": 1,
        "bench_kind": manifest["bench_kind"],
        "simulated": session.simulated,
        "start_time_utc": manifest["start_time_utc"],
        "decision_rule": manifest.get("decision_rule", "simple"),
        "software": f"meterbench {__version__}",
        "models": models,
        "inputs": session.file_hashes(),
        "warnings": list(session.warnings) + _bench_warnings(manifest) + extra.pop("profile_warnings", []),
        **_traceability_keys(session),
    }
    report.update(extra)
    return report, figures


def _traceability_keys(session) -> dict:
    """report.json keys added for `meterbench certify` (DESIGN.md's contract extended, never changed):
    the software identity (git revision or null, SHA-256 of each shipped table; the models are in
    ``models``) and who tested with what: the session's bench, technician and reference standard ids
    (null / [] when session.json names none) and the test date (UTC date of the start)."""
    start = session.manifest["start_time_utc"]
    test_date = dt.datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(dt.UTC).date()
    return {
        "git_revision": source_revision(),
        "tables": table_sha256(),
        "bench_id": session.bench_id,
        "technician_id": session.technician_id,
        "reference_standard_ids": session.reference_standard_ids,
        "test_date": test_date.isoformat(),
    }


def _all_inconclusive(session, reason: str) -> list[InstrumentResult]:
    """Every instrument of the session with every point inconclusive for ``reason``."""
    names = [point["name"] for point in session.test_plan_points]
    entries = [(entry, "tank") for entry in session.tanks]
    entries += [(entry, entry.get("kind", "water-meter")) for entry in session.instruments]
    return [
        InstrumentResult.inconclusive(entry["id"], kind, names, reason, identity=instrument_identity(entry))
        for entry, kind in entries
    ]


def _bench_warnings(manifest: dict) -> list[str]:
    """What the live bench said in session.json ``warnings`` (an insecure broker, suspect points)."""
    said = manifest.get("warnings")
    return [f"bench: {w}" for w in said if isinstance(w, str)] if isinstance(said, list) else []


def _provenance_notes() -> list[str]:
    from meterbench import calibration

    notes = getattr(calibration, "provenance_notes", None)
    return list(notes()) if callable(notes) else []


ReportCheck = Callable[[dict], dict]
"""Applied to a verified report before it is written: returns the report to write (e.g. the lab
file's traceability check of `meterbench run --lab`, which may make points inconclusive); raising
a MeterbenchError writes nothing."""


def run_session(
    session_dir: Path,
    out_dir: Path,
    options: ReadingOptions | None = None,
    progress: ProgressFn | None = None,
    check: ReportCheck | None = None,
) -> dict:
    """Verify the session in ``session_dir``; write report.json and report.html (as a pair) into ``out_dir``.

    ``progress(done, total, instrument id)`` is called as each instrument is verified; ``check``
    (see :data:`ReportCheck`) is applied to the report before it is written."""
    from meterbench.session.reader import load_session

    with load_session(session_dir) as session:
        report, figures = verify_session(session, options, progress=progress)
    if check is not None:
        report = check(report)
    write_reports(report, out_dir, figures, _provenance_notes())
    return report
