"""`meterbench run`: verify one recorded session folder and write its reports."""

from __future__ import annotations

from pathlib import Path

from meterbench import __version__
from meterbench.verify.report import overall_verdict, write_report_html, write_report_json
from meterbench.verify.water_meter import ReadingOptions, evaluate_water_meter_session

__all__ = ["run_session", "verify_session", "RegisterReaders"]


class RegisterReaders:
    """Builds one register reader per instrument, sharing the loaded ONNX models."""

    def __init__(self, model_dir: Path | None = None) -> None:
        from meterbench.models import DialReader, DigitReader

        self.digit_reader = DigitReader(model_dir / "digit_wheel.onnx" if model_dir else None)
        self.dial_reader = DialReader(model_dir / "pointer_dial.onnx" if model_dir else None)

    def __call__(self, instrument: dict):
        from meterbench.vision import RegisterLayout, RegisterReader

        layout = RegisterLayout.from_dict(instrument["register"])
        return RegisterReader(layout, self.digit_reader, self.dial_reader)

    @property
    def model_hashes(self) -> dict[str, str]:
        """SHA-256 of each ONNX model used, for the report."""
        return {"digit_wheel": self.digit_reader.model_sha256, "pointer_dial": self.dial_reader.model_sha256}


def verify_session(
    session, options: ReadingOptions | None = None, readers: RegisterReaders | None = None
) -> tuple[dict, dict]:
    """Verify a loaded session; returns (report dict, figures for the human report)."""
    manifest = session.manifest
    figures: dict[str, dict[str, str]] = {}
    models: dict[str, str] = {}
    if manifest["bench_kind"] == "water-meter":
        readers = readers or RegisterReaders()
        instruments = evaluate_water_meter_session(session, readers, options)
        models = readers.model_hashes
    else:
        from meterbench.verify.tank import evaluate_tank_session, tank_figures

        instruments = evaluate_tank_session(session)
        figures = tank_figures(session, instruments)
    report = {
        "session": manifest["session_id"],
        "verdict": overall_verdict([i["verdict"] for i in instruments]),
        "instruments": instruments,
        "format": "meterbench-report",
        "report_version": 1,
        "bench_kind": manifest["bench_kind"],
        "decision_rule": manifest.get("decision_rule", "simple"),
        "software": f"meterbench {__version__}",
        "models": models,
        "inputs": session.file_hashes(),
        "warnings": list(session.warnings),
    }
    return report, figures


def _provenance_notes() -> list[str]:
    from meterbench import calibration

    notes = getattr(calibration, "provenance_notes", None)
    return list(notes()) if callable(notes) else []


def run_session(session_dir: Path, out_dir: Path, options: ReadingOptions | None = None) -> dict:
    """Verify the session in ``session_dir``; write report.json and report.html into ``out_dir``."""
    from meterbench.session.reader import load_session

    session = load_session(session_dir)
    report, figures = verify_session(session, options)
    write_report_json(report, out_dir)
    write_report_html(report, out_dir, figures, _provenance_notes())
    return report
