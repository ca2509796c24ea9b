"""meterbench.verify: fusion of register readings with the reference, one PointResult /
InstrumentResult type for every bench kind, one way to combine verdicts (session_decision),
and reports (report.json, report.html)."""

from meterbench.verify.helmet import evaluate_helmet_session, verify_helmet_session
from meterbench.verify.report import (
    check_report_folder,
    summary_lines,
    write_report_html,
    write_report_json,
    write_reports,
)
from meterbench.verify.results import Inconclusive, InstrumentResult, PointResult, session_decision
from meterbench.verify.run import RegisterReaders, ReportCheck, run_session, verify_session
from meterbench.verify.tank import evaluate_tank_session
from meterbench.verify.water_meter import ReadingOptions, evaluate_water_meter_session

__all__ = [
    "evaluate_helmet_session",
    "verify_helmet_session",
    "Inconclusive",
    "InstrumentResult",
    "PointResult",
    "ReadingOptions",
    "RegisterReaders",
    "ReportCheck",
    "check_report_folder",
    "evaluate_tank_session",
    "evaluate_water_meter_session",
    "run_session",
    "session_decision",
    "summary_lines",
    "verify_session",
    "write_report_html",
    "write_report_json",
    "write_reports",
]
