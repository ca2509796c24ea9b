"""meterbench.verify: fusion of register readings with the reference, per point and instrument
results for every bench kind, verdicts and reports (report.json, report.html)."""

from meterbench.verify.report import (
    check_report_folder,
    overall_verdict,
    summary_lines,
    write_report_html,
    write_report_json,
    write_reports,
)
from meterbench.verify.run import RegisterReaders, run_session, verify_session
from meterbench.verify.tank import evaluate_tank_session
from meterbench.verify.water_meter import ReadingOptions, evaluate_water_meter_session

__all__ = [
    "ReadingOptions",
    "RegisterReaders",
    "check_report_folder",
    "evaluate_tank_session",
    "evaluate_water_meter_session",
    "overall_verdict",
    "run_session",
    "summary_lines",
    "verify_session",
    "write_report_html",
    "write_report_json",
    "write_reports",
]
